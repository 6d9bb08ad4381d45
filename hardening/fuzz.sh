#!/usr/bin/env bash
# Campaign 1 (issue 7): fuzzing with atheris, the C extension built with AddressSanitizer
# (+ UBSan) and libFuzzer coverage.
#
#   bash hardening/fuzz.sh full   each target 600 s
#   bash hardening/fuzz.sh ci     each target 30 s (about 2.5 min in all on a warm machine;
#                                 a fresh machine adds the apt-get install of clang-14,
#                                 ~1-2 min, and the pip install of atheris, a few seconds)
#
# Targets (hardening/fuzz_<name>.py, each a one_input(bytes) that the regression test
# tests/test_fuzz_corpus.py also replays, without atheris):
#   localcache   LocalCache driven by a byte stream against tests/refmodel.py
#   serializers  every built-in serializer's loads, and TieredCache's payload decoder
#   templates    key/tag templates, the key encoder, the C key writer vs the Python one
#   redis_reply  the sync and async Redis reply paths on fragmented, malformed replies
#
# Pass: for every target, no crash, no sanitizer report, no undocumented exception and no
# disagreement with the reference (each target's docstring says what it checks), no
# input running over 10 s (a hang), no allocation over the limit. A failing input is
# written to build/fuzz/artifacts/<target>/; copy it under tests/fuzz_corpus/<target>/
# so the normal suite replays it for good.
#
# WHY CLANG, NOT GCC: gcc's ASan runtime (libasan) also defines the coverage callbacks that
# libFuzzer needs, and a process may hold only one ASan runtime: preloading gcc's runtime
# leaves atheris blind (no Python coverage either), and atheris' own runtime
# (asan_with_fuzzer.so, clang's ASan + UBSan + libFuzzer in one library) refuses an
# extension linked against libasan. So the extension is compiled by clang-14 with
# -fsanitize=address,undefined,fuzzer-no-link and linked WITHOUT a sanitizer runtime; the
# preloaded asan_with_fuzzer.so provides ASan, UBSan and libFuzzer, and the fuzzer sees
# both the C core's edges and the Python code's (atheris instruments tieredcache's
# modules as they are imported). Built apart in build/fuzz/ext; src/ is untouched; a
# staged copy of the package (build/fuzz/lib) carries the sanitized extension.
#
# Installs (idempotent): atheris (pip, pinned, into build/fuzz/site; not into .venv),
# clang-14 and libclang-rt-14-dev (apt-get, only when clang-14 is missing).
set -euo pipefail
cd "$(dirname "$0")/.."

MODE="${1:-}"
case "$MODE" in
  full) SECONDS_PER_TARGET=600 ;;
  ci) SECONDS_PER_TARGET=30 ;;
  *) echo "usage: $0 full|ci" >&2; exit 2 ;;
esac
# FUZZ_TARGETS="redis_reply templates" runs only those (e.g. to re-run one after a fix).
read -r -a TARGETS <<< "${FUZZ_TARGETS:-localcache serializers templates redis_reply}"
ATHERIS_VERSION=3.0.0
PY=.venv/bin/python
FUZZ=build/fuzz
SITE=$FUZZ/site
START=$(date +%s)

[ -x "$PY" ] || { echo "fuzz: $PY missing: run 'make venv' first" >&2; exit 1; }

# ---- setup: atheris, clang ----------------------------------------------------------------
if [ ! -f "$SITE/.atheris-$ATHERIS_VERSION" ]; then
  echo "==> fuzz: installing atheris $ATHERIS_VERSION into $SITE"
  rm -rf "$SITE"
  "$PY" -m pip install --quiet --disable-pip-version-check --target "$SITE" "atheris==$ATHERIS_VERSION"
  touch "$SITE/.atheris-$ATHERIS_VERSION"
fi
RUNTIME="$PWD/$SITE/asan_with_fuzzer.so"
[ -f "$RUNTIME" ] || { echo "fuzz: $RUNTIME missing from the atheris wheel" >&2; exit 1; }

if ! command -v clang-14 >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "==> fuzz: installing clang-14 and libclang-rt-14-dev with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends clang-14 libclang-rt-14-dev </dev/null
  else
    echo "fuzz: clang-14 is missing; as root: apt-get install clang-14 libclang-rt-14-dev" >&2
    exit 1
  fi
fi

# ---- the sanitized extension, rebuilt when a source or the flags change -------------------
EXT_SUFFIX=$("$PY" -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
SO=$FUZZ/ext/tieredcache/_core$EXT_SUFFIX
CC_FLAGS="clang-14 -fsanitize=address,undefined,fuzzer-no-link -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g"
RECORD="CC=$CC_FLAGS CFLAGS=-fno-wrapv sources: $(cd csrc && ls *.c *.h | tr '\n' ' ')"
mkdir -p "$FUZZ"
if [ ! -f "$SO" ] || [ "$(cat $FUZZ/.flags 2>/dev/null)" != "$RECORD" ] \
   || [ -n "$(find csrc setup.py -newer "$SO" 2>/dev/null)" ]; then
  echo "==> fuzz: building the ASan+UBSan+coverage extension into $FUZZ/ext (clang-14)"
  rm -rf "$FUZZ/ext" "$FUZZ/temp"
  # CC compiles (Python's CFLAGS, then -fno-wrapv so UBSan sees signed overflow); LDSHARED
  # links with no sanitizer runtime: the preloaded one resolves the __asan_/__ubsan_/
  # __sanitizer_cov_ symbols.
  env -u TIEREDCACHE_SANITIZE -u TIEREDCACHE_DEBUG CC="$CC_FLAGS" LDSHARED="clang-14 -shared" CFLAGS="-fno-wrapv" \
    "$PY" setup.py --quiet build_ext --force --build-lib "$FUZZ/ext" --build-temp "$FUZZ/temp" >"$FUZZ/build.log" 2>&1 \
    || { cat "$FUZZ/build.log" >&2; exit 1; }
  echo "$RECORD" > "$FUZZ/.flags"
fi

# A fresh staged copy of the package with the sanitized extension in place of the normal one.
rm -rf "$FUZZ/lib" && mkdir -p "$FUZZ/lib"
cp -R src/tieredcache "$FUZZ/lib/"
find "$FUZZ/lib" -name __pycache__ -type d -prune -exec rm -rf {} +
find "$FUZZ/lib" -name '_core*.so' -delete
cp "$SO" "$FUZZ/lib/tieredcache/"

export LD_PRELOAD="$RUNTIME"
# max_allocation_size_mb: an allocation over 2 GiB fails (NULL, so MemoryError) as under
# strict overcommit. hiredis allocates an array reply's declared length up front (a
# 20 GiB list for "*2499467295"); under ASan such a block, freed, costs GiBs of shadow
# memory and the RSS limit ended the run. Failing it instead exercises what the clients
# do with that MemoryError (BackendUnavailable), which a real host may raise too.
export ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1:max_allocation_size_mb=2048:halt_on_error=1:print_summary=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
export PYTHONMALLOC=malloc
export PYTHONPATH="$PWD/$FUZZ/lib:$PWD/$SITE:$PWD/hardening:$PWD/tests"

# ---- guard against a run that only looks sanitized --------------------------------------
undefined=$(nm -D --undefined-only "$SO")  # (not piped into grep -q: SIGPIPE + pipefail)
for sym in __asan_report_load __ubsan_handle_ __sanitizer_cov_8bit_counters_init; do
  [[ "$undefined" == *"$sym"* ]] || { echo "fuzz: $SO lacks $sym: not instrumented" >&2; exit 1; }
done
if [[ "$(readelf -d "$SO")" =~ NEEDED.*lib(asan|ubsan) ]]; then
  echo "fuzz: $SO links a sanitizer runtime of its own" >&2; exit 1
fi
"$PY" -c "import sys, tieredcache._core as m; sys.exit(0 if m.__file__.startswith('$PWD/$FUZZ/lib/') else 'imported ' + m.__file__)"
if "$PY" -c 'import ctypes; libc = ctypes.CDLL(None); libc.malloc.restype = ctypes.c_void_p; libc.malloc.argtypes = [ctypes.c_size_t]; ctypes.memset(libc.malloc(16), 0, 17)' 2>"$FUZZ/canary.log" \
   || ! grep -q 'heap-buffer-overflow' "$FUZZ/canary.log"; then
  cat "$FUZZ/canary.log" >&2; echo "fuzz: ASan canary: a 1-byte heap overflow was NOT caught" >&2; exit 1
fi
echo "==> fuzz: extension $SO instrumented (ASan, UBSan, coverage); canary overflow caught; runtime $RUNTIME"

# ---- the runs ----------------------------------------------------------------------------
status=PASS
figures=()
for t in "${TARGETS[@]}"; do
  corpus=$FUZZ/corpus/$t
  artifacts=$FUZZ/artifacts/$t
  log=$FUZZ/$t.log
  mkdir -p "$corpus" "$artifacts"
  rm -f "$artifacts"/*
  # seeds and regressions: the committed corpus (the working corpus grows across runs)
  [ -d "tests/fuzz_corpus/$t" ] && cp -n tests/fuzz_corpus/"$t"/* "$corpus"/ 2>/dev/null || true
  echo "==> fuzz: $t for ${SECONDS_PER_TARGET} s (log $log)"
  t0=$(date +%s)
  set +e
  # -max_len/-len_control=0: inputs up to 1 KiB from the start (64 cache operations,
  # several replies), not grown slowly from a few bytes, which would leave a 30-s run
  # exploring only tiny inputs. -timeout: an input running over 10 s is a hang.
  "$PY" hardening/fuzz_run.py "$t" "$corpus" -max_total_time="$SECONDS_PER_TARGET" -timeout=10 \
    -rss_limit_mb=3072 -max_len=1024 -len_control=0 -print_final_stats=1 \
    -artifact_prefix="$artifacts/" >"$log" 2>&1
  rc=$?
  set -e
  runs=$(grep -oE 'Done [0-9]+ runs' "$log" | tail -1 | grep -oE '[0-9]+' || echo 0)
  cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -1 | sed 's/cov: //; s/ ft: /\//' || true)
  files=$(find "$corpus" -type f | wc -l)
  secs=$(( $(date +%s) - t0 ))
  if [ $rc -ne 0 ] || grep -qE 'ERROR: AddressSanitizer|runtime error:|Uncaught Python exception' "$log"; then
    status=FAIL
    echo "*** fuzz: $t FAILED (exit $rc); the end of $log:" >&2
    tail -40 "$log" >&2
    ls -l "$artifacts" >&2 || true
    figures+=("$t=FAIL")
  else
    echo "    $t: $runs execs in ${secs} s, cov/ft ${cov:-?}, corpus $files files"
    figures+=("$t=${runs}execs,cov/ft=${cov:-?}")
  fi
done

echo "HARDENING fuzz $status $(( $(date +%s) - START ))s ${SECONDS_PER_TARGET}s/target ${figures[*]}"
[ "$status" = PASS ]

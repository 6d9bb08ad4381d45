#!/usr/bin/env bash
# refleak.sh -- campaign 3 of issue 7: reference, memory-block and file-descriptor leaks of
# the C core, under a debug build of CPython.
#
# What it checks: the C core's tests run under Debian's debug interpreter (python3.11-dbg,
# which has sys.gettotalrefcount) with hardening/refleak_plugin.py, which repeats every test
# WARMUP+RUNS times (setup, call, teardown) and records the deltas of total references,
# allocated blocks and open file descriptors after a gc.collect() -- CPython's `-R 3:3`.
# Pass criterion: no test leaks (a figure non-zero in every measured run; for descriptors,
# non-zero in any), i.e. all deltas 0 by CPython's rule. A canary (hardening/refleak_canary.py)
# runs first: three tests that leak on purpose must be flagged and a clean one must not.
#
# Set-up, idempotent, all under build/: python3-dbg from apt if missing; a venv for it in
# build/dbg-venv with pytest, hypothesis, hiredis and pymongo (bson, for the serializer
# tests) pinned to the versions in .venv
# (hiredis and bson compile from source for the debug ABI); the extension compiled for the debug
# interpreter (EXT_SUFFIX .cpython-311d-...) into build/refleak/ext and staged with a copy
# of the Python package in build/refleak/lib -- src/ and its in-place build are not touched.
#
#   ci    -R 3:3 over the LocalCache tests (C implementation), the fence's watcher,
#         CachedCall (decorators); Hypothesis capped at 5 examples.
#   full  -R 3:6 over those plus the serializers, the replayed Hypothesis programs (refleak_replay.py), the thread and fork tests,
#         the public API and the reference model's runs; Hypothesis capped at 25.
#   Both leave out the tests listed in EXCLUDE below, each with its reason.
#
# usage: bash hardening/refleak.sh full|ci
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

mode=${1:-}
case "$mode" in
  ci) R=3:3; MAX_EXAMPLES=5 ;;
  full) R=3:6; MAX_EXAMPLES=25 ;;
  *) echo "usage: $0 full|ci" >&2; exit 2 ;;
esac
start=$(date +%s)
PY=.venv/bin/python
[ -x "$PY" ] || { echo "refleak: $PY missing: run 'make venv' first" >&2; exit 2; }

# ---- the debug interpreter -----------------------------------------------------------------
DBG=$(command -v python3.11-dbg || command -v python3-dbg || true)
if [ -z "$DBG" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "==> refleak: installing python3-dbg with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      python3-dbg python3.11-dev python3.11-venv </dev/null
    DBG=$(command -v python3.11-dbg || command -v python3-dbg)
  else
    echo "refleak: no debug CPython; install it as root: apt-get install python3-dbg" >&2; exit 2
  fi
fi
"$DBG" -c 'import sys; assert hasattr(sys, "gettotalrefcount")' \
  || { echo "refleak: $DBG is not a debug build (no sys.gettotalrefcount)" >&2; exit 2; }

# ---- its venv: same versions of the test tools as .venv -----------------------------------
VENV=build/dbg-venv
pins=$("$PY" - <<'EOF'
from importlib.metadata import version
print("\n".join(f"{p}=={version(p)}" for p in ("pytest", "hypothesis", "hiredis", "pymongo", "setuptools", "wheel")))
EOF
)
if ! "$VENV/bin/python" -c 'import sys; assert hasattr(sys, "gettotalrefcount")' 2>/dev/null \
   || [ "$(cat "$VENV/.stamp-refleak" 2>/dev/null)" != "$pins" ]; then
  echo "==> refleak: setting up $VENV with $("$DBG" -V 2>&1) (debug): $(echo $pins)"
  rm -rf "$VENV"
  "$DBG" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip 2>&1 | grep -v 'ResourceWarning\|^  return' || true
  # shellcheck disable=SC2086
  "$VENV/bin/python" -m pip install --quiet $pins 2>&1 | grep -v 'ResourceWarning\|^  return\|^WARNING: Location' || true
  "$VENV/bin/python" -c 'import pytest, hypothesis, hiredis'
  echo "$pins" > "$VENV/.stamp-refleak"
fi

# ---- the extension, built for the debug ABI, staged apart from src/ -----------------------
SUFFIX=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
EXT=build/refleak/ext/tieredcache/_core$SUFFIX
if [ ! -e "$EXT" ] || [ -n "$(find csrc setup.py -newer "$EXT" 2>/dev/null)" ]; then
  echo "==> refleak: building the extension for the debug interpreter ($SUFFIX)"
  rm -rf build/refleak/ext build/refleak/temp
  env -u TIEREDCACHE_SANITIZE -u TIEREDCACHE_DEBUG "$VENV/bin/python" setup.py --quiet build_ext --force \
    --build-lib build/refleak/ext --build-temp build/refleak/temp 2>&1 | grep -v 'Warning\|warnings.warn\|^\s*$' || true
  [ -e "$EXT" ] || { echo "refleak: the build did not produce $EXT" >&2; exit 1; }
fi
LIB=build/refleak/lib
rm -rf "$LIB" && mkdir -p "$LIB"
cp -R src/tieredcache "$LIB/"
find "$LIB" -name __pycache__ -type d -prune -exec rm -rf {} +
find "$LIB" -name '_core*.so' -delete
cp "$EXT" "$LIB/tieredcache/"

RUN=("$VENV/bin/python" -m pytest -p no:cacheprovider -p refleak_plugin -q
     --refleak-expect-core "$ROOT/$LIB/tieredcache/" --refleak-max-examples "$MAX_EXAMPLES")
export PYTHONPATH="$ROOT/$LIB:$ROOT/hardening"
export PYTHONDONTWRITEBYTECODE=1

# ---- canary -------------------------------------------------------------------------------
canary=$("${RUN[@]}" --refleak 3:3 -p no:randomly hardening/refleak_canary.py 2>&1 | grep '^REFLEAK ' || true)
if [[ $canary != *"checked=4 leaking=3 "* ]]; then
  echo "refleak canary NOT as expected (want checked=4 leaking=3): ${canary:-no summary}" >&2
  echo "HARDENING refleak FAIL $(( $(date +%s) - start ))s canary"
  exit 1
fi
echo "==> refleak canary: a leaked reference, block and descriptor were each caught; the clean test passed"

# ---- the tests ----------------------------------------------------------------------------
CI_TESTS=(
  tests/test_local_conformance.py tests/test_local_bad_input.py tests/test_local_gc.py
  tests/test_local_eviction_policy.py tests/test_fence_watch.py tests/test_decorators.py
)
# tests/test_local_stateful.py is not run as itself: a Hypothesis state machine repeated
# grows by Hypothesis's own bookkeeping (4,175 refs a run with the pure-Python model in
# place of the C core, as much as with it). hardening/refleak_replay.py records the calls
# it makes and replays them on the C core with Hypothesis out of the loop; likewise the
# values behind the serializer property tests deselected below.
FULL_TESTS=(
  "${CI_TESTS[@]}" tests/test_serializers.py hardening/refleak_replay.py
  tests/test_local_threads.py tests/test_local_fork.py tests/test_public_api.py
)
# Left out, and why (each checked by hand; see the campaign report):
#  - tests using Redis (their fixtures below): not the C core; the fence's C side is
#    covered without Redis by tests/test_fence_watch.py.
#  - tests/test_c_structures.py: a plain-C harness in a subprocess; no object or descriptor
#    of this process is involved.
EXCLUDE=(
  --refleak-skip-fixture redis_server --refleak-skip-fixture redis_url
  --refleak-skip-fixture fresh_redis_server --refleak-skip-fixture redis_caches
  --refleak-skip-fixture rawr
  # registers a module-level warmer each run: the global registry grows by design, and
  # the test's count assertion fails on the second repetition
  --deselect tests/test_decorators.py::test_module_level_warmers_belong_to_every_default_cache
  # a web test (FastAPI is not installed in the debug venv)
  --deselect tests/test_decorators.py::test_fastapi_requests_and_depends_stay_out_of_keys
  # pymongo's _cbson (4.20.0) leaks ~21 references per bson.encode/decode round trip,
  # measured outside pytest with nothing of ours involved
  --deselect tests/test_serializers.py::test_a_document_as_pymongo_returns_it_round_trips
  # Hypothesis tests whose repetitions grow by Hypothesis's own bookkeeping: the values
  # they generate are replayed by hardening/refleak_replay.py instead (0 deltas)
  --deselect tests/test_serializers.py::test_property_json_round_trips_any_nesting_of_supported_types
  --deselect tests/test_serializers.py::test_property_pickle_round_trips
  --deselect tests/test_serializers.py::test_property_compressed_round_trips
  --deselect tests/test_serializers.py::test_property_a_damaged_payload_decodes_or_raises_serialization_error
)
if [ "$mode" = ci ]; then
  TESTS=("${CI_TESTS[@]}" --refleak-c-only "${EXCLUDE[@]}")
else
  TESTS=("${FULL_TESTS[@]}" "${EXCLUDE[@]}")
fi
for t in "${TESTS[@]}"; do
  case "$t" in tests/*.py|hardening/*.py) [ -e "$t" ] || { echo "refleak: $t missing" >&2; exit 2; } ;; esac
done

mkdir -p build/refleak
echo "==> pytest -R $R under $("$VENV/bin/python" -V 2>&1) (debug): ${TESTS[*]}"
set +e
"${RUN[@]}" --refleak "$R" "${TESTS[@]}" 2>&1 | tee "build/refleak/$mode.log"
rc=${PIPESTATUS[0]}
set -e
line=$(grep '^REFLEAK ' "build/refleak/$mode.log" | tail -1 || true)
counts=$(grep -E '^[0-9]+ (passed|failed)|^=+ .*(passed|failed).* =+$' "build/refleak/$mode.log" | tail -1 | tr -d '=' | xargs || true)
secs=$(( $(date +%s) - start ))
if [ $rc -eq 0 ] && [[ $line == *" leaking=0 "* ]]; then
  echo "HARDENING refleak PASS ${secs}s $mode -R $R; ${counts}; ${line#REFLEAK }"
else
  echo "HARDENING refleak FAIL ${secs}s $mode -R $R; pytest exit $rc; ${counts}; ${line#REFLEAK }"
  exit 1
fi

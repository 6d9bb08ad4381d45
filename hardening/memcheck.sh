#!/usr/bin/env bash
# memcheck.sh -- campaign 2 of issue 7: the test suite under valgrind memcheck.
#
# What it checks: pytest runs under `valgrind --tool=memcheck` with PYTHONMALLOC=malloc (so
# every Python object is a malloc block memcheck can see, not a pymalloc arena slice),
# Debian's CPython suppressions (/usr/lib/valgrind/python3.supp) plus
# hardening/valgrind-extra.supp (proven C-library noise, each entry says why),
# --leak-check=full with definite leaks counted as errors, --track-origins=yes, and every
# child process followed (forked workers and Python subprocesses; redis-server, chromium,
# the compiler and the ASan-built C harness run natively, see SKIP below). Each process
# writes build/memcheck/<mode>/vg.<pid>.log; hardening/memcheck_report.py reads them all.
#
# Pass criterion: pytest passes, and in every process 0 memcheck errors and 0 bytes
# definitely lost. The one exception is CPython 3.11's own uninitialised zero-int digit,
# recognised by its origin, never when our code is on the stack (memcheck_report.py says
# exactly how). A canary first proves the setup catches a definite leak and an
# uninitialised read made from Python through ctypes.
#
#   full  every test file of the C core (FULL_TESTS, why not the whole suite: next to it),
#         without Redis; Hypothesis tests capped at 50 examples.
#   ci    the C core's tests listed in CI_TESTS, Hypothesis capped at 5 examples.
#
# usage: bash hardening/memcheck.sh full|ci
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

mode=${1:-}
case "$mode" in
  full) MAX_EXAMPLES=50 ;;
  ci) MAX_EXAMPLES=5 ;;
  *) echo "usage: $0 full|ci" >&2; exit 2 ;;
esac
start=$(date +%s)
PY=.venv/bin/python
[ -x "$PY" ] || { echo "memcheck: $PY missing: run 'make venv' first" >&2; exit 2; }
ls src/tieredcache/_core*.so >/dev/null 2>&1 || { echo "memcheck: build the extension first (make venv)" >&2; exit 2; }

if ! command -v valgrind >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "==> memcheck: installing valgrind with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends valgrind </dev/null
  else
    echo "memcheck: valgrind not found; install it (Debian: apt-get install valgrind)" >&2; exit 2
  fi
fi
PYSUPP=/usr/lib/valgrind/python3.supp
[ -e "$PYSUPP" ] || { echo "memcheck: $PYSUPP missing (Debian ships it with python3)" >&2; exit 2; }

OUT=build/memcheck/$mode
rm -rf "$OUT" && mkdir -p "$OUT"

# Programs that run natively when a test starts them: not ours, and far too slow (or, for
# the ASan-built harness of test_c_structures, impossible) under memcheck.
SKIP='*/redis-server,*/redis-cli,*/redis-benchmark,*chromium*,*chromedriver*,*/gcc,*/gcc-*,*/cc,*/cc1,*/as,*/ld,*/ld.*,*/collect2,*/harness,*/wrk,*/git,*/uname,*/ldconfig*,*/sh,*/bash'
VG=(valgrind --tool=memcheck --trace-children=yes "--trace-children-skip=$SKIP"
    --suppressions="$PYSUPP" --suppressions=hardening/valgrind-extra.supp
    --leak-check=full --show-leak-kinds=definite --errors-for-leak-kinds=definite
    --track-origins=yes --num-callers=40)
# No --error-exitcode: the verdict is read from every process's log (memcheck_report.py),
# and a forked child or a subprocess a test runs must exit with its own status (with it,
# every child of the fork tests exited 99 on CPython's zero-int errors, which the report
# discards by rule, and the tests checking their children's status failed).

# ---- canary: the setup must see a definite leak and an uninitialised read -----------------
mkdir -p "$OUT/canary"
set +e
PYTHONMALLOC=malloc "${VG[@]}" --log-file="$OUT/canary/vg.%p.log" "$PY" -c '
import ctypes
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.malloc(4096)                                    # lost: the address is dropped
buf = ctypes.string_at(libc.malloc(16), 16)         # 16 uninitialised bytes
print("yes" if buf[0] == 7 else "no")               # a branch on them
' >/dev/null 2>&1
set -e
canary=$("$PY" hardening/memcheck_report.py "$OUT/canary" | tail -1 || true)
if ! [[ $canary =~ FAIL ]] || [[ $canary =~ definitely_lost=0\  ]] || [[ $canary =~ error_contexts=0\  ]]; then
  echo "memcheck canary NOT caught: $canary" >&2
  echo "HARDENING memcheck FAIL $(( $(date +%s) - start ))s canary-not-caught"
  exit 1
fi
echo "==> memcheck canary: a 4096-byte definite leak and a branch on uninitialised bytes were caught"
echo "    ($canary)"

# ---- the suite -----------------------------------------------------------------------------
# ci: the C core's paths that a short run can afford under memcheck (~25x slower with
# origins tracked): LocalCache's conformance and bad-input (error path) tests, eviction,
# the fence's watcher, and the decorators' tests that go through CachedCall's C hit path.
D=tests/test_decorators.py
CI_TESTS=(
  tests/test_local_conformance.py tests/test_local_bad_input.py tests/test_local_eviction_policy.py
  tests/test_fence_watch.py
  $D::test_the_function_runs_once_then_hits_come_from_l1
  $D::test_positional_keyword_and_default_spellings_of_a_call_share_one_entry
  $D::test_a_call_that_does_not_bind_raises_the_usual_type_error
  $D::test_exceptions_propagate_and_are_not_cached
  $D::test_the_c_key_builder_writes_exactly_the_python_key_or_defers
  $D::test_the_c_path_covers_text_bytes_dates_and_decimals_and_defers_on_the_rest
  $D::test_c_keys_equal_python_keys_for_every_type_the_c_path_takes
  $D::test_a_namespace_that_is_not_ascii_takes_the_python_path
  $D::test_a_decorated_function_is_collected_with_its_cache_entries_alive
  $D::test_hits_and_misses_do_not_leak_references
  $D::test_a_function_returning_nostore_answers_without_caching
  $D::test_keys_of_one_length_built_in_a_row_stay_distinct
)
# Not under memcheck, in either mode: tests/test_local_stateful.py assumes less than a
# quarter second of real time between the C cache's and the model's reads of the clock (its
# docstring); a step under memcheck takes longer, and the model and the cache then disagree
# about an entry at its deadline (seen: a failure Hypothesis could not replay).
STATEFUL=(--deselect tests/test_local_stateful.py)
# full: every test file of the C core (the refleak campaign's full set) with Hypothesis at
# 50 examples, minus the tests that need Redis. Not the whole suite, and why: run on
# 2026-11-21 (tests/ minus the browser, reference-app and docs tests), it had done 4 % of
# the tests after 14 minutes (6 hours or more for the whole), and most tests with a Redis
# fixture errored under the slowdown (their socket timeouts of 0.1-0.25 s are met 30x
# slower); the
# C code those tests reach is what the files below drive directly, and the whole suite
# runs under ASan+UBSan instead (make asan-test).
FULL_TESTS=(
  tests/test_local_conformance.py tests/test_local_bad_input.py tests/test_local_gc.py
  tests/test_local_eviction_policy.py tests/test_local_threads.py tests/test_local_fork.py
  tests/test_fence_watch.py tests/test_decorators.py tests/test_serializers.py
  tests/test_public_api.py
)
FULL_EXCLUDE=(
  "${STATEFUL[@]}"
  --memcheck-skip-fixture redis_server --memcheck-skip-fixture redis_url
  --memcheck-skip-fixture fresh_redis_server --memcheck-skip-fixture redis_caches
  --memcheck-skip-fixture rawr
  # a web test: FastAPI under memcheck, not the C core
  --deselect tests/test_decorators.py::test_fastapi_requests_and_depends_stay_out_of_keys
  # asserts that a pure-Python thread makes progress while a bulk operation runs with the
  # GIL released; valgrind runs one thread at a time, so it may not (seen: 2 of its 4
  # cases failed, "no progress in the worker"); the bulk operations themselves run in the
  # other thread tests
  --deselect tests/test_local_threads.py::test_another_thread_makes_progress_while_a_200000_entry_bulk_operation_runs
)
if [ "$mode" = ci ]; then
  TESTS=("${CI_TESTS[@]}" --memcheck-c-only)   # the C core, not the pure-Python reference model
else
  TESTS=("${FULL_TESTS[@]}" "${FULL_EXCLUDE[@]}")
fi

echo "==> pytest under valgrind memcheck ($mode): ${TESTS[*]}"
set +e
PYTHONMALLOC=malloc PYTHONPATH="$ROOT/src:$ROOT/hardening" \
  "${VG[@]}" --log-file="$OUT/vg.%p.log" \
  "$PY" -m pytest -q -p no:cacheprovider -p memcheck_plugin \
    --memcheck-max-examples="$MAX_EXAMPLES" --memcheck-slowdown=30 \
    --memcheck-outcome="$OUT/outcome.json" --durations=10 "${TESTS[@]}"
rc=$?
set -e

verdict=0
"$PY" hardening/memcheck_report.py "$OUT" | tee "$OUT/report.txt" || verdict=1
figures=$(tail -1 "$OUT/report.txt")
pytest_status=$("$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["exitstatus"], " ".join(f"{k}={v}" for k,v in sorted(d["counts"].items())))' "$OUT/outcome.json" 2>/dev/null || echo "? no-outcome")
echo "==> pytest: exit status ${pytest_status%% *} (${pytest_status#* }); process exit $rc"
case "${pytest_status%% *}" in
  0) ;;
  *) verdict=1 ;;
esac
secs=$(( $(date +%s) - start ))
summary="tests: ${pytest_status#* }; ${figures#MEMCHECK }"
if [ $verdict -eq 0 ]; then
  echo "HARDENING memcheck PASS ${secs}s $mode $summary"
else
  echo "HARDENING memcheck FAIL ${secs}s $mode $summary"
  exit 1
fi

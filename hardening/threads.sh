#!/usr/bin/env bash
# Thread stress (issue 7, campaign 4): hardening/threads_stress.py drives 20 threads through
# every public operation of LocalCache, TieredCache without Redis and TieredCache with a
# private Redis, with a 60-second no-progress watchdog (faulthandler dumps every stack and
# exits), then checks LocalCache._selfcheck(), the bounds, the counters and the loader
# calls (none lost, none duplicated beyond the single-flight guarantee).
#
#   bash hardening/threads.sh full   20 threads x 40,000 operations per phase (the Redis
#                                    phase too), then, when `make asan-build` works, a
#                                    shorter pass (20 x 5,000) on the ASan+UBSan build
#                                    (THREADS_ASAN=0 skips it)
#   bash hardening/threads.sh ci     20 threads x 6,000 operations (Redis phase: 2,000);
#                                    well under 60 s
#
# Pass: every phase of every pass reports no failed check, no sanitizer report, no hang.
# Needs: .venv with the in-place extension (make venv), redis-server on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."

mode="${1:-}"
case "$mode" in
  full) ops=40000; redis_ops=40000; asan="${THREADS_ASAN:-1}"; asan_ops=5000 ;;
  ci)   ops=6000;  redis_ops=2000;  asan=0; asan_ops=0 ;;
  *) echo "usage: $0 full|ci" >&2; exit 2 ;;
esac

PY=.venv/bin/python
out=build/hardening/threads
mkdir -p "$out"
start=$(date +%s)
status=PASS
figures=""

summarise() {  # $1: log file, $2: label -> appends key figures of the RESULT line
  "$PY" - "$1" "$2" <<'EOF'
import json, sys
line = [l for l in open(sys.argv[1]) if l.startswith("RESULT ")]
if not line:
    print(f"{sys.argv[2]}:no-result")
    sys.exit()
r = json.loads(line[-1][7:])
parts = []
for p in r["phases"]:
    s = f"{sys.argv[2]}{p['phase']}={p['ops_per_s']}ops/s,selfcheck={p['selfcheck'] == 'ok' and 'ok' or 'FAIL'}"
    if "loader_calls" in p:
        s += f",loads={p['loader_calls']},dup={p['duplicate_loads']},split={p['split_flights']}"
    parts.append(s)
print(" ".join(parts))
EOF
}

echo "==> thread stress ($mode): 20 threads x $ops ops (Redis phase: $redis_ops)"
set +e
PYTHONPATH=src "$PY" -X faulthandler hardening/threads_stress.py --threads 20 --ops "$ops" \
  --redis-ops "$redis_ops" 2>&1 | tee "$out/$mode.log"
rc=${PIPESTATUS[0]}
set -e
[ "$rc" -eq 0 ] || status=FAIL
figures="$(summarise "$out/$mode.log" "")"

if [ "$asan" = "1" ]; then
  echo "==> ASan+UBSan build (make asan-build) for a shorter pass"
  if make asan-build >"$out/asan-build.log" 2>&1; then
    CC_=${ASAN_CC:-gcc}
    rt="$($CC_ -print-file-name=libasan.so):$($CC_ -print-file-name=libubsan.so)"
    rm -rf "$out/asan-reports" && mkdir -p "$out/asan-reports"
    set +e
    LD_PRELOAD="$rt" \
      ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1:halt_on_error=1:print_summary=1:log_path=$PWD/$out/asan-reports/asan" \
      UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" PYTHONMALLOC=malloc \
      PYTHONPATH="$PWD/build/asan/lib" \
      "$PY" -X faulthandler hardening/threads_stress.py --threads 20 --ops "$asan_ops" \
      --redis-ops "$asan_ops" 2>&1 | tee "$out/$mode-asan.log"
    rc=${PIPESTATUS[0]}
    set -e
    [ "$rc" -eq 0 ] || status=FAIL
    grep -q "build/asan/lib/tieredcache/_core" "$out/$mode-asan.log" || { echo "ASan pass did not load the ASan build" >&2; status=FAIL; }
    for f in "$out"/asan-reports/*; do
      [ -e "$f" ] || continue
      cat "$f"
      if grep -qE 'ERROR: |runtime error:' "$f"; then status=FAIL; echo "sanitizer report: $f" >&2; fi
    done
    figures="$figures $(summarise "$out/$mode-asan.log" "asan-")"
  else
    tail -20 "$out/asan-build.log"
    echo "make asan-build failed: ASan pass skipped (see $out/asan-build.log)"
    figures="$figures asan=skipped"
  fi
fi

echo "HARDENING threads $status $(( $(date +%s) - start ))s $figures"
[ "$status" = PASS ]

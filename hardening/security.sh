#!/usr/bin/env bash
# Campaign 7 (issue 7): security. Runs tests/test_security.py, which checks that keys are
# injective (function, arguments, namespace, HTTP request, user), that one tenant cannot
# read, invalidate, clear or warm another's entries through any API or admin endpoint,
# that admin endpoints refuse missing/wrong/malformed credentials and change and leak
# nothing, that a pickle planted in Redis never runs, that glob metacharacters are
# escaped in SCAN patterns, that logs and outputs show no planted secret, and that a
# flood of unique keys and oversized values keeps memory within the configured bounds.
#
#   full: Hypothesis profile "hardening" (2,000 examples per property, 500 for the ones
#         that talk to Redis) and a flood of 200,000 keys
#   ci:   default examples (100, 40 with Redis) and a flood of 50,000 keys; about a minute
#
# Pass criterion: every test passes (pytest exit 0). Needs .venv (make venv) with the
# extension built in place, and redis-server on PATH (the tests start a private one).
set -euo pipefail
cd "$(dirname "$0")/.."

mode="${1:-}"
case "$mode" in
  full) export HYPOTHESIS_PROFILE=hardening TIEREDCACHE_FLOOD=200000 ;;
  ci) unset HYPOTHESIS_PROFILE; export TIEREDCACHE_FLOOD=50000 ;;
  *) echo "usage: $0 full|ci" >&2; exit 2 ;;
esac

mkdir -p build/hardening
figures="build/hardening/security-figures.jsonl"
log="build/hardening/security-$mode.log"
rm -f "$figures"
export TIEREDCACHE_SECURITY_FIGURES="$figures"

start=$(date +%s)
set +e
PYTHONPATH=src .venv/bin/python -m pytest tests/test_security.py -q -p no:cacheprovider 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
duration=$(( $(date +%s) - start ))

summary=$(grep -E '^[0-9]+ (passed|failed)|^=+ .*(passed|failed)' "$log" | tail -1 | tr -d '=' | xargs || true)
flood=$(.venv/bin/python - "$figures" <<'PY' 2>/dev/null || true
import json, sys
try:
    rows = [json.loads(line) for line in open(sys.argv[1])]
except OSError:
    rows = []
print(" ".join(r.pop("name") + ":" + ",".join(f"{k}={v}" for k, v in r.items()) for r in rows))
PY
)
verdict=PASS
[ "$rc" -eq 0 ] || verdict=FAIL
echo "HARDENING security $verdict ${duration}s tests: ${summary:-none}; profile=${HYPOTHESIS_PROFILE:-default}; $flood"
exit "$rc"

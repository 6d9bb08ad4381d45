#!/usr/bin/env bash
# Chaos with Redis (issue 7, campaign 5): a FastAPI app with 2 workers serves mixed
# requests while Redis is killed, paused, restarted, slowed and cut off by a delaying
# proxy, and its pub/sub clients are killed. Pass: 0 failed requests, every request
# within one Redis wait (the longer of socket and connect timeout) plus slack, 0 stale reads after
# writes, hit rate back after the chaos without restarting the app, both workers
# healthy. See hardening/chaos_run.py.
#   bash hardening/chaos.sh full   # 10,000 requests (~5 min)
#   bash hardening/chaos.sh ci     # 2,000 requests (~2 min)
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-}"
case "$mode" in full|ci) ;; *) echo "usage: $0 full|ci" >&2; exit 2 ;; esac
PY=.venv/bin/python
# uvicorn, httpx and fastapi come with the test extra; install them if this venv lacks them
if ! "$PY" -c "import uvicorn, httpx, fastapi" 2>/dev/null; then
    "$PY" -m pip install -q "uvicorn>=0.30" "httpx>=0.24" "fastapi>=0.100"
fi
command -v redis-server >/dev/null || { echo "redis-server not found (apt-get install redis-server)" >&2; exit 2; }
exec "$PY" hardening/chaos_run.py "$mode"

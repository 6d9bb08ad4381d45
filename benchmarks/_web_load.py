"""Load generation for bench_web.py: wrk when it is installed, else a Python client.

Both drive keep-alive connections against ``<base><prefix><id>`` with the id cycling
over 1..ids (a small hot set: every id is cached after its first request), for a fixed
duration, and return ``{"requests", "seconds", "rps", "p50_us", "p90_us", "p99_us",
"max_us", "errors", "non_2xx", "tool"}``.

wrk: ``wrk -t1 -c<conns> -d<s> -s <script>``; the Lua script picks the path and prints
the summary and latency percentiles (wrk's own, from its HDR histogram) as JSON.

Python fallback (``python _web_load.py URL_PREFIX IDS SECONDS``, one process per
connection): an ``http.client`` keep-alive loop timing each request with
``perf_counter_ns``; much slower than wrk, so a fast server is not saturated by it
and the ratios understate the differences. The report says which tool ran.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

WRK_SCRIPT = r"""
local prefix = "/"
local ids = 100
local i = 0
init = function(args)
  prefix = args[1]
  ids = tonumber(args[2])
  i = math.random(ids)
end
request = function()
  i = (i % ids) + 1
  return wrk.format("GET", prefix .. i)
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "bytes": %d, "connect": %d, "read": %d, ' ..
    '"write": %d, "status": %d, "timeout": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, ' ..
    '"max_us": %d, "mean_us": %.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
"""


def wrk_path() -> str | None:
    return shutil.which("wrk")


def _pinned(cmd: list[str], cpus: str | None) -> list[str]:
    if cpus and shutil.which("taskset"):
        return ["taskset", "-c", cpus, *cmd]
    return cmd


def run_wrk(base: str, prefix: str, ids: int, seconds: float, conns: int, cpus: str | None) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(WRK_SCRIPT)
        script = fh.name
    try:
        dur = max(1, round(seconds))
        cmd = _pinned(["wrk", "-t1", f"-c{conns}", f"-d{dur}s", "--timeout", "5s", "-s", script, base,
                       "--", prefix, str(ids)], cpus)
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=dur + 30)
    finally:
        os.unlink(script)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("WRKJSON ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed (exit {proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
    d = json.loads(line[len("WRKJSON "):])
    secs = d["duration_us"] / 1e6
    return {
        "tool": "wrk",
        "requests": d["requests"],
        "seconds": round(secs, 3),
        "rps": round(d["requests"] / secs, 1),
        "p50_us": d["p50_us"],
        "p90_us": d["p90_us"],
        "p99_us": d["p99_us"],
        "max_us": d["max_us"],
        "errors": d["connect"] + d["read"] + d["write"] + d["timeout"],
        "non_2xx": d["status"],
    }


def run_python(base: str, prefix: str, ids: int, seconds: float, conns: int, cpus: str | None) -> dict[str, Any]:
    """`conns` client processes, each one keep-alive connection, started together."""
    start_at = time.time() + 0.3
    procs = [
        subprocess.Popen(_pinned([sys.executable, os.path.abspath(__file__), base, prefix, str(ids),
                                  str(seconds), str(start_at), str(k)], cpus),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for k in range(conns)
    ]
    results = []
    errors = []
    for p in procs:
        try:
            out, err = p.communicate(timeout=seconds + 30)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
        if p.returncode != 0:
            errors.append(err.strip().splitlines()[-1] if err.strip() else f"exit {p.returncode}")
            continue
        results.append(json.loads(out.strip().splitlines()[-1]))
    if not results:
        raise RuntimeError("python load generator failed: " + "; ".join(errors))
    lat = sorted(x for r in results for x in r["lat_us"])
    total = sum(r["requests"] for r in results)
    secs = max(r["seconds"] for r in results)

    def pct(q: float) -> float:
        return lat[min(len(lat) - 1, int(q / 100 * len(lat)))] if lat else 0.0

    return {
        "tool": f"python http.client x{conns} processes",
        "requests": total,
        "seconds": round(secs, 3),
        "rps": round(total / secs, 1),
        "p50_us": round(pct(50), 1),
        "p90_us": round(pct(90), 1),
        "p99_us": round(pct(99), 1),
        "max_us": round(lat[-1], 1) if lat else 0.0,
        "errors": sum(r["errors"] for r in results) + len(errors),
        "non_2xx": sum(r["non_2xx"] for r in results),
    }


def _client(base: str, prefix: str, ids: int, seconds: float, start_at: float, k: int) -> dict[str, Any]:
    import http.client
    from time import perf_counter_ns
    from urllib.parse import urlsplit

    u = urlsplit(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=5)
    paths = [f"{prefix}{i}" for i in range(1, ids + 1)]
    delay = start_at - time.time()
    if delay > 0:
        time.sleep(delay)
    lat: list[float] = []
    n = errors = non_2xx = 0
    i = (k * 7) % ids
    t_end = perf_counter_ns() + int(seconds * 1e9)
    t_start = perf_counter_ns()
    while True:
        t0 = perf_counter_ns()
        if t0 >= t_end:
            break
        try:
            conn.request("GET", paths[i])
            resp = conn.getresponse()
            resp.read()
            if not 200 <= resp.status < 300:
                non_2xx += 1
        except (OSError, http.client.HTTPException):
            errors += 1
            conn.close()
            conn = http.client.HTTPConnection(u.hostname, u.port, timeout=5)
        lat.append((perf_counter_ns() - t0) / 1e3)
        n += 1
        i = (i + 1) % ids
    secs = (perf_counter_ns() - t_start) / 1e9
    # a bounded sample of latencies keeps the JSON small
    step = max(1, len(lat) // 20_000)
    return {"requests": n, "seconds": secs, "errors": errors, "non_2xx": non_2xx, "lat_us": lat[::step]}


def run_load(tool: str, base: str, prefix: str, ids: int, seconds: float, conns: int,
             cpus: str | None, py_conns: int) -> dict[str, Any]:
    if tool == "wrk":
        return run_wrk(base, prefix, ids, seconds, conns, cpus)
    return run_python(base, prefix, ids, seconds, py_conns, cpus)


if __name__ == "__main__":
    b, pre, n_ids, s, at, kk = sys.argv[1:7]
    print(json.dumps(_client(b, pre, int(n_ids), float(s), float(at), int(kk))))

"""A cached web endpoint against the same endpoint uncached and against peer caches, under load.

    cd /work/main && .venv/bin/python setup.py build_ext --inplace -q
    PYTHONPATH=src .venv/bin/python benchmarks/bench_web.py                   # ~ 2.5 min (3.5 if busy)
    PYTHONPATH=src .venv/bin/python benchmarks/bench_web.py --quick           # ~ 25 seconds
    PYTHONPATH=src .venv/bin/python benchmarks/bench_web.py --frameworks flask --rounds 5
    PYTHONPATH=src .venv/bin/python benchmarks/bench_web.py --json out.json --markdown out.md

The apps are benchmarks/_web_apps.py: FastAPI on uvicorn (1 worker; uvloop and httptools
when installed), Flask on gunicorn (1 worker, gthread) or werkzeug when gunicorn is
missing. Each variant runs in a server process of its own (idle while another variant is
loaded) whose app has the same three routes as every other's, so that routing, which
Starlette does route by route in order, costs every variant the same.
Variants: "constant" (the handler with no cache: it returns a module-level dict),
tieredcache (FastAPI: ``tieredcache.contrib.fastapi.cache_response`` and ``@cache.cached``
on the handler; Flask: ``TieredCacheFlask.cached_view``), fastapi-cache2 (InMemoryBackend)
and cashews (mem://) on FastAPI, Flask-Caching (SimpleCache) on Flask. Every cached
handler has the constant one's body, so "cached / constant" is what the cache costs (or
saves) on the whole request path.

Load: wrk (``-t1 -c16``, keep-alive) when installed, else a Python http.client client
(the report says which); requests cycle over --ids item ids, all of them cached after
their first request. With 2+ usable cores the server is pinned to CPU 0 and the load
generator to CPU 1 (``--pin none`` to leave both free). Each variant gets a warm-up
(--warmup s, before its first run) and one measured run (--duration s) per round;
--rounds rounds, the variant order rotating between rounds, so that a burst of load from
elsewhere on the machine hits one run of each variant rather than all runs of one.
Reported per variant: the best and the median req/s over the rounds, the median p50/p99
latency, the server's CPU time per request (its process tree's utime+stime over the
measured run) and its difference from the constant endpoint's in the same round (median),
and "/ constant": the median over rounds of req/s divided by the constant's req/s in the
same round. The 1-minute load average is printed: the machine has 2 cores and other work
on it moves req/s by several %.

A second section ("inproc", benchmarks/_web_inproc.py) calls the same apps in-process, with
no server and no socket (ASGI ``await app(scope, receive, send)``, WSGI
``app.wsgi_app(environ, start_response)``): µs per request, fastest and median run. It is
far less noisy than req/s, and its difference from "constant" is the cache's own cost (or
saving) on the request path.

A measured run during which the server used less than --min-util (95 %) of a core was
disturbed (the server or wrk lost its CPU to another process: the server was not saturated)
and is run again, at most --retries times and --retry-budget times per framework; the
report counts those runs, and the disturbed runs it had to keep.

Before the load, every variant is checked to answer 200 with the constant's JSON; after
it, the handler-body call counts show that the cached variants served from their caches.
Servers are started in their own session and killed at the end, even on error or Ctrl-C.
Informational only: nothing is asserted.
"""

from __future__ import annotations

import argparse
import atexit
import datetime as _dt
import http.client
import json
import os
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _report import fmt_ratio, loadavg, machine_info, markdown_table, targets_lines, text_table  # noqa: E402
from _web_apps import FASTAPI_VARIANTS, FLASK_VARIANTS, PAYLOAD  # noqa: E402
from _web_load import run_load, wrk_path  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OURS = {"fastapi": ("tiered", "tiered-cached"), "flask": ("tiered",)}
PEERS = {"fastapi": ("fastapi-cache2", "cashews"), "flask": ("flask-caching",)}
LABEL = {
    "constant": "constant (no cache)",
    "tiered": "tieredcache",
    "tiered-cached": "tieredcache @cache.cached",
    "fastapi-cache2": "fastapi-cache2",
    "cashews": "cashews",
    "flask-caching": "Flask-Caching",
}
_SERVERS: list[subprocess.Popen] = []


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------
# server processes
# --------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pinned(cmd: list[str], cpus: str | None) -> list[str]:
    return ["taskset", "-c", cpus, *cmd] if cpus else cmd


def stop_server(proc: subprocess.Popen) -> None:
    """SIGTERM the server's process group (it runs in a session of its own), then SIGKILL."""
    if proc.poll() is None:
        for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
    else:
        try:  # the leader is gone: make sure no child (a gunicorn worker) outlived it
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    if proc in _SERVERS:
        _SERVERS.remove(proc)


def _stop_all() -> None:
    for proc in list(_SERVERS):
        stop_server(proc)


def _on_signal(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def get(port: int, path: str, timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def start_server(framework: str, variant: str, cfg: argparse.Namespace, cpus: str | None,
                 logfile: str) -> tuple[subprocess.Popen, int, dict]:
    """One server process serving one variant (its app has the same routes as every other
    variant's: routing costs the same for all)."""
    port = free_port()
    cmd = [sys.executable, os.path.join(HERE, "_web_apps.py"), framework, "--port", str(port),
           "--variants", variant]
    if framework == "flask":
        cmd += ["--server", cfg.flask_server, "--threads", str(cfg.threads), "--worker-class", cfg.worker_class]
    else:
        cmd += ["--loop", cfg.loop, "--http", cfg.http]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([os.path.join(ROOT, "src")] + [p for p in sys.path if p])
    env.pop("REDIS_URL", None)  # L1 only, whatever the shell has
    with open(logfile, "w") as fh:
        proc = subprocess.Popen(_pinned(cmd, cpus), stdout=fh, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True, cwd=ROOT)
    _SERVERS.append(proc)
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{framework} server exited ({proc.returncode}): {_tail(logfile)}")
        try:
            status, _, body = get(port, "/_bench/info", timeout=2)
            if status == 200:
                info = json.loads(body)
                break
        except (OSError, http.client.HTTPException):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{framework} server did not answer within 30 s: {_tail(logfile)}")
        time.sleep(0.1)
    with open(logfile) as fh:
        for line in fh:
            if line.startswith("BENCHWEB "):
                info.update(json.loads(line[len("BENCHWEB "):]))
    return proc, port, info


def _tail(path: str, n: int = 5) -> str:
    try:
        with open(path) as fh:
            return " | ".join(fh.read().strip().splitlines()[-n:])
    except OSError:
        return ""


def tree_cpu_seconds(pid: int) -> float:
    """utime+stime of a process and its descendants, in seconds."""
    tick = os.sysconf("SC_CLK_TCK")
    total, todo, seen = 0, [pid], set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            with open(f"/proc/{p}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
            for tid in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{tid}/children") as fh:
                    todo.extend(int(c) for c in fh.read().split())
        except (OSError, ValueError, IndexError):
            continue
    return total / tick


# --------------------------------------------------------------------------------------
# one framework
# --------------------------------------------------------------------------------------


def check_variants(port: int, variants: list[str]) -> dict[str, Any]:
    """Each variant: two GETs of /items/1 answer 200 with the constant's JSON."""
    out: dict[str, Any] = {}
    for v in variants:
        path = f"/{v}/items/1"
        try:
            s1, h1, b1 = get(port, path)
            s2, h2, b2 = get(port, path)
        except (OSError, http.client.HTTPException) as exc:
            out[v] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            continue
        problems = []
        for s, b in ((s1, b1), (s2, b2)):
            if s != 200:
                problems.append(f"status {s}")
            else:
                try:
                    if json.loads(b) != PAYLOAD:
                        problems.append("body differs from the constant's")
                except ValueError:
                    problems.append("body is not JSON")
        interesting = ("x-cache", "etag", "cache-control", "x-fastapi-cache", "content-length")
        out[v] = {
            "ok": not problems,
            "problems": problems,
            "headers_second": {k: h2[k] for k in interesting if k in h2},
            "body_bytes": len(b2),
        }
    return out


def bench_framework(framework: str, cfg: argparse.Namespace, tool: str, pin: tuple[str, str] | None) -> dict:
    """One server process per variant, all pinned to the server CPU (the idle ones cost
    nothing); rounds over the variants, each loaded in turn."""
    server_cpus, load_cpus = pin if pin else (None, None)
    res: dict[str, Any] = {"variants": {}, "unavailable": {}, "descriptions": {}, "checks": {}, "handler_calls": {}}
    t0 = time.perf_counter()
    servers: dict[str, tuple[subprocess.Popen, int, str]] = {}
    wanted = list(FASTAPI_VARIANTS if framework == "fastapi" else FLASK_VARIANTS)
    if cfg.variants:
        keep = set(cfg.variants.split(",")) | {"constant"}
        wanted = [v for v in wanted if v in keep]
    try:
        for v in wanted:
            logfile = tempfile.NamedTemporaryFile(prefix=f"bench_web_{framework}_{v}_", suffix=".log",
                                                  delete=False).name
            try:
                proc, port, info = start_server(framework, v, cfg, server_cpus, logfile)
            except Exception as exc:  # noqa: BLE001
                res["unavailable"][v] = f"{type(exc).__name__}: {exc}"
                _unlink(logfile)
                continue
            servers[v] = (proc, port, logfile)
            res["server"] = info.get("server")
            res["unavailable"].update(info.get("unavailable", {}))
            res["descriptions"].update(info.get("variants", {}))
            if v not in info.get("variants", {}):
                stop_server(proc)
                _unlink(logfile)
                del servers[v]
                continue
            res["checks"].update(check_variants(port, [v]))
        variants = [v for v in wanted if v in servers]
        if "constant" not in servers:
            raise RuntimeError("the constant endpoint's server did not start: "
                               + str(res["unavailable"].get("constant", "?")))
        log(f"[{framework}] {res.get('server')}, one process per variant"
            + (f" (CPU {server_cpus}; load generator on CPU {load_cpus})" if pin else "")
            + f"; variants: {', '.join(variants)}"
            + (f"; unavailable: {', '.join(f'{k} ({e})' for k, e in res['unavailable'].items())}"
               if res["unavailable"] else ""))
        bad = [v for v in variants if not res["checks"][v]["ok"]]
        for v in bad:
            log(f"  {v}: check failed: {res['checks'][v]}")
        variants = [v for v in variants if v not in bad or v == "constant"]
        runs: dict[str, list[dict]] = {v: [] for v in variants}
        disturbed: dict[str, int] = {}
        budget = [cfg.retry_budget]  # retries left for this framework: a busy machine stays bounded
        for r in range(cfg.rounds):
            order = variants[r % len(variants):] + variants[: r % len(variants)]
            for v in order:
                proc, port, logfile = servers[v]
                base = f"http://127.0.0.1:{port}"
                prefix = f"/{v}/items/"
                try:
                    if r == 0 or cfg.warmup_every_round:
                        run_load(tool, base, prefix, cfg.ids, cfg.warmup, cfg.connections, load_cpus,
                                 cfg.py_connections)
                    for attempt in range(cfg.retries + 1):
                        cpu0 = tree_cpu_seconds(proc.pid)
                        m = run_load(tool, base, prefix, cfg.ids, cfg.duration, cfg.connections, load_cpus,
                                     cfg.py_connections)
                        cpu = tree_cpu_seconds(proc.pid) - cpu0
                        m["server_cpu_us_per_req"] = round(cpu * 1e6 / m["requests"], 1) if m["requests"] else None
                        m["server_cpu_util"] = round(cpu / m["seconds"], 3) if m["seconds"] else None
                        m["round"] = r
                        m["retried"] = attempt
                        # A server below cfg.min_util of a core was not saturated: it or the load
                        # generator lost its CPU to other processes for part of the run. Run again.
                        if tool != "wrk" or (m["server_cpu_util"] or 0) >= cfg.min_util:
                            break
                        again = attempt < cfg.retries and budget[0] > 0
                        log(f"  round {r + 1} {v}: server at {m['server_cpu_util']:.0%} of a core "
                            f"({m['rps']:,.0f} req/s): disturbed, "
                            + ("running again" if again else "kept (no retries left)"))
                        m["disturbed"] = True
                        if not again:
                            break
                        budget[0] -= 1
                        disturbed[v] = disturbed.get(v, 0) + 1
                    runs[v].append(m)
                    log(f"  round {r + 1}/{cfg.rounds} {v:<15} {m['rps']:>9,.0f} req/s  p50 {m['p50_us'] / 1e3:6.2f} ms"
                        f"  p99 {m['p99_us'] / 1e3:6.2f} ms  server CPU {m['server_cpu_us_per_req']} us/req"
                        + (f"  ERRORS {m['errors']} non-2xx {m['non_2xx']}" if m["errors"] or m["non_2xx"] else ""))
                except Exception as exc:  # noqa: BLE001
                    runs[v].append({"error": f"{type(exc).__name__}: {exc}", "round": r})
                    log(f"  round {r + 1} {v}: {type(exc).__name__}: {exc}")
                if proc.poll() is not None:
                    raise RuntimeError(f"the {framework} server of {v} died: {_tail(logfile)}")
        for v in variants:
            proc, port, logfile = servers[v]
            try:
                status, _, body = get(port, "/_bench/calls")
                if status == 200:
                    res["handler_calls"].update(json.loads(body))
            except (OSError, http.client.HTTPException, ValueError) as exc:
                log(f"  {v}: /_bench/calls: {type(exc).__name__}: {exc}")
        res["variants"] = summarize(runs)
        for v, n in disturbed.items():
            if v in res["variants"]:
                res["variants"][v]["disturbed_runs_rerun"] = n
    except Exception as exc:  # noqa: BLE001
        res["error"] = f"{type(exc).__name__}: {exc}"
        log(f"[{framework}] {res['error']}")
    finally:
        for proc, _, logfile in servers.values():
            stop_server(proc)
            _unlink(logfile)
    res["seconds"] = round(time.perf_counter() - t0, 1)
    return res


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def bench_inproc(framework: str, cfg: argparse.Namespace, cpus: str | None) -> dict:
    """_web_inproc.py in a fresh interpreter (pinned like the server): µs per request
    through the app with no server and no socket."""
    cmd = [sys.executable, os.path.join(HERE, "_web_inproc.py"), framework, "--ids", str(cfg.ids),
           "--seconds", str(cfg.inproc_seconds), "--passes", str(cfg.inproc_passes)]
    if cfg.variants:
        cmd += ["--variants", cfg.variants]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([os.path.join(ROOT, "src")] + [p for p in sys.path if p])
    env.pop("REDIS_URL", None)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(_pinned(cmd, cpus), capture_output=True, text=True, env=env, cwd=ROOT,
                              timeout=60 + 10 * cfg.inproc_seconds * 6)
    except subprocess.TimeoutExpired:
        return {"error": "timed out"}
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]}
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    base = out["variants"].get("constant", {})
    for v, d in out["variants"].items():
        if base and v != "constant":
            d["delta_us"] = round(d["us_min"] - base["us_min"], 2)
            d["vs_constant"] = round(d["us_min"] / base["us_min"], 3)
            d["delta_us_median"] = round(d["us_median"] - base["us_median"], 2)
    out["seconds"] = round(time.perf_counter() - t0, 1)
    log(f"[{framework} in-process] " + ", ".join(f"{v} {d['us_min']:.1f} µs" for v, d in out["variants"].items()))
    return out


def summarize(runs: dict[str, list[dict]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    const_by_round = {m["round"]: m["rps"] for m in runs.get("constant", []) if "rps" in m}
    const_cpu = {m["round"]: m.get("server_cpu_us_per_req") for m in runs.get("constant", []) if "rps" in m}
    for v, ms in runs.items():
        good = [m for m in ms if "rps" in m]
        errs = [m["error"] for m in ms if "error" in m]
        if not good:
            out[v] = {"error": errs[0] if errs else "no run"}
            continue
        rps = [m["rps"] for m in good]
        ratios = [m["rps"] / const_by_round[m["round"]] for m in good if const_by_round.get(m["round"])]
        cpu = [m["server_cpu_us_per_req"] for m in good if m.get("server_cpu_us_per_req")]
        cpu_delta = [m["server_cpu_us_per_req"] - const_cpu[m["round"]] for m in good
                     if m.get("server_cpu_us_per_req") and const_cpu.get(m["round"])]
        out[v] = {
            "rps_best": max(rps),
            "rps_median": round(statistics.median(rps), 1),
            "p50_us": round(statistics.median(m["p50_us"] for m in good), 1),
            "p99_us": round(statistics.median(m["p99_us"] for m in good), 1),
            "server_cpu_us_per_req": round(statistics.median(cpu), 1) if cpu else None,
            "server_cpu_delta_us": round(statistics.median(cpu_delta), 1) if cpu_delta else None,
            "vs_constant": round(statistics.median(ratios), 3) if ratios else None,
            "vs_constant_best": None,
            "errors": sum(m["errors"] for m in good),
            "non_2xx": sum(m["non_2xx"] for m in good),
            "rounds": len(good),
            "disturbed_kept": sum(1 for m in good if m.get("disturbed")),
            "tool": good[0]["tool"],
            "runs": good,
        }
        if errs:
            out[v]["run_errors"] = errs
    best_const = out.get("constant", {}).get("rps_best")
    for v, d in out.items():
        if best_const and "rps_best" in d:
            d["vs_constant_best"] = round(d["rps_best"] / best_const, 3)
    return out


# --------------------------------------------------------------------------------------
# targets and output
# --------------------------------------------------------------------------------------


def evaluate_targets(res: dict) -> list[dict]:
    targets: list[dict] = []

    def add(name: str, ok: bool | None, detail: str) -> None:
        targets.append({"target": name, "status": "n/a" if ok is None else ("PASS" if ok else "FAIL"),
                        "detail": detail})

    for fw in ("fastapi", "flask"):
        r = res.get(fw)
        if not r or "variants" not in r:
            continue
        vs = r["variants"]
        name = "FastAPI" if fw == "fastapi" else "Flask"
        for ours in OURS[fw]:
            d = vs.get(ours, {})
            if "rps_median" not in d:
                why = r.get("unavailable", {}).get(ours) or d.get("error") or "not measured"
                add(f"{name} {LABEL[ours]} >= 95% of constant req/s", None, why)
                continue
            rt, rb = d.get("vs_constant"), d.get("vs_constant_best")
            add(f"{name} {LABEL[ours]} >= 95% of constant req/s", None if rt is None else rt >= 0.95,
                f"median of per-round ratios {_pct(rt)}; best/best {_pct(rb)} "
                f"({d['rps_best']:,.0f} vs {vs.get('constant', {}).get('rps_best', 0):,.0f} req/s); server CPU "
                + ("n/a" if d.get("server_cpu_delta_us") is None else f"{d['server_cpu_delta_us']:+.0f}")
                + " µs/req vs constant" + _inproc_note(r, ours))
            peers = [(p, vs[p]) for p in PEERS[fw] if "rps_median" in vs.get(p, {})]
            if not peers:
                add(f"{name} {LABEL[ours]} more req/s than each peer", None, "no peer measured")
                continue
            ok = all(d["rps_median"] > pd["rps_median"] for _, pd in peers)
            add(f"{name} {LABEL[ours]} more req/s than each peer", ok,
                f"median {d['rps_median']:,.0f} req/s vs "
                + ", ".join(f"{LABEL[p]} {pd['rps_median']:,.0f} ({d['rps_median'] / pd['rps_median']:.2f}x)"
                            for p, pd in peers))
    return targets


def _inproc_note(r: dict, v: str) -> str:
    d = r.get("inproc", {}).get("variants", {}).get(v)
    c = r.get("inproc", {}).get("variants", {}).get("constant")
    if not d or not c or "delta_us" not in d:
        return ""
    return f"; in-process {d['us_min']:.1f} vs {c['us_min']:.1f} µs/req ({d['delta_us']:+.1f})"


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{v * 100:.1f}%"


def _ms(us: float | None) -> str:
    return "n/a" if us is None else f"{us / 1e3:.2f}"


def render(res: dict, markdown: bool) -> str:
    table = markdown_table if markdown else text_table
    out: list[str] = []
    meta = res["meta"]
    m = meta["machine"]
    load = [x for x in (meta.get("loadavg_start"), meta.get("loadavg_end")) if x]
    load_line = "load average (1 min) at start/end: " + " / ".join(f"{x[0]:.2f}" for x in load)
    if load and any(x[0] > 1.0 for x in load):
        load_line += " (the load generator and the server take both cores: above ~2, other work was running)"
    cfg = meta["config"]
    how = (f"{meta['load_tool']}, {cfg['connections'] if meta['load_tool'] == 'wrk' else cfg['py_connections']} "
           f"keep-alive connections, {cfg['ids']} item ids cycled; {cfg['warmup']:g} s warm-up, then "
           f"{cfg['rounds']} rounds of {cfg['duration']:g} s per variant; {meta['pinning']}")

    def h(title: str) -> None:
        out.append(("\n### " if markdown else "\n== ") + title + ("\n" if markdown else " =="))

    if markdown:
        out.append("## Web endpoints (`benchmarks/bench_web.py`)\n")
        out.append(f"- command: `{meta['command']}`")
        out.append(f"- date: {meta['date']}")
        out.append(f"- machine: {m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable), "
                   f"{m['memory_gib']} GiB, {m['os']}")
        out.append(f"- Python: {m['python']} ({m['compiler']})")
        out.append("- versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()))
        out.append(f"- load: {how}")
        out.append(f"- {load_line}")
        out.append("")
        out.append("req/s: best and median over the rounds; `/ constant`: median over the rounds of the "
                   "variant's req/s divided by the constant endpoint's in the same round; p50/p99: "
                   "medians over the rounds of the load generator's percentiles; server CPU: the "
                   "server process tree's CPU time per request over the measured runs (median), and "
                   "`CPU - constant` its difference from the constant endpoint's in the same round. "
                   "Every variant's handler has the constant one's body; the cached ones answer from "
                   "their cache (handler runs = distinct ids). Each variant runs in its own server "
                   "process (same routes in every app, so routing costs the same); in-process tables "
                   "call one app per variant with no server or socket.")
    else:
        out.append(f"{meta['date']}  {m['cpu']}, {m['cores']} cores, {m['python']}")
        out.append(f"load: {how}")
        out.append(load_line)
    for fw in ("fastapi", "flask"):
        r = res.get(fw)
        if r is None:
            continue
        name = "FastAPI" if fw == "fastapi" else "Flask"
        if "variants" in r or "error" in r:
            h(f"{name}: {r.get('server', 'server n/a')}")
        if "error" in r:
            out.append(f"ERROR: {r['error']}" + ("\n" if markdown else ""))
        rows = []
        calls = r.get("handler_calls", {})
        for v, d in r.get("variants", {}).items():
            if "error" in d:
                rows.append([LABEL.get(v, v), "n/a", "n/a", "", "n/a", "n/a", "n/a", "", ""])
                continue
            rows.append([
                LABEL.get(v, v),
                f"{d['rps_best']:,.0f}",
                f"{d['rps_median']:,.0f}",
                "" if v == "constant" else _pct(d["vs_constant"]),
                _ms(d["p50_us"]),
                _ms(d["p99_us"]),
                "n/a" if d["server_cpu_us_per_req"] is None else f"{d['server_cpu_us_per_req']:.0f}",
                "" if v == "constant" or d.get("server_cpu_delta_us") is None else f"{d['server_cpu_delta_us']:+.0f}",
                f"{calls.get(v, 'n/a'):,}" if isinstance(calls.get(v), int) else "n/a",
            ])
        if rows:
            out.append(table(["endpoint", "req/s best", "req/s median", "/ constant", "p50 ms", "p99 ms",
                              "server CPU µs/req", "CPU - constant", "handler runs"], rows))
        notes = [f"{LABEL.get(v, v)}: {desc}" for v, desc in r.get("descriptions", {}).items()]
        notes += [f"{LABEL.get(v, v)}: unavailable ({e})" for v, e in r.get("unavailable", {}).items()]
        for v, c in r.get("checks", {}).items():
            if not c.get("ok"):
                notes.append(f"{LABEL.get(v, v)}: check failed: {c.get('error') or '; '.join(c.get('problems', []))}")
            elif c.get("headers_second"):
                notes.append(f"{LABEL.get(v, v)} second response headers: "
                             + ", ".join(f"{k}: {val}" for k, val in c["headers_second"].items()))
        errs = [f"{LABEL.get(v, v)}: {d['errors']} socket errors, {d['non_2xx']} non-2xx"
                for v, d in r.get("variants", {}).items() if d.get("errors") or d.get("non_2xx")]
        dist = [f"{LABEL.get(v, v)} {d['disturbed_runs_rerun']}" for v, d in r.get("variants", {}).items()
                if d.get("disturbed_runs_rerun")]
        if dist:
            errs.append("runs discarded and run again because the server was below "
                        f"{meta['config']['min_util']:.0%} of a core (disturbed by other processes): " + ", ".join(dist))
        kept = [f"{LABEL.get(v, v)} {d['disturbed_kept']}" for v, d in r.get("variants", {}).items()
                if d.get("disturbed_kept")]
        if kept:
            errs.append("DISTURBED runs kept (no retries left; the server was below "
                        f"{meta['config']['min_util']:.0%} of a core): " + ", ".join(kept)
                        + " of " + str(meta["config"]["rounds"]) + " rounds: req/s figures are unreliable")
        if markdown:
            out.append("")
            out.extend(f"- {x}" for x in notes + errs)
        else:
            out.extend(f"  {x}" for x in errs)
        ip = r.get("inproc")
        if ip:
            h(f"{name}, in-process: µs per request through the app, no server "
              f"({'ASGI, ' + ip.get('loop', '') if fw == 'fastapi' else 'WSGI'})")
            if "error" in ip:
                out.append(f"ERROR: {ip['error']}")
            else:
                rows = []
                for v, d in ip["variants"].items():
                    rows.append([LABEL.get(v, v), f"{d['us_min']:.1f}", f"{d['us_median']:.1f}",
                                 "" if v == "constant" else f"{d['delta_us']:+.1f}",
                                 "" if v == "constant" else fmt_ratio(d["vs_constant"])])
                out.append(table(["endpoint", "µs/req fastest", "µs/req median", "- constant", "/ constant"], rows))
                for v, e in ip.get("unavailable", {}).items():
                    out.append(("- " if markdown else "  ") + f"{LABEL.get(v, v)}: unavailable ({e})")
    if res.get("targets"):
        h("targets (informational)")
        out.extend(targets_lines(res["targets"], markdown))
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------


def library_versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": sys.version.split()[0]}
    for dist in ("tieredcache", "fastapi", "starlette", "uvicorn", "uvloop", "httptools", "fastapi-cache2",
                 "cashews", "flask", "werkzeug", "gunicorn", "flask-caching"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    wrk = wrk_path()
    if wrk:
        try:
            v = subprocess.run([wrk, "-v"], capture_output=True, text=True, timeout=5)
            out["wrk"] = (v.stdout or v.stderr).split()[1]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            out["wrk"] = "?"
    return out


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1 round, 1 s runs (~20 s)")
    ap.add_argument("--frameworks", default="fastapi,flask", help="comma separated subset of fastapi,flask")
    ap.add_argument("--sections", default="load,inproc",
                    help="load (server + load generator), inproc (the apps called in-process); default both")
    ap.add_argument("--inproc-seconds", type=float, default=None,
                    help="in-process: timed seconds per variant (default 2, quick 0.5)")
    ap.add_argument("--inproc-passes", type=int, default=5, help="in-process: passes over the variants")
    ap.add_argument("--variants", default=None, help="comma separated variants to run (constant always is)")
    ap.add_argument("--duration", type=float, default=None, help="seconds per measured run (default 3, quick 1)")
    ap.add_argument("--warmup", type=float, default=None,
                    help="seconds of warm-up load before a variant's first run (default 1)")
    ap.add_argument("--warmup-every-round", action="store_true", help="warm up before every run, not just the first")
    ap.add_argument("--rounds", type=int, default=None, help="rounds over the variants (default 5, quick 1)")
    ap.add_argument("--connections", type=int, default=16, help="wrk connections")
    ap.add_argument("--min-util", type=float, default=0.95,
                    help="a run whose server used less than this share of a core was disturbed: run it again")
    ap.add_argument("--retries", type=int, default=2, help="how many times a disturbed run is run again")
    ap.add_argument("--retry-budget", type=int, default=8, help="at most this many re-runs per framework")
    ap.add_argument("--py-connections", type=int, default=4, help="Python fallback: client processes")
    ap.add_argument("--ids", type=int, default=100, help="distinct item ids the requests cycle over")
    ap.add_argument("--load", choices=("auto", "wrk", "python"), default="auto")
    ap.add_argument("--pin", choices=("auto", "split", "none"), default="auto",
                    help="split: server on CPU 0, load generator on CPU 1 (auto: split with 2+ usable cores)")
    ap.add_argument("--loop", default="auto", help="uvicorn --loop (auto: uvloop if installed)")
    ap.add_argument("--http", default="auto", help="uvicorn --http (auto: httptools if installed)")
    ap.add_argument("--flask-server", default="auto", help="gunicorn, werkzeug or auto (gunicorn if installed)")
    ap.add_argument("--worker-class", default="gthread", help="gunicorn worker class (sync closes every connection)")
    ap.add_argument("--threads", type=int, default=4, help="gunicorn gthread threads")
    ap.add_argument("--json", metavar="PATH", help="write every figure as JSON")
    ap.add_argument("--markdown", metavar="PATH", help="write a Markdown section for docs/benchmarks.md")
    a = ap.parse_args(argv)
    a.duration = a.duration or (1.0 if a.quick else 3.0)
    a.warmup = a.warmup if a.warmup is not None else 1.0
    a.rounds = a.rounds or (1 if a.quick else 5)
    a.inproc_seconds = a.inproc_seconds or (0.5 if a.quick else 2.0)
    a.sections = [x.strip() for x in a.sections.split(",") if x.strip()]
    if set(a.sections) - {"load", "inproc"}:
        ap.error("--sections takes load and/or inproc")
    return a


def main(argv: list[str]) -> int:
    cfg = parse_args(argv)
    atexit.register(_stop_all)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    frameworks = [f.strip() for f in cfg.frameworks.split(",") if f.strip()]
    if set(frameworks) - {"fastapi", "flask"}:
        raise SystemExit("--frameworks takes fastapi and/or flask")
    tool = cfg.load if cfg.load != "auto" else ("wrk" if wrk_path() else "python")
    if tool == "wrk" and not wrk_path():
        raise SystemExit("wrk is not installed (apt-get install wrk, or --load python)")
    if tool == "wrk" and (cfg.duration < 1 or cfg.warmup < 1):
        log("wrk runs last whole seconds: durations are rounded (at least 1 s)")
    try:
        usable = sorted(os.sched_getaffinity(0))
    except AttributeError:
        usable = list(range(os.cpu_count() or 1))
    pin = None
    if cfg.pin == "split" or (cfg.pin == "auto" and len(usable) >= 2):
        if len(usable) < 2 or not subprocess.run(["sh", "-c", "command -v taskset"], capture_output=True).stdout:
            log("cannot pin (needs 2 usable cores and taskset): not pinning")
        else:
            pin = (str(usable[0]), str(usable[1]))
    pinning = (f"server pinned to CPU {pin[0]}, load generator to CPU {pin[1]}" if pin else "not pinned")
    res: dict[str, Any] = {
        "meta": {
            "command": " ".join(["python", "benchmarks/bench_web.py"] + [shlex.quote(a) for a in argv]),
            "date": _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
            "machine": machine_info(),
            "versions": library_versions(),
            "config": {k: v for k, v in vars(cfg).items() if k not in ("json", "markdown")},
            "load_tool": tool if tool == "wrk" else f"python http.client ({cfg.py_connections} processes)",
            "pinning": pinning,
            "loadavg_start": loadavg(),
        }
    }
    log(f"load generator: {res['meta']['load_tool']}; {pinning}")
    started = time.perf_counter()
    try:
        for fw in frameworks:
            if "load" in cfg.sections:
                res[fw] = bench_framework(fw, cfg, tool, pin)
            if "inproc" in cfg.sections:
                res.setdefault(fw, {})["inproc"] = bench_inproc(fw, cfg, pin[0] if pin else None)
    finally:
        _stop_all()
    res["meta"]["seconds"] = round(time.perf_counter() - started, 1)
    res["meta"]["loadavg_end"] = loadavg()
    res["targets"] = evaluate_targets(res)
    sys.stdout.write(render(res, markdown=False))
    if cfg.json:
        with open(cfg.json, "w", encoding="utf-8") as fh:
            json.dump(res, fh, indent=2)
            fh.write("\n")
        log(f"wrote {cfg.json}")
    if cfg.markdown:
        with open(cfg.markdown, "w", encoding="utf-8") as fh:
            fh.write(render(res, markdown=True))
        log(f"wrote {cfg.markdown}")
    log(f"total {res['meta']['seconds']}s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""End to end: the reference apps under load, uncached, on tieredcache and on peer caches.

    cd /work/main && .venv/bin/python setup.py build_ext --inplace -q
    PYTHONPATH=src .venv/bin/python benchmarks/bench_e2e.py                  # ~ 5.5 minutes
    PYTHONPATH=src .venv/bin/python benchmarks/bench_e2e.py --quick          # ~ 1.2 minutes
    PYTHONPATH=src .venv/bin/python benchmarks/bench_e2e.py --frameworks flask --rounds 5
    PYTHONPATH=src .venv/bin/python benchmarks/bench_e2e.py --json out.json --markdown out.md

What runs (everything on 127.0.0.1, every process started here is killed at the end, even
on an error or Ctrl-C):

- the database: MongoDB wire protocol served by nx-27017 (SQLite in memory, started by
  docs/examples/_mongo.py; ``MONGODB_URL`` names a real mongod instead) for the
  restaurant, SQLite files for the barbershop. This is the apps' real database, with its
  real latency: nothing is simulated or slept.
- one private ``redis-server`` (src/tieredcache/_redis_server.py), a database number per
  variant that uses Redis.
- FastAPI: docs/examples/restaurant under ``uvicorn --workers 2`` (the app factory is
  benchmarks/_e2e_restaurant.py), one server per variant: ``uncached``; ``tiered-l1``
  (tieredcache, L1 only); ``tiered-redis`` (tieredcache, L1 + Redis); ``fastapi-cache2``
  (its ``RedisBackend``); ``cashews`` (``redis://``). The peers decorate the same
  data-access functions with the app's own TTLs, keys and invalidations (see that module).
- Flask: docs/examples/barbershop under ``gunicorn -w 2 -k gthread`` (factory:
  benchmarks/_e2e_barbershop.py): ``uncached``, ``tiered-redis``, ``flask-caching``
  (Flask-Caching ``RedisCache``, the fair multi-process comparison); ``--flask-variants``
  adds ``tiered-l1`` and ``flask-caching-simple`` (``SimpleCache``, per worker).
- the load: wrk (``-t1 -c16``, keep-alive) with a Lua script (benchmarks/_e2e_load.py)
  mixing the apps' reads with a few percent of writes over every tenant, the created
  orders and bookings read back from the answers and paid.

With 2+ usable cores the app servers are pinned to CPU 0 and everything else (wrk, the
database, Redis, the checker) to CPU 1: the app's workers compete for one core the way
they would on a loaded host, and the load generator never takes their CPU.

Per variant: warm-up, then --rounds measured runs of --duration s (the variants take turns,
the order rotating each round, so a burst of load from elsewhere hits one run of each
rather than all runs of one). Reported: median req/s (and best), medians of wrk's p50/p99,
database queries per request (the apps' own counters, summed over both workers), the hit
rate (tieredcache's ``stats()``; for the peers, which report none, calls and loads counted
by the benchmark's wrapper), the app's CPU per request and the database's.

Stale reads: after the measured runs, each variant is loaded again for --check-seconds
while benchmarks/_e2e_checker.py (another process, --lanes threads) writes through one
worker and reads at once through both (one keep-alive connection per worker), counting
answers that do not show the write yet; then --check-alone-seconds with the checker alone
(a quiet server: the other worker answers within a millisecond of the write, the hardest
case for cross-process invalidation). Latency probe: after a --probe-warmup of the read
mix, one connection, one kind of read at a time (no writes), then the whole read mix: the
p50 uncached and cached, the "cached reads are 5x faster" figure, with the database's real
latency.

Informational: nothing is asserted; the targets table says PASS/FAIL. The 1-minute load
average is printed: the machine has 2 cores and other work moves every figure.
"""

from __future__ import annotations

import argparse
import atexit
import datetime as _dt
import http.client
import json
import os
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
EXAMPLES = os.path.join(ROOT, "docs", "examples")
for _p in (HERE, EXAMPLES, os.path.join(ROOT, "src")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from _e2e_load import BARBERSHOP_LUA, RESTAURANT_LUA, run_wrk, wrk_path  # noqa: E402
from _e2e_stats import read_all, snapshot  # noqa: E402
from _report import loadavg, machine_info, markdown_table, targets_lines, text_table  # noqa: E402

FASTAPI_VARIANTS = ("uncached", "tiered-l1", "tiered-redis", "fastapi-cache2", "cashews")
FLASK_VARIANTS = ("uncached", "tiered-redis", "flask-caching")
FLASK_ALL = ("uncached", "tiered-l1", "tiered-redis", "flask-caching", "flask-caching-simple")
OURS = {"fastapi": ("tiered-redis", "tiered-l1"), "flask": ("tiered-redis", "tiered-l1")}
PEERS = {"fastapi": ("fastapi-cache2", "cashews"), "flask": ("flask-caching", "flask-caching-simple")}
REDIS_DB = {("fastapi", "tiered-redis"): 1, ("fastapi", "fastapi-cache2"): 2, ("fastapi", "cashews"): 3,
            ("flask", "tiered-redis"): 4, ("flask", "flask-caching"): 5}
LABEL = {
    "uncached": "uncached",
    "tiered-l1": "tieredcache L1 only",
    "tiered-redis": "tieredcache L1 + Redis",
    "fastapi-cache2": "fastapi-cache2 (Redis)",
    "cashews": "cashews (Redis)",
    "flask-caching": "Flask-Caching RedisCache",
    "flask-caching-simple": "Flask-Caching SimpleCache",
}
RESTAURANT_MIX = "profile:12,lite:12,active:14,order:30,balance:16,summary:14,update:1,create:0.5,pay:0.5"
BARBERSHOP_MIX = "slots:30,week:12,services:8,settings:6,revenue:12,clients:8,dashboard:23,book:0.5,pay:0.5"
READ_KINDS = {"fastapi": ("profile", "lite", "active", "order", "balance", "summary"),
              "flask": ("slots", "week", "services", "settings", "revenue", "clients", "dashboard")}
WORKERS = 2

_PROCS: list[subprocess.Popen] = []
_CLEANUPS: list[Any] = []


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------
# processes
# --------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pinned(cmd: list[str], cpus: str | None) -> list[str]:
    return ["taskset", "-c", cpus, *cmd] if cpus else cmd


def pin_pid(pid: int, cpus: str | None) -> None:
    """Move a running process (all its threads) to `cpus`."""
    if cpus:
        subprocess.run(["taskset", "-a", "-p", "-c", cpus, str(pid)], capture_output=True, check=False)


def kill_group(proc: subprocess.Popen) -> None:
    """SIGTERM the process group of a server started in its own session, then SIGKILL."""
    for sig, wait in ((signal.SIGTERM, 8.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            break
        try:
            proc.wait(timeout=wait)
            # the leader is gone; a worker may linger a moment: make sure the group is empty
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            break
        except subprocess.TimeoutExpired:
            continue
    if proc in _PROCS:
        _PROCS.remove(proc)


def cleanup() -> None:
    for proc in list(_PROCS):
        kill_group(proc)
    while _CLEANUPS:
        fn = _CLEANUPS.pop()
        try:
            fn()
        except Exception as exc:  # noqa: BLE001
            log(f"cleanup: {type(exc).__name__}: {exc}")


def _on_signal(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


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
            total += int(fields[11]) + int(fields[12])
            for tid in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{tid}/children") as fh:
                    todo.extend(int(c) for c in fh.read().split())
        except (OSError, ValueError, IndexError):
            continue
    return total / tick


def find_pid(predicate: Any) -> int | None:
    """A process whose argv satisfies `predicate` (used to find nx-27017 by its port)."""
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as fh:
                argv = [a.decode(errors="replace") for a in fh.read().split(b"\0") if a]
        except OSError:
            continue
        if argv and predicate(argv):
            return int(name)
    return None


def http_get(port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _tail(path: str, n: int = 8) -> str:
    try:
        with open(path, errors="replace") as fh:
            return " | ".join(fh.read().strip().splitlines()[-n:])
    except OSError:
        return ""


class Server:
    """One app server (uvicorn or gunicorn, WORKERS workers) serving one variant."""

    def __init__(self, framework: str, variant: str, env_extra: dict[str, str], cpus: str | None,
                 workdir: str, cfg: argparse.Namespace) -> None:
        self.framework, self.variant = framework, variant
        self.port = free_port()
        self.stats_dir = tempfile.mkdtemp(prefix=f"stats-{variant}-", dir=workdir)
        self.logfile = os.path.join(workdir, f"{framework}-{variant}.log")
        env = dict(os.environ)
        for k in ("REDIS_URL", "CACHE_NAMESPACE", "CACHE_ENABLED", "CACHE_DEFAULT_TTL"):
            env.pop(k, None)
        env.update({"PYTHONPATH": os.pathsep.join([HERE, EXAMPLES, os.path.join(ROOT, "src")]
                                                  + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]),
                    "E2E_VARIANT": variant, "E2E_STATS_DIR": self.stats_dir, "CACHE_WARMING_ENABLED": "false",
                    **env_extra})
        if framework == "fastapi":
            cmd = [sys.executable, "-m", "uvicorn", "--factory", "_e2e_restaurant:app_from_env",
                   "--workers", str(WORKERS), "--host", "127.0.0.1", "--port", str(self.port),
                   "--log-level", "warning", "--no-access-log", "--timeout-keep-alive", "30"]
        else:
            cmd = [sys.executable, "-m", "gunicorn", "-w", str(WORKERS), "-k", "gthread",
                   "--threads", str(cfg.threads), "-b", f"127.0.0.1:{self.port}", "--keep-alive", "30",
                   "--backlog", "2048", "--log-level", "warning", "--graceful-timeout", "5",
                   "_e2e_barbershop:app_from_env()"]
        self.cmd = cmd
        with open(self.logfile, "w") as fh:
            self.proc = subprocess.Popen(pinned(cmd, cpus), stdout=fh, stderr=subprocess.STDOUT, env=env,
                                         start_new_session=True, cwd=HERE)
        _PROCS.append(self.proc)

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.variant}: server exited ({self.proc.returncode}): {_tail(self.logfile)}")
            if len(read_all(self.stats_dir)) >= WORKERS:
                try:
                    status, _ = http_get(self.port, "/_e2e/stats", timeout=2)
                    if status == 200:
                        return
                except (OSError, http.client.HTTPException):
                    pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.variant}: not ready within {timeout:g} s: {_tail(self.logfile)}")
            time.sleep(0.1)

    def counters(self) -> dict[int, dict[str, Any]]:
        """Every worker's counters, now (see _e2e_stats.py)."""
        got = snapshot(self.stats_dir, WORKERS)
        if len(got) < WORKERS:
            log(f"  {self.variant}: only {len(got)} of {WORKERS} workers answered the counter snapshot")
        return got

    def stop(self) -> None:
        kill_group(self.proc)


def counter_delta(before: dict[int, dict], after: dict[int, dict]) -> dict[str, Any]:
    """Sum over the workers of after - before, for each counter; per-worker requests."""
    keys = ("requests", "queries", "calls", "hits", "l1_hits", "l2_hits", "stale_writes_refused",
            "invalidations_received")
    out: dict[str, Any] = {k: 0 for k in keys}
    per_worker = {}
    restarted = sorted(set(before) ^ set(after))
    for pid, a in after.items():
        b = before.get(pid, {})
        for k in keys:
            out[k] += int(a.get(k, 0) or 0) - int(b.get(k, 0) or 0)
        per_worker[pid] = int(a.get("requests", 0)) - int(b.get("requests", 0))
    out["requests_per_worker"] = sorted(per_worker.values(), reverse=True)
    out["workers_changed"] = restarted
    out["hit_source"] = next((a.get("source") for a in after.values()), None)
    return out


# --------------------------------------------------------------------------------------
# the apps' data
# --------------------------------------------------------------------------------------


def start_databases(frameworks: list[str], cpus: str | None, workdir: str, need_redis: bool) -> dict[str, Any]:
    info: dict[str, Any] = {}
    if need_redis:
        from tieredcache._redis_server import RedisServer

        rs = RedisServer().start()
        _CLEANUPS.append(rs.stop)
        pin_pid(rs.pid, cpus)
        info["redis"] = rs
        info["redis_base"] = rs.url.rsplit("/", 1)[0]
        info["redis_pid"] = rs.pid
        v = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.split()
        info["redis_version"] = next((x[2:] for x in v if x.startswith("v=")), "?")
    if "fastapi" in frameworks:
        from _mongo import start_mongo

        url, stop = start_mongo()
        _CLEANUPS.append(stop)
        info["mongo_url"] = url
        port = url.rsplit(":", 1)[1].split("/")[0]
        if os.environ.get("MONGODB_URL"):
            info["mongo"] = f"MONGODB_URL ({url})"
            info["mongo_pid"] = None
        else:
            pid = find_pid(lambda argv: "--db" in argv and port in argv and "-p" in argv
                           and any("nx" in a for a in argv))
            info["mongo_pid"] = pid
            pin_pid(pid, cpus) if pid else None
            from importlib import metadata

            info["mongo"] = f"nx-27017 {metadata.version('nx-27017')} (SQLite in memory), 127.0.0.1"
    return info


def seed_restaurant(url: str, db_name: str) -> dict[str, Any]:
    from pymongo import MongoClient
    from restaurant.app import ACTIVE
    from restaurant.seed import BUSINESS_DAY, seed

    with MongoClient(url) as client:
        db = client[db_name]
        info = seed(db)
        orgs = info["orgs"]
        patch = [f"{o['org_id']}/{o['order_id']}" for o in
                 db.orders.find({"status": {"$in": list(ACTIVE)}}, {"org_id": 1, "order_id": 1}).sort("order_no", 1)]
        today = min(o["order_no"] for o in db.orders.find({"business_day": BUSINESS_DAY}, {"order_no": 1}))
        orders = max(o["order_no"] for o in db.orders.find({}, {"order_no": 1}))
    day = _dt.date.fromisoformat(BUSINESS_DAY)
    days = [(day - _dt.timedelta(days=i)).isoformat() for i in range(5)]
    return {"orgs": orgs, "patch": patch, "today": today, "orders": orders, "days": days,
            "phones": len(info["phones"]), "counts": {k: v for k, v in info.items() if k != "phones"}}


def restaurant_args(data: dict[str, Any], mix: str, seed: int) -> list[str]:
    return [f"orgs={','.join(data['orgs'])}", f"orders={data['orders']}", f"today={data['today']}",
            f"phones={data['phones']}", "hot_phones=30", "order_today=0.8", "summary_today=0.8",
            f"days={','.join(data['days'])}",
            f"patch={','.join(data['patch'])}", f"mix={mix}", f"seed={seed}"]


def barbershop_data() -> dict[str, Any]:
    from barbershop.seed import TODAY

    def open_days(first: _dt.date, n: int) -> list[str]:
        out, d = [], first
        while len(out) < n:
            if d.weekday() <= 5:
                out.append(d.isoformat())
            d += _dt.timedelta(days=1)
        return out

    dates = open_days(TODAY - _dt.timedelta(days=7), 18)
    monday = TODAY - _dt.timedelta(days=TODAY.weekday())
    weeks = [(monday + _dt.timedelta(weeks=w)).isoformat() for w in range(-3, 3)]
    ranges = [f"{(TODAY - _dt.timedelta(days=27)).isoformat()}/{TODAY.isoformat()}",
              f"{TODAY.replace(day=1).isoformat()}/{TODAY.isoformat()}",
              f"{(TODAY - _dt.timedelta(days=6)).isoformat()}/{TODAY.isoformat()}",
              f"{(TODAY - _dt.timedelta(days=27)).isoformat()}/{(TODAY - _dt.timedelta(days=14)).isoformat()}"]
    book_dates = open_days(_dt.date(2024, 6, 3), 300)   # the checker books from 2026-03-02
    return {"dates": dates, "weeks": weeks, "ranges": ranges, "book_dates": book_dates, "today": TODAY.isoformat()}


def barbershop_args(data: dict[str, Any], mix: str, seed: int, offset: int) -> list[str]:
    return [f"dates={','.join(data['dates'])}", f"weeks={','.join(data['weeks'])}",
            f"ranges={','.join(data['ranges'])}", f"book_dates={','.join(data['book_dates'])}",
            "barbers=3", "services=6", "clients=60", f"offset={offset}", f"mix={mix}", f"seed={seed}"]


# --------------------------------------------------------------------------------------
# measuring
# --------------------------------------------------------------------------------------


class Bench:
    def __init__(self, framework: str, cfg: argparse.Namespace, pin: tuple[str, str] | None,
                 dbs: dict[str, Any], workdir: str) -> None:
        self.fw, self.cfg, self.dbs, self.workdir = framework, cfg, dbs, workdir
        self.server_cpus, self.load_cpus = pin if pin else (None, None)
        self.script = RESTAURANT_LUA if framework == "fastapi" else BARBERSHOP_LUA
        self.mix = cfg.restaurant_mix if framework == "fastapi" else cfg.barbershop_mix
        self.servers: dict[str, Server] = {}
        self.data: dict[str, dict[str, Any]] = {}
        self.runs_made = 0

    # -- setup --------------------------------------------------------------------------

    def start(self, variants: list[str]) -> dict[str, str]:
        unavailable: dict[str, str] = {}
        template = None
        if self.fw == "flask":
            from barbershop.seed import seed

            template = os.path.join(self.workdir, "barbershop-template.db")
            counts = seed(template)
            self.seed_counts = counts
        for v in variants:
            extra: dict[str, str] = {}
            try:
                if (self.fw, v) in REDIS_DB:
                    extra["REDIS_URL"] = f"{self.dbs['redis_base']}/{REDIS_DB[(self.fw, v)]}"
                if self.fw == "fastapi":
                    db_name = f"e2e_{v.replace('-', '_')}"
                    self.data[v] = seed_restaurant(self.dbs["mongo_url"], db_name)
                    extra.update({"MONGODB_URL": self.dbs["mongo_url"], "MONGODB_DB": db_name})
                else:
                    path = os.path.join(self.workdir, f"barbershop-{v}.db")
                    shutil.copyfile(template, path)
                    self.data[v] = {"db": path}
                    extra["E2E_DB"] = path
                self.servers[v] = Server(self.fw, v, extra, self.server_cpus, self.workdir, self.cfg)
            except Exception as exc:  # noqa: BLE001
                unavailable[v] = f"{type(exc).__name__}: {exc}"
        for v, s in list(self.servers.items()):
            try:
                s.wait_ready()
            except Exception as exc:  # noqa: BLE001
                unavailable[v] = str(exc)
                s.stop()
                del self.servers[v]
        return unavailable

    def wrk_args(self, v: str, mix: str | None = None) -> list[str]:
        self.runs_made += 1
        seed = 1000 + self.runs_made
        if self.fw == "fastapi":
            return restaurant_args(self.data[v], mix or self.mix, seed)
        return barbershop_args(self.bdata, mix or self.mix, seed, offset=self.runs_made * 5000)

    # -- one measured run ---------------------------------------------------------------

    def measure(self, v: str, seconds: float, conns: int, mix: str | None = None) -> dict[str, Any]:
        s = self.servers[v]
        c0 = s.counters()
        cpu0 = tree_cpu_seconds(s.proc.pid)
        db_pid, redis_pid = self.dbs.get("mongo_pid"), self.dbs.get("redis_pid")
        db0 = tree_cpu_seconds(db_pid) if db_pid else None
        r0 = tree_cpu_seconds(redis_pid) if redis_pid else None
        m = run_wrk(self.script, self.wrk_args(v, mix), f"http://127.0.0.1:{s.port}", seconds, conns,
                    self.load_cpus)
        cpu = tree_cpu_seconds(s.proc.pid) - cpu0
        db = (tree_cpu_seconds(db_pid) - db0) if db_pid else None
        rc = (tree_cpu_seconds(redis_pid) - r0) if redis_pid else None
        d = counter_delta(c0, s.counters())
        n = m["requests"] or 1
        m.update({
            "server_cpu_us_per_req": round(cpu * 1e6 / n, 1),
            "server_cpu_util": round(cpu / m["seconds"], 3) if m["seconds"] else None,
            "db_cpu_us_per_req": round(db * 1e6 / n, 1) if db is not None and self.fw == "fastapi" else None,
            "redis_cpu_us_per_req": round(rc * 1e6 / n, 1) if rc is not None and (self.fw, v) in REDIS_DB else None,
            "queries": d["queries"],
            "queries_per_req": round(d["queries"] / n, 3),
            "calls": d["calls"],
            "hits": d["hits"],
            "hit_rate": round(d["hits"] / d["calls"], 4) if d["calls"] else None,
            "l1_hits": d["l1_hits"],
            "l2_hits": d["l2_hits"],
            "stale_writes_refused": d["stale_writes_refused"],
            "app_requests": d["requests"],
            "requests_per_worker": d["requests_per_worker"],
            "workers_changed": d["workers_changed"],
        })
        if s.proc.poll() is not None:
            raise RuntimeError(f"the {v} server died: {_tail(s.logfile)}")
        return m

    # -- phases -------------------------------------------------------------------------

    def rounds(self, variants: list[str]) -> dict[str, list[dict]]:
        cfg = self.cfg
        runs: dict[str, list[dict]] = {v: [] for v in variants}
        for r in range(cfg.rounds):
            order = variants[r % len(variants):] + variants[: r % len(variants)]
            for v in order:
                try:
                    if r == 0 and cfg.warmup > 0:
                        self.measure(v, cfg.warmup, cfg.connections)
                    m = self.measure(v, cfg.duration, cfg.connections)
                    m["round"] = r
                    runs[v].append(m)
                    log(f"  [{self.fw}] round {r + 1}/{cfg.rounds} {v:<21} {m['rps']:>8,.0f} req/s"
                        f"  p50 {m['p50_us'] / 1e3:6.2f} ms  p99 {m['p99_us'] / 1e3:7.2f} ms"
                        f"  queries/req {m['queries_per_req']:.3f}"
                        + (f"  hit {m['hit_rate']:.1%}" if m["hit_rate"] is not None else "")
                        + f"  app CPU {m['server_cpu_util']:.0%}"
                        + f"  per worker {m['requests_per_worker']}"
                        + (f"  ERRORS {m['errors']} non-2xx {m['non_2xx']}" if m["errors"] or m["non_2xx"] else ""))
                except Exception as exc:  # noqa: BLE001
                    runs[v].append({"error": f"{type(exc).__name__}: {exc}", "round": r})
                    log(f"  [{self.fw}] round {r + 1} {v}: {type(exc).__name__}: {exc}")
        return runs

    def check(self, v: str, under_load: bool) -> dict[str, Any]:
        """The checker (another process) writes through one worker and reads through both,
        while wrk loads the server with the same mix (``under_load``), or alone."""
        cfg = self.cfg
        s = self.servers[v]
        secs = cfg.check_seconds if under_load else cfg.check_alone_seconds
        cmd = [sys.executable, os.path.join(HERE, "_e2e_checker.py"),
               "restaurant" if self.fw == "fastapi" else "barbershop",
               "--base", f"http://127.0.0.1:{s.port}", "--workers", str(WORKERS), "--seconds", str(secs),
               "--settle", str(cfg.settle), "--lanes", str(cfg.lanes)]
        if self.fw == "fastapi":
            cmd += ["--mongo-url", self.dbs["mongo_url"], "--db", f"e2e_{v.replace('-', '_')}",
                    "--orgs", ",".join(self.data[v]["orgs"])]
        else:
            # each phase books on days of its own (the checker's lanes take 100 open days each)
            first = _dt.date(2026, 3, 2) + _dt.timedelta(days=(0 if under_load else 2000))
            cmd += ["--first-date", first.isoformat()]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([HERE, EXAMPLES, os.path.join(ROOT, "src")]))
        ck = subprocess.Popen(pinned(cmd, self.load_cpus), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env, start_new_session=True)
        _PROCS.append(ck)
        load: dict[str, Any] = {}
        if under_load:
            try:
                load = self.measure(v, secs + 1, cfg.connections)
            except Exception as exc:  # noqa: BLE001
                load = {"error": f"{type(exc).__name__}: {exc}"}
        try:
            out, err = ck.communicate(timeout=secs + cfg.settle * 6 + 30)
        except subprocess.TimeoutExpired:
            kill_group(ck)
            return {"error": "the checker did not finish", "load": load}
        if ck in _PROCS:
            _PROCS.remove(ck)
        try:
            res = json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            return {"error": f"checker failed: {err.strip()[-400:]}", "load": load}
        res["seconds"] = secs
        res["load"] = {k: load.get(k) for k in ("rps", "p50_us", "p99_us", "non_2xx", "errors", "error") if k in load}
        log(f"  [{self.fw}] stale check {'under load' if under_load else 'alone':<10} {v:<21} {res['stale']} stale "
            f"of {res['reads']} reads after {res['writes']} writes (other worker {res['other_worker']['stale']}/"
            f"{res['other_worker']['reads']}, same worker {res['same_worker']['stale']}/{res['same_worker']['reads']})"
            f", longest stale window {res['stale_window_ms_max']} ms, workers reached {res['workers_reached']}"
            + (f"; errors: {res['errors'][:3]}" if res["errors"] else ""))
        return res

    def read_mix(self) -> str:
        """The load's mix without its writes."""
        keep = [x for x in self.mix.split(",") if x.split(":")[0] in READ_KINDS[self.fw]]
        return ",".join(keep)

    def probe(self, v: str) -> dict[str, Any]:
        """One connection, one read kind at a time (then all the reads of the mix):
        latency with no queueing."""
        out: dict[str, Any] = {}
        kinds = ("all reads",) if self.cfg.probe_kinds == "mix" else (*READ_KINDS[self.fw], "all reads")
        if v != "uncached":
            try:   # the entries of the rounds may have expired meanwhile: warm the read mix's keys
                self.measure(v, self.cfg.probe_warmup, self.cfg.connections, mix=self.read_mix())
            except Exception as exc:  # noqa: BLE001
                log(f"  [{self.fw}] probe warm-up {v}: {type(exc).__name__}: {exc}")
        for kind in kinds:
            try:
                mix = self.read_mix() if kind == "all reads" else f"{kind}:1"
                m = self.measure(v, self.cfg.probe_seconds, 1, mix=mix)
                out[kind] = {k: m[k] for k in ("p50_us", "p99_us", "rps", "hit_rate", "queries_per_req", "non_2xx")}
            except Exception as exc:  # noqa: BLE001
                out[kind] = {"error": f"{type(exc).__name__}: {exc}"}
        log(f"  [{self.fw}] probe {v:<21} " + "  ".join(
            f"{k} {d['p50_us'] / 1e3:.2f}" for k, d in out.items() if "p50_us" in d) + " ms (p50, 1 connection)")
        return out

    def stop(self) -> None:
        for s in self.servers.values():
            s.stop()


def summarize(runs: dict[str, list[dict]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for v, ms in runs.items():
        good = [m for m in ms if "rps" in m]
        if not good:
            out[v] = {"error": next((m["error"] for m in ms if "error" in m), "no run")}
            continue

        def med(key: str) -> float | None:
            xs = [m[key] for m in good if m.get(key) is not None]
            return round(statistics.median(xs), 4) if xs else None

        calls = sum(m["calls"] for m in good)
        out[v] = {
            "rps_median": round(statistics.median(m["rps"] for m in good), 1),
            "rps_best": max(m["rps"] for m in good),
            "p50_us": med("p50_us"), "p99_us": med("p99_us"),
            "queries_per_req": med("queries_per_req"),
            "queries_total": sum(m["queries"] for m in good),
            "requests_total": sum(m["requests"] for m in good),
            "hit_rate": round(sum(m["hits"] for m in good) / calls, 4) if calls else None,
            "server_cpu_us_per_req": med("server_cpu_us_per_req"),
            "server_cpu_util": med("server_cpu_util"),
            "db_cpu_us_per_req": med("db_cpu_us_per_req"),
            "redis_cpu_us_per_req": med("redis_cpu_us_per_req"),
            "errors": sum(m["errors"] for m in good), "non_2xx": sum(m["non_2xx"] for m in good),
            "writes": {k: sum(m["writes"][k] for m in good) for k in good[0]["writes"]},
            "stale_writes_refused": sum(m.get("stale_writes_refused", 0) for m in good),
            "requests_per_worker": [m["requests_per_worker"] for m in good],
            "rounds": len(good),
            "runs": good,
        }
    return out


def bench_framework(fw: str, cfg: argparse.Namespace, pin: tuple[str, str] | None, dbs: dict[str, Any],
                    workdir: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    variants = cfg.fastapi_variants if fw == "fastapi" else cfg.flask_variants
    b = Bench(fw, cfg, pin, dbs, workdir)
    res: dict[str, Any] = {"unavailable": {}}
    try:
        if fw == "flask":
            b.bdata = barbershop_data()
        res["unavailable"] = b.start(variants)
        if fw == "flask":
            res["seed"] = getattr(b, "seed_counts", None)
        else:
            first = next(iter(b.data.values()), None)
            res["seed"] = first["counts"] if first else None
        live = [v for v in variants if v in b.servers]
        if "uncached" not in live:
            raise RuntimeError("the uncached server did not start: " + str(res["unavailable"].get("uncached")))
        log(f"[{fw}] {len(live)} servers up ({WORKERS} workers each): {', '.join(live)}"
            + (f"; unavailable: {res['unavailable']}" if res["unavailable"] else ""))
        res["variants"] = summarize(b.rounds(live))
        res["stale"] = {v: {} for v in live}
        for phase, secs in (("load", cfg.check_seconds), ("alone", cfg.check_alone_seconds)):
            if secs > 0:
                for v in live:
                    res["stale"][v][phase] = b.check(v, under_load=phase == "load")
        res["probe"] = {}
        for v in live:
            if v in cfg.probe_variants or cfg.probe_variants == ["all"]:
                res["probe"][v] = b.probe(v)
        res["server"] = (f"uvicorn, {WORKERS} workers (--workers), loop/http auto (uvloop, httptools)" if fw == "fastapi"
                         else f"gunicorn, {WORKERS} workers, gthread, {cfg.threads} threads")
    except Exception as exc:  # noqa: BLE001
        res["error"] = f"{type(exc).__name__}: {exc}"
        log(f"[{fw}] {res['error']}")
    finally:
        b.stop()
    res["seconds"] = round(time.perf_counter() - t0, 1)
    return res


# --------------------------------------------------------------------------------------
# targets and output
# --------------------------------------------------------------------------------------


PHASES = {"load": "under load", "alone": "checker alone"}


def stale_total(phases: dict[str, dict]) -> dict[str, Any] | None:
    """The checker's figures summed over its phases (None: no phase ran)."""
    got = [p for p in phases.values() if "reads" in p]
    if not got:
        return None
    return {
        "reads": sum(p["reads"] for p in got), "stale": sum(p["stale"] for p in got),
        "writes": sum(p["writes"] for p in got),
        "other": [sum(p["other_worker"][k] for p in got) for k in ("stale", "reads")],
        "window_max": max(p["stale_window_ms_max"] for p in got),
        "unsettled": sum(p["unsettled"] for p in got),
        "reached": min(p.get("workers_reached", 0) for p in got),
        "by_phase": ", ".join(f"{PHASES[k]} {p['stale']}/{p['reads']}" for k, p in phases.items() if "reads" in p),
    }


def evaluate_targets(res: dict) -> list[dict]:
    targets: list[dict] = []

    def add(name: str, ok: bool | None, detail: str) -> None:
        targets.append({"target": name, "status": "n/a" if ok is None else ("PASS" if ok else "FAIL"),
                        "detail": detail})

    for fw in ("fastapi", "flask"):
        r = res.get(fw)
        if not r or "variants" not in r:
            continue
        name = "FastAPI" if fw == "fastapi" else "Flask"
        vs = r["variants"]
        stale = r.get("stale", {})
        for ours in OURS[fw]:
            d = vs.get(ours)
            if not d or "rps_median" not in d:
                continue
            peers = [(p, vs[p]) for p in PEERS[fw] if "rps_median" in vs.get(p, {})]
            if peers:
                ok = all(d["rps_median"] > pd["rps_median"] and d["p99_us"] < pd["p99_us"] for _, pd in peers)
                add(f"{name} {LABEL[ours]} ahead of each peer on req/s and p99", ok,
                    f"{d['rps_median']:,.0f} req/s, p99 {_ms(d['p99_us'])} ms vs "
                    + "; ".join(f"{LABEL[p]} {pd['rps_median']:,.0f} req/s ({d['rps_median'] / pd['rps_median']:.2f}x), "
                                f"p99 {_ms(pd['p99_us'])} ms" for p, pd in peers))
            st = stale_total(stale.get(ours, {}))
            if st:
                reached = st["reached"] >= WORKERS
                peers_st = [(p, stale_total(stale.get(p, {}))) for p in PEERS[fw]]
                add(f"{name} {LABEL[ours]}: zero stale reads with {WORKERS} workers",
                    (st["stale"] == 0) if reached and st["reads"] else None,
                    f"{st['stale']} stale of {st['reads']} reads after {st['writes']} writes ({st['by_phase']})"
                    + (f", the longest {st['window_max']:.1f} ms after the write" if st["stale"] else "")
                    + ("" if reached else f"; only {st['reached']} worker(s) reached")
                    + "".join(f"; {LABEL[p]} {ps['stale']}/{ps['reads']}" for p, ps in peers_st if ps))
        probe = r.get("probe", {})
        base = probe.get("uncached")
        u = vs.get("uncached", {})
        for ours in OURS[fw]:
            p = probe.get(ours)
            if not base or not p:
                continue
            ratios = {k: base[k]["p50_us"] / p[k]["p50_us"] for k in p
                      if "p50_us" in p[k] and "p50_us" in base.get(k, {}) and p[k]["p50_us"]}
            if "all reads" not in ratios:
                continue
            t = vs.get(ours, {})
            kinds = [f"{k} {x:.1f}x" for k, x in ratios.items() if k != "all reads"]
            by_read = f"; by read: {', '.join(kinds)}" if kinds else ""
            under = (f"; under load (16 connections, with the writes) p50 {_ms(u['p50_us'])} vs {_ms(t['p50_us'])} ms "
                     f"({u['p50_us'] / t['p50_us']:.1f}x)" if u.get("p50_us") and t.get("p50_us") else "")
            add(f"{name} {LABEL[ours]}: cached reads >= 5x faster than uncached at p50",
                ratios["all reads"] >= 5,
                f"the read mix, one connection: {_ms(base['all reads']['p50_us'])} vs "
                f"{_ms(p['all reads']['p50_us'])} ms ({ratios['all reads']:.1f}x)" + by_read + under)
    return targets


def _ms(us: float | None) -> str:
    return "n/a" if us is None else f"{us / 1e3:.2f}"


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 100:.1f}%"


def render(res: dict, markdown: bool) -> str:
    table = markdown_table if markdown else text_table
    out: list[str] = []
    meta = res["meta"]
    m = meta["machine"]
    cfg = meta["config"]
    load = [x for x in (meta.get("loadavg_start"), meta.get("loadavg_end")) if x]
    load_line = "load average (1 min) at start/end: " + " / ".join(f"{x[0]:.2f}" for x in load)

    def h(title: str) -> None:
        out.append(("\n### " if markdown else "\n== ") + title + ("\n" if markdown else " =="))

    how = (f"wrk -t1 -c{cfg['connections']}, {cfg['warmup']:g} s warm-up, then {cfg['rounds']} rounds of "
           f"{cfg['duration']:g} s per variant (order rotating); {meta['pinning']}")
    if markdown:
        out.append("## End to end: the reference apps under load (`benchmarks/bench_e2e.py`)\n")
        out.append(f"- command: `{meta['command']}`")
        out.append(f"- date: {meta['date']}")
        out.append(f"- machine: {m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable), "
                   f"{m['memory_gib']} GiB, {m['os']}")
        out.append(f"- Python: {m['python']} ({m['compiler']})")
        out.append("- versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()))
        out.append(f"- database: {meta.get('database', 'n/a')}; Redis {meta.get('redis_version', 'n/a')} "
                   "(private server, a database number per variant)")
        out.append(f"- load: {how}")
        out.append(f"- {load_line}")
        out.append(f"- total time: {meta.get('seconds')} s")
    else:
        out.append(f"{meta['date']}  {m['cpu']}, {m['cores']} cores, {m['python']}")
        out.append(f"database: {meta.get('database', 'n/a')}; load: {how}")
        out.append(load_line)
    for fw in ("fastapi", "flask"):
        r = res.get(fw)
        if r is None:
            continue
        name = ("FastAPI: the restaurant app (docs/examples/restaurant), " if fw == "fastapi"
                else "Flask: the barbershop app (docs/examples/barbershop), ") + r.get("server", "")
        h(name)
        if "error" in r:
            out.append(f"ERROR: {r['error']}")
        mix = cfg["restaurant_mix"] if fw == "fastapi" else cfg["barbershop_mix"]
        out.append(("- " if markdown else "") + f"request mix (weights): {mix}")
        if markdown:
            out.append("")
        rows = []
        stale = r.get("stale", {})
        for v, d in r.get("variants", {}).items():
            st = stale_total(stale.get(v, {}))
            st_cell = "n/a" if st is None else f"{st['stale']} / {st['reads']}"
            win = ("" if not st or not st["stale"] else f"> {cfg['settle'] * 1e3:,.0f}" if st["unsettled"]
                   else f"{st['window_max']:.1f}")
            if "error" in d:
                rows.append([LABEL.get(v, v), "n/a", "n/a", "n/a", "n/a", "n/a", "n/a", "n/a", "n/a", st_cell, win])
                continue
            rows.append([
                LABEL.get(v, v), f"{d['rps_median']:,.0f}", f"{d['rps_best']:,.0f}", _ms(d["p50_us"]),
                _ms(d["p99_us"]), f"{d['queries_per_req']:.3f}", f"{d['queries_total']:,}",
                _pct(d["hit_rate"]) if d["hit_rate"] is not None else "",
                "n/a" if d["server_cpu_us_per_req"] is None else f"{d['server_cpu_us_per_req']:,.0f}",
                st_cell, win])
        if rows:
            out.append(table(["variant", "req/s median", "req/s best", "p50 ms", "p99 ms", "DB queries/req",
                              "DB queries", "hit rate", "app CPU µs/req", "stale reads", "stale window ms"], rows))
        notes = []
        for v, d in r.get("variants", {}).items():
            if d.get("errors") or d.get("non_2xx"):
                notes.append(f"{LABEL.get(v, v)}: {d['errors']} socket errors, {d['non_2xx']} non-2xx answers")
            if d.get("stale_writes_refused"):
                notes.append(f"{LABEL.get(v, v)}: {d['stale_writes_refused']:,} write-backs refused in the "
                             "measured runs (a load that raced an invalidation or the other worker's fill of "
                             "the same key: returned to its caller, not cached)")
        for v, e in r.get("unavailable", {}).items():
            notes.append(f"{LABEL.get(v, v)}: unavailable ({e})")
        if notes:
            if markdown:
                out.append("")
            out.extend((("- " if markdown else "  ") + x) for x in notes)
        # resources
        rows = []
        for v, d in r.get("variants", {}).items():
            if "error" in d:
                continue
            w = d["writes"]
            rows.append([LABEL.get(v, v), _pct(d["server_cpu_util"]),
                         "in the app" if fw == "flask" else
                         "" if d["db_cpu_us_per_req"] is None else f"{d['db_cpu_us_per_req']:,.0f}",
                         "" if d["redis_cpu_us_per_req"] is None else f"{d['redis_cpu_us_per_req']:,.0f}",
                         f"{d['requests_total']:,}",
                         f"{w['updates'] + w['creates'] + w['pays']:,} ({w['updates']:,}/{w['creates']:,}/{w['pays']:,})",
                         " ".join("/".join(str(x) for x in pw) for pw in d["requests_per_worker"])])
        if rows:
            h(f"{'FastAPI' if fw == 'fastapi' else 'Flask'}: where the time went")
            wname = "updates/creates/pays" if fw == "fastapi" else "-/bookings/payments"
            out.append(table(["variant", "app CPU (of one core)", "DB CPU µs/req", "Redis CPU µs/req",
                              "requests measured", f"writes ({wname})", "requests per worker, each run"], rows))
        # stale reads
        if stale:
            h(f"{'FastAPI' if fw == 'fastapi' else 'Flask'}: stale reads after writes ({WORKERS} workers; "
              f"{cfg['check_seconds']:g} s under the same load, then {cfg['check_alone_seconds']:g} s with the "
              f"checker alone; {cfg['lanes']} checker lanes)")
            rows = []
            for v, phases in stale.items():
                for phase, st in phases.items():
                    label = f"{LABEL.get(v, v)}, {PHASES[phase]}"
                    if "reads" not in st:
                        rows.append([label, "n/a", "", "", "", "", "", st.get("error", "")])
                        continue
                    kinds = ", ".join(f"{k} {x['stale']}/{x['reads']}" for k, x in st["by_kind"].items())
                    rows.append([label, f"{st['writes']:,}", f"{st['reads']:,}", f"{st['stale']:,}",
                                 f"{st['other_worker']['stale']}/{st['other_worker']['reads']}",
                                 f"{st['same_worker']['stale']}/{st['same_worker']['reads']}",
                                 "" if not st["stale"] else
                                 (f"{st['stale_window_ms_median']:.1f} / {st['stale_window_ms_max']:.1f}"
                                  if st["unsettled"] < st["stale"] else "")
                                 + (f" ({st['unsettled']} not fresh within {cfg['settle']:g} s)"
                                    if st["unsettled"] else ""),
                                 kinds + ("; " + "; ".join(st["errors"][:2]) if st["errors"] else "")])
            out.append(table(["variant", "writes", "reads checked", "stale", "other worker", "same worker",
                              "stale window ms (median / max)", "by endpoint (stale/reads)"], rows, "lrrrrrll"))
            if markdown:
                out.append("")
                out.append("- reads checked: made at once after the write's answer, through both workers (the "
                           "other worker first); stale: the answer did not show the write; window: ms from the "
                           "write's answer until a re-read on the same connection showed it (an upper bound: one "
                           "request's latency coarse)")
        # probe
        probe = r.get("probe", {})
        if probe:
            h(f"{'FastAPI' if fw == 'fastapi' else 'Flask'}: read latency with one connection "
              f"(p50 ms; {cfg['probe_seconds']:g} s per read kind, no writes)")
            vs = list(probe)
            rows = []
            base = probe.get("uncached", {})
            for kind in (*READ_KINDS[fw], "all reads"):
                if not any("p50_us" in probe[v].get(kind, {}) for v in vs):
                    continue
                row = [kind]
                for v in vs:
                    d = probe[v].get(kind, {})
                    cell = _ms(d.get("p50_us")) if "p50_us" in d else "n/a"
                    if v != "uncached" and "p50_us" in d and "p50_us" in base.get(kind, {}) and d["p50_us"]:
                        cell += f" ({base[kind]['p50_us'] / d['p50_us']:.1f}x)"
                    row.append(cell)
                rows.append(row)
            out.append(table(["read"] + [LABEL.get(v, v) for v in vs], rows))
            hr = [f"{LABEL.get(v, v)} {_pct(statistics.median([d['hit_rate'] for d in probe[v].values() if d.get('hit_rate') is not None]))}"
                  for v in vs if any(d.get("hit_rate") is not None for d in probe[v].values())]
            if hr:
                if markdown:
                    out.append("")
                out.append(("- " if markdown else "  ") + "hit rate during the probe (median over read kinds): "
                           + ", ".join(hr))
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
    for dist in ("tieredcache", "fastapi", "starlette", "uvicorn", "uvloop", "httptools", "pymongo", "nx-27017",
                 "redis", "fastapi-cache2", "cashews", "flask", "gunicorn", "flask-caching"):
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
    ap.add_argument("--quick", action="store_true", help="1 round of short runs (~1.5 minutes)")
    ap.add_argument("--frameworks", default="fastapi,flask", help="comma separated subset of fastapi,flask")
    ap.add_argument("--fastapi-variants", default=",".join(FASTAPI_VARIANTS),
                    help=f"restaurant variants (uncached is required): {', '.join(FASTAPI_VARIANTS)}")
    ap.add_argument("--flask-variants", default=",".join(FLASK_VARIANTS),
                    help=f"barbershop variants (uncached is required): {', '.join(FLASK_ALL)}")
    ap.add_argument("--rounds", type=int, default=None, help="measured runs per variant (default 3, quick 1)")
    ap.add_argument("--duration", type=float, default=None, help="seconds per measured run (default 6, quick 3)")
    ap.add_argument("--warmup", type=float, default=None, help="seconds of load before a variant's first run "
                                                               "(default 3, quick 2)")
    ap.add_argument("--check-seconds", type=float, default=None,
                    help="seconds of stale-read checking per variant, under load (default 6, quick 3; 0: off)")
    ap.add_argument("--check-alone-seconds", type=float, default=None,
                    help="then as long with the checker alone on the server (default 4, quick 2; 0: off)")
    ap.add_argument("--lanes", type=int, default=3, help="checker threads (each its own tenant or days)")
    ap.add_argument("--settle", type=float, default=1.0, help="seconds a stale answer is re-read until fresh")
    ap.add_argument("--probe-seconds", type=float, default=1.0, help="seconds per read kind in the latency probe")
    ap.add_argument("--probe-warmup", type=float, default=2.0,
                    help="seconds of the read mix (all connections) before a cached variant's probe")
    ap.add_argument("--probe-kinds", choices=("each", "mix"), default=None,
                    help="each read kind and then the read mix (default), or the read mix only (quick)")
    ap.add_argument("--probe-variants", default=None,
                    help="variants probed one connection at a time (default uncached,tiered-redis,tiered-l1; "
                         "quick: uncached,tiered-redis; 'all')")
    ap.add_argument("--connections", type=int, default=16, help="wrk connections")
    ap.add_argument("--threads", type=int, default=4, help="gunicorn gthread threads per worker")
    ap.add_argument("--restaurant-mix", default=RESTAURANT_MIX, help="wrk request mix for the restaurant")
    ap.add_argument("--barbershop-mix", default=BARBERSHOP_MIX, help="wrk request mix for the barbershop")
    ap.add_argument("--pin", choices=("auto", "split", "none"), default="auto",
                    help="split: app servers on CPU 0, everything else on CPU 1 (auto: split with 2+ cores)")
    ap.add_argument("--json", metavar="PATH", help="write every figure as JSON")
    ap.add_argument("--markdown", metavar="PATH", help="write a Markdown section for docs/benchmarks.md")
    a = ap.parse_args(argv)
    a.rounds = a.rounds or (1 if a.quick else 3)
    a.duration = a.duration or (2.0 if a.quick else 6.0)
    a.warmup = a.warmup if a.warmup is not None else (1.0 if a.quick else 3.0)
    a.check_seconds = a.check_seconds if a.check_seconds is not None else (1.5 if a.quick else 6.0)
    a.check_alone_seconds = (a.check_alone_seconds if a.check_alone_seconds is not None
                             else (1.5 if a.quick else 4.0))
    a.probe_kinds = a.probe_kinds or ("mix" if a.quick else "each")
    a.probe_variants = [x for x in (a.probe_variants or ("uncached,tiered-redis" if a.quick
                                                         else "uncached,tiered-redis,tiered-l1")).split(",") if x]
    a.fastapi_variants = [x for x in a.fastapi_variants.split(",") if x]
    a.flask_variants = [x for x in a.flask_variants.split(",") if x]
    if set(a.fastapi_variants) - set(FASTAPI_VARIANTS) or "uncached" not in a.fastapi_variants:
        ap.error(f"--fastapi-variants: among {', '.join(FASTAPI_VARIANTS)}, with uncached")
    if set(a.flask_variants) - set(FLASK_ALL) or "uncached" not in a.flask_variants:
        ap.error(f"--flask-variants: among {', '.join(FLASK_ALL)}, with uncached")
    return a


def main(argv: list[str]) -> int:
    cfg = parse_args(argv)
    atexit.register(cleanup)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    frameworks = [f.strip() for f in cfg.frameworks.split(",") if f.strip()]
    if set(frameworks) - {"fastapi", "flask"}:
        raise SystemExit("--frameworks takes fastapi and/or flask")
    if not wrk_path():
        raise SystemExit("wrk is not installed (apt-get install wrk; `make bench-e2e` installs it)")
    try:
        usable = sorted(os.sched_getaffinity(0))
    except AttributeError:
        usable = list(range(os.cpu_count() or 1))
    pin = None
    if cfg.pin == "split" or (cfg.pin == "auto" and len(usable) >= 2):
        if len(usable) < 2 or not shutil.which("taskset"):
            log("cannot pin (needs 2 usable cores and taskset): not pinning")
        else:
            pin = (str(usable[0]), str(usable[1]))
    pinning = (f"app servers pinned to CPU {pin[0]}; wrk, the checker, the database and Redis to CPU {pin[1]}"
               if pin else "not pinned")
    res: dict[str, Any] = {"meta": {
        "command": " ".join(["python", "benchmarks/bench_e2e.py"] + [shlex.quote(a) for a in argv]),
        "date": _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "machine": machine_info(),
        "versions": library_versions(),
        "config": {k: v for k, v in vars(cfg).items() if k not in ("json", "markdown")},
        "pinning": pinning,
        "loadavg_start": loadavg(),
    }}
    log(f"bench_e2e: {pinning}; load average {res['meta']['loadavg_start']}")
    started = time.perf_counter()
    workdir = tempfile.mkdtemp(prefix="bench_e2e_")
    _CLEANUPS.insert(0, lambda: shutil.rmtree(workdir, ignore_errors=True))
    try:
        need_redis = any((fw, v) in REDIS_DB for fw in frameworks
                         for v in (cfg.fastapi_variants if fw == "fastapi" else cfg.flask_variants))
        dbs = start_databases(frameworks, pin[1] if pin else None, workdir, need_redis)
        res["meta"]["database"] = dbs.get("mongo", "SQLite files (barbershop only)")
        res["meta"]["redis_version"] = dbs.get("redis_version")
        for fw in frameworks:
            res[fw] = bench_framework(fw, cfg, pin, dbs, workdir)
    finally:
        cleanup()
    res["meta"]["seconds"] = round(time.perf_counter() - started, 1)
    res["meta"]["loadavg_end"] = loadavg()
    res["targets"] = evaluate_targets(res)
    sys.stdout.write(render(res, markdown=False))
    if cfg.json:
        with open(cfg.json, "w", encoding="utf-8") as fh:
            json.dump(res, fh, indent=2, default=str)
            fh.write("\n")
        log(f"wrote {cfg.json}")
    if cfg.markdown:
        with open(cfg.markdown, "w", encoding="utf-8") as fh:
            fh.write(render(res, markdown=True))
        log(f"wrote {cfg.markdown}")
    log(f"total {res['meta']['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Chaos with Redis (issue 7, campaign 5): a FastAPI app with 2 workers serves mixed
requests while Redis is killed, paused, restarted, slowed and cut off, and its pub/sub
clients are killed.

    python hardening/chaos_run.py full|ci      (hardening/chaos.sh runs it)

Set-up, all on 127.0.0.1 under build/chaos/: a private redis-server
(``tieredcache.testing.RedisServer``), the delaying proxy ``chaos_proxy.py`` in front of
it, and ``uvicorn chaos_app:app --workers 2`` whose cache reaches Redis only through the
proxy (L2 and pub/sub invalidation). The load driver (asyncio + httpx, ``CONCURRENCY``
requests in flight, paced) sends 85 % reads (three cached read endpoints) and 15 %
writes (two invalidating write endpoints) over ``KEYS`` items, hot keys more often,
through a phase schedule:

    warmup, calm        no chaos (calm: the baseline hit rate)
    kill                SIGKILL, restarted on the same port 3 s later (empty)
    pause               SIGSTOP for 1.5 s (6x the socket timeout), SIGCONT
    client-pause        CLIENT PAUSE 1500 ALL
    restart             SHUTDOWN NOSAVE, started again at once (empty)
    slow-below          proxy adds 0.1 s per chunk (under the 0.25 s socket timeout)
    slow-above          proxy adds 0.4 s per chunk (over it)
    cut                 proxy cuts every connection, 3 times
    pubsub-kill         CLIENT KILL TYPE pubsub, 3 times
    recover, final      no chaos (final: the hit rate must have come back)

Pass criterion (each figure printed per phase):
- 0 failed requests (non-2xx answers, transport errors, driver timeouts);
- every request's latency <= BOUND = ``max(socket_timeout, connect_timeout)``: one wait
  on a Redis that does not answer, whichever it is (a miss whose read found Redis
  silent does not then wait again to store; a write waits once)
  + 0.25 s slack for a loaded machine (0.75 s with the defaults);
- 0 stale reads: a read that starts after a write's answer was received must show at
  least that write's version (whichever worker served either);
- the hit rate of ``final`` >= 0.8 x that of ``calm``, the app never restarted (the
  two worker pids of the start still serve), and both workers' ``cache.health()`` show
  Redis connected, invalidations subscribed and the breaker closed.

Ends with the line ``HARDENING chaos PASS|FAIL <seconds>s ...``; exit status 1 on FAIL.
Stale reads print what served them (worker, X-Cache, who loaded the value and when, how
long after the write's answer). Development switches: ``CHAOS_PHASES=calm,pause`` runs
those phases only; ``CHAOS_DUMP=final:0.5`` dumps the workers' stacks (faulthandler, into
build/chaos/app.log) 0.5 s into that phase.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

import httpx

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "src"))

from tieredcache.testing import RedisServer  # noqa: E402

SOCKET_TIMEOUT = 0.25  # the cache's defaults (src/tieredcache/_tiered.py, docs/configuration.md)
CONNECT_TIMEOUT = 0.5
SLACK = 0.25
BOUND = max(SOCKET_TIMEOUT, CONNECT_TIMEOUT) + SLACK
KEYS = 200
HOT = 40  # 70 % of the requests go to the first HOT keys
CONCURRENCY = 12
HIT_RATE_FRACTION = 0.8

MODES = {
    # requests, seconds per chaos phase, seconds per calm phase
    "ci": (2_000, 7.0, 9.0),
    "full": (10_000, 18.0, 20.0),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_command(port: int, *args: str, timeout: float = 2.0) -> str:
    """One command on a fresh direct connection to Redis (not through the proxy)."""
    payload = f"*{len(args)}\r\n".encode() + b"".join(f"${len(a.encode())}\r\n{a}\r\n".encode() for a in args)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(payload)
        try:
            return s.recv(4096).decode(errors="replace").strip()
        except OSError as exc:
            return f"<{type(exc).__name__}>"


class ProxyControl:
    def __init__(self, port: int) -> None:
        self.port = port

    def send(self, line: str) -> str:
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(line.encode() + b"\n")
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = s.recv(4096)
                if not chunk:
                    break
                buf += chunk
        return buf.decode().strip()


@dataclass
class PhaseStats:
    name: str
    requests: int = 0
    reads: int = 0
    writes: int = 0
    hits: int = 0
    failures: int = 0
    stale: int = 0
    latencies: list[float] = field(default_factory=list)
    over_bound: int = 0
    pids: dict[int, int] = field(default_factory=dict)
    failure_samples: list[str] = field(default_factory=list)
    stale_samples: list[dict] = field(default_factory=list)
    slow_samples: list[str] = field(default_factory=list)
    slowest: list[tuple[float, str]] = field(default_factory=list)

    def p(self, q: float) -> float:
        if not self.latencies:
            return 0.0
        xs = sorted(self.latencies)
        return xs[min(len(xs) - 1, int(q * len(xs)))]

    @property
    def hit_rate(self) -> float:
        return self.hits / self.reads if self.reads else 0.0


class Driver:
    def __init__(self, base: str, seed: int) -> None:
        self.base = base
        self.rng = random.Random(seed)
        self.acked: dict[int, int] = {}  # item -> highest version a received write answer showed
        self.acked_at: dict[int, float] = {}
        self.phase: PhaseStats | None = None
        self.clients: list[httpx.AsyncClient] = []  # one keep-alive connection per lane

    async def connect(self) -> None:
        """One client (one connection) per lane, half of them on each worker: the
        server's accept queue decides which worker gets a connection, so open until
        each worker has CONCURRENCY / 2."""
        per: dict[int, list[httpx.AsyncClient]] = {}
        for _ in range(200):
            c = httpx.AsyncClient(base_url=self.base, timeout=httpx.Timeout(10.0),
                                  limits=httpx.Limits(max_connections=1, max_keepalive_connections=1))
            pid = (await c.get("/_chaos/health")).json()["pid"]
            lane = per.setdefault(pid, [])
            if len(lane) < CONCURRENCY // 2:
                lane.append(c)
            else:
                await c.aclose()
            if len(per) >= 2 and all(len(v) >= CONCURRENCY // 2 for v in per.values()):
                break
        self.clients = [c for v in per.values() for c in v]
        if len(per) < 2:
            raise SystemExit("could not reach both workers")

    async def aclose(self) -> None:
        for c in self.clients:
            await c.aclose()

    def pick(self) -> int:
        if self.rng.random() < 0.7:
            return self.rng.randint(1, HOT)
        return self.rng.randint(1, KEYS)

    async def one(self, client: httpx.AsyncClient) -> None:
        ph = self.phase
        assert ph is not None
        item = self.pick()
        r = self.rng.random()
        if r < 0.15:
            kind, method, path = "write", "POST", f"/items/{item}" + ("/sync" if r < 0.05 else "")
        else:
            kind, method = "read", "GET"
            path = f"/items/{item}" + ("" if r < 0.5 else "/sync" if r < 0.8 else "/page")
        floor = self.acked.get(item, 0)
        t0 = time.monotonic()
        wall0 = time.time()
        try:
            resp = await client.request(method, path)
            body = resp.json() if resp.status_code == 200 else None
            status = resp.status_code
        except Exception as exc:
            status, body, resp = -1, None, None
            err = f"{type(exc).__name__}: {exc}"
        dt = time.monotonic() - t0
        ph.requests += 1
        ph.latencies.append(dt)
        ph.slowest.append((dt, f"{method} {path} {resp.headers.get('x-cache', '') if resp is not None else ''} "
                               f"pid {resp.headers.get('x-pid', '?') if resp is not None else '?'}"))
        ph.slowest.sort(reverse=True)
        del ph.slowest[3:]
        if dt > BOUND:
            ph.over_bound += 1
            if len(ph.slow_samples) < 5:
                ph.slow_samples.append(f"{method} {path} {dt * 1000:.0f} ms pid "
                                       f"{resp.headers.get('x-pid', '?') if resp is not None else '?'}")
        if resp is not None:
            pid = int(resp.headers.get("x-pid", "0") or 0)
            ph.pids[pid] = ph.pids.get(pid, 0) + 1
        if status != 200 or body is None:
            ph.failures += 1
            if len(ph.failure_samples) < 5:
                ph.failure_samples.append(f"{method} {path}: " + (err if status == -1 else f"HTTP {status}"))
            return
        if kind == "write":
            ph.writes += 1
            v = int(body["version"])
            if v > self.acked.get(item, 0):
                self.acked[item] = v
                self.acked_at[item] = time.time()
            return
        ph.reads += 1
        if resp.headers.get("x-cache") == "HIT":
            ph.hits += 1
        if int(body["version"]) < floor:
            ph.stale += 1
            if len(ph.stale_samples) < 10:
                ph.stale_samples.append({
                    "path": path, "got": body["version"], "floor": floor, "x_cache": resp.headers.get("x-cache"),
                    "served_pid": resp.headers.get("x-pid"), "loaded_pid": body.get("loaded_pid"),
                    "loaded_ms_before_read": round((wall0 - body.get("loaded_at", 0)) * 1000, 1),
                    "write_acked_ms_before_read": round((wall0 - self.acked_at.get(item, 0)) * 1000, 1),
                })

    async def run_phase(self, ph: PhaseStats, n: int, seconds: float) -> None:
        """n requests paced evenly over `seconds`, CONCURRENCY at most in flight."""
        self.phase = ph
        start = time.monotonic()
        gap = seconds / max(n, 1)
        counter = iter(range(n))

        async def lane(client: httpx.AsyncClient) -> None:
            for i in counter:
                due = start + i * gap
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                await self.one(client)

        await asyncio.gather(*(lane(c) for c in self.clients))


async def worker_health(base: str, want: int = 2, tries: int = 60) -> dict[int, dict]:
    """GET /_chaos/health on fresh connections until `want` distinct workers answered."""
    seen: dict[int, dict] = {}
    async with httpx.AsyncClient(base_url=base, timeout=10.0) as c:
        for _ in range(tries):
            try:
                r = await c.get("/_chaos/health", headers={"Connection": "close"})
                if r.status_code == 200:
                    seen[r.json()["pid"]] = r.json()
            except httpx.HTTPError:
                pass
            if len(seen) >= want:
                break
    return seen


def healthy(h: dict) -> bool:
    l2 = h["health"]["l2"]
    return bool(l2["connected"] and l2.get("invalidations_subscribed") and l2["breaker"] == "closed")


async def main(mode: str) -> int:
    t_start = time.monotonic()
    total, chaos_s, calm_s = MODES[mode]
    work = os.path.join(ROOT, "build", "chaos")
    os.makedirs(work, exist_ok=True)
    db_path = os.path.join(work, "chaos.db")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(db_path + suffix):
            os.unlink(db_path + suffix)
    sys.path.insert(0, HERE)
    from chaos_app import init_db  # noqa: E402 (imports tieredcache, no Redis yet)

    init_db(db_path, KEYS)

    server = RedisServer().start()
    rport = server.port
    assert rport is not None
    pport, cport, aport = free_port(), free_port(), free_port()
    py = sys.executable
    proxy = subprocess.Popen([py, os.path.join(HERE, "chaos_proxy.py"), "--port", str(pport),
                              "--upstream-port", str(rport), "--control-port", str(cport)],
                             stdout=subprocess.PIPE, start_new_session=True)
    assert proxy.stdout is not None
    if proxy.stdout.readline().strip() != b"ready":
        os.killpg(proxy.pid, signal.SIGKILL)
        proxy.wait()
        server.stop()
        raise SystemExit("the proxy did not start")
    control = ProxyControl(cport)
    env = dict(os.environ, CHAOS_REDIS_URL=f"redis://127.0.0.1:{pport}/0", CHAOS_DB=db_path,
               PYTHONPATH=os.pathsep.join([os.path.join(ROOT, "src"), HERE]))
    app_log = open(os.path.join(work, "app.log"), "w")
    app = subprocess.Popen([py, "-m", "uvicorn", "chaos_app:app", "--app-dir", HERE, "--host", "127.0.0.1",
                            "--port", str(aport), "--workers", "2", "--log-level", "warning", "--timeout-keep-alive", "600",
                            "--no-access-log"], env=env, stdout=app_log, stderr=subprocess.STDOUT,
                           start_new_session=True)
    base = f"http://127.0.0.1:{aport}"
    result = 1
    try:
        deadline = time.monotonic() + 60
        start_pids: dict[int, dict] = {}
        while time.monotonic() < deadline and len(start_pids) < 2:
            await asyncio.sleep(0.5)
            if app.poll() is not None:
                raise SystemExit("uvicorn exited at startup; see build/chaos/app.log")
            start_pids = await worker_health(base, tries=20)
        if len(start_pids) < 2:
            raise SystemExit("the app did not answer from 2 workers within 60 s")
        print(f"chaos: redis :{rport} (pid {server.pid}), proxy :{pport}, app :{aport} workers "
              f"{sorted(start_pids)}; {total} requests ({mode}); latency bound {BOUND:.2f} s", flush=True)

        async def kill() -> None:
            await asyncio.to_thread(server.kill)
            await asyncio.sleep(3.0)
            await asyncio.to_thread(server.start)

        async def pause() -> None:
            await asyncio.to_thread(server.pause)
            await asyncio.sleep(1.5)
            await asyncio.to_thread(server.resume)

        async def client_pause() -> None:
            await asyncio.to_thread(redis_command, rport, "CLIENT", "PAUSE", "1500", "ALL")
            if os.environ.get("CHAOS_DUMP"):  # development: stacks of the workers mid-pause
                await asyncio.sleep(0.8)
                for pid in start_pids:
                    os.kill(pid, signal.SIGUSR1)

        async def restart() -> None:
            await asyncio.to_thread(redis_command, rport, "SHUTDOWN", "NOSAVE")
            await asyncio.to_thread(server.restart)  # reaps the exited process, starts on the same port

        async def slow(delay: float, seconds: float) -> Callable[[], Awaitable[None]]:
            async def act() -> None:
                await asyncio.to_thread(control.send, f"delay {delay}")
                await asyncio.sleep(seconds)
                await asyncio.to_thread(control.send, "delay 0")
            return act

        async def repeat(fn: Callable[[], Any], times: int, gap: float) -> None:
            for _ in range(times):
                await asyncio.to_thread(fn)
                await asyncio.sleep(gap)

        async def cut() -> None:
            await repeat(lambda: control.send("cut"), 3, chaos_s / 4)

        async def pubsub_kill() -> None:
            await repeat(lambda: redis_command(rport, "CLIENT", "KILL", "TYPE", "pubsub"), 3, chaos_s / 4)

        schedule: list[tuple[str, float, Callable[[], Awaitable[None]] | None]] = [
            ("warmup", calm_s, None),
            ("calm", calm_s, None),
            ("kill", chaos_s, kill),
            ("pause", chaos_s, pause),
            ("client-pause", chaos_s, client_pause),
            ("restart", chaos_s, restart),
            ("slow-below", chaos_s, await slow(0.1, chaos_s * 0.6)),
            ("slow-above", chaos_s, await slow(0.4, chaos_s * 0.4)),
            ("cut", chaos_s, cut),
            ("pubsub-kill", chaos_s, pubsub_kill),
            ("recover", calm_s / 2, None),
            ("final", calm_s, None),
        ]
        only = os.environ.get("CHAOS_PHASES")  # development: "calm,pause" runs those phases only
        if only:
            schedule = [p for p in schedule if p[0] in only.split(",")]
        span = sum(s for _, s, _ in schedule)
        counts = [int(round(total * s / span)) for _, s, _ in schedule]
        counts[-1] += total - sum(counts)
        driver = Driver(base, seed=7)
        await driver.connect()
        phases: list[PhaseStats] = []
        for (name, seconds, action), n in zip(schedule, counts):
            ph = PhaseStats(name)
            phases.append(ph)
            task = asyncio.create_task(action()) if action is not None else None
            for spec in os.environ.get("CHAOS_DUMP", "").split(","):  # development: "final:0.5" dumps
                if spec.startswith(name + ":"):                          # the workers' stacks then
                    asyncio.get_running_loop().call_later(
                        float(spec.split(":")[1]), lambda: [os.kill(p, signal.SIGUSR1) for p in start_pids])
            await driver.run_phase(ph, n, seconds)
            if task is not None:
                await task
            print(f"  {name:<13} {ph.requests:>5} req  {ph.failures} failed  max {max(ph.latencies) * 1000:6.0f} ms  "
                  f"p99 {ph.p(0.99) * 1000:6.0f} ms  over bound {ph.over_bound}  stale {ph.stale}  "
                  f"hit rate {ph.hit_rate:.2f}  workers {dict(sorted(ph.pids.items()))}", flush=True)
            print("      slowest: " + "; ".join(f"{d * 1000:.0f} ms {w}" for d, w in ph.slowest))
            for s in ph.failure_samples + ph.slow_samples:
                print(f"      {s}")
            for s in ph.stale_samples:
                print(f"      stale: {json.dumps(s)}")
        await driver.aclose()
        control.send("delay 0")

        # health of both workers, recovered without a restart (a few seconds for probes)
        end_pids: dict[int, dict] = {}
        for _ in range(20):
            end_pids = await worker_health(base)
            if len(end_pids) >= 2 and all(healthy(h) for h in end_pids.values()):
                break
            await asyncio.sleep(0.5)
        for pid, h in sorted(end_pids.items()):
            print(f"  worker {pid}: health {h['health']['status']} l2 {json.dumps(h['health']['l2'])} "
                  f"stats {json.dumps(h['stats'])} l2 {json.dumps(h['l2'])}")

        reqs = sum(p.requests for p in phases)
        failed = sum(p.failures for p in phases)
        stale = sum(p.stale for p in phases)
        over = sum(p.over_bound for p in phases)
        worst = max(max(p.latencies) for p in phases)
        calm = next(p for p in phases if p.name == "calm")
        final = phases[-1]
        problems = []
        if reqs != total:
            problems.append(f"{reqs} requests sent, {total} planned")
        if failed:
            problems.append(f"{failed} failed requests")
        if over:
            problems.append(f"{over} requests over {BOUND:.2f} s (max {worst * 1000:.0f} ms)")
        if stale:
            problems.append(f"{stale} stale reads")
        if final.hit_rate < HIT_RATE_FRACTION * calm.hit_rate:
            problems.append(f"hit rate not recovered: final {final.hit_rate:.2f} < {HIT_RATE_FRACTION} x calm "
                            f"{calm.hit_rate:.2f}")
        if set(end_pids) != set(start_pids):
            problems.append(f"workers changed: {sorted(start_pids)} -> {sorted(end_pids)}")
        if not all(healthy(h) for h in end_pids.values()):
            problems.append("a worker does not report Redis healthy")
        if app.poll() is not None:
            problems.append("the app exited")
        for p in problems:
            print(f"  FAIL: {p}")
        result = 1 if problems else 0
        dur = time.monotonic() - t_start
        print(f"HARDENING chaos {'FAIL' if problems else 'PASS'} {dur:.0f}s requests={reqs} failed={failed} "
              f"max_ms={worst * 1000:.0f} bound_ms={BOUND * 1000:.0f} over_bound={over} stale={stale} "
              f"hit_rate_calm={calm.hit_rate:.2f} hit_rate_final={final.hit_rate:.2f} "
              f"loadavg={os.getloadavg()[0]:.1f}", flush=True)
    finally:
        for proc in (app, proxy):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        app_log.close()
        server.stop()
    return result


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in MODES:
        raise SystemExit("usage: chaos_run.py full|ci")
    began = time.monotonic()
    try:
        status = asyncio.run(main(sys.argv[1]))
    except (Exception, SystemExit) as exc:  # set-up failed: still the one-line summary
        if isinstance(exc, SystemExit) and exc.code in (0, None):
            raise
        print(f"  FAIL: {exc}")
        print(f"HARDENING chaos FAIL {time.monotonic() - began:.0f}s setup error", flush=True)
        status = 1
    sys.exit(status)

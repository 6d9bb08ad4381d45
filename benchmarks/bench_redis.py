"""Redis clients against one private redis-server, measured in one run.

    cd /work/main && PYTHONPATH=src .venv/bin/python benchmarks/bench_redis.py            # ~ 1.5 minutes
    PYTHONPATH=src .venv/bin/python benchmarks/bench_redis.py --quick                      # ~ 30 s
    PYTHONPATH=src .venv/bin/python benchmarks/bench_redis.py --json out.json --markdown out.md
    PYTHONPATH=src .venv/bin/python benchmarks/bench_redis.py --contenders RedisClient,redis-py

The benchmark starts its own redis-server (``tieredcache._redis_server.RedisServer``: a
free loopback port, no persistence) and every contender talks to it over TCP loopback.

Contenders (``CONTENDERS``; a name not installed shows as n/a):

  bare socket+hiredis   the floor: one blocking socket, a ``hiredis.Reader``, no pool,
                        no timeout, no error mapping
  RedisClient           ours (tieredcache._redis), default settings (socket_timeout 0.25 s)
  redis-py              ``redis.Redis`` with the hiredis parser, RESP2, socket_timeout 0.25 s
  AsyncRedisClient      ours (tieredcache._aioredis), in one asyncio loop
  redis-py asyncio      ``redis.asyncio.Redis``, hiredis parser, RESP2, same loop setup

More rows (TieredCache's L2 hit, say) are added by appending a ``Contender`` subclass to
``CONTENDERS``: ``prepare()`` stores the values its own way, ``get()`` reads one key.

Figures, for 100 B and 10 KB values:

  GET latency   one GET at a time, each timed alone (perf_counter_ns): median and p99 in
                µs. Sync contenders are interleaved over --passes passes.
  CPU per GET   process CPU time (user + system, ``time.process_time``) over the same
                calls, in µs: what the client costs, without the server's share.
  pipeline      100 GETs per round trip (``pipeline()`` / redis-py ``pipeline
                (transaction=False)``): GETs per second.
  MGET          MGET of 100 keys: keys per second.
  redis-benchmark  the C client from the Redis distribution against the same server:
                ``-c 1 -P 1`` and ``-c 1 -P 16``, ``-t get,set``, ``-d 100`` and ``-d 10000``:
                requests per second and p50.

Ratios are contender / reference: latency and CPU below 1.00x are better, throughput
above 1.00x is better. Figures depend on the machine (a VM with 2 vCPUs shares them with
the server); compare ratios, never copy the figures into tests.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as _dt
import faulthandler
import gc
import json
import os
import platform
import re
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import time
from typing import Any, Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _report import fmt_ratio, machine_info, markdown_table, text_table  # noqa: E402

import hiredis  # noqa: E402

from tieredcache._redis_server import RedisServer  # noqa: E402

SIZES = (100, 10_000)
BATCH = 100  # GETs per pipeline / keys per MGET
NKEYS = 1000  # keys per value size
FLOOR = "bare socket+hiredis"
OURS = "RedisClient"
PEER = "redis-py"
AOURS = "AsyncRedisClient"
APEER = "redis-py asyncio"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------
# Contenders
# --------------------------------------------------------------------------------------


class Contender:
    """One client under test. Sync contenders implement ``get``, ``mget``, ``pipeline_get``;
    async ones (``is_async = True``) the same as coroutines. ``mget`` / ``pipeline_get``
    may stay ``None`` when the contender has no such operation."""

    name = "?"
    is_async = False
    mget: Callable[..., Any] | None = None
    pipeline_get: Callable[..., Any] | None = None

    def available(self) -> str | None:
        """``None``, or why the contender cannot run (a library not installed)."""
        return None

    def open(self, url: str) -> None:
        raise NotImplementedError

    def prepare(self, url: str, keys: list[str], value: bytes) -> list[str]:
        """Store ``value`` under ``keys`` and return the keys ``get()`` takes. The default
        stores plain Redis strings with a raw connection."""
        with _Bare(url) as raw:
            raw.pipeline_set(keys, value)
        return keys

    def get(self, key: str) -> Any:
        raise NotImplementedError

    def close(self) -> None:
        pass


class _Bare:
    """The floor: a blocking socket and a hiredis Reader, nothing else."""

    def __init__(self, url: str) -> None:
        from tieredcache._redis import RedisURL

        u = RedisURL.parse(url)
        self.sock = socket.create_connection((u.host, u.port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = hiredis.Reader()
        self.buf = bytearray(65536)

    def command(self, *args: Any) -> Any:
        self.sock.sendall(hiredis.pack_command(args))
        reader = self.reader
        reply = reader.gets()
        while reply is False:
            n = self.sock.recv_into(self.buf)
            reader.feed(self.buf, 0, n)
            reply = reader.gets()
        return reply

    def many(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        self.sock.sendall(b"".join(hiredis.pack_command(c) for c in commands))
        out: list[Any] = []
        reader = self.reader
        while len(out) < len(commands):
            reply = reader.gets()
            if reply is False:
                n = self.sock.recv_into(self.buf)
                reader.feed(self.buf, 0, n)
            else:
                out.append(reply)
        return out

    def pipeline_set(self, keys: list[str], value: bytes) -> None:
        for i in range(0, len(keys), 500):
            self.many([("SET", k, value) for k in keys[i : i + 500]])

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> _Bare:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class BareContender(Contender):
    name = FLOOR

    def open(self, url: str) -> None:
        self.c = _Bare(url)

    def get(self, key: str) -> Any:
        return self.c.command("GET", key)

    def mget(self, keys: list[str]) -> Any:
        return self.c.command("MGET", *keys)

    def pipeline_get(self, keys: list[str]) -> Any:
        return self.c.many([("GET", k) for k in keys])

    def close(self) -> None:
        self.c.close()


class OursContender(Contender):
    name = OURS

    def open(self, url: str) -> None:
        from tieredcache._redis import RedisClient

        self.c = RedisClient(url)
        execute = self.c.execute
        self.get = lambda key: execute("GET", key)  # type: ignore[method-assign]

    def mget(self, keys: list[str]) -> Any:
        return self.c.execute("MGET", *keys)

    def pipeline_get(self, keys: list[str]) -> Any:
        return self.c.pipeline([("GET", k) for k in keys])

    def close(self) -> None:
        self.c.close()


class RedisPyContender(Contender):
    name = PEER

    def available(self) -> str | None:
        try:
            import redis.utils
        except ImportError:
            return "redis-py not installed (pip install 'redis>=5')"
        if not redis.utils.HIREDIS_AVAILABLE:
            return "redis-py without the hiredis parser"
        return None

    def open(self, url: str) -> None:
        import redis

        self.c = redis.Redis.from_url(url, socket_timeout=0.25, socket_connect_timeout=0.5, protocol=2)
        self.get = self.c.get  # type: ignore[method-assign]

    def mget(self, keys: list[str]) -> Any:
        return self.c.mget(keys)

    def pipeline_get(self, keys: list[str]) -> Any:
        p = self.c.pipeline(transaction=False)
        for k in keys:
            p.get(k)
        return p.execute()

    def close(self) -> None:
        self.c.close()


class AsyncOursContender(Contender):
    name = AOURS
    is_async = True

    def open(self, url: str) -> None:
        from tieredcache._aioredis import AsyncRedisClient

        self.c = AsyncRedisClient(url)
        execute = self.c.execute
        self.get = lambda key: execute("GET", key)  # type: ignore[method-assign]

    def mget(self, keys: list[str]) -> Any:
        return self.c.execute("MGET", *keys)

    def pipeline_get(self, keys: list[str]) -> Any:
        return self.c.pipeline([("GET", k) for k in keys])

    def close(self) -> None:
        self.c.close()


class AsyncRedisPyContender(Contender):
    name = APEER
    is_async = True

    def available(self) -> str | None:
        return RedisPyContender().available()

    def open(self, url: str) -> None:
        import redis.asyncio

        self.c = redis.asyncio.Redis.from_url(url, socket_timeout=0.25, socket_connect_timeout=0.5, protocol=2)
        self.get = self.c.get  # type: ignore[method-assign]

    def mget(self, keys: list[str]) -> Any:
        return self.c.mget(keys)

    async def _pipeline_get(self, keys: list[str]) -> Any:
        p = self.c.pipeline(transaction=False)
        for k in keys:
            p.get(k)
        return await p.execute()

    def pipeline_get(self, keys: list[str]) -> Any:
        return self._pipeline_get(keys)

    async def aclose(self) -> None:
        await self.c.aclose()


CONTENDERS: list[Contender] = [
    BareContender(),
    OursContender(),
    RedisPyContender(),
    AsyncOursContender(),
    AsyncRedisPyContender(),
]


# --------------------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------------------


def _percentile(sorted_ns: list[int], q: float) -> float:
    i = min(len(sorted_ns) - 1, max(0, int(round(q * (len(sorted_ns) - 1)))))
    return sorted_ns[i] / 1000.0


def _time_gets_sync(get: Callable[[str], Any], keys: list[str], n: int, out: list[int]) -> float:
    """Time ``n`` GETs one by one into ``out`` (ns); return the process CPU seconds."""
    pc = time.perf_counter_ns
    nk = len(keys)
    append = out.append
    cpu0 = time.process_time()
    for i in range(n):
        k = keys[i % nk]
        t0 = pc()
        get(k)
        append(pc() - t0)
    return time.process_time() - cpu0


async def _time_gets_async(get: Callable[[str], Any], keys: list[str], n: int, out: list[int]) -> float:
    pc = time.perf_counter_ns
    nk = len(keys)
    append = out.append
    cpu0 = time.process_time()
    for i in range(n):
        k = keys[i % nk]
        t0 = pc()
        await get(k)
        append(pc() - t0)
    return time.process_time() - cpu0


def _throughput_sync(fn: Callable[[list[str]], Any], keys: list[str], rounds: int) -> float:
    batches = [keys[i : i + BATCH] for i in range(0, len(keys) - BATCH + 1, BATCH)]
    t0 = time.perf_counter()
    for r in range(rounds):
        fn(batches[r % len(batches)])
    return rounds * BATCH / (time.perf_counter() - t0)


async def _throughput_async(fn: Callable[[list[str]], Any], keys: list[str], rounds: int) -> float:
    batches = [keys[i : i + BATCH] for i in range(0, len(keys) - BATCH + 1, BATCH)]
    t0 = time.perf_counter()
    for r in range(rounds):
        await fn(batches[r % len(batches)])
    return rounds * BATCH / (time.perf_counter() - t0)


def _check(value: Any, expected: bytes, who: str) -> None:
    if value != expected:
        raise SystemExit(f"{who}: GET returned {value!r:.60} instead of the stored value")


def measure_clients(cfg: argparse.Namespace, url: str, contenders: list[Contender]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for size in SIZES:
        value = os.urandom(size // 2).hex().encode()[:size]
        log(f"values of {size} B")
        per: dict[str, dict[str, Any]] = {}
        sync = [c for c in contenders if not c.is_async]
        asyncs = [c for c in contenders if c.is_async]
        keys_of: dict[str, list[str]] = {}
        for c in contenders:
            base = [f"bench:{size}:{c.name}:{i}" for i in range(NKEYS)]
            keys_of[c.name] = c.prepare(url, base, value)
            per[c.name] = {"samples": [], "cpu_s": 0.0, "n": 0}

        # GET latency and CPU: sync contenders interleaved over the passes.
        for c in sync:
            c.open(url)
            _check(c.get(keys_of[c.name][0]), value, c.name)
        n_pass = max(1, cfg.gets // cfg.passes)
        for p in range(cfg.passes):
            for c in sync:
                keys = keys_of[c.name]
                _time_gets_sync(c.get, keys, cfg.warmup, [])
                gc.disable()
                try:
                    per[c.name]["cpu_s"] += _time_gets_sync(c.get, keys, n_pass, per[c.name]["samples"])
                finally:
                    gc.enable()
                per[c.name]["n"] += n_pass
        for c in sync:
            keys = keys_of[c.name]
            if c.pipeline_get is not None:
                c.pipeline_get(keys[:BATCH])
                per[c.name]["pipeline_ops"] = _throughput_sync(c.pipeline_get, keys, cfg.rounds)
            if c.mget is not None:
                c.mget(keys[:BATCH])
                per[c.name]["mget_keys"] = _throughput_sync(c.mget, keys, cfg.rounds)
            c.close()

        if asyncs:

            async def run_async() -> None:
                for c in asyncs:
                    c.open(url)
                    _check(await c.get(keys_of[c.name][0]), value, c.name)
                for p in range(cfg.passes):
                    for c in asyncs:
                        keys = keys_of[c.name]
                        await _time_gets_async(c.get, keys, cfg.warmup, [])
                        gc.disable()
                        try:
                            per[c.name]["cpu_s"] += await _time_gets_async(
                                c.get, keys, n_pass, per[c.name]["samples"]
                            )
                        finally:
                            gc.enable()
                        per[c.name]["n"] += n_pass
                for c in asyncs:
                    keys = keys_of[c.name]
                    if c.pipeline_get is not None:
                        await c.pipeline_get(keys[:BATCH])
                        per[c.name]["pipeline_ops"] = await _throughput_async(c.pipeline_get, keys, cfg.rounds)
                    if c.mget is not None:
                        await c.mget(keys[:BATCH])
                        per[c.name]["mget_keys"] = await _throughput_async(c.mget, keys, cfg.rounds)
                    aclose = getattr(c, "aclose", None)
                    if aclose is not None:
                        await aclose()
                    else:
                        c.close()

            asyncio.run(run_async())

        out: dict[str, Any] = {}
        for c in contenders:
            d = per[c.name]
            samples = sorted(d["samples"])
            out[c.name] = {
                "get_p50_us": round(_percentile(samples, 0.5), 2),
                "get_p99_us": round(_percentile(samples, 0.99), 2),
                "get_mean_us": round(statistics.fmean(samples) / 1000.0, 2),
                "cpu_per_get_us": round(d["cpu_s"] / d["n"] * 1e6, 2),
                "gets": d["n"],
                "pipeline_gets_per_s": round(d["pipeline_ops"]) if "pipeline_ops" in d else None,
                "mget_keys_per_s": round(d["mget_keys"]) if "mget_keys" in d else None,
            }
        results[str(size)] = out
    return results


# --------------------------------------------------------------------------------------
# redis-benchmark
# --------------------------------------------------------------------------------------

_RB_LINE = re.compile(r"^\s*(\w+):\s*([\d.]+) requests per second(?:, p50=([\d.]+) msec)?", re.M)


def measure_redis_benchmark(cfg: argparse.Namespace, server: RedisServer) -> dict[str, Any] | str:
    binary = shutil.which("redis-benchmark")
    if binary is None:
        return "redis-benchmark not on PATH"
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    out: dict[str, Any] = {}
    for size in SIZES:
        for pipe in (1, 16):
            n = cfg.rb_requests * (4 if pipe > 1 else 1)
            argv = [binary, "-h", server.host, "-p", str(server.port), "-c", "1", "-P", str(pipe),
                    "-t", "get,set", "-d", str(size), "-n", str(n), "-q"]  # fmt: skip
            log(" ".join(argv[1:]))
            proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False, timeout=600)
            text = proc.stdout.replace("\r", "\n")
            for m in _RB_LINE.finditer(text):
                op, rps, p50 = m.group(1).lower(), float(m.group(2)), m.group(3)
                out[f"{op} d={size} P={pipe}"] = {
                    "requests_per_s": round(rps),
                    "p50_us": round(float(p50) * 1000, 1) if p50 else None,
                    "command": " ".join(["redis-benchmark"] + argv[1:]),
                }
    return out


# --------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b <= 0:
        return None
    return round(a / b, 3)


def _f(v: float | None, digits: int = 1) -> str:
    if v is None:
        return "n/a"
    return f"{v:,.{digits}f}" if v < 1000 else f"{v:,.0f}"


def render(res: dict[str, Any], markdown: bool) -> str:
    table = markdown_table if markdown else text_table
    lines: list[str] = []
    meta = res["meta"]
    m = meta["machine"]
    h = "### " if markdown else ""
    lines.append(f"{h}Redis clients ({meta['date']})")
    lines.append("")
    lines.append(
        f"{m['cpu']}, {m['usable_cores']} usable cores; {m['os']}; {m['python']}; "
        f"redis-server {meta['redis_server']}; hiredis {meta['versions'].get('hiredis')}; "
        f"redis-py {meta['versions'].get('redis')}. Server and client share the machine (TCP loopback)."
    )
    lines.append(f"Command: `{meta['command']}`; load average {meta['loadavg_start']} -> {meta['loadavg_end']}.")
    if meta["unavailable"]:
        lines.append("Not measured: " + "; ".join(f"{k}: {v}" for k, v in meta["unavailable"].items()))
    lines.append("")
    clients = res["clients"]
    names = [n for n in meta["contenders"]]
    for size in SIZES:
        d = clients[str(size)]
        floor = d.get(FLOOR, {})
        lines.append(f"{h}GET, {size:,} B values: latency (µs, each call timed alone) and client CPU (µs per GET)")
        lines.append("")
        rows = []
        for n in names:
            r = d.get(n)
            if r is None:
                continue
            ref = d.get(APEER if n == AOURS else PEER, {})
            rows.append([
                n, _f(r["get_p50_us"]), _f(r["get_p99_us"]), fmt_ratio(_ratio(r["get_p50_us"], floor.get("get_p50_us"))),
                fmt_ratio(_ratio(r["get_p50_us"], ref.get("get_p50_us"))) if n in (OURS, AOURS) else "",
                _f(r["cpu_per_get_us"]),
                fmt_ratio(_ratio(r["cpu_per_get_us"], ref.get("cpu_per_get_us"))) if n in (OURS, AOURS) else "",
            ])  # fmt: skip
        lines.append(table(["client", "p50", "p99", "p50 / floor", "p50 / redis-py", "CPU/GET", "CPU / redis-py"], rows))
        lines.append("")
        lines.append(f"{h}Throughput, {size:,} B values: {BATCH} GETs per pipeline, {BATCH} keys per MGET")
        lines.append("")
        rows = []
        for n in names:
            r = d.get(n)
            if r is None:
                continue
            ref = d.get(APEER if n == AOURS else PEER, {})
            rows.append([
                n, _f(r["pipeline_gets_per_s"], 0), fmt_ratio(_ratio(r["pipeline_gets_per_s"], floor.get("pipeline_gets_per_s"))),
                fmt_ratio(_ratio(r["pipeline_gets_per_s"], ref.get("pipeline_gets_per_s"))) if n in (OURS, AOURS) else "",
                _f(r["mget_keys_per_s"], 0), fmt_ratio(_ratio(r["mget_keys_per_s"], floor.get("mget_keys_per_s"))),
                fmt_ratio(_ratio(r["mget_keys_per_s"], ref.get("mget_keys_per_s"))) if n in (OURS, AOURS) else "",
            ])  # fmt: skip
        lines.append(table(["client", "pipelined GET/s", "/ floor", "/ redis-py", "MGET keys/s", "/ floor", "/ redis-py"], rows))
        lines.append("")
    rb = res["redis_benchmark"]
    lines.append(f"{h}redis-benchmark (C client, -c 1), same server")
    lines.append("")
    if isinstance(rb, str):
        lines.append(f"n/a: {rb}")
    else:
        rows = []
        for key, r in rb.items():
            op, dsz, pipe = key.split()
            size = dsz.split("=")[1]
            ours = clients.get(size, {}).get(OURS, {})
            extra = ""
            if op == "get" and pipe == "P=1" and ours.get("get_mean_us"):
                extra = fmt_ratio(_ratio(1e6 / ours["get_mean_us"], r["requests_per_s"]))
            rows.append([f"{op.upper()} -d {size} -{pipe.replace('=', ' ')}", _f(r["requests_per_s"], 0), _f(r["p50_us"]), extra])
        lines.append(table(["test", "requests/s", "p50 µs", "RedisClient GET/s / this"], rows))
        lines.append("")
    lines.append(
        "Ratios: latency and CPU below 1.00x are better; throughput above 1.00x is better. "
        "RedisClient GET/s is 1 / its mean GET latency."
    )
    lines.append("")
    return "\n".join(lines)


def _loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def library_versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for dist in ("tieredcache", "hiredis", "redis"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer calls (~30 s)")
    ap.add_argument("--contenders", default=None, help="comma separated names to include (the floor always is)")
    ap.add_argument("--gets", type=int, default=None, help="timed GETs per contender and size (default 40k, quick 10k)")
    ap.add_argument("--passes", type=int, default=5, help="passes the timed GETs are split into")
    ap.add_argument("--warmup", type=int, default=None, help="untimed GETs before each pass (default 1000, quick 300)")
    ap.add_argument("--rounds", type=int, default=None, help="pipelines / MGETs per throughput figure (default 2000, quick 500)")
    ap.add_argument("--rb-requests", type=int, default=None, help="redis-benchmark -n at -P 1 (x4 at -P 16); default 50k, quick 10k")
    ap.add_argument("--no-redis-benchmark", action="store_true")
    ap.add_argument("--json", metavar="PATH", help="write every figure as JSON")
    ap.add_argument("--markdown", metavar="PATH", help="write a Markdown section for docs/benchmarks.md")
    a = ap.parse_args(argv)
    a.gets = a.gets or (10_000 if a.quick else 40_000)
    a.warmup = a.warmup if a.warmup is not None else (300 if a.quick else 1000)
    a.rounds = a.rounds or (500 if a.quick else 2000)
    a.rb_requests = a.rb_requests or (10_000 if a.quick else 50_000)
    return a


def main(argv: list[str]) -> int:
    faulthandler.enable()
    cfg = parse_args(argv)
    contenders = CONTENDERS
    if cfg.contenders:
        wanted = {s.strip() for s in cfg.contenders.split(",")}
        unknown = wanted - {c.name for c in CONTENDERS}
        if unknown:
            raise SystemExit(f"unknown contenders: {', '.join(sorted(unknown))}; known: {', '.join(c.name for c in CONTENDERS)}")
        contenders = [c for c in CONTENDERS if c.name == FLOOR or c.name in wanted]
    unavailable = {c.name: why for c in contenders if (why := c.available())}
    contenders = [c for c in contenders if c.name not in unavailable]
    from tieredcache._redis_server import server_version

    res: dict[str, Any] = {
        "meta": {
            "command": " ".join(["python", "benchmarks/bench_redis.py"] + [shlex.quote(a) for a in argv]),
            "date": _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
            "machine": machine_info(),
            "versions": library_versions(),
            "redis_server": ".".join(map(str, server_version())),
            "config": {k: v for k, v in vars(cfg).items() if k not in ("json", "markdown")},
            "contenders": [c.name for c in contenders],
            "unavailable": unavailable,
            "loadavg_start": _loadavg(),
        }
    }
    started = time.perf_counter()
    with RedisServer() as server:
        log(f"redis-server {server.url} (pid {server.pid})")
        res["clients"] = measure_clients(cfg, server.url, contenders)
        res["redis_benchmark"] = (
            "skipped (--no-redis-benchmark)" if cfg.no_redis_benchmark else measure_redis_benchmark(cfg, server)
        )
    res["meta"]["seconds"] = round(time.perf_counter() - started, 1)
    res["meta"]["loadavg_end"] = _loadavg()
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

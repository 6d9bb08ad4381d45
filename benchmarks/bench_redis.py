"""Redis clients against one private redis-server, measured in one run.

    cd /work/main && PYTHONPATH=src .venv/bin/python benchmarks/bench_redis.py            # ~ 1.5 minutes
    PYTHONPATH=src .venv/bin/python benchmarks/bench_redis.py --quick                      # ~ 30 s
    PYTHONPATH=src .venv/bin/python benchmarks/bench_redis.py --pin same                   # stable round trips
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

  TieredCache.get L1 hit   ``TieredCache(redis_url=...)`` (json serializer, default_ttl
                        300 s), values stored as ``str`` with ``set_many``; a key in L1
  TieredCache.get L2 hit   the same, the key's L1 entry deleted (untimed) before each call:
                        L1 miss, GET + PTTL in one round trip, decode, L1 fill (checked)
  TieredCache.get miss     a key in neither tier: L1 miss, GET + PTTL, the default
  TieredCache.aget L2 hit  the L2 hit through ``aget``, in the asyncio loop

More rows are added by appending a ``Contender`` subclass to ``CONTENDERS``: ``prepare()``
stores the values its own way, ``get()`` reads one key, ``before(key)`` (optional) runs
untimed before each read. ``tiered = True`` rows get their own table.

Figures, for 100 B and 10 KB values:

  GET latency   one GET at a time, each timed alone (perf_counter_ns): median and p99 in
                µs. Sync contenders are interleaved over --passes passes (async ones among
                themselves); "paired" ratios are medians of per-pass ratios.
  CPU per GET   process CPU time (user + system, ``time.process_time``) over the same
                calls, in µs: what the client costs, without the server's share.
  pipeline      100 GETs per round trip (``pipeline()`` / redis-py ``pipeline
                (transaction=False)``): GETs per second.
  MGET          MGET of 100 keys: keys per second.
  redis-benchmark  the C client from the Redis distribution against the same server:
                ``-c 1 -P 1`` and ``-c 1 -P 16``, ``-t get,set``, ``-d 100`` and ``-d 10000``:
                requests per second and p50.

  propagation   ``_propagation.py``: process A (multiprocessing spawn) holds a TieredCache
                on the same server and namespace with a key in its L1; this process (B)
                stamps ``time.time_ns()`` and calls ``delete(key)`` / ``invalidate_tags(tag)``;
                A polls its L1 (every --poll-us, GIL released) and stamps when the entry
                is gone. p50 / p99 / max in ms over --trials trials (quick: 50), and a
                shorter case with A's main thread spinning in Python (GIL contention).
  targets       informational PASS / FAIL lines (the exit status never depends on them):
                TieredCache L2 hit p50 <= 1.10x bare GET p50; RedisClient CPU per GET
                <= 0.8x redis-py; RedisClient pipelined and MGET throughput >= 1.5x
                redis-py; propagation p99 <= 5 ms (delete and invalidate_tags).

Ratios are contender / reference: latency and CPU below 1.00x are better, throughput
above 1.00x is better. On a VM, a round trip to a server on another vCPU costs a cross-CPU
wakeup: unpinned, GET latency flips between two levels (e.g. 15 and 50 µs on 2 vCPUs) as
the scheduler moves the processes, and the report warns when the floor's per-pass p50 did
so. ``--pin same`` (server and client on one CPU) or ``--pin split`` fixes the placement.
Figures depend on the machine (a VM with 2 vCPUs shares them with the server); compare
ratios, never copy the figures into tests.
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
    tiered = False  # a TieredCache read path: reported in its own table, not as a client
    mget: Callable[..., Any] | None = None
    pipeline_get: Callable[..., Any] | None = None
    # Called, untimed, before each timed get() (e.g. to empty L1 for an L2 hit); its CPU
    # cost, measured alone, is subtracted from the contender's CPU per GET.
    before: Callable[[str], Any] | None = None

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

    def expected(self, value: bytes) -> Any:
        """What ``get()`` returns for a key prepared with ``value``."""
        return value

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


class _TieredContender(Contender):
    """``TieredCache`` with ``redis_url=`` and default settings (json serializer,
    default_ttl 300 s). Values are stored as ``str`` (the benchmark's value decoded:
    a JSON string payload of size + 2 bytes after the 15-byte header). ``prepare()`` makes
    the instance and stores the values with ``set_many`` (which also fills its L1)."""

    tiered = True

    def prepare(self, url: str, keys: list[str], value: bytes) -> list[str]:
        from tieredcache import TieredCache

        ns = f"bench-{len(value)}-{self.slug}"
        self.cache = TieredCache(redis_url=url, namespace=ns)
        self.cache.clear()
        text = value.decode()
        for i in range(0, len(keys), 200):
            self.cache.set_many({k: text for k in keys[i : i + 200]})
        self.l1 = self.cache._core.l1
        self.l1prefix = self.cache._ns.l1prefix
        return keys

    def expected(self, value: bytes) -> Any:
        return value.decode()

    def open(self, url: str) -> None:
        pass

    def close(self) -> None:
        self.cache.close()


class TieredL1Contender(_TieredContender):
    """``get`` of a key in L1 (the instance that stored it)."""

    name = "TieredCache.get L1 hit"
    slug = "l1"

    def open(self, url: str) -> None:
        self.get = self.cache.get  # type: ignore[method-assign]


class TieredL2Contender(_TieredContender):
    """``get`` of a key in Redis and not in L1: L1 miss, GET + PTTL in one round trip,
    decode, L1 fill. The key's L1 entry is deleted (untimed) before each call."""

    name = "TieredCache.get L2 hit"
    slug = "l2"

    def open(self, url: str) -> None:
        self.get = self.cache.get  # type: ignore[method-assign]
        delete, prefix = self.l1.delete, self.l1prefix
        self.before = lambda key: delete(prefix + key)
        self._check_fill(self.cache.get)

    def _check_fill(self, get: Callable[[str], Any]) -> None:
        """The path measured must be the whole L2 hit: the read fills L1."""
        key = next(k for k in self.l1.keys() if isinstance(k, str) and k.startswith(self.l1prefix))
        key = key[len(self.l1prefix):]
        hits = self.cache.stats()["l2"]["hits"]
        self.before(key)
        value = get(key)
        if value is None or (self.l1prefix + key) not in self.l1 or self.cache.stats()["l2"]["hits"] != hits + 1:
            raise SystemExit(f"{self.name}: the read of {key!r} was not an L2 hit that fills L1")


class TieredMissContender(_TieredContender):
    """``get`` of a key in neither L1 nor Redis: L1 miss, GET + PTTL, default returned."""

    name = "TieredCache.get miss"
    slug = "miss"

    def prepare(self, url: str, keys: list[str], value: bytes) -> list[str]:
        super().prepare(url, keys[:1], value)
        return [f"absent:{k}" for k in keys]

    def expected(self, value: bytes) -> Any:
        return None

    def open(self, url: str) -> None:
        self.get = self.cache.get  # type: ignore[method-assign]


class TieredAsyncL2Contender(TieredL2Contender):
    """``aget`` L2 hit, as ``TieredCache.get L2 hit``, in one asyncio loop."""

    name = "TieredCache.aget L2 hit"
    slug = "al2"
    is_async = True

    def open(self, url: str) -> None:
        self.get = self.cache.aget  # type: ignore[method-assign]
        delete, prefix = self.l1.delete, self.l1prefix
        self.before = lambda key: delete(prefix + key)
        # (the fill is checked by the sync twin; aget shares _filled with get)

    async def aclose(self) -> None:
        await self.cache.aclose()


TL1 = TieredL1Contender.name
TL2 = TieredL2Contender.name
TMISS = TieredMissContender.name
TAL2 = TieredAsyncL2Contender.name
TIERED_NAMES = (TL1, TL2, TMISS, TAL2)

CONTENDERS: list[Contender] = [
    BareContender(),
    OursContender(),
    RedisPyContender(),
    AsyncOursContender(),
    AsyncRedisPyContender(),
    TieredL1Contender(),
    TieredL2Contender(),
    TieredMissContender(),
    TieredAsyncL2Contender(),
]


# --------------------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------------------


def _percentile(sorted_ns: list[int], q: float) -> float:
    i = min(len(sorted_ns) - 1, max(0, int(round(q * (len(sorted_ns) - 1)))))
    return sorted_ns[i] / 1000.0


def _time_gets_sync(get: Callable[[str], Any], keys: list[str], n: int, out: list[int],
                    before: Callable[[str], Any] | None = None) -> float:
    """Time ``n`` GETs one by one into ``out`` (ns); return the process CPU seconds.
    ``before(key)``, if given, runs untimed before each GET (its CPU is counted)."""
    pc = time.perf_counter_ns
    nk = len(keys)
    append = out.append
    cpu0 = time.process_time()
    if before is None:
        for i in range(n):
            k = keys[i % nk]
            t0 = pc()
            get(k)
            append(pc() - t0)
    else:
        for i in range(n):
            k = keys[i % nk]
            before(k)
            t0 = pc()
            get(k)
            append(pc() - t0)
    return time.process_time() - cpu0


async def _time_gets_async(get: Callable[[str], Any], keys: list[str], n: int, out: list[int],
                           before: Callable[[str], Any] | None = None) -> float:
    pc = time.perf_counter_ns
    nk = len(keys)
    append = out.append
    cpu0 = time.process_time()
    if before is None:
        for i in range(n):
            k = keys[i % nk]
            t0 = pc()
            await get(k)
            append(pc() - t0)
    else:
        for i in range(n):
            k = keys[i % nk]
            before(k)
            t0 = pc()
            await get(k)
            append(pc() - t0)
    return time.process_time() - cpu0


def _before_cpu_s(before: Callable[[str], Any], keys: list[str], n: int) -> float:
    """CPU seconds of ``n`` calls of ``before`` alone, in the same loop shape: what the
    timed loop spent besides the GETs (subtracted from the CPU per GET)."""
    nk = len(keys)
    cpu0 = time.process_time()
    for i in range(n):
        before(keys[i % nk])
    return time.process_time() - cpu0


def _timer_overhead_ns(n: int = 200_000) -> float:
    """Median of perf_counter_ns() - perf_counter_ns() around nothing: what every timed
    call's figure includes on top of the call."""
    pc = time.perf_counter_ns
    out = []
    for _ in range(n):
        t0 = pc()
        out.append(pc() - t0)
    out.sort()
    return float(out[len(out) // 2])


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
            if c.before is not None:
                c.before(keys_of[c.name][0])
            _check(c.get(keys_of[c.name][0]), c.expected(value), c.name)
        n_pass = max(1, cfg.gets // cfg.passes)
        for p in range(cfg.passes):
            for c in sync:
                keys = keys_of[c.name]
                _time_gets_sync(c.get, keys, cfg.warmup, [], c.before)
                gc.disable()
                try:
                    start = len(per[c.name]["samples"])
                    per[c.name]["cpu_s"] += _time_gets_sync(c.get, keys, n_pass, per[c.name]["samples"], c.before)
                    per[c.name].setdefault("pass_p50", []).append(
                        statistics.median(per[c.name]["samples"][start:]) / 1000.0)
                    if c.before is not None:
                        per[c.name]["cpu_before_s"] = per[c.name].get("cpu_before_s", 0.0) + _before_cpu_s(
                            c.before, keys, n_pass)
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
                    if c.before is not None:
                        c.before(keys_of[c.name][0])
                    _check(await c.get(keys_of[c.name][0]), c.expected(value), c.name)
                for p in range(cfg.passes):
                    for c in asyncs:
                        keys = keys_of[c.name]
                        await _time_gets_async(c.get, keys, cfg.warmup, [], c.before)
                        gc.disable()
                        try:
                            start = len(per[c.name]["samples"])
                            per[c.name]["cpu_s"] += await _time_gets_async(
                                c.get, keys, n_pass, per[c.name]["samples"], c.before
                            )
                            per[c.name].setdefault("pass_p50", []).append(
                                statistics.median(per[c.name]["samples"][start:]) / 1000.0)
                            if c.before is not None:
                                per[c.name]["cpu_before_s"] = per[c.name].get("cpu_before_s", 0.0) + _before_cpu_s(
                                    c.before, keys, n_pass)
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
                "cpu_per_get_us": round((d["cpu_s"] - d.get("cpu_before_s", 0.0)) / d["n"] * 1e6, 2),
                "gets": d["n"],
                "pipeline_gets_per_s": round(d["pipeline_ops"]) if "pipeline_ops" in d else None,
                "mget_keys_per_s": round(d["mget_keys"]) if "mget_keys" in d else None,
            }
            out[c.name]["pass_p50_us"] = [round(v, 2) for v in d.get("pass_p50", [])]
            if "cpu_before_s" in d:
                out[c.name]["cpu_before_subtracted_us"] = round(d["cpu_before_s"] / d["n"] * 1e6, 3)
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
# Invalidation propagation between processes
# --------------------------------------------------------------------------------------

PROP_DELETE = "delete"
PROP_TAGS = "invalidate_tags"
PROP_BUSY = "delete, observer busy in Python"


def measure_propagation(cfg: argparse.Namespace, url: str) -> dict[str, Any] | str:
    """See _propagation.py: B (this process) deletes / invalidates, A (a spawned process)
    watches its L1; ms from B's call to the entry leaving A's L1."""
    from _propagation import run_propagation

    n = cfg.trials
    modes = [(PROP_DELETE, "delete", False, n), (PROP_TAGS, "invalidate_tags", False, n),
             (PROP_BUSY, "delete", True, max(10, n // 5))]  # fmt: skip
    try:
        return run_propagation(url, "bench-propagation", modes, poll_s=cfg.poll_us / 1e6, log=log)
    except Exception as exc:  # reported, not fatal: the client figures stand on their own
        return f"failed: {type(exc).__name__}: {exc}"


# --------------------------------------------------------------------------------------
# Targets (informational: PASS / FAIL lines, never an exit status)
# --------------------------------------------------------------------------------------


def compute_targets(res: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []

    def add(target: str, measured: float | None, op: str, limit: float, unit: str, detail: str = "",
            fail: bool = False) -> None:
        if measured is None:
            status = "n/a"
        elif fail:
            status = "FAIL"
        elif op == "<=":
            status = "PASS" if measured <= limit else "FAIL"
        else:
            status = "PASS" if measured >= limit else "FAIL"
        rows.append({"target": target, "measured": measured, "op": op, "limit": limit, "unit": unit,
                     "status": status, "detail": detail})  # fmt: skip

    clients = res["clients"]
    for size in SIZES:
        d = clients.get(str(size), {})

        def g(name: str, field: str) -> float | None:
            return d.get(name, {}).get(field)

        pooled = _ratio(g(TL2, "get_p50_us"), g(FLOOR, "get_p50_us"))
        add(f"TieredCache.get L2 hit p50 / bare GET p50, {size:,} B", _paired_ratio(d.get(TL2), d.get(FLOOR)),
            "<=", 1.10, "x", f"median of per-pass ratios; pooled {fmt_ratio(pooled)} "
            f"({_f(g(TL2, 'get_p50_us'))} vs {_f(g(FLOOR, 'get_p50_us'))} µs)")
        add(f"RedisClient CPU per GET / redis-py, {size:,} B", _ratio(g(OURS, "cpu_per_get_us"), g(PEER, "cpu_per_get_us")),
            "<=", 0.80, "x", f"{_f(g(OURS, 'cpu_per_get_us'))} vs {_f(g(PEER, 'cpu_per_get_us'))} µs")
        add(f"RedisClient pipelined GET/s / redis-py, {size:,} B",
            _ratio(g(OURS, "pipeline_gets_per_s"), g(PEER, "pipeline_gets_per_s")), ">=", 1.5, "x",
            f"{_f(g(OURS, 'pipeline_gets_per_s'), 0)} vs {_f(g(PEER, 'pipeline_gets_per_s'), 0)} /s")
        add(f"RedisClient MGET keys/s / redis-py, {size:,} B",
            _ratio(g(OURS, "mget_keys_per_s"), g(PEER, "mget_keys_per_s")), ">=", 1.5, "x",
            f"{_f(g(OURS, 'mget_keys_per_s'), 0)} vs {_f(g(PEER, 'mget_keys_per_s'), 0)} /s")
    prop = res.get("propagation")
    for label in (PROP_DELETE, PROP_TAGS):
        r = prop.get(label) if isinstance(prop, dict) else None
        measured = None
        detail = prop if isinstance(prop, str) else "not measured"
        if r is not None:
            measured = r["p99_ms"]
            detail = f"{r['measured']} trials, {r['lost']} lost, max {r['max_ms']} ms"
        # an entry never dropped within the wait fails the target whatever the p99
        add(f"invalidation propagation p99, {label}", measured, "<=", 5.0, "ms", detail,
            fail=bool(r and r["lost"]))
    return rows


# --------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b <= 0:
        return None
    return round(a / b, 3)


def _paired_ratio(a: dict[str, Any] | None, b: dict[str, Any] | None) -> float | None:
    """Median over passes of a's p50 / b's p50 in the same pass: the passes of the sync
    contenders run back to back, so a burst of load on the machine skews one pass's
    pair, not the figure."""
    pa, pb = (a or {}).get("pass_p50_us"), (b or {}).get("pass_p50_us")
    if not pa or not pb or len(pa) != len(pb):
        return None
    return round(statistics.median(x / y for x, y in zip(pa, pb) if y > 0), 3)


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
    pin = meta.get("pin", {"mode": "none"})
    lines.append("CPU pinning: none (the scheduler places client and server)." if pin["mode"] == "none" else
                 f"CPU pinning: {pin['mode']} (redis-server on CPU {pin['server_cpus']}, client and its children on "
                 f"{pin['client_cpus']}).")
    note = _bimodal_note(res)
    if note:
        lines.append(note)
    if meta["unavailable"]:
        lines.append("Not measured: " + "; ".join(f"{k}: {v}" for k, v in meta["unavailable"].items()))
    lines.append("")
    tg = res.get("targets") or []
    if tg:
        lines.append(f"{h}Targets (informational)")
        lines.append("")
        rows = []
        for t in tg:
            m = t["measured"]
            ms = "n/a" if m is None else (f"{m:.2f}x" if t["unit"] == "x" else f"{m:.2f} ms")
            lim = f"{t['op']} {t['limit']:.2f}" + ("x" if t["unit"] == "x" else " ms")
            rows.append([t["target"], ms, lim, t["status"], t["detail"]])
        lines.append(table(["target", "measured", "limit", "result", "figures"], rows, "lrrll"))
        lines.append("")
    clients = res["clients"]
    tiered_names = [n for n in meta["contenders"] if n in TIERED_NAMES]
    names = [n for n in meta["contenders"] if n not in TIERED_NAMES]
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
        if tiered_names:
            lines.append(f"{h}TieredCache reads, {size:,} B values (str; Redis payload {size + 17:,} B): "
                         "latency (µs) and CPU (µs per call)")
            lines.append("")
            rows = []
            for n in tiered_names:
                r = d.get(n)
                if r is None:
                    continue
                ref_name = AOURS if n == TAL2 else OURS
                ref = d.get(ref_name, {})
                extra = (r["get_p50_us"] - floor["get_p50_us"]) if floor.get("get_p50_us") is not None else None
                rows.append([
                    n, _f(r["get_p50_us"]), _f(r["get_p99_us"]), _f(r["cpu_per_get_us"]),
                    fmt_ratio(_ratio(r["get_p50_us"], floor.get("get_p50_us"))),
                    fmt_ratio(_paired_ratio(r, floor)) if n != TAL2 else "",
                    "n/a" if extra is None else f"{extra:+.1f}",
                    f"{fmt_ratio(_ratio(r['get_p50_us'], ref.get('get_p50_us')))} ({ref_name})",
                    f"{fmt_ratio(_ratio(r['cpu_per_get_us'], ref.get('cpu_per_get_us')))}",
                ])  # fmt: skip
            lines.append(table(["read path", "p50", "p99", "CPU/call", "p50 / floor", "paired / floor",
                                "p50 - floor µs", "p50 / client", "CPU / client"], rows))
            lines.append("")
            lines.append("paired / floor: median over the passes of the pass's p50 / the floor's p50 in the same "
                         "pass (robust to bursts of load). p50 / client: against RedisClient, or AsyncRedisClient "
                         "for aget.")
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
    prop = res.get("propagation")
    if lines[-1] != "":
        lines.append("")
    lines.append(f"{h}Invalidation propagation, process B -> process A (ms)")
    lines.append("")
    if isinstance(prop, str):
        lines.append(f"n/a: {prop}")
    else:
        obs = prop.get("observer", {})
        rows = []
        for label, r in prop.items():
            if label == "observer":
                continue
            rows.append([label, r["measured"], r["lost"], _f(r["p50_ms"], 2), _f(r["p99_ms"], 2), _f(r["max_ms"], 2),
                         _f(r["mean_ms"], 2), _f(r["call_p50_ms"], 3)])  # fmt: skip
        lines.append(table(["case", "trials", "lost", "p50", "p99", "max", "mean", "B's call p50"], rows))
        lines.append("")
        lines.append(
            "From `time.time_ns()` just before B's `delete(key)` / `invalidate_tags(tag)` to A (a spawned process, "
            f"same URL and namespace) seeing the entry gone from its L1; A polls every {obs.get('poll_s', 0) * 1e6:.0f} µs "
            "with the GIL released. \"observer busy\": A's main thread spins in pure Python, so A's subscriber "
            f"thread waits for the switch interval ({obs.get('switch_interval_s', 0) * 1000:g} ms) to run. "
            "No target for that case."
        )
    lines.append("")
    lines.append(
        "Ratios: latency and CPU below 1.00x are better; throughput above 1.00x is better. "
        "RedisClient GET/s is 1 / its mean GET latency. "
        f"Every latency includes the timer's own cost ({meta.get('timer_overhead_ns', 0):.0f} ns: perf_counter_ns "
        "pair around nothing). TieredCache CPU/call excludes the untimed L1 delete before each L2-hit call "
        "(measured alone and subtracted)."
    )
    lines.append("")
    return "\n".join(lines)


def apply_pin(mode: str, server_pid: int) -> dict[str, Any]:
    """Pin redis-server (every thread) and this process (and so the threads, processes
    and redis-benchmark it starts afterwards). On a VM, a GET whose server runs on
    another vCPU pays a cross-CPU wakeup (tens of µs); unpinned, the scheduler moves
    between the two placements and round trips flip between two levels from one pass
    to the next. "same": one CPU for both (round trips without that wakeup); "split":
    the server on one CPU, the client on another."""
    if mode == "none":
        return {"mode": "none"}
    cpus = sorted(os.sched_getaffinity(0))
    if mode == "same":
        server, client = {cpus[0]}, {cpus[0]}
    else:
        if len(cpus) < 2:
            raise SystemExit("--pin split needs two usable CPUs")
        server, client = {cpus[0]}, {cpus[1]}
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{server_pid}/task")]
    except OSError:
        tids = [server_pid]
    for tid in tids:
        try:
            os.sched_setaffinity(tid, server)
        except OSError:
            pass
    os.sched_setaffinity(0, client)
    return {"mode": mode, "server_cpus": sorted(server), "client_cpus": sorted(client)}


def _bimodal_note(res: dict[str, Any]) -> str | None:
    """A warning when the floor's per-pass p50 moved a lot between passes."""
    spans = []
    for size in SIZES:
        pp = res["clients"].get(str(size), {}).get(FLOOR, {}).get("pass_p50_us") or []
        if pp and max(pp) > 1.5 * min(pp):
            spans.append(f"{min(pp):.1f} to {max(pp):.1f} µs ({size:,} B)")
    if not spans:
        return None
    return ("Warning: the floor's per-pass p50 ranged " + ", ".join(spans) + ": the round trip changed level "
            "between passes (CPU placement of client and server, or load), so ratios mix two regimes; "
            "--pin same or --pin split gives one.")


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
    ap.add_argument("--passes", type=int, default=20, help="passes the timed GETs are split into")
    ap.add_argument("--warmup", type=int, default=None, help="untimed GETs before each pass (default 300, quick 100)")
    ap.add_argument("--rounds", type=int, default=None, help="pipelines / MGETs per throughput figure (default 2000, quick 500)")
    ap.add_argument("--rb-requests", type=int, default=None, help="redis-benchmark -n at -P 1 (x4 at -P 16); default 50k, quick 10k")
    ap.add_argument("--no-redis-benchmark", action="store_true")
    ap.add_argument("--trials", type=int, default=None, help="propagation trials per case (default 200, quick 50)")
    ap.add_argument("--poll-us", type=float, default=50.0, help="propagation: observer's L1 poll interval (µs)")
    ap.add_argument("--no-propagation", action="store_true")
    ap.add_argument("--pin", choices=("none", "same", "split"), default="none",
                    help="CPU pinning of redis-server and this process: same CPU, different CPUs, or none")
    ap.add_argument("--json", metavar="PATH", help="write every figure as JSON")
    ap.add_argument("--markdown", metavar="PATH", help="write a Markdown section for docs/benchmarks.md")
    a = ap.parse_args(argv)
    a.gets = a.gets or (10_000 if a.quick else 40_000)
    a.warmup = a.warmup if a.warmup is not None else (100 if a.quick else 300)
    a.rounds = a.rounds or (500 if a.quick else 2000)
    a.rb_requests = a.rb_requests or (10_000 if a.quick else 50_000)
    a.trials = a.trials or (50 if a.quick else 200)
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
            "timer_overhead_ns": _timer_overhead_ns(),
        }
    }
    started = time.perf_counter()
    with RedisServer() as server:
        log(f"redis-server {server.url} (pid {server.pid})")
        res["meta"]["pin"] = apply_pin(cfg.pin, server.pid)
        log(f"pinning: {res['meta']['pin']}")
        res["clients"] = measure_clients(cfg, server.url, contenders)
        res["propagation"] = (
            "skipped (--no-propagation)" if cfg.no_propagation else measure_propagation(cfg, server.url)
        )
        res["redis_benchmark"] = (
            "skipped (--no-redis-benchmark)" if cfg.no_redis_benchmark else measure_redis_benchmark(cfg, server)
        )
    res["meta"]["seconds"] = round(time.perf_counter() - started, 1)
    res["meta"]["loadavg_end"] = _loadavg()
    res["targets"] = compute_targets(res)
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

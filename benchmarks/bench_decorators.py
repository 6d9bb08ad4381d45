"""Memoizing decorators: the cost of a decorated call on a hit and on a miss, sync and async.

    cd /work/main && .venv/bin/python setup.py build_ext --inplace -q
    PYTHONPATH=src .venv/bin/python benchmarks/bench_decorators.py              # ~ 2 minutes
    PYTHONPATH=src .venv/bin/python benchmarks/bench_decorators.py --quick      # a few seconds
    PYTHONPATH=src .venv/bin/python benchmarks/bench_decorators.py --modes sync --impls cachebox.LRUCache
    PYTHONPATH=src .venv/bin/python benchmarks/bench_decorators.py --json out.json --markdown out.md

What is measured (every implementation in the same run, passes round-robin over them):

  sync   ``tieredcache`` ``cache.cached`` on an L1-only TieredCache, ``functools.lru_cache``,
         cachetools ``@cached`` over a ``TTLCache`` and an ``LRUCache``, theine ``Memoize``,
         cachebox ``@cached`` over an ``LRUCache`` and a ``TTLCache``, and the plain
         undecorated function (what a call costs with no cache at all).
  async  ``await`` of a decorated ``async def``: tieredcache, cashews (``mem://``),
         aiocache (``@cached``, memory), theine ``Memoize``, cachebox ``@cached``, and the
         plain coroutine. Every awaited call runs in the same event loop, one after the
         other (no concurrency): this is the per-call overhead a handler pays.

Workloads (each cell gets its own freshly decorated function and cache of --size entries):

  hit f(i)          one int argument, a hot set of --hot (1,000) distinct values
  hit f(i, s)       an int and a str, positional
  hit f(i=.., s=..) the same two arguments passed by keyword
  miss f(i)         every call a new int, the cache full: a miss stores and evicts

The decorated functions return a constant str (no peer copies it; cachebox copies dict,
list and set results by default). Peers run with their defaults otherwise, and a TTL of
3600 s where the decorator takes one.

Timing is bench_local.py's: each timed run is a compiled ``for k in keys: f(k, ...)`` loop
(``await f(k, ...)`` inside one coroutine for async) lasting about 2 ms, the garbage
collector off and the cost of the empty loop subtracted. Every cell gets a warm-up and timed
runs in --passes passes over all the cells; the table shows the fastest run, the JSON the
median too, and the targets are checked on both. The 1-minute load average is printed.

Ratios: "/ lru_cache" is ns(impl) / ns(functools.lru_cache) (async: / the plain
coroutine); "speed-up" is ns(fastest peer) / ns(tieredcache), the fastest peer excluding
lru_cache (the issue's target compares with the third-party decorators). Informational
only: nothing is asserted; never copy these figures into tests.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as _dt
import faulthandler
import gc
import inspect
import json
import os
import random
import shlex
import sys
import time
import types
from dataclasses import dataclass, field
from datetime import timedelta
from time import perf_counter_ns
from typing import Any, Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _peers import import_local_cache  # noqa: E402  (puts src/ on sys.path if needed)
from _report import fmt_ns, fmt_ratio, loadavg, machine_info, markdown_table, targets_lines, text_table  # noqa: E402
from _timing import empty_ns_per_key, measure, summarize  # noqa: E402

TTL_SECONDS = 3600
VALUE = "Chez Nous, 12 rue des Lilas"
STR_ARG = "2024-06-01"
LRU = "functools.lru_cache"
PLAIN = "no cache (plain call)"
APLAIN = "no cache (plain coroutine)"
OURS = "tieredcache"

WORKLOADS = ("hit_1", "hit_2", "hit_kw", "miss")
LABEL = {
    "hit_1": "hit f(i)",
    "hit_2": "hit f(i, s)",
    "hit_kw": "hit f(i=, s=)",
    "miss": "miss f(new i)",
}
SHAPE = {"hit_1": "1", "hit_2": "2", "hit_kw": "kw", "miss": "1"}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------
# the decorated functions: realistic names (the default tieredcache key contains the
# qualified name), cloned for every cell so no two cells share a function object
# --------------------------------------------------------------------------------------


def get_profile(org_id):  # noqa: ANN001, ANN201 - annotations would change nothing here
    CALLS[0] += 1
    return VALUE


def get_slots(shop_id, day):  # noqa: ANN001, ANN201
    CALLS[0] += 1
    return VALUE


async def aget_profile(org_id):  # noqa: ANN001, ANN201
    CALLS[0] += 1
    return VALUE


async def aget_slots(shop_id, day):  # noqa: ANN001, ANN201
    CALLS[0] += 1
    return VALUE


CALLS = [0]  # the module's own functions are never measured: each cell runs a clone


def raw_function(workload: str, is_async: bool) -> tuple[Callable[..., Any], list[int]]:
    """A fresh copy of the function the workload calls, with its own call counter (its
    globals are a private dict), so that a hit that ran the function is noticed."""
    one = SHAPE[workload] == "1"
    if is_async:
        fn = aget_profile if one else aget_slots
    else:
        fn = get_profile if one else get_slots
    calls = [0]
    env = {"__builtins__": __builtins__, "__name__": fn.__module__, "CALLS": calls, "VALUE": VALUE}
    new = types.FunctionType(fn.__code__, env, fn.__name__, fn.__defaults__, fn.__closure__)
    new.__qualname__ = fn.__qualname__
    new.__module__ = fn.__module__
    return new, calls


# --------------------------------------------------------------------------------------
# loops: ``for k in keys: f(k)``, ``f(k, s)``, ``f(shop_id=k, day=s)``; async versions
# time themselves inside one coroutine
# --------------------------------------------------------------------------------------

_CALL = {"1": "f(k)", "2": "f(k, s)", "kw": "f(shop_id=k, day=s)"}
_SYNC: dict[str, Callable[..., None]] = {}
_ASYNC: dict[str, Callable[..., Any]] = {}


def _sync_loop(shape: str) -> Callable[..., None]:
    if shape not in _SYNC:
        ns: dict[str, Any] = {}
        exec(f"def run(f, keys, s):\n    for k in keys:\n        {_CALL[shape]}\n", ns)  # noqa: S102
        _SYNC[shape] = ns["run"]
    return _SYNC[shape]


def _async_loop(shape: str) -> Callable[..., Any]:
    if shape not in _ASYNC:
        ns: dict[str, Any] = {"perf_counter_ns": perf_counter_ns}
        src = (
            "async def run(f, keys, s):\n"
            "    t0 = perf_counter_ns()\n"
            "    for k in keys:\n"
            f"        await {_CALL[shape]}\n"
            "    return perf_counter_ns() - t0\n"
        )
        exec(src, ns)  # noqa: S102
        _ASYNC[shape] = ns["run"]
    return _ASYNC[shape]


def timed_sync(fn: Callable[..., Any], shape: str, keys: list[Any]) -> int:
    run = _sync_loop(shape)
    was = gc.isenabled()
    gc.disable()
    try:
        t0 = perf_counter_ns()
        run(fn, keys, STR_ARG)
        t1 = perf_counter_ns()
    finally:
        if was:
            gc.enable()
    return t1 - t0


def timed_async(loop: asyncio.AbstractEventLoop, fn: Callable[..., Any], shape: str, keys: list[Any]) -> int:
    coro = _async_loop(shape)(fn, keys, STR_ARG)
    was = gc.isenabled()
    gc.disable()
    try:
        return loop.run_until_complete(coro)
    finally:
        if was:
            gc.enable()


def call_all(loop: asyncio.AbstractEventLoop | None, fn: Callable[..., Any], shape: str, keys: list[Any]) -> None:
    """Untimed: prefills and warm-ups."""
    if loop is None:
        _sync_loop(shape)(fn, keys, STR_ARG)
    else:
        loop.run_until_complete(_async_loop(shape)(fn, keys, STR_ARG))


# --------------------------------------------------------------------------------------
# the implementations
# --------------------------------------------------------------------------------------


@dataclass
class Deco:
    """One memoizing decorator: wrap(fn, size) -> (decorated fn, closer or None)."""

    name: str
    dist: str
    modes: tuple[str, ...]  # "sync", "async"
    wrap: Callable[[Callable[..., Any], int], tuple[Callable[..., Any], Callable[[], Any] | None]]
    ours: bool = False
    peer: bool = True  # counts for "fastest peer" (not lru_cache, not the plain call)
    bounded: bool = True
    isolate: bool = False  # measured in a group of its own (it runs a background thread)
    note: str = ""
    available: bool = True
    error: str | None = None


def _tiered_wrap(fn: Callable[..., Any], size: int):
    from tieredcache import TieredCache

    cache = TieredCache(max_entries=size, default_ttl=TTL_SECONDS)
    return cache.cached(ttl=TTL_SECONDS)(fn), cache.close


def _tiered_status() -> tuple[bool, str | None, str]:
    local, err = import_local_cache()
    if local is None:
        return False, err, ""
    try:
        from tieredcache import TieredCache
    except ImportError as exc:
        return False, f"{type(exc).__name__}: {exc}", ""
    if not hasattr(TieredCache, "cached"):
        return False, "TieredCache.cached does not exist yet (src/tieredcache/_decorators.py)", ""
    try:
        import tieredcache._decorators as deco

        return True, None, f"decorators from {os.path.basename(deco.__file__)}"
    except ImportError:
        return True, None, ""


def _cashews_wrap(fn: Callable[..., Any], size: int):
    from cashews import Cache

    cache = Cache()
    cache.setup(f"mem://?size={size}")
    return cache(ttl=TTL_SECONDS)(fn), cache.close


def _aiocache_wrap(fn: Callable[..., Any], size: int, **kwargs: Any):
    from aiocache import Cache, cached

    deco = cached(ttl=TTL_SECONDS, cache=Cache.MEMORY, **kwargs)
    wrapped = deco(fn)
    return wrapped, deco.cache.clear


def _theine_wrap(fn: Callable[..., Any], size: int):
    from theine import Memoize

    m = Memoize(size, timedelta(seconds=TTL_SECONDS))
    wrapped = m(fn)

    def close() -> None:
        m.cache.clear()
        m.cache.close()

    return wrapped, close


def _make_decos() -> list[Deco]:
    import functools

    ok, err, note = _tiered_status()
    decos = [
        Deco(OURS, "tieredcache", ("sync", "async"), _tiered_wrap, ours=True, peer=False,
             note="TieredCache(max_entries=size, default_ttl=3600).cached(ttl=3600), L1 only"
             + (f"; {note}" if note else ""),
             available=ok, error=err),
        Deco(LRU, "", ("sync",), lambda fn, n: (functools.lru_cache(maxsize=n)(fn), None), peer=False,
             note="lru_cache(maxsize=size), no TTL"),
        Deco(PLAIN, "", ("sync",), lambda fn, n: (fn, None), peer=False, bounded=False,
             note="the undecorated function: the floor"),
        Deco(APLAIN, "", ("async",), lambda fn, n: (fn, None), peer=False, bounded=False,
             note="the undecorated coroutine function: the floor"),
    ]
    try:
        import cachetools

        decos.append(Deco("cachetools TTLCache", "cachetools", ("sync",),
                          lambda fn, n: (cachetools.cached(cachetools.TTLCache(n, ttl=TTL_SECONDS))(fn), None),
                          note="@cached(TTLCache(size, ttl=3600))"))
        decos.append(Deco("cachetools LRUCache", "cachetools", ("sync",),
                          lambda fn, n: (cachetools.cached(cachetools.LRUCache(n))(fn), None),
                          note="@cached(LRUCache(size)), no TTL"))
    except ImportError as exc:
        for nm in ("cachetools TTLCache", "cachetools LRUCache"):
            decos.append(_missing(nm, "cachetools", ("sync",), exc))
    try:
        import theine  # noqa: F401

        decos.append(Deco("theine Memoize", "theine", ("sync", "async"), _theine_wrap, isolate=True,
                          note="Memoize(size, timedelta(3600s)), auto key; measured after the others, on its "
                               "own (its maintenance thread disturbs the cells measured beside it)"))
    except ImportError as exc:
        decos.append(_missing("theine Memoize", "theine", ("sync", "async"), exc))
    try:
        import cachebox

        decos.append(Deco("cachebox LRUCache", "cachebox", ("sync", "async"),
                          lambda fn, n: (cachebox.cached(cachebox.LRUCache(n))(fn), None),
                          note="@cached(LRUCache(size)), no TTL, defaults (lock=True, copies dict/list/set results)"))
        decos.append(Deco("cachebox TTLCache", "cachebox", ("sync", "async"),
                          lambda fn, n: (cachebox.cached(cachebox.TTLCache(n, TTL_SECONDS))(fn), None),
                          note="@cached(TTLCache(size, 3600))"))
    except ImportError as exc:
        for nm in ("cachebox LRUCache", "cachebox TTLCache"):
            decos.append(_missing(nm, "cachebox", ("sync", "async"), exc))
    try:
        import cashews  # noqa: F401

        decos.append(Deco("cashews mem://", "cashews", ("async",), _cashews_wrap,
                          note="Cache().setup('mem://?size=size'); @cache(ttl=3600); async only"))
    except ImportError as exc:
        decos.append(_missing("cashews mem://", "cashews", ("async",), exc))
    try:
        import aiocache  # noqa: F401

        decos.append(Deco("aiocache memory", "aiocache", ("async",), _aiocache_wrap, bounded=False,
                          note="@cached(ttl=3600, cache=Cache.MEMORY): unbounded (no size limit), "
                               "default timeout=5 s per operation; async only"))
        decos.append(Deco("aiocache memory (timeout=None)", "aiocache", ("async",),
                          lambda fn, n: _aiocache_wrap(fn, n, timeout=None), bounded=False,
                          note="the same without the per-operation timeout (no asyncio.wait_for task per get)"))
    except ImportError as exc:
        decos.append(_missing("aiocache memory", "aiocache", ("async",), exc))
    return decos


def _missing(name: str, dist: str, modes: tuple[str, ...], exc: BaseException) -> Deco:
    return Deco(name, dist, modes, lambda fn, n: (fn, None), available=False, error=f"{type(exc).__name__}: {exc}")


def library_versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": sys.version.split()[0]}
    for dist in ("tieredcache", "cachetools", "cachebox", "theine", "theine-core", "cashews", "aiocache"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


# --------------------------------------------------------------------------------------
# cells
# --------------------------------------------------------------------------------------

RUN_NS = 2_000_000  # one timed run: short enough to fit between preemptions
MIN_RUN = 20
MAX_RUN = 50_000


class Fresh:
    """Never-used int arguments, shared by every miss cell."""

    def __init__(self, start: int) -> None:
        self.next = start

    def take(self, n: int) -> list[int]:
        out = list(range(self.next, self.next + n))
        self.next += n
        return out


@dataclass
class Cell:
    deco: Deco
    mode: str
    workload: str
    fn: Callable[..., Any] | None = None
    closer: Callable[[], Any] | None = None
    size: int = 200
    runs: int = 0
    off: int = 0
    samples: list[tuple[int, int]] = field(default_factory=list)
    error: str | None = None
    check: str | None = None
    calls: list[int] = field(default_factory=lambda: [0])  # runs of the wrapped function
    made: int = 0  # decorated calls made after the prefill
    calls_after_fill: int = 0

    @property
    def shape(self) -> str:
        return SHAPE[self.workload]

    def keys(self, hot_cycle: list[int], fresh: Fresh) -> list[int]:
        if self.workload == "miss":
            return fresh.take(self.size)
        if self.off + self.size > len(hot_cycle):
            self.off = 0
        keys = hot_cycle[self.off : self.off + self.size]
        self.off += self.size
        return keys

    def observe(self, ns: int, n: int) -> None:
        self.runs += 1
        if self.runs == 2 or (self.runs == 1 and ns > 10 * RUN_NS):
            per_op = max(ns / max(n, 1), 1.0)
            self.size = max(MIN_RUN, min(MAX_RUN, int(RUN_NS / per_op)))
            self.runs = 2


def build_cell(cell: Cell, cfg: argparse.Namespace, loop: asyncio.AbstractEventLoop | None,
               hot: list[int], fresh: Fresh) -> None:
    fn, cell.calls = raw_function(cell.workload, cell.mode == "async")
    cell.fn, cell.closer = cell.deco.wrap(fn, cfg.size)
    if cell.mode == "async" and not (inspect.iscoroutinefunction(cell.fn) or cell.deco.name == "theine Memoize"):
        cell.check = "the decorated async function is not a coroutine function"
    if cell.workload == "miss":
        call_all(loop, cell.fn, cell.shape, fresh.take(cfg.size))  # fill: the cache is full
    else:
        call_all(loop, cell.fn, cell.shape, hot)
        call_all(loop, cell.fn, cell.shape, hot)  # second round: all hits
    cell.calls_after_fill = cell.calls[0]


def check_cell(cell: Cell) -> str | None:
    """Every timed call of a hit workload must be a hit (the wrapped function not run),
    every call of the miss workload a miss; the plain function runs every time."""
    if cell.made == 0:
        return None
    ran = cell.calls[0] - cell.calls_after_fill
    if cell.deco.name in (PLAIN, APLAIN) or cell.workload == "miss":
        return None if ran == cell.made else f"{ran:,} of {cell.made:,} calls ran the function (expected all)"
    return None if ran == 0 else f"{ran:,} of {cell.made:,} calls ran the function: not all hits"


def close_cell(cell: Cell, loop: asyncio.AbstractEventLoop | None) -> None:
    if cell.closer is None:
        return
    try:
        r = cell.closer()
        if inspect.isawaitable(r) and loop is not None:
            loop.run_until_complete(r)
    except Exception as exc:  # noqa: BLE001
        log(f"  closing {cell.deco.name}: {type(exc).__name__}: {exc}")


# --------------------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------------------


def _measure_group(cfg: argparse.Namespace, mode: str, group: list[Deco], loop: asyncio.AbstractEventLoop | None,
                   hot: list[int], hot_cycle: list[int], fresh: Fresh, out: dict) -> None:
    """Build one cell per (decorator, workload) of the group, measure them in --passes
    passes round-robin, record the figures in out["impls"], close the cells."""
    cells: list[Cell] = []
    t0 = time.perf_counter()
    try:
        for d in group:
            for w in WORKLOADS:
                cell = Cell(d, mode, w)
                cells.append(cell)
                try:
                    build_cell(cell, cfg, loop, hot, fresh)
                except Exception as exc:  # noqa: BLE001
                    cell.error = f"{type(exc).__name__}: {exc}"
        log(f"[{mode}] {', '.join(d.name for d in group) if len(group) < 3 else f'{len(group)} decorators'}: "
            f"{len(cells)} cells built in {time.perf_counter() - t0:.1f}s; "
            f"{cfg.passes} passes, >= {cfg.min_time:g}s of timed runs per cell")
        per_pass = -(-cfg.repeat // cfg.passes)
        for p in range(cfg.passes):
            tp = time.perf_counter()
            for cell in cells:
                if cell.error:
                    continue

                def run_once(i: int, cell: Cell = cell) -> tuple[int, int]:
                    keys = cell.keys(hot_cycle, fresh)
                    if loop is None:
                        t = timed_sync(cell.fn, cell.shape, keys)
                    else:
                        t = timed_async(loop, cell.fn, cell.shape, keys)
                    cell.observe(t, len(keys))
                    cell.made += len(keys)
                    return t, len(keys)

                try:
                    cell.samples.extend(measure(run_once, cfg.warmup, per_pass, cfg.min_time / cfg.passes))
                    cell.check = cell.check or check_cell(cell)
                except Exception as exc:  # noqa: BLE001
                    cell.error = f"{type(exc).__name__}: {exc}"
            log(f"  pass {p + 1}/{cfg.passes} {time.perf_counter() - tp:5.1f}s")
        empty = empty_ns_per_key(hot_cycle[:10_000])
        for cell in cells:
            row = out["impls"][cell.deco.name]
            if cell.error:
                row[cell.workload] = {"error": cell.error}
            elif cell.samples:
                row[cell.workload] = summarize(cell.samples, empty)
                if cell.check:
                    row[cell.workload]["check"] = cell.check
    finally:
        for cell in cells:
            close_cell(cell, loop)
        cells.clear()
        gc.collect()


def run_mode(cfg: argparse.Namespace, mode: str, decos: list[Deco]) -> dict:
    loop = asyncio.new_event_loop() if mode == "async" else None
    if loop is not None:
        asyncio.set_event_loop(loop)
    rng = random.Random(cfg.seed)
    hot = [100_000 + i for i in range(cfg.hot)]
    rng.shuffle(hot)
    hot_cycle = hot * max(1, -(-MAX_RUN // len(hot)))
    fresh = Fresh(10**9 + (0 if mode == "sync" else 10**8))
    out: dict[str, Any] = {"impls": {}}
    chosen = [d for d in decos if mode in d.modes]
    for d in chosen:
        out["impls"][d.name] = {"note": d.note}
        if not d.available:
            out["impls"][d.name]["error"] = d.error
    # A decorator that runs a background thread (theine's maintenance loop) makes every
    # other cell measured beside it noisier: it is measured on its own, after the others.
    groups = [[d for d in chosen if d.available and not d.isolate]]
    groups += [[d] for d in chosen if d.available and d.isolate]
    try:
        for group in groups:
            if group:
                _measure_group(cfg, mode, group, loop, hot, hot_cycle, fresh, out)
    finally:
        if loop is not None:
            try:
                loop.run_until_complete(asyncio.sleep(0))
                pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
                for t in pending:
                    t.cancel()
                if pending:
                    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            finally:
                loop.close()
                asyncio.set_event_loop(None)
    base = LRU if mode == "sync" else APLAIN
    for w in WORKLOADS:
        b = out["impls"].get(base, {}).get(w, {})
        for name, row in out["impls"].items():
            d = row.get(w, {})
            if "min" in d and "min" in b and b["min"] > 0:
                d["vs_base"] = round(d["min"] / b["min"], 3)
                d["vs_base_median"] = round(d["median"] / b["median"], 3) if b["median"] > 0 else None
        ours = out["impls"].get(OURS, {}).get(w, {})
        peers = [(row[w]["min"], row[w]["median"], nm) for nm, row in out["impls"].items()
                 if next(x for x in decos if x.name == nm).peer and "min" in row.get(w, {})]
        if peers and "min" in ours and ours["min"] > 0:
            best = min(peers)
            best_med = min(peers, key=lambda x: x[1])
            out.setdefault("speedup", {})[w] = {
                "fastest_peer": best[2],
                "peer_ns": best[0],
                "ours_ns": ours["min"],
                "speedup": round(best[0] / ours["min"], 2),
                "fastest_peer_median": best_med[2],
                "speedup_median": round(best_med[1] / ours["median"], 2) if ours["median"] > 0 else None,
            }
    out["base"] = base
    return out


def evaluate_targets(res: dict) -> list[dict]:
    targets: list[dict] = []

    def add(name: str, ok: bool | None, detail: str) -> None:
        targets.append({"target": name, "status": "n/a" if ok is None else ("PASS" if ok else "FAIL"),
                        "detail": detail})

    sync = res.get("sync")
    if not sync:
        return targets
    for w in ("hit_1", "hit_2", "hit_kw"):
        ours = sync["impls"].get(OURS, {}).get(w, {})
        lru = sync["impls"].get(LRU, {}).get(w, {})
        r, rm = ours.get("vs_base"), ours.get("vs_base_median")
        add(f"sync {LABEL[w]} within 3x of lru_cache", None if r is None else (r <= 3.0 and (rm or r) <= 3.0),
            f"{fmt_ns(ours.get('min'))} ns vs {fmt_ns(lru.get('min'))} ns = {fmt_ratio(r)} "
            f"(medians: {fmt_ratio(rm)})")
        sp = sync.get("speedup", {}).get(w)
        if sp is None:
            add(f"sync {LABEL[w]} >= 4x faster than the fastest peer", None,
                "tieredcache not measured" if "min" not in ours else "no peer measured")
        else:
            ok = sp["speedup"] >= 4.0 and (sp["speedup_median"] or 0) >= 4.0
            add(f"sync {LABEL[w]} >= 4x faster than the fastest peer", ok,
                f"{sp['fastest_peer']} {fmt_ns(sp['peer_ns'])} ns / ours {fmt_ns(sp['ours_ns'])} ns = "
                f"{sp['speedup']:.2f}x (medians: {sp['speedup_median']}x vs {sp['fastest_peer_median']})")
    return targets


# --------------------------------------------------------------------------------------
# output
# --------------------------------------------------------------------------------------


def _cell(d: dict | None, key: str = "min") -> str:
    if not d or "error" in d:
        return "n/a"
    return fmt_ns(d.get(key)) + (" (!)" if d.get("check") else "")


def render(res: dict, markdown: bool) -> str:
    table = markdown_table if markdown else text_table
    out: list[str] = []
    meta = res["meta"]
    m = meta["machine"]
    load = [x for x in (meta.get("loadavg_start"), meta.get("loadavg_end")) if x]
    cores = m.get("usable_cores") or 1
    busy = any(x[0] > max(cores - 1, 0) + 0.5 for x in load)
    load_line = ("load average (1 min) at start/end: " + " / ".join(f"{x[0]:.2f}" for x in load)
                 + (f" on {cores} cores: OTHER PROCESSES WERE RUNNING, timings are noisy" if busy else ""))

    def h(title: str) -> None:
        out.append(("\n### " if markdown else "\n== ") + title + ("\n" if markdown else " =="))

    if markdown:
        out.append("## Decorators (`benchmarks/bench_decorators.py`)\n")
        out.append(f"- command: `{meta['command']}`")
        out.append(f"- date: {meta['date']}")
        out.append(f"- machine: {m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable), "
                   f"{m['memory_gib']} GiB, {m['os']}")
        out.append(f"- Python: {m['python']} ({m['compiler']})")
        out.append("- versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()))
        out.append(f"- tieredcache: {meta['tieredcache']}")
        out.append(f"- {load_line}")
        out.append(f"- cache size {meta['config']['size']:,} entries, hot set {meta['config']['hot']:,} "
                   f"distinct arguments; decorated functions return a constant str; TTL {TTL_SECONDS} s")
        out.append("")
        out.append("Each timed run is a compiled `for k in keys: f(k, ...)` loop (async: `await f(k, ...)` "
                   "in one coroutine, one event loop) of about 2 ms, the garbage collector off and the "
                   "empty loop's cost subtracted; every cell is measured in several passes round-robin "
                   "over all the cells. Tables show the fastest run (ns per call); the targets are checked "
                   "on the fastest runs and on the medians.")
    else:
        out.append(f"{meta['date']}  {m['cpu']}, {m['cores']} cores, {m['python']}")
        out.append(f"tieredcache: {meta['tieredcache']}")
        out.append(load_line)

    for mode in ("sync", "async"):
        if mode not in res:
            continue
        r = res[mode]
        base_label = "/ lru_cache" if mode == "sync" else "/ plain"
        h(f"{mode}: ns per decorated call (fastest ~2 ms run); ratio {base_label}")
        headers = ["decorator"]
        for w in WORKLOADS:
            headers += [LABEL[w], base_label]
        rows = []
        for name, row in r["impls"].items():
            line = [name]
            for w in WORKLOADS:
                d = row.get(w)
                line.append(_cell(d))
                line.append("" if name == r["base"] or not d or "vs_base" not in d else fmt_ratio(d["vs_base"]))
            rows.append(line)
        out.append(table(headers, rows))
        sp = r.get("speedup", {})
        if sp:
            out.append("")
            parts = [f"{LABEL[w]}: {v['speedup']:.2f}x over {v['fastest_peer']} (medians {v['speedup_median']}x)"
                     for w, v in sp.items()]
            txt = "tieredcache speed-up over the fastest peer (lru_cache and the plain call excluded): "
            out.append(txt + "; ".join(parts))
        notes = [f"{nm}: {row['note']}" for nm, row in r["impls"].items() if row.get("note")]
        errs = [f"{nm}: {row['error']}" for nm, row in r["impls"].items() if row.get("error")]
        errs += [f"{nm} {LABEL[w]}: {row[w]['error']}" for nm, row in r["impls"].items()
                 for w in WORKLOADS if isinstance(row.get(w), dict) and "error" in row[w]]
        checks = [f"{nm} {LABEL[w]}: {row[w]['check']}" for nm, row in r["impls"].items()
                  for w in WORKLOADS if isinstance(row.get(w), dict) and row[w].get("check")]
        if markdown:
            out.append("")
            out.extend(f"- {x}" for x in notes + errs + checks)
        elif errs or checks:
            out.append("")
            out.extend(f"  {x}" for x in errs + checks)
    if res.get("targets"):
        h("targets (informational)")
        out.extend(targets_lines(res["targets"], markdown))
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="one short pass (a few seconds)")
    ap.add_argument("--modes", default="sync,async", help="comma separated subset of sync,async")
    ap.add_argument("--impls", default=None,
                    help="comma separated decorator names to include (tieredcache, lru_cache and the plain call always are)")
    ap.add_argument("--size", type=int, default=10_000, help="cache bound (entries) of every decorator")
    ap.add_argument("--hot", type=int, default=1_000, help="distinct arguments of the hit workloads")
    ap.add_argument("--seed", type=int, default=20240601)
    ap.add_argument("--repeat", type=int, default=None, help="at least this many timed runs per cell (default 15, quick 2)")
    ap.add_argument("--warmup", type=float, default=None, help="seconds of untimed runs per cell and pass (default 0.05)")
    ap.add_argument("--min-time", type=float, default=None, help="seconds of timed runs per cell (default 1.2, quick 0.05)")
    ap.add_argument("--passes", type=int, default=None, help="passes over the cells (default 3, quick 1)")
    ap.add_argument("--json", metavar="PATH", help="write every figure as JSON")
    ap.add_argument("--markdown", metavar="PATH", help="write a Markdown section for docs/benchmarks.md")
    a = ap.parse_args(argv)
    a.repeat = a.repeat or (2 if a.quick else 15)
    a.passes = a.passes or (1 if a.quick else 3)
    a.passes = max(1, min(a.passes, a.repeat))
    a.warmup = a.warmup if a.warmup is not None else (0.01 if a.quick else 0.05)
    a.min_time = a.min_time if a.min_time is not None else (0.05 if a.quick else 1.2)
    if a.hot > a.size:
        ap.error("--hot must not exceed --size (the hit workloads would miss)")
    return a


def main(argv: list[str]) -> int:
    faulthandler.enable()
    cfg = parse_args(argv)
    modes = [s.strip() for s in cfg.modes.split(",") if s.strip()]
    if set(modes) - {"sync", "async"}:
        raise SystemExit("--modes takes sync and/or async")
    decos = _make_decos()
    if cfg.impls:
        wanted = {s.strip() for s in cfg.impls.split(",")}
        unknown = wanted - {d.name for d in decos}
        if unknown:
            raise SystemExit(f"unknown decorators: {', '.join(sorted(unknown))}; known: "
                             + ", ".join(d.name for d in decos))
        decos = [d for d in decos if not d.peer or d.name in wanted]
    ours = next(d for d in decos if d.ours)
    versions = library_versions()
    if ours.available:
        import tieredcache

        versions["tieredcache"] = getattr(tieredcache, "__version__", "?")
        desc = f"tieredcache {versions['tieredcache']} from {os.path.dirname(tieredcache.__file__)}"
        if ours.note:
            desc += f" ({ours.note})"
    else:
        desc = f"n/a ({ours.error})"
        log(f"tieredcache unavailable ({ours.error}); measuring the peers only")
    res: dict[str, Any] = {
        "meta": {
            "command": " ".join(["python", "benchmarks/bench_decorators.py"] + [shlex.quote(a) for a in argv]),
            "date": _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
            "machine": machine_info(),
            "versions": versions,
            "tieredcache": desc,
            "config": {k: v for k, v in vars(cfg).items() if k not in ("json", "markdown")},
            "value": VALUE,
            "ttl_seconds": TTL_SECONDS,
            "loadavg_start": loadavg(),
        }
    }
    started = time.perf_counter()
    for mode in modes:
        t0 = time.perf_counter()
        res[mode] = run_mode(cfg, mode, decos)
        res[mode]["seconds"] = round(time.perf_counter() - t0, 1)
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

"""LocalCache against in-process peers, measured in one run.

    cd /work/main && .venv/bin/python setup.py build_ext --inplace -q
    PYTHONPATH=src .venv/bin/python benchmarks/bench_local.py                 # ~ 3 minutes
    PYTHONPATH=src .venv/bin/python benchmarks/bench_local.py --quick         # ~ 1.5 minutes
    PYTHONPATH=src .venv/bin/python benchmarks/bench_local.py --sections micro --impls lru-dict
    PYTHONPATH=src .venv/bin/python benchmarks/bench_local.py --json out.json --markdown out.md

Sections (``--sections``, comma separated, default all):

  micro     ns/op of get hit, get miss, set of a new key into a full cache, overwrite and
            delete, for a cache of --entries entries (default 100,000), every peer in both
            a no-TTL and (where it has one) a TTL variant.
  scale     ns/op of set of a new key into a full cache sized 10k, 100k and 1M entries.
  hitratio  cache-aside hit ratio (get; on a miss, set) on Zipf 0.9, Zipf 0.99, a
            scan-polluted and a recency-heavy trace, caches at 1 % and 10 % of the keys.
  memory    bytes per entry at 1M entries beyond the key and value objects: tracemalloc
            delta (complete for C/Python caches; Rust peers allocate outside it) and the
            RSS delta as a cross-check, each measured in a fresh subprocess.
  tags      time to invalidate a tag (and a prefix) covering 100,000 of 200,000 entries,
            next to deleting the same 100,000 keys one by one.

Timing: ``for k in keys: fn(k, *extra)`` with a pre-built list of pre-hashed str keys and
the cache's own bound method, the empty-loop cost subtracted, the garbage collector off.
A run lasts about 2 ms (at most --ops keys): short runs are rarely cut by the scheduler on
a busy machine. All the caches of a section are built first; then --passes passes go over
them, each giving every cache a warm-up (--warmup seconds) and timed runs (at least
--repeat in all and --min-time seconds). The table shows the fastest run, the JSON the
median too. The 1-minute load average is printed: above the core count the figures are
noisy (the ratios less so, since every cache is measured in every pass).

Ratios are ours / peer: below 1.00x LocalCache is faster (or uses less memory). The
PASS/FAIL lines at the end are informational; nothing is asserted. Never copy these
figures into tests.

A peer that is not installed is shown as n/a. LocalCache itself may be missing (the C core
not built yet): the peers are still measured.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import faulthandler
import gc
import json
import os
import random
import shlex
import subprocess
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _peers import IMPLS, TTL_SECONDS, Impl, import_local_cache, library_versions  # noqa: E402
from _report import fmt_ns, fmt_ratio, loadavg, machine_info, markdown_table, targets_lines, text_table  # noqa: E402
from _timing import (  # noqa: E402
    CONTAINS,
    SUBSCRIPT,
    empty_ns_per_key,
    measure,
    run_loop,
    summarize,
    timed_loop_ns,
)
from _workloads import WORKLOADS, make_trace  # noqa: E402

SECTIONS = ("micro", "scale", "hitratio", "memory", "tags")
OPS = ("get_hit", "get_miss", "set_new", "overwrite", "delete")
OP_LABEL = {
    "get_hit": "get hit",
    "get_miss": "get miss",
    "set_new": "set new key, full cache",
    "overwrite": "overwrite",
    "delete": "delete",
}
# Peers whose no-TTL variant is compared with LocalCache and TTL variant with LocalCache+ttl.
FAST_PEERS = (("cachebox.LRUCache", "cachebox.TTLCache"), ("theine", "theine+ttl"), ("moka", "moka+ttl"))
HIT_RATIO_IMPLS = ("LocalCache", "functools.lru_cache", "cachetools.LRUCache", "theine", "moka")
LRU_BASELINE = "functools.lru_cache"
TAGGED_MEMORY_ROW = "LocalCache, 1 tag/entry"  # 100 entries per tag
QUICK_MEMORY_IMPLS = ("dict", "functools.lru_cache", "cachetools.TTLCache", "cachebox.TTLCache")


def value_object() -> dict[str, Any]:
    """The value every entry shares: a small dict, like a cached row or profile."""
    return {"id": 42, "name": "Chez Nous", "active": True}


VALUE = value_object()


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def make_keys(prefix: str, n: int, start: int = 0) -> list[str]:
    keys = [f"{prefix}:{i:08d}" for i in range(start, start + n)]
    for k in keys:
        hash(k)  # str caches its hash: the timed loops measure the cache, not hashing
    return keys


def ours_for(impl: Impl) -> str:
    return "LocalCache+ttl" if impl.ttl else "LocalCache"


def ratio(ours: float | None, peer: float | None) -> float | None:
    if ours is None or peer is None or peer <= 0:
        return None
    return round(ours / peer, 3)


# --------------------------------------------------------------------------------------
# micro
# --------------------------------------------------------------------------------------


def _presence(impl: Impl, cache: Any, keys: list[str]) -> float | None:
    if impl.contains is None or not keys:
        return None
    return sum(1 for k in keys if impl.contains(cache, k)) / len(keys)


class NewKeys:
    """Fresh, never-used keys, made (and hashed) outside the timed loops on demand."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.next = 0

    def take(self, m: int) -> list[str]:
        keys = make_keys(self.prefix, m, self.next)
        self.next += m
        return keys


class _Subject:
    """One cache under test in the micro section, with its bound methods and samples."""

    def __init__(self, impl: Impl, n: int, fill: list[str]) -> None:
        self.impl = impl
        self.cache = impl.build(n)
        self.set_fn, self.set_extra = impl.set(self.cache, VALUE)
        run_loop(self.set_fn, self.set_extra, fill)
        impl.settle(self.cache)
        self.get_fn, self.get_extra = impl.get(self.cache) if impl.get else (None, ())
        self.del_fn, self.del_extra = impl.delete(self.cache) if impl.delete else (None, ())
        self.slicers: dict[str, _Slicer] = {}
        self.refilled = 0
        self.samples: dict[str, list[tuple[int, int]]] = {}
        self.errors: dict[str, str] = {}

    def supports(self, op: str) -> bool:
        impl = self.impl
        return {
            "get_hit": impl.get is not None,
            "get_miss": impl.has_miss,
            "overwrite": impl.overwrite,
            "delete": impl.delete is not None,
            "set_new": True,
        }[op]


# One timed run should be short enough to fit between two preemptions on a busy machine
# (a run the scheduler interrupts measures the neighbours too) and long enough for the
# clock (~100 ns) to be negligible.
RUN_NS = 2_000_000
MIN_RUN_KEYS = 500


class _Slicer:
    """Hands out the keys of successive timed runs.

    The first runs take 1,000 keys; the second (or a first one that was very slow)
    calibrates: later runs take as many keys as fit in about RUN_NS (at most the whole list, at least MIN_RUN_KEYS). Runs walk through
    the list slice by slice, so the working set over many runs is the whole list.
    `source` is a list (cycled) or a NewKeys (never repeats).
    """

    def __init__(self, source: list[str] | NewKeys, cap: int) -> None:
        self.source = source
        self.cap = cap
        self.size = min(cap, 1000)
        self.runs = 0
        self.off = 0

    def next(self) -> list[str]:
        if isinstance(self.source, NewKeys):
            return self.source.take(self.size)
        if self.off + self.size > len(self.source):
            self.off = 0
        keys = self.source[self.off : self.off + self.size]
        self.off += self.size
        return keys

    def observe(self, ns: int, n: int) -> None:
        self.runs += 1
        # calibrate on a warm run (the first ones fill the CPU caches), and only once
        if self.runs == 2 or (self.runs == 1 and ns > 10 * RUN_NS):
            per_op = max(ns / max(n, 1), 1.0)
            self.size = max(min(self.cap, MIN_RUN_KEYS), min(self.cap, int(RUN_NS / per_op)))
            self.runs = 2


def _micro_runner(sub: _Subject, op: str, hit_keys: list[str], miss_keys: list[str], new_keys: NewKeys):
    """A run_once(i) for _timing.measure: one timed loop of `op` on one cache."""
    impl, cache = sub.impl, sub.cache
    if op not in sub.slicers:
        source = {"get_miss": miss_keys, "set_new": new_keys}.get(op, hit_keys)
        sub.slicers[op] = _Slicer(source, len(hit_keys))
    slicer = sub.slicers[op]
    fn, extra = {
        "get_hit": (sub.get_fn, sub.get_extra),
        "get_miss": (sub.get_fn, sub.get_extra),
        "overwrite": (sub.set_fn, sub.set_extra),
        "set_new": (sub.set_fn, sub.set_extra),
        "delete": (sub.del_fn, sub.del_extra),
    }[op]

    def run_once(i: int) -> int:
        keys = slicer.next()
        if op == "delete":
            missing = [k for k in keys if not impl.contains(cache, k)] if impl.contains else []
            if missing:
                sub.refilled += len(missing)
                run_loop(sub.set_fn, sub.set_extra, missing)
                impl.settle(cache)
        t = timed_loop_ns(fn, extra, keys)
        if op == "delete":  # put them back for the next run
            run_loop(sub.set_fn, sub.set_extra, keys)
        if op in ("delete", "overwrite", "set_new"):
            impl.settle(cache)
        slicer.observe(t, len(keys))
        return t, len(keys)

    return run_once


def _length(impl: Impl, cache: Any) -> int | None:
    try:
        if impl.name == "functools.lru_cache":
            return cache.cache_info().currsize
        if impl.name.startswith("moka"):
            return cache.count()
        return len(cache)
    except Exception:  # noqa: BLE001
        return None


def bench_micro_local_extras(cfg: argparse.Namespace, fill: list[str], hit_keys: list[str]) -> dict:
    """LocalCache-only variants that tell the core developer where set/get time goes.

    Measured like the main table: one cache per variant, passes round-robin over them."""
    LocalCache, err = import_local_cache()
    if LocalCache is None:
        return {"error": err}
    n = len(fill)
    new_keys = NewKeys("extra")
    variants = [
        ("get hit, get(k)", lambda c: (c.get, ()), hit_keys),
        ("get hit, get(k, default)", lambda c: (c.get, (None,)), hit_keys),
        ("get hit, c[k]", lambda c: (c, SUBSCRIPT), hit_keys),
        ("k in c (hit)", lambda c: (c, CONTAINS), hit_keys),
        ("set new, value=dict (charge=getsizeof)", lambda c: (c.set, (VALUE,)), new_keys),
        ("set new, value=bytes(100) (charge=len)", lambda c: (c.set, (b"x" * 100,)), new_keys),
        ("set new, value=None", lambda c: (c.set, (None,)), new_keys),
        ("set new, size=1", lambda c: (c.set, (VALUE, None, (), 1)), new_keys),
        ("set new, ttl=60", lambda c: (c.set, (VALUE, 60)), new_keys),
        ("set new, tags=('t:1',)", lambda c: (c.set, (VALUE, None, ("t:1",))), new_keys),
        ("overwrite", lambda c: (c.set, (VALUE,)), hit_keys),
        ("overwrite, tags=('t:1',)", lambda c: (c.set, (VALUE, None, ("t:1",))), hit_keys),
    ]
    out: dict[str, Any] = {}
    live = []
    try:
        for label, fn_of, source in variants:
            try:
                c = LocalCache(max_entries=n)
                run_loop(c.set, (VALUE,), fill)
                fn, extra = fn_of(c)
                live.append((label, c, fn, extra, _Slicer(source, len(hit_keys)), []))
            except Exception as exc:  # noqa: BLE001
                out[label] = {"error": f"{type(exc).__name__}: {exc}"}
        per_pass = -(-cfg.repeat // cfg.passes)
        for _ in range(cfg.passes):
            for label, c, fn, extra, slicer, samples in live:
                if label in out:
                    continue

                def run_once(i: int, fn=fn, extra=extra, slicer=slicer) -> int:
                    keys = slicer.next()
                    t = timed_loop_ns(fn, extra, keys)
                    slicer.observe(t, len(keys))
                    return t, len(keys)

                try:
                    samples.extend(measure(run_once, cfg.warmup, per_pass, cfg.min_time / cfg.passes))
                except Exception as exc:  # noqa: BLE001
                    out[label] = {"error": f"{type(exc).__name__}: {exc}"}
        for label, c, fn, extra, slicer, samples in live:
            if label not in out:
                out[label] = summarize(samples, empty_ns_per_key(hit_keys))
    finally:
        live.clear()
        gc.collect()
    return {label: out[label] for label, _, _ in variants if label in out}


def section_micro(cfg: argparse.Namespace, impls: list[Impl]) -> dict:
    """Every cache is built first; then, op by op, --passes passes go over the caches.
    In each pass a cache gets a warm-up (>= --warmup s) and then timed runs (>= --repeat /
    --passes runs and >= --min-time s), so a burst of noise from the machine is unlikely
    to land on every run of one cache."""
    n, m = cfg.entries, cfg.ops
    log(f"[micro] {n:,} entries, {m:,} ops per run, {cfg.passes} passes over the caches")
    fill = make_keys("key", n)
    miss_keys = make_keys("miss", m)
    hit_keys = random.Random(cfg.seed).sample(fill, min(m, n))
    new_keys = NewKeys("new")
    results: dict[str, Any] = {"entries": n, "ops": len(hit_keys), "passes": cfg.passes, "impls": {}}
    subjects: list[_Subject] = []
    for impl in impls:
        if not impl.available:
            results["impls"][impl.name] = {"error": impl.error}
            continue
        try:
            sub = _Subject(impl, n, fill)
        except Exception as exc:  # noqa: BLE001
            results["impls"][impl.name] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        subjects.append(sub)
        results["impls"][impl.name] = {"present_fraction": _presence(impl, sub.cache, hit_keys)}
    per_pass = -(-cfg.repeat // cfg.passes)
    try:
        # set_new last: it churns the content the other ops rely on
        for op in ("get_hit", "get_miss", "overwrite", "delete", "set_new"):
            t0 = time.perf_counter()
            for _ in range(cfg.passes):
                for sub in subjects:
                    if not sub.supports(op) or op in sub.errors:
                        continue
                    try:
                        run_once = _micro_runner(sub, op, hit_keys, miss_keys, new_keys)
                        samples = measure(run_once, cfg.warmup, per_pass, cfg.min_time / cfg.passes)
                    except Exception as exc:  # noqa: BLE001
                        sub.errors[op] = f"{type(exc).__name__}: {exc}"
                        continue
                    sub.samples.setdefault(op, []).extend(samples)
            log(f"  {OP_LABEL[op]:<24} {time.perf_counter() - t0:5.1f}s")
        empty = empty_ns_per_key(hit_keys)
        for sub in subjects:
            res = results["impls"][sub.impl.name]
            for op, samples in sub.samples.items():
                res[op] = summarize(samples, empty)
            for op, err in sub.errors.items():
                res[op] = {"error": err}
            if "min" in res.get("get_hit", {}):
                res["get_hit"]["hit_fraction"] = res.get("present_fraction")
            if sub.refilled:
                res.setdefault("delete", {})["refilled_missing"] = sub.refilled
            res["len_after"] = _length(sub.impl, sub.cache)
    finally:
        for sub in subjects:
            sub.impl.close(sub.cache)
        subjects.clear()
        gc.collect()
    t0 = time.perf_counter()
    results["local_extras"] = bench_micro_local_extras(cfg, fill, hit_keys)
    log(f"  LocalCache variants       {time.perf_counter() - t0:5.1f}s")
    for name, res in results["impls"].items():
        impl = next(i for i in impls if i.name == name)
        ours = results["impls"].get(ours_for(impl), {})
        for op in OPS:
            if "min" in res.get(op, {}) and "min" in ours.get(op, {}):
                res[op]["ratio"] = ratio(ours[op]["min"], res[op]["min"])
    return results


# --------------------------------------------------------------------------------------
# scale
# --------------------------------------------------------------------------------------


def section_scale(cfg: argparse.Namespace, impls: list[Impl]) -> dict:
    """Per size: build and fill every cache, then time new-key inserts in passes over them."""
    sizes, m = cfg.scale_sizes, cfg.ops
    log(f"[scale] sizes {sizes}, {m:,} new keys per run, {cfg.passes} passes over the caches")
    fill = make_keys("scale", max(sizes))
    new_keys = NewKeys("scale-new")
    out: dict[str, Any] = {"sizes": sizes, "ops": m, "passes": cfg.passes, "impls": {}}
    chosen = [i for i in impls if i.bounded]
    for impl in chosen:
        out["impls"][impl.name] = {"error": impl.error} if not impl.available else {}
    per_pass = -(-cfg.repeat // cfg.passes)
    for n in sizes:
        t0 = time.perf_counter()
        live: list[tuple[Impl, Any, Any, tuple]] = []
        try:
            for impl in chosen:
                if not impl.available:
                    continue
                try:
                    cache = impl.build(n)
                    set_fn, set_extra = impl.set(cache, VALUE)
                    run_loop(set_fn, set_extra, fill[:n])
                    impl.settle(cache)
                    live.append((impl, cache, set_fn, set_extra))
                except Exception as exc:  # noqa: BLE001
                    out["impls"][impl.name][str(n)] = {"error": f"{type(exc).__name__}: {exc}"}
            fill_s = time.perf_counter() - t0
            samples: dict[str, list[tuple[int, int]]] = {}
            slicers: dict[str, _Slicer] = {}
            failed: set[str] = set()
            for _ in range(cfg.passes):
                for impl, cache, set_fn, set_extra in live:
                    if impl.name in failed:
                        continue

                    slicer = slicers.setdefault(impl.name, _Slicer(new_keys, m))

                    def run_once(i: int, impl=impl, cache=cache, set_fn=set_fn, set_extra=set_extra,
                                 slicer=slicer) -> int:
                        keys = slicer.next()
                        t = timed_loop_ns(set_fn, set_extra, keys)
                        impl.settle(cache)
                        slicer.observe(t, len(keys))
                        return t, len(keys)

                    try:
                        samples.setdefault(impl.name, []).extend(
                            measure(run_once, cfg.warmup, per_pass, cfg.min_time / cfg.passes)
                        )
                    except Exception as exc:  # noqa: BLE001
                        out["impls"][impl.name][str(n)] = {"error": f"{type(exc).__name__}: {exc}"}
                        failed.add(impl.name)
            for impl, cache, _, _ in live:
                if impl.name in samples and impl.name not in failed:
                    out["impls"][impl.name][str(n)] = summarize(samples[impl.name], empty_ns_per_key(fill[:m]))
                    out["impls"][impl.name][str(n)]["len_after"] = _length(impl, cache)
        finally:
            for impl, cache, _, _ in live:
                impl.close(cache)
            live.clear()
            gc.collect()
        log(f"  {n:>9,} entries: fill {fill_s:5.1f}s, total {time.perf_counter() - t0:5.1f}s")
    for name, row in out["impls"].items():
        big, small = row.get(str(max(sizes)), {}), row.get(str(min(sizes)), {})
        if "min" in big and "min" in small and small["min"] > 0:
            row["growth"] = round(big["min"] / small["min"], 3)
        impl = next(i for i in impls if i.name == name)
        ours = out["impls"].get(ours_for(impl), {})
        for n in sizes:
            a, b = ours.get(str(n), {}), row.get(str(n), {})
            if "min" in a and "min" in b:
                b["ratio"] = ratio(a["min"], b["min"])
    return out


# --------------------------------------------------------------------------------------
# hit ratio
# --------------------------------------------------------------------------------------


def _sim_none(get, set_, trace) -> int:
    hits = 0
    for k in trace:
        if get(k) is None:
            set_(k, k)
        else:
            hits += 1
    return hits


def _sim_theine(get, set_, trace) -> int:
    hits = 0
    for k in trace:
        if get(k)[1]:
            hits += 1
        else:
            set_(k, k)
    return hits


def _sim_lru_cache(fn, trace) -> int:
    for k in trace:
        fn(k)
    return fn.cache_info().hits


def simulate(impl: Impl, size: int, trace: list[str]) -> dict:
    cache = impl.build(size)
    try:
        t0 = time.perf_counter()
        if impl.name == "functools.lru_cache":
            hits = _sim_lru_cache(cache, trace)
        elif impl.name.startswith("theine"):
            hits = _sim_theine(cache.get, cache.set, trace)
        else:
            get, _ = impl.get(cache)
            set_fn, _ = impl.set(cache, None)
            hits = _sim_none(get, set_fn, trace)
        elapsed = time.perf_counter() - t0
        res: dict[str, Any] = {"hits": hits, "hit_ratio": round(100.0 * hits / len(trace), 3)}
        res["seconds"] = round(elapsed, 2)
        impl.settle(cache)
        res["len_after"] = _length(impl, cache)
        if impl.ours:
            st = cache.stats()
            res["stats"] = {k: st.get(k) for k in ("hits", "misses", "sets", "evictions", "entries")}
            checks = []
            if st.get("hits") != hits:
                checks.append(f"stats()['hits']={st.get('hits')} but {hits} gets returned a value")
            if st.get("misses") != len(trace) - hits:
                checks.append(f"stats()['misses']={st.get('misses')} but {len(trace) - hits} gets missed")
            if res["len_after"] is not None and res["len_after"] > size:
                checks.append(f"len={res['len_after']} exceeds max_entries={size}")
            if checks:
                res["check_failures"] = checks
        elif res["len_after"] is not None and res["len_after"] > size:
            res["note"] = f"holds {res['len_after']} > {size} entries"
        return res
    finally:
        impl.close(cache)
        del cache
        gc.collect()


def section_hitratio(cfg: argparse.Namespace, impls: list[Impl]) -> dict:
    names = [i for i in HIT_RATIO_IMPLS if any(x.name == i for x in impls)]
    chosen = [next(x for x in impls if x.name == nm) for nm in names]
    sizes = [max(1, round(cfg.key_space * f)) for f in (0.01, 0.10)]
    log(f"[hitratio] {cfg.trace_length:,} accesses over {cfg.key_space:,} keys, cache sizes {sizes}")
    out: dict[str, Any] = {
        "trace_length": cfg.trace_length,
        "key_space": cfg.key_space,
        "seed": cfg.seed,
        "sizes": sizes,
        "workloads": {},
    }
    for w in WORKLOADS:
        trace, desc = make_trace(w, cfg.trace_length, cfg.key_space, cfg.seed)
        wres: dict[str, Any] = {"description": desc, "distinct_keys": len(set(trace)), "sizes": {}}
        out["workloads"][w] = wres
        for size in sizes:
            sres: dict[str, Any] = {}
            wres["sizes"][str(size)] = sres
            for impl in chosen:
                if not impl.available:
                    sres[impl.name] = {"error": impl.error}
                    continue
                try:
                    sres[impl.name] = simulate(impl, size, trace)
                except Exception as exc:  # noqa: BLE001
                    sres[impl.name] = {"error": f"{type(exc).__name__}: {exc}"}
            ours = sres.get("LocalCache", {}).get("hit_ratio")
            for ref in (LRU_BASELINE, "theine"):
                theirs = sres.get(ref, {}).get("hit_ratio")
                if ours is not None and theirs is not None:
                    sres.setdefault("delta_points", {})[ref] = round(ours - theirs, 3)
            line = "  ".join(
                f"{nm}={sres[nm]['hit_ratio']:.2f}%" if "hit_ratio" in sres.get(nm, {}) else f"{nm}=n/a"
                for nm in names
            )
            log(f"  {w:<10} size={size:<6} {line}")
        del trace
    return out


# --------------------------------------------------------------------------------------
# memory
# --------------------------------------------------------------------------------------


def _rss_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def memory_child(name: str, n: int, mode: str) -> dict:
    """Run in a fresh interpreter: build one cache of n entries, report its footprint."""
    tagged = name == TAGGED_MEMORY_ROW
    impl = next(i for i in IMPLS if i.name == ("LocalCache" if tagged else name))
    if not impl.available:
        return {"error": impl.error}
    keys = make_keys("mem", n)
    value = VALUE
    tag_lists = [(f"group:{i // 100}",) for i in range(n)] if tagged else None
    gc.collect()
    if mode == "tracemalloc":
        import tracemalloc

        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
    else:
        before = _rss_bytes()
    cache = impl.build(n)
    set_fn, extra = impl.set(cache, value)
    if tag_lists is not None:
        for k, tags in zip(keys, tag_lists):
            set_fn(k, value, None, tags)
    else:
        run_loop(set_fn, extra, keys)
    impl.settle(cache)
    gc.collect()
    if mode == "tracemalloc":
        import tracemalloc

        after, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    else:
        after, peak = _rss_bytes(), None
    length = _length(impl, cache)
    res: dict[str, Any] = {
        "entries": n,
        "len": length,
        "delta_bytes": after - before,
        "bytes_per_entry": round((after - before) / (length or n), 1),
    }
    if peak is not None:
        res["peak_bytes_per_entry"] = round((peak - before) / (length or n), 1)
    if impl.ours:
        st = cache.stats()
        if "overhead_bytes" in st:
            res["stats_overhead_bytes_per_entry"] = round(st["overhead_bytes"] / (length or n), 1)
    return res


def section_memory(cfg: argparse.Namespace, impls: list[Impl]) -> dict:
    n = cfg.memory_entries
    log(f"[memory] {n:,} entries, one subprocess per cache and method")
    env = dict(os.environ)
    # the child must import tieredcache the same way the parent did
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    out: dict[str, Any] = {"entries": n, "impls": {}}
    rows: list[tuple[str, Impl]] = []
    for impl in impls:
        if cfg.quick and not (impl.ours or impl.name in QUICK_MEMORY_IMPLS):
            continue
        rows.append((impl.name, impl))
        if impl.name == "LocalCache":
            rows.append((TAGGED_MEMORY_ROW, impl))
    for name, impl in rows:
        if not impl.available:
            out["impls"][name] = {"error": impl.error}
            continue
        row: dict[str, Any] = {}
        t0 = time.perf_counter()
        for mode in ("tracemalloc", "rss"):
            cmd = [sys.executable, os.path.abspath(__file__), "--memory-child", name, str(n), mode]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
            if proc.returncode != 0:
                row[mode] = {"error": (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]}
            else:
                row[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
        row["tracemalloc_complete"] = impl.dist not in ("cachebox", "theine", "moka-py")
        out["impls"][name] = row
        log(f"  {name:<22} {time.perf_counter() - t0:5.1f}s")
    for name, row in out["impls"].items():
        if name == TAGGED_MEMORY_ROW:
            continue
        impl = next(i for i in impls if i.name == name)
        ours = out["impls"].get(ours_for(impl), {})
        for mode in ("tracemalloc", "rss"):
            a, b = ours.get(mode, {}), row.get(mode, {})
            if isinstance(b, dict) and "bytes_per_entry" in a and "bytes_per_entry" in b:
                b["ratio"] = ratio(a["bytes_per_entry"], b["bytes_per_entry"])
    return out


# --------------------------------------------------------------------------------------
# tags
# --------------------------------------------------------------------------------------


def section_tags(cfg: argparse.Namespace, impls: list[Impl]) -> dict:
    t, r = cfg.tag_entries, cfg.tag_repeat
    log(f"[tags] invalidate {t:,} of {2 * t:,} entries, {r} repeats")
    hot = make_keys("hot", t)
    cold = make_keys("cold", t)
    out: dict[str, Any] = {"entries": 2 * t, "invalidated": t, "repeats": r, "rows": {}}
    LocalCache, err = import_local_cache()

    def record(label: str, times: list[float], extra: dict | None = None) -> None:
        times.sort()
        out["rows"][label] = {
            "min_ms": round(times[0] * 1e3, 3),
            "median_ms": round(times[len(times) // 2] * 1e3, 3),
            "ns_per_entry": round(times[0] * 1e9 / t, 1),
            **(extra or {}),
        }

    if LocalCache is None:
        out["rows"]["LocalCache invalidate_tags"] = {"error": err}
    else:
        for label, how in (
            ("LocalCache invalidate_tags (1 call)", "tag"),
            ("LocalCache invalidate_prefix (1 call)", "prefix"),
            ("LocalCache delete loop (100k calls)", "loop"),
        ):
            try:
                times, counts = [], []
                for _ in range(r):
                    c = LocalCache(max_entries=2 * t)
                    cset = c.set
                    for k in hot:
                        cset(k, VALUE, tags=("t:hot",))
                    for k in cold:
                        cset(k, VALUE, tags=("t:cold",))
                    gc.collect()
                    gc.disable()
                    t0 = time.perf_counter()
                    if how == "tag":
                        removed = c.invalidate_tags("t:hot")
                    elif how == "prefix":
                        removed = c.invalidate_prefix("hot:")
                    else:
                        run_loop(c.delete, (), hot)
                        removed = 2 * t - len(c)
                    times.append(time.perf_counter() - t0)
                    gc.enable()
                    counts.append((removed, len(c)))
                    del c
                    gc.collect()
                extra = {"removed": counts[0][0], "len_after": counts[0][1]}
                if any(cnt != (t, t) for cnt in counts):
                    extra["check_failure"] = f"expected {t} removed and {t} left, got {counts}"
                record(label, times, extra)
            except Exception as exc:  # noqa: BLE001
                out["rows"][label] = {"error": f"{type(exc).__name__}: {exc}"}
    for impl in impls:
        if impl.ours or not impl.bounded or impl.delete is None or not impl.ttl:
            continue
        label = f"{impl.name} delete loop (100k calls)"
        if not impl.available:
            out["rows"][label] = {"error": impl.error}
            continue
        try:
            times = []
            for _ in range(r):
                c = impl.build(2 * t)
                set_fn, extra = impl.set(c, VALUE)
                run_loop(set_fn, extra, hot)
                run_loop(set_fn, extra, cold)
                impl.settle(c)
                del_fn, del_extra = impl.delete(c)
                gc.collect()
                gc.disable()
                t0 = time.perf_counter()
                run_loop(del_fn, del_extra, hot)
                times.append(time.perf_counter() - t0)
                gc.enable()
                impl.close(c)
                del c
                gc.collect()
            record(label, times, {"note": "no tags: the application keeps the key list"})
        except Exception as exc:  # noqa: BLE001
            out["rows"][label] = {"error": f"{type(exc).__name__}: {exc}"}
    return out


# --------------------------------------------------------------------------------------
# targets
# --------------------------------------------------------------------------------------


def _micro_min(res: dict, impl: str, op: str) -> float | None:
    return res.get("micro", {}).get("impls", {}).get(impl, {}).get(op, {}).get("min")


def evaluate_targets(res: dict) -> list[dict]:
    targets: list[dict] = []

    def add(name: str, ok: bool | None, detail: str) -> None:
        targets.append({"target": name, "status": "n/a" if ok is None else ("PASS" if ok else "FAIL"), "detail": detail})

    if "micro" in res:
        ours, lru = _micro_min(res, "LocalCache", "get_hit"), _micro_min(res, "functools.lru_cache", "get_hit")
        rt = ratio(ours, lru)
        add("get hit within 1.2x of lru_cache hit", None if rt is None else rt <= 1.2,
            f"LocalCache {fmt_ns(ours)} ns vs lru_cache {fmt_ns(lru)} ns = {fmt_ratio(rt)}")
        ours_t, tc = _micro_min(res, "LocalCache+ttl", "get_hit"), _micro_min(res, "cachetools.TTLCache", "get_hit")
        sp = None if not ours_t or tc is None else tc / ours_t
        add("get hit (TTL) >= 6x faster than cachetools.TTLCache", None if sp is None else sp >= 6,
            f"LocalCache+ttl {fmt_ns(ours_t)} ns vs TTLCache {fmt_ns(tc)} ns = "
            + ("n/a" if sp is None else f"{sp:.1f}x faster"))
        for op in ("get_hit", "set_new"):
            for variant in (0, 1):
                ours_name = ("LocalCache", "LocalCache+ttl")[variant]
                ours_v = _micro_min(res, ours_name, op)
                parts, oks = [], []
                for pair in FAST_PEERS:
                    peer = pair[variant]
                    pv = _micro_min(res, peer, op)
                    rt = ratio(ours_v, pv)
                    parts.append(f"{peer} {fmt_ratio(rt)}")
                    if rt is not None:
                        oks.append(rt < 1.0)
                ok = None if not oks else all(oks)
                add(f"{OP_LABEL[op]} faster than cachebox/theine/moka ({'TTL' if variant else 'no TTL'})", ok,
                    f"{ours_name}/peer: " + ", ".join(parts))
    if "scale" in res:
        sizes = res["scale"]["sizes"]
        for nm in ("LocalCache", "LocalCache+ttl"):
            row = res["scale"]["impls"].get(nm, {})
            g = row.get("growth")
            add(f"{nm} set at {max(sizes):,} within 1.3x of {min(sizes):,}", None if g is None else g <= 1.3,
                f"{fmt_ns(row.get(str(max(sizes)), {}).get('min'))} ns vs "
                f"{fmt_ns(row.get(str(min(sizes)), {}).get('min'))} ns = {fmt_ratio(g)}")
    if "hitratio" in res:
        lose_lru, lose_theine, n_cells = [], [], 0
        for w, wres in res["hitratio"]["workloads"].items():
            for size, sres in wres["sizes"].items():
                d = sres.get("delta_points", {})
                if LRU_BASELINE in d:
                    n_cells += 1
                    if d[LRU_BASELINE] < 0:
                        lose_lru.append(f"{w}@{size} {d[LRU_BASELINE]:+.2f}pt")
                if "theine" in d and d["theine"] < -1.0:
                    lose_theine.append(f"{w}@{size} {d['theine']:+.2f}pt")
        add("hit ratio >= LRU on every workload", None if not n_cells else not lose_lru,
            "below LRU: " + (", ".join(lose_lru) or "none"))
        add("hit ratio within 1 point of theine", None if not n_cells else not lose_theine,
            "more than 1 point below theine: " + (", ".join(lose_theine) or "none"))
    if "memory" in res:
        for nm in ("LocalCache", "LocalCache+ttl"):
            tm = res["memory"]["impls"].get(nm, {}).get("tracemalloc", {})
            b = tm.get("bytes_per_entry")
            rss = res["memory"]["impls"].get(nm, {}).get("rss", {}).get("bytes_per_entry")
            add(f"{nm} <= 64 bytes metadata per entry", None if b is None else b <= 64,
                f"tracemalloc {b if b is not None else 'n/a'} B/entry (RSS {rss if rss is not None else 'n/a'} B/entry)")
    return targets


# --------------------------------------------------------------------------------------
# output
# --------------------------------------------------------------------------------------


def _cell(d: dict | None, key: str = "min") -> str:
    if not d or "error" in d:
        return "n/a"
    v = d.get(key)
    s = fmt_ns(v)
    hf = d.get("hit_fraction")
    if hf is not None and hf < 0.99:
        s += f" ({hf:.0%} hit)"
    return s


def render(res: dict, markdown: bool) -> str:
    table = markdown_table if markdown else text_table
    out: list[str] = []

    def h(title: str) -> None:
        out.append(("\n### " if markdown else "\n== ") + title + ("\n" if markdown else " =="))

    def p(text: str) -> None:
        out.append(text if not markdown else text + "\n")

    meta = res["meta"]
    load = [x for x in (meta.get("loadavg_start"), meta.get("loadavg_end")) if x]
    cores = meta["machine"].get("usable_cores") or 1
    busy = any(x[0] > max(cores - 1, 0) + 0.5 for x in load)
    load_line = ("load average (1 min) at start/end: " + " / ".join(f"{x[0]:.2f}" for x in load)
                 + (f" on {cores} cores: OTHER PROCESSES WERE RUNNING, timings are noisy" if busy else ""))
    if markdown:
        out.append("## LocalCache against in-process peers\n")
        out.append(f"- command: `{meta['command']}`")
        out.append(f"- date: {meta['date']}")
        m = meta["machine"]
        out.append(f"- machine: {m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable), "
                   f"{m['memory_gib']} GiB, {m['os']}")
        out.append(f"- Python: {m['python']} ({m['compiler']})")
        out.append("- versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()))
        out.append(f"- LocalCache: {meta['local_cache']}")
        out.append(f"- {load_line}")
        out.append("")
        out.append("Ratios are LocalCache / peer (below 1.00x: LocalCache is faster or smaller); "
                   "TTL variants are compared with `LocalCache+ttl` "
                   f"(`default_ttl={TTL_SECONDS}`), the others with `LocalCache`.")
        out.append("")
        out.append("Method: each timed run is `for k in keys: method(k, *args)` over a pre-built list "
                   "of pre-hashed `str` keys, calling the cache's own bound method, with the garbage "
                   "collector off and the cost of the same loop with an empty body subtracted. A run "
                   "lasts about 2 ms (short enough to fit between preemptions); every cache gets a "
                   "warm-up and then timed runs in several passes over all the caches, and the table "
                   "shows the fastest run (the JSON has the median). Every entry holds the same small "
                   "dict value. Hit ratios come from a cache-aside simulation (get; on a miss, set) of "
                   "seeded synthetic traces. Memory is measured in a fresh interpreter per cache.")
    else:
        m = meta["machine"]
        out.append(f"{meta['date']}  {m['cpu']}, {m['cores']} cores, {m['python']}")
        out.append(f"LocalCache: {meta['local_cache']}")
        out.append(load_line)
        out.append("ratios are LocalCache / peer (TTL variants vs LocalCache+ttl); < 1.00x = LocalCache faster")

    if "micro" in res:
        mi = res["micro"]
        h(f"ns/op, cache of {mi['entries']:,} entries (fastest ~2 ms run of up to {mi['ops']:,} keys)")
        headers = ["cache"]
        for op in OPS:
            headers += [OP_LABEL[op], "ratio"]
        rows = []
        for name, r in mi["impls"].items():
            row = [name]
            for op in OPS:
                d = r.get(op)
                row.append(_cell(d))
                row.append("" if name.startswith("LocalCache") else fmt_ratio((d or {}).get("ratio")))
            rows.append(row)
        out.append(table(headers, rows))
        notes = [f"{i.name}: {i.note}" for i in IMPLS if i.note and i.name in mi["impls"]]
        errs = [f"{n}: {r['error']}" for n, r in mi["impls"].items() if "error" in r]
        if notes or errs:
            if markdown:
                out.append("")
                out.extend(f"- {x}" for x in notes + errs)
            else:
                p("")
                p("notes: " + "; ".join(notes + errs))
        ex = mi.get("local_extras", {})
        if ex and "error" not in ex:
            h("LocalCache variants (ns/op)")
            out.append(table(["LocalCache call", "ns/op", "median"],
                             [[k, _cell(v), _cell(v, "median")] for k, v in ex.items()]))
    if "scale" in res:
        sc = res["scale"]
        h(f"set of a new key into a full cache, ns/op by cache size (fastest ~2 ms run of up to {sc['ops']:,} keys)")
        headers = ["cache"]
        for n in sc["sizes"]:
            headers += [f"{n:,}", "ratio"]
        headers.append(f"{max(sc['sizes']) // 1000:,}k / {min(sc['sizes']) // 1000:,}k")
        rows = []
        for name, r in sc["impls"].items():
            row = [name]
            for n in sc["sizes"]:
                d = r.get(str(n))
                row += [_cell(d), "" if name.startswith("LocalCache") else fmt_ratio((d or {}).get("ratio"))]
            row.append(fmt_ratio(r.get("growth")))
            rows.append(row)
        out.append(table(headers, rows))
    if "hitratio" in res:
        hr = res["hitratio"]
        h(f"hit ratio %, cache-aside, {hr['trace_length']:,} accesses over {hr['key_space']:,} keys (seed {hr['seed']})")
        names = list(HIT_RATIO_IMPLS)
        headers = ["workload", "size"] + [("LRU (lru_cache)" if n == LRU_BASELINE else n) for n in names]
        headers += ["ours - LRU", "ours - theine"]
        rows = []
        for w, wres in hr["workloads"].items():
            for size, sres in wres["sizes"].items():
                row = [w, f"{int(size):,}"]
                for n in names:
                    d = sres.get(n, {})
                    row.append(f"{d['hit_ratio']:.2f}" if "hit_ratio" in d else "n/a")
                dp = sres.get("delta_points", {})
                row.append(f"{dp[LRU_BASELINE]:+.2f}" if LRU_BASELINE in dp else "n/a")
                row.append(f"{dp['theine']:+.2f}" if "theine" in dp else "n/a")
                rows.append(row)
        out.append(table(headers, rows, "ll" + "r" * (len(headers) - 2)))
        descs = [f"{w}: " + ", ".join(f"{k}={v}" for k, v in wres["description"].items())
                 for w, wres in hr["workloads"].items()]
        p("")
        p("workloads: " + "; ".join(descs))
        checks = [f"{w}@{s} {n}: {c}" for w, wres in hr["workloads"].items() for s, sres in wres["sizes"].items()
                  for n, d in sres.items() if isinstance(d, dict) for c in d.get("check_failures", [])]
        if checks:
            p("CHECK FAILURES: " + "; ".join(checks))
    if "memory" in res:
        me = res["memory"]
        h(f"memory per entry beyond key and value objects, {me['entries']:,} entries")
        rows = []
        for name, r in me["impls"].items():
            tm, rs = r.get("tracemalloc", {}), r.get("rss", {})
            if "error" in r:
                rows.append([name, "n/a", "", "n/a", ""])
                continue
            tmv = tm.get("bytes_per_entry")
            tms = "n/a" if tmv is None else f"{tmv:.1f}" + ("" if r.get("tracemalloc_complete") else " (partial)")
            rows.append([
                name,
                tms,
                "" if name.startswith("LocalCache") or not r.get("tracemalloc_complete") else fmt_ratio(tm.get("ratio")),
                "n/a" if rs.get("bytes_per_entry") is None else f"{rs['bytes_per_entry']:.1f}",
                "" if name.startswith("LocalCache") else fmt_ratio(rs.get("ratio")),
            ])
        out.append(table(["cache", "tracemalloc B/entry", "ratio", "RSS B/entry", "ratio"], rows))
        p("")
        p("(partial): Rust peers allocate outside tracemalloc; use the RSS column for them.")
    if "tags" in res:
        tg = res["tags"]
        h(f"invalidate {tg['invalidated']:,} of {tg['entries']:,} entries (min of {tg['repeats']})")
        rows = []
        for label, d in tg["rows"].items():
            if "error" in d:
                rows.append([label, "n/a", "n/a", "n/a"])
            else:
                rows.append([label, f"{d['min_ms']:.2f}", f"{d['median_ms']:.2f}", f"{d['ns_per_entry']:.0f}"])
        out.append(table(["operation", "ms", "median ms", "ns/entry"], rows))
        fails = [f"{k}: {d['check_failure']}" for k, d in tg["rows"].items() if "check_failure" in d]
        if fails:
            p("")
            p("CHECK FAILURES: " + "; ".join(fails))
    if res.get("targets"):
        h("targets (informational)")
        out.extend(targets_lines(res["targets"], markdown))
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer repeats, shorter traces, fewer memory peers (~1.5 minutes)")
    ap.add_argument("--sections", default=",".join(SECTIONS), help=f"comma separated subset of {','.join(SECTIONS)}")
    ap.add_argument("--impls", default=None, help="comma separated cache names to include (LocalCache always is)")
    ap.add_argument("--seed", type=int, default=20240601)
    ap.add_argument("--entries", type=int, default=100_000, help="cache size for the micro section")
    ap.add_argument("--ops", type=int, default=None, help="keys per timed run (default 20k)")
    ap.add_argument("--repeat", type=int, default=None, help="at least this many timed runs per figure (default 10, quick 5)")
    ap.add_argument("--warmup", type=float, default=None, help="seconds of untimed runs before each series (default 0.02)")
    ap.add_argument("--min-time", type=float, default=None, help="at least this many seconds of timed runs per figure (default 0.3, quick 0.1)")
    ap.add_argument("--passes", type=int, default=5, help="passes over the caches the timed runs are split into")
    ap.add_argument("--trace-length", type=int, default=None, help="accesses per trace (default 1M, quick 300k)")
    ap.add_argument("--key-space", type=int, default=100_000)
    ap.add_argument("--memory-entries", type=int, default=1_000_000)
    ap.add_argument("--tag-entries", type=int, default=100_000)
    ap.add_argument("--json", metavar="PATH", help="write every figure as JSON")
    ap.add_argument("--markdown", metavar="PATH", help="write a Markdown section for docs/benchmarks.md")
    ap.add_argument("--memory-child", nargs=3, metavar=("IMPL", "N", "MODE"), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    a.ops = a.ops or 20_000
    a.repeat = a.repeat or (5 if a.quick else 10)
    a.passes = max(1, min(a.passes, a.repeat))
    a.warmup = a.warmup if a.warmup is not None else 0.02
    a.min_time = a.min_time if a.min_time is not None else (0.1 if a.quick else 0.3)
    a.trace_length = a.trace_length or (300_000 if a.quick else 1_000_000)
    a.scale_sizes = [10_000, 100_000, 1_000_000]
    a.tag_repeat = 3 if a.quick else 5
    return a


def main(argv: list[str]) -> int:
    faulthandler.enable()
    cfg = parse_args(argv)
    if cfg.memory_child:
        name, n, mode = cfg.memory_child
        print(json.dumps(memory_child(name, int(n), mode)))
        return 0
    sections = [s.strip() for s in cfg.sections.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise SystemExit(f"unknown sections: {', '.join(sorted(unknown))}")
    impls = IMPLS
    if cfg.impls:
        wanted = {s.strip() for s in cfg.impls.split(",")}
        unknown = wanted - {i.name for i in IMPLS}
        if unknown:
            raise SystemExit(f"unknown caches: {', '.join(sorted(unknown))}; known: {', '.join(i.name for i in IMPLS)}")
        impls = [i for i in IMPLS if i.ours or i.name in wanted]
    LocalCache, err = import_local_cache()
    versions = library_versions()
    if LocalCache is None:
        log(f"LocalCache unavailable ({err}); measuring the peers only")
        local_desc = f"n/a ({err})"
    else:
        import tieredcache

        versions["tieredcache"] = getattr(tieredcache, "__version__", "?")
        local_desc = f"tieredcache {versions['tieredcache']} from {os.path.dirname(tieredcache.__file__)}"
    res: dict[str, Any] = {
        "meta": {
            "command": " ".join(["python", "benchmarks/bench_local.py"] + [shlex.quote(a) for a in argv]),
            "date": _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
            "machine": machine_info(),
            "versions": versions,
            "local_cache": local_desc,
            "config": {k: v for k, v in vars(cfg).items() if k not in ("json", "markdown", "memory_child")},
            "value": repr(VALUE),
            "ttl_seconds": TTL_SECONDS,
            "unavailable": {i.name: i.error for i in IMPLS if not i.available},
        }
    }
    res["meta"]["loadavg_start"] = loadavg()
    started = time.perf_counter()
    for s in sections:
        t0 = time.perf_counter()
        res[s] = {"micro": section_micro, "scale": section_scale, "hitratio": section_hitratio,
                  "memory": section_memory, "tags": section_tags}[s](cfg, impls)
        res[s]["seconds"] = round(time.perf_counter() - t0, 1)
    res["meta"]["seconds"] = round(time.perf_counter() - started, 1)
    res["meta"]["loadavg_end"] = loadavg()
    res["targets"] = evaluate_targets(res)
    sys.stdout.write(render(res, markdown=False))
    if cfg.json:
        with open(cfg.json, "w", encoding="utf-8") as fh:
            json.dump(res, fh, indent=2, sort_keys=False)
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

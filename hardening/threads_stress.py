"""Thread stress (issue 7, campaign 4): many threads hammer one cache through every public
operation, then the cache is checked.

Phases (each on a fresh cache, THREADS threads x OPS operations per thread):

  local        LocalCache: get, set, delete, get_many, set_many, ttl, touch, invalidate_tags,
               invalidate_prefix, clear, expire, keys, stats, len, in (str and bytes keys)
  tiered-l1    TieredCache without Redis: get, set, delete, get_many, set_many,
               invalidate_tags, invalidate_prefix, clear, stats, get_or_set with loaders
               that sometimes raise or sleep, and a function decorated with @cache.cached
  tiered-redis the same with a private Redis (tieredcache.testing.RedisServer)

Checks, after each phase (a failure of any one fails the run):

  * no hang: a watchdog (faulthandler.dump_traceback_later(60, exit=True)) is re-armed
    while operations make progress; 60 s without progress dumps every thread's stack
    and exits with status 1;
  * no corruption: LocalCache._selfcheck() (table, wheel, tag index, policy) passes, and
    every value read back belongs to the key it was read under (values carry their key);
  * bounds: entries <= max_entries, bytes and peak_bytes <= max_bytes (also sampled
    during the phase);
  * counters: LocalCache hits + misses == the lookups made (get: one, get_many: one per
    key); TieredCache loads == loader calls observed and load_errors == loader calls
    that raised;
  * loader calls, none lost: every get_or_set / decorated call returns its key's value
    or raises the loader's own exception (LoaderBoom), nothing else;
  * loader calls, none duplicated beyond the single-flight guarantee (docs/concepts.md,
    "Stampede protection": concurrent misses on one key call the loader once; callers
    who arrive after an invalidation do not share a load that started before it): when
    a loader starts while another loader of the same key runs, some invalidation that
    can reach that key (a set/delete of it, an invalidation of one of its tags, a prefix
    invalidation or clear, counted by the harness before and after each call) must
    overlap the window from the earlier of the two calls to the later loader's start.
    The cache hashes keys and tags into 4096 generation slots (a collision only skips a
    fill or splits a flight), so "can reach" is computed on those slots.

Prints one line of figures per phase and, at the end, a JSON summary on the last line
starting with "RESULT ". Exit status 0 when every check passed.

``--mutant split-flights`` checks the single-flight check itself: it makes every caller a
leader, and the run must then fail with "duplicate_loads" > 0.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import random
import sys
import threading
import time
from typing import Any, Callable

import tieredcache
from tieredcache import LocalCache, TieredCache
from tieredcache.testing import advance_clock, reset_clock

WATCHDOG = 60.0
SLOTS = 4096  # _tiered._SLOTS: generation slots (checked against the module below)


class LoaderBoom(Exception):
    """The exception the stress loaders raise on purpose."""


class Failures:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.items: list[str] = []

    def add(self, what: str) -> None:
        with self.lock:
            if len(self.items) < 50:
                self.items.append(what)
            else:
                self.items[-1] = f"... and more ({what})"

    def __bool__(self) -> bool:
        return bool(self.items)


class Watchdog:
    """Re-arms faulthandler's timer whenever the progress counter moved."""

    def __init__(self) -> None:
        self.progress = [0]
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self, phase: str) -> None:
        print(f"[{phase}] watchdog armed: {WATCHDOG:g} s without progress dumps stacks and exits", flush=True)
        faulthandler.dump_traceback_later(WATCHDOG, exit=True)
        self.stop.clear()
        self.thread = threading.Thread(target=self._run, name="watchdog", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        last = -1
        while not self.stop.wait(1.0):
            now = sum(self.progress)
            if now != last:
                last = now
                faulthandler.dump_traceback_later(WATCHDOG, exit=True)

    def finish(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join()
        faulthandler.cancel_dump_traceback_later()


def run_threads(n: int, target: Callable[[int], None], failures: Failures) -> None:
    def wrap(i: int) -> None:
        try:
            target(i)
        except BaseException as exc:  # a thread's crash is a failure, with its traceback
            import traceback

            failures.add(f"thread {i} crashed: {''.join(traceback.format_exception(exc))[-1500:]}")

    threads = [threading.Thread(target=wrap, args=(i,), name=f"stress-{i}") for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


# ---- phase 1: LocalCache ------------------------------------------------------------------

def phase_local(threads: int, ops: int, dog: Watchdog, seed: int) -> dict[str, Any]:
    max_entries, max_bytes = 400, 60_000
    cache = LocalCache(max_entries=max_entries, max_bytes=max_bytes, default_ttl=None)
    failures = Failures()
    keys: list[Any] = [f"k{i}" for i in range(2000)] + [f"k{i}".encode() for i in range(200)]
    tags = [f"t{i}" for i in range(12)]
    lookups = [0] * threads
    counts = [0] * threads
    dog.progress = counts

    def value_for(key: Any, rnd: random.Random) -> Any:
        pad = "x" * rnd.randrange(0, 300)
        if isinstance(key, bytes):
            return key + b"|" + pad.encode()
        return key + "|" + pad

    def check(key: Any, value: Any) -> None:
        sep = b"|" if isinstance(key, bytes) else "|"
        if not (type(value) is type(key) and value.startswith(key + sep)):
            failures.add(f"local: {key!r} read back a value of another key: {value!r:.60}")

    def worker(t: int) -> None:
        rnd = random.Random(seed * 1000 + t)
        ttls = (None, None, None, 0.002, 0.05, 30.0)
        for i in range(ops):
            counts[t] = i
            r = rnd.random()
            k = rnd.choice(keys) if rnd.random() < 0.5 else keys[rnd.randrange(50)]
            if r < 0.30:
                v = cache.get(k)
                lookups[t] += 1
                if v is not None:
                    check(k, v)
            elif r < 0.55:
                cache.set(k, value_for(k, rnd), ttl=rnd.choice(ttls), tags=rnd.sample(tags, rnd.randrange(0, 3)))
            elif r < 0.58:
                cache.delete(k)
            elif r < 0.66:
                batch = rnd.sample(keys, rnd.randrange(1, 8))
                got = cache.get_many(batch)
                lookups[t] += len(batch)
                for kk, vv in got.items():
                    if kk not in batch:
                        failures.add(f"local: get_many returned a key not asked for: {kk!r}")
                    check(kk, vv)
            elif r < 0.74:
                batch = rnd.sample(keys, rnd.randrange(1, 6))
                cache.set_many({kk: value_for(kk, rnd) for kk in batch}, ttl=rnd.choice(ttls),
                               tags=rnd.sample(tags, rnd.randrange(0, 2)))
            elif r < 0.78:
                try:
                    left = cache.ttl(k)
                    if left is not None and not (0 <= left <= 30.0):
                        failures.add(f"local: ttl({k!r}) = {left}")
                except KeyError:
                    pass
            elif r < 0.82:
                cache.touch(k, rnd.choice((None, 0.05, 30.0)))
            elif r < 0.835:
                cache.invalidate_tags(*rnd.sample(tags, rnd.randrange(1, 3)))
            elif r < 0.84:
                cache.invalidate_prefix(rnd.choice(("k1", "k2", "k3", b"k1", "k29", "k10", "k")))
            elif r < 0.8401:
                cache.clear()
            elif r < 0.845:
                cache.expire()
            elif r < 0.855:
                for kk in cache.keys():
                    if kk not in keys_set:
                        failures.add(f"local: keys() returned an unknown key {kk!r:.60}")
            elif r < 0.87:
                s = cache.stats()
                if s["entries"] > max_entries or s["bytes"] > max_bytes:
                    failures.add(f"local: bounds exceeded during the run: {s['entries']} entries, {s['bytes']} bytes")
            elif r < 0.93:
                if len(cache) > max_entries:
                    failures.add(f"local: len() = {len(cache)} > {max_entries}")
            else:
                _ = k in cache
            if t == 0 and i % 5000 == 0:
                try:
                    cache._selfcheck()
                except AssertionError as exc:
                    failures.add(f"local: selfcheck during the run: {exc}")
        counts[t] = ops

    keys_set = set(keys)
    t0 = time.perf_counter()
    dog.start("local")
    run_threads(threads, worker, failures)
    dog.finish()
    elapsed = time.perf_counter() - t0
    selfcheck = "ok"
    try:
        cache._selfcheck()
    except AssertionError as exc:
        selfcheck = str(exc)
        failures.add(f"local: selfcheck after the run: {exc}")
    s = cache.stats()
    if s["entries"] > max_entries or s["bytes"] > max_bytes or s["peak_bytes"] > max_bytes:
        failures.add(f"local: bounds: {s['entries']} entries, {s['bytes']} bytes, peak {s['peak_bytes']}")
    # every entry with a TTL expires: what is left is exactly the entries without one
    advance_clock(3600)
    cache.expire()
    left = cache.stats()
    if not (left["entries"] == len(cache.keys()) == len(cache)):
        failures.add(f"local: after expiring all: stats entries {left['entries']}, len(keys()) "
                     f"{len(cache.keys())}, len() {len(cache)}")
    try:
        cache._selfcheck()
    except AssertionError as exc:
        failures.add(f"local: selfcheck after expiring: {exc}")
    reset_clock()
    if s["hits"] + s["misses"] != sum(lookups):
        failures.add(f"local: hits+misses {s['hits'] + s['misses']} != lookups {sum(lookups)}")
    total = threads * ops
    return {
        "phase": "local", "ops": total, "seconds": round(elapsed, 2), "ops_per_s": int(total / elapsed),
        "selfcheck": selfcheck, "entries": s["entries"], "peak_bytes": s["peak_bytes"], "hits": s["hits"],
        "misses": s["misses"], "evictions": s["evictions"], "evictions_bytes": s["evictions_bytes"], "expirations": s["expirations"],
        "invalidations": s["invalidations"], "failures": failures.items,
    }


# ---- phases 2 and 3: TieredCache ------------------------------------------------------------

class FlightBook:
    """Counts, per generation slot, the invalidations begun and ended (the harness wraps
    each invalidating call), and checks concurrent loaders of one key against them."""

    def __init__(self, l1prefix: str, failures: Failures) -> None:
        self.p = l1prefix
        self.begun = [0] * (SLOTS + 1)  # last index: global (prefix, clear)
        self.ended = [0] * (SLOTS + 1)
        self.lock = threading.Lock()
        self.active: dict[str, list[tuple[int, list[int]]]] = {}
        self.failures = failures
        self.calls = 0
        self.raised = 0
        self.overlaps = 0  # legitimate: an invalidation split the flight
        self.violations = 0
        self.serial = 0

    def slot(self, name: str) -> int:
        return hash(self.p + name) & (SLOTS - 1)

    def deps(self, key: str, tags: list[str]) -> list[int]:
        return sorted({self.slot(key), *(self.slot(t) for t in tags)}) + [SLOTS]

    def invalidating(self, slots: list[int], fn: Callable[[], Any]) -> Any:
        with self.lock:
            for s in slots:
                self.begun[s] += 1
        try:
            return fn()
        finally:
            with self.lock:
                for s in slots:
                    self.ended[s] += 1

    def loader(self, key: str, deps: list[int], rnd: random.Random, value: Any) -> Callable[[], Any]:
        called_ended = [self.ended[s] for s in deps]  # at the call's start

        def load() -> Any:
            with self.lock:
                self.calls += 1
                self.serial += 1
                me = self.serial
                begun_now = [self.begun[s] for s in deps]
                running = self.active.setdefault(key, [])
                for _, other_ended in running:
                    window_ended = [min(a, b) for a, b in zip(other_ended, called_ended)]
                    if any(b > e for b, e in zip(begun_now, window_ended)):
                        self.overlaps += 1
                    else:
                        self.violations += 1
                        self.failures.add(f"single flight: a second loader of {key!r} started while one ran, "
                                          f"with no invalidation of the key in between")
                running.append((me, called_ended))
            try:
                x = rnd.random()
                if x < 0.15:
                    time.sleep(0.002)  # a slow query: others pile up on the flight
                if x > 0.9:
                    with self.lock:
                        self.raised += 1
                    raise LoaderBoom(key)
                return value
            finally:
                with self.lock:
                    running[:] = [r for r in running if r[0] != me]

        return load


def phase_tiered(threads: int, ops: int, dog: Watchdog, seed: int, redis_url: str | None) -> dict[str, Any]:
    name = "tiered-redis" if redis_url else "tiered-l1"
    max_entries, max_bytes = 64, 5_000
    cache = TieredCache(redis_url=redis_url, namespace=f"stress-{seed}", max_entries=max_entries,
                        max_bytes=max_bytes, default_ttl=30, socket_timeout=2.0, pool_timeout=5.0,
                        max_connections=threads + 4)
    failures = Failures()
    book = FlightBook(cache._ns.l1prefix, failures)
    keys = [f"k{i}" for i in range(600)]
    tagsets = {k: [f"t{i % 7}"] + ([f"u{i % 3}"] if i % 2 else []) for i, k in enumerate(keys)}
    all_tags = sorted({t for ts in tagsets.values() for t in ts})
    prefixes = ["k1", "k2", "k3", "k11", "k5"]
    counts = [0] * threads
    dog.progress = counts
    outcome = {"values": 0, "errors": 0, "fn_values": 0, "fn_errors": 0}
    olock = threading.Lock()

    @cache.cached(ttl=30, tags=["t{n}"])
    def compute(n: int) -> list:
        return fn_loader(n)

    fn_state = threading.local()

    def fn_loader(n: int) -> Any:
        return fn_state.load()

    def check(key: str, value: Any) -> None:
        ok = (isinstance(value, str) and value.startswith(key + "|")) or \
             (isinstance(value, (tuple, list)) and len(value) == 2 and value[0] == key)
        if not ok:
            failures.add(f"{name}: {key!r} read back a value of another key: {value!r:.60}")

    def worker(t: int) -> None:
        rnd = random.Random(seed * 7919 + t)
        for i in range(ops):
            counts[t] = i
            r = rnd.random()
            k = keys[rnd.randrange(40)] if rnd.random() < 0.7 else rnd.choice(keys)  # hot keys pile up
            if r < 0.22:
                v = cache.get(k)
                if v is not None:
                    check(k, v)
            elif r < 0.32:
                book.invalidating([book.slot(k)], lambda: cache.set(k, k + "|" + "x" * rnd.randrange(0, 200),
                                                                      tags=tagsets[k]))
            elif r < 0.36:
                book.invalidating([book.slot(k)], lambda: cache.delete(k))
            elif r < 0.42:
                batch = rnd.sample(keys, rnd.randrange(1, 6))
                for kk, vv in cache.get_many(batch).items():
                    if kk not in batch:
                        failures.add(f"{name}: get_many returned a key not asked for: {kk!r}")
                    check(kk, vv)
            elif r < 0.45:
                batch = rnd.sample(keys, rnd.randrange(1, 4))
                tags = tagsets[batch[0]]
                book.invalidating([book.slot(kk) for kk in batch],
                                  lambda: cache.set_many({kk: kk + "|" for kk in batch}, tags=tags))
            elif r < 0.48:
                tags = rnd.sample(all_tags, rnd.randrange(1, 3))
                book.invalidating([book.slot(tg) for tg in tags], lambda: cache.invalidate_tags(*tags))
            elif r < 0.495:
                p = rnd.choice(prefixes)
                book.invalidating([SLOTS], lambda: cache.invalidate_prefix(p))
            elif r < 0.4953:
                book.invalidating([SLOTS], cache.clear)
            elif r < 0.85:
                tags = tagsets[k]
                deps = book.deps(k, tags)
                token = (k, rnd.getrandbits(30))
                try:
                    v = cache.get_or_set(k, book.loader(k, deps, rnd, token), tags=tags)
                    check(k, v)
                    with olock:
                        outcome["values"] += 1
                except LoaderBoom as exc:
                    if exc.args != (k,):
                        failures.add(f"{name}: get_or_set({k!r}) raised the loader error of {exc.args}")
                    with olock:
                        outcome["errors"] += 1
                except Exception as exc:
                    failures.add(f"{name}: get_or_set({k!r}) raised {type(exc).__name__}: {exc}")
            elif r < 0.97:
                n = rnd.randrange(40)
                fkey = compute.cache_key(n)
                deps = book.deps(fkey, [f"t{n}"])
                fn_state.load = book.loader(fkey, deps, rnd, [fkey, n])
                try:
                    v = compute(n)
                    if not (isinstance(v, (list, tuple)) and list(v) == [fkey, n]):
                        failures.add(f"{name}: compute({n}) returned {v!r:.60}")
                    with olock:
                        outcome["fn_values"] += 1
                except LoaderBoom as exc:
                    if exc.args != (fkey,):
                        failures.add(f"{name}: compute({n}) raised the loader error of {exc.args}")
                    with olock:
                        outcome["fn_errors"] += 1
                except Exception as exc:
                    failures.add(f"{name}: compute({n}) raised {type(exc).__name__}: {exc}")
            elif r < 0.975:
                s = cache.stats()["l1"]
                if s["entries"] > max_entries or s["bytes"] > max_bytes:
                    failures.add(f"{name}: bounds exceeded during the run: {s['entries']} entries, {s['bytes']} bytes")
            else:
                # invalidate one decorated call (the key and the tag the function uses)
                n = rnd.randrange(40)
                tag = f"t{n}"
                book.invalidating([book.slot(tag)], lambda: cache.invalidate_tags(tag))
            if t == 0 and i % 5000 == 0:
                try:
                    cache._core.l1._selfcheck()
                except AssertionError as exc:
                    failures.add(f"{name}: selfcheck during the run: {exc}")
        counts[t] = ops

    flushes0 = cache.stats()["l1_flushes"]
    t0 = time.perf_counter()
    dog.start(name)
    run_threads(threads, worker, failures)
    dog.finish()
    elapsed = time.perf_counter() - t0
    selfcheck = "ok"
    try:
        cache._core.l1._selfcheck()
    except AssertionError as exc:
        selfcheck = str(exc)
        failures.add(f"{name}: selfcheck after the run: {exc}")
    st = cache.stats()
    l1 = st["l1"]
    if l1["entries"] > max_entries or l1["bytes"] > max_bytes or l1["peak_bytes"] > max_bytes:
        failures.add(f"{name}: bounds: {l1['entries']} entries, {l1['bytes']} bytes, peak {l1['peak_bytes']}")
    if st["loads"] != book.calls:
        failures.add(f"{name}: stats loads {st['loads']} != loader calls {book.calls}")
    if st["load_errors"] != book.raised:
        failures.add(f"{name}: stats load_errors {st['load_errors']} != loaders that raised {book.raised}")
    calls = outcome["values"] + outcome["errors"] + outcome["fn_values"] + outcome["fn_errors"]
    if st["l1_flushes"] != flushes0:
        failures.add(f"{name}: {st['l1_flushes'] - flushes0} L1 flushes during the run (the listener lost Redis)")
    if redis_url:
        l2 = st["l2"]
        if l2["errors"]:
            failures.add(f"{name}: {l2['errors']} Redis errors ({l2['timeouts']} timeouts)")
    cache.close()
    total = threads * ops
    return {
        "phase": name, "ops": total, "seconds": round(elapsed, 2), "ops_per_s": int(total / elapsed),
        "selfcheck": selfcheck, "loader_calls": book.calls, "loader_raised": book.raised,
        "cached_calls": calls, "calls_with_value": outcome["values"] + outcome["fn_values"],
        "calls_with_loader_error": outcome["errors"] + outcome["fn_errors"],
        "split_flights": book.overlaps, "duplicate_loads": book.violations,
        "l1_entries": l1["entries"], "l1_peak_bytes": l1["peak_bytes"], "l1_evictions": l1["evictions"],
        "stale_writes_refused": st["stale_writes_refused"],
        "l2_hits": st["l2"]["hits"], "l2_errors": st["l2"]["errors"], "failures": failures.items,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=20)
    ap.add_argument("--ops", type=int, default=40_000, help="operations per thread and phase")
    ap.add_argument("--redis-ops", type=int, default=None, help="operations per thread in the Redis phase")
    ap.add_argument("--seed", type=int, default=int(time.time()) % 100_000)
    ap.add_argument("--phases", default="local,tiered-l1,tiered-redis")
    ap.add_argument("--mutant", choices=["split-flights"], default=None,
                    help="check the checks: break single flight on purpose (the run must then FAIL)")
    args = ap.parse_args()
    if args.mutant == "split-flights":
        from tieredcache import _tiered as mutated

        def always_lead(self: Any, fkey: str, snap_tags: tuple) -> tuple:
            core = self._core
            with core.flights_lock:
                flight = core.flights[fkey] = mutated._Flight(core.snap(fkey, snap_tags))
            return flight, True

        mutated.TieredCache._flight = always_lead

    from tieredcache import _tiered

    assert _tiered._SLOTS == SLOTS, "the cache's generation slots changed: update SLOTS"
    print(f"threads_stress: {tieredcache.__file__} ({tieredcache._core.__file__}); seed {args.seed}; "
          f"{args.threads} threads x {args.ops} ops", flush=True)
    sys.setswitchinterval(0.0005)  # more thread switches per operation: more interleavings
    dog = Watchdog()
    results = []
    phases = args.phases.split(",")
    if "local" in phases:
        results.append(phase_local(args.threads, args.ops, dog, args.seed))
    if "tiered-l1" in phases:
        results.append(phase_tiered(args.threads, args.ops, dog, args.seed, None))
    if "tiered-redis" in phases:
        from tieredcache.testing import RedisServer

        with RedisServer() as server:
            results.append(phase_tiered(args.threads, args.redis_ops or args.ops, dog, args.seed, server.url))
    ok = True
    for r in results:
        fails = r.pop("failures")
        print(f"[{r['phase']}] " + " ".join(f"{k}={v}" for k, v in r.items() if k != "phase"), flush=True)
        for f in fails:
            print(f"  FAIL {f}", flush=True)
        r["failed_checks"] = len(fails)
        ok = ok and not fails
    print("RESULT " + json.dumps({"ok": ok, "seed": args.seed, "phases": results}), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

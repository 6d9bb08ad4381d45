"""Cross-process invalidation delay, for bench_redis.py.

Process A (``observer``, started with multiprocessing's *spawn* context) holds a
``TieredCache`` on the benchmark's server and namespace. For each trial the benchmark
process (B) stores a key with a tag, A reads it (an L2 hit that fills A's L1), B stamps
``time.time_ns()`` and calls ``delete(key)`` or ``invalidate_tags(tag)``, and A polls its
own L1 until the entry is gone, stamping ``time.time_ns()`` then. Both stamps come from
CLOCK_REALTIME on the same machine, so their difference is the delay from "B starts the
call" to "A's L1 no longer holds the entry": B's client, Redis (script + PUBLISH), A's
subscriber thread waking and taking the GIL, decoding the message, dropping the entry.

A polls with ``time.sleep(poll_s)`` (GIL released between looks, like a server waiting on
I/O), so the stamp is late by at most one poll interval. ``busy=True`` makes A's main
thread spin in pure Python instead (``while key in l1: pass``): the subscriber thread then
waits for the interpreter's switch interval (``sys.getswitchinterval()``, 5 ms by default)
before it may run, which is what a CPU-bound process sees.

Every wait is bounded; ``run_propagation`` always stops and reaps the child.
"""

from __future__ import annotations

import multiprocessing as mp
import random
import statistics
import sys
import time
from typing import Any

# Seconds: the longest A waits for an entry to go, B for a reply from A, A to start.
ENTRY_TIMEOUT = 2.0
REPLY_TIMEOUT = 10.0
START_TIMEOUT = 30.0


def observer(url: str, namespace: str, conn: Any, poll_s: float) -> None:
    """Process A: answers ("arm", key, busy) with ("armed", ok) then ("gone", t1_ns | None)."""
    from tieredcache import TieredCache

    cache = TieredCache(redis_url=url, namespace=namespace)
    try:
        l1 = cache._core.l1
        prefix = cache._ns.l1prefix
        conn.send(("up", cache.stats()["l2"]["connected"], sys.getswitchinterval()))
        while True:
            msg = conn.recv()
            if msg[0] == "stop":
                break
            _, key, busy = msg
            l1key = prefix + key
            value = cache.get(key)
            ok = value is not None and l1key in l1
            conn.send(("armed", ok))
            if not ok:
                continue
            deadline = time.monotonic() + ENTRY_TIMEOUT
            mono = time.monotonic
            if busy:
                while l1key in l1:
                    if mono() > deadline:
                        break
            else:
                sleep = time.sleep
                while l1key in l1:
                    if mono() > deadline:
                        break
                    sleep(poll_s)
            t1 = time.time_ns()
            conn.send(("gone", None if l1key in l1 else t1))
    finally:
        cache.close()


def _recv(conn: Any, what: str, proc: Any) -> tuple:
    if not conn.poll(REPLY_TIMEOUT):
        raise TimeoutError(f"observer process (pid {proc.pid}) sent no {what!r} within {REPLY_TIMEOUT:g} s")
    msg = conn.recv()
    if msg[0] != what:
        raise RuntimeError(f"observer process sent {msg!r}, expected {what!r}")
    return msg


def _summary(delays_ns: list[int], call_ns: list[int], trials: int, lost: int, not_armed: int) -> dict[str, Any]:
    d = sorted(delays_ns)

    def pct(q: float) -> float | None:
        if not d:
            return None
        return round(d[min(len(d) - 1, max(0, int(round(q * (len(d) - 1)))))] / 1e6, 3)

    return {
        "trials": trials,
        "measured": len(d),
        "lost": lost,  # still in A's L1 after ENTRY_TIMEOUT
        "not_armed": not_armed,  # A's read did not fill its L1 (retried with another key)
        "p50_ms": pct(0.5),
        "p99_ms": pct(0.99),
        "max_ms": round(d[-1] / 1e6, 3) if d else None,
        "mean_ms": round(statistics.fmean(d) / 1e6, 3) if d else None,
        "call_p50_ms": round(statistics.median(call_ns) / 1e6, 3) if call_ns else None,
    }


def run_propagation(url: str, namespace: str, modes: list[tuple[str, str, bool, int]], poll_s: float = 50e-6,
                    log: Any = None) -> dict[str, Any]:
    """Run each ``(label, op, busy, trials)`` (op: "delete" or "invalidate_tags") against
    one observer process; return {label: summary} plus "observer" facts."""
    from tieredcache import TieredCache

    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=observer, args=(url, namespace, child, poll_s), name="tieredcache-bench-observer",
                       daemon=True)
    cache = TieredCache(redis_url=url, namespace=namespace)
    out: dict[str, Any] = {}
    rng = random.Random(12345)
    try:
        proc.start()
        child.close()
        if not parent.poll(START_TIMEOUT):
            raise TimeoutError(f"observer process did not start within {START_TIMEOUT:g} s")
        up = parent.recv()
        out["observer"] = {"subscribed": up[1], "switch_interval_s": up[2], "poll_s": poll_s}
        for label, op, busy, trials in modes:
            if log:
                log(f"propagation: {label}, {trials} trials")
            delays: list[int] = []
            calls: list[int] = []
            lost = not_armed = 0
            i = 0
            done = 0
            while done < trials:
                i += 1
                if not_armed > trials:
                    raise RuntimeError("the observer's reads keep failing to fill its L1")
                key = f"prop:{op}:{int(busy)}:{i}"
                tag = f"ptag:{op}:{int(busy)}:{i}"
                cache.set(key, "x" * 100, tags=[tag])
                parent.send(("arm", key, busy))
                if not _recv(parent, "armed", proc)[1]:
                    not_armed += 1
                    continue
                # Let A settle into its polling loop at a random phase.
                time.sleep(rng.uniform(0.001, 0.003))
                t0 = time.time_ns()
                if op == "delete":
                    cache.delete(key)
                else:
                    cache.invalidate_tags(tag)
                calls.append(time.time_ns() - t0)
                t1 = _recv(parent, "gone", proc)[1]
                if t1 is None:
                    lost += 1
                else:
                    delays.append(t1 - t0)
                done += 1
            out[label] = {"op": op, "observer_busy": busy, **_summary(delays, calls, trials, lost, not_armed)}
    finally:
        try:
            if proc.is_alive():
                parent.send(("stop",))
        except (OSError, ValueError):
            pass
        proc.join(5.0)
        if proc.is_alive():
            proc.terminate()
            proc.join(2.0)
        if proc.is_alive():
            proc.kill()
            proc.join(2.0)
        parent.close()
        cache.close()
    return out

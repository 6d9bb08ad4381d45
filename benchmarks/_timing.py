"""Low-overhead timing of ``for k in keys: fn(k, *extra)`` loops.

The loop is a plain function compiled once per number of extra arguments, so the only
per-iteration costs besides ``fn`` itself are the list iteration and the call; the cost of
the same loop with an empty body (``for k in keys: pass``) over the same list is measured
alongside and subtracted. The garbage collector is disabled while a loop runs, as timeit
does.
"""

from __future__ import annotations

import gc
import statistics
from time import perf_counter_ns
from typing import Any, Callable

__all__ = [
    "CONTAINS",
    "SUBSCRIPT",
    "empty_loop_ns",
    "empty_ns_per_key",
    "measure",
    "run_loop",
    "summarize",
    "timed_loop_ns",
]

_LOOPS: dict[int | str, Callable[..., None]] = {}

# Loops that use syntax instead of a call: pass one of these as `extra` (the cache as fn).
SUBSCRIPT = "subscript"  # for k in keys: f[k]
CONTAINS = "contains"  # for k in keys: k in f
_BODIES = {SUBSCRIPT: "f[k]", CONTAINS: "k in f"}


def _loop(nargs: int | str) -> Callable[..., None]:
    fn = _LOOPS.get(nargs)
    if fn is None:
        if isinstance(nargs, str):
            src = f"def run(f, keys):\n    for k in keys:\n        {_BODIES[nargs]}\n"
        else:
            extra = "".join(f", a{i}" for i in range(nargs))
            src = f"def run(f, keys{extra}):\n    for k in keys:\n        f(k{extra})\n"
        ns: dict[str, Any] = {}
        exec(src, ns)  # noqa: S102 - fixed template
        fn = _LOOPS[nargs] = ns["run"]
    return fn


def _call(extra: Any, fn: Callable[..., Any], keys: list[Any]) -> Callable[[], None]:
    if isinstance(extra, str):
        run = _loop(extra)
        return lambda: run(fn, keys)
    run = _loop(len(extra))
    return lambda: run(fn, keys, *extra)


def _empty(keys: list[Any]) -> None:
    for k in keys:  # noqa: B007
        pass


def run_loop(fn: Callable[..., Any], extra: tuple[Any, ...] | str, keys: list[Any]) -> None:
    """Run the loop untimed (fills, warm-ups)."""
    _call(extra, fn, keys)()


def timed_loop_ns(fn: Callable[..., Any], extra: tuple[Any, ...] | str, keys: list[Any]) -> int:
    """ns of ``for k in keys: fn(k, *extra)`` (or of a SUBSCRIPT / CONTAINS loop)."""
    if isinstance(extra, str):
        run, args = _loop(extra), (fn, keys)
    else:
        run, args = _loop(len(extra)), (fn, keys, *extra)
    was = gc.isenabled()
    gc.disable()
    try:
        t0 = perf_counter_ns()
        run(*args)
        t1 = perf_counter_ns()
    finally:
        if was:
            gc.enable()
    return t1 - t0


def empty_loop_ns(keys: list[Any], repeat: int = 5) -> int:
    best = None
    was = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeat):
            t0 = perf_counter_ns()
            _empty(keys)
            t = perf_counter_ns() - t0
            best = t if best is None else min(best, t)
    finally:
        if was:
            gc.enable()
    return best or 0


def empty_ns_per_key(keys: list[Any]) -> float:
    """Cost per key of ``for k in keys: pass`` (best of several runs)."""
    return empty_loop_ns(keys) / max(len(keys), 1)


def summarize(runs: list[tuple[int, int]], empty_per_key: float) -> dict[str, float]:
    """Per-operation ns over timed runs given as (ns, keys), the empty loop subtracted:
    the fastest run, the median run, how many runs and the largest run."""
    per_op = sorted(max(0.0, ns / n - empty_per_key) for ns, n in runs)
    return {
        "min": round(per_op[0], 2),
        "median": round(statistics.median(per_op), 2),
        "repeats": len(per_op),
        "ops": max(n for _, n in runs),
        "empty_loop_ns_per_op": round(empty_per_key, 2),
    }


def measure(
    run_once: Callable[[int], Any],
    warmup_s: float,
    min_runs: int,
    min_time_s: float,
    max_runs: int = 1000,
) -> list[Any]:
    """Call ``run_once(i)`` (which times one loop) for a warm-up of at least one run and
    ``warmup_s`` seconds, then at least ``min_runs`` timed runs and ``min_time_s``
    seconds (at most ``max_runs``); return what the timed runs returned.

    On a shared or virtual machine the CPU caches are refilled by neighbours whenever the
    process is idle or descheduled, so a single warm-up run is not enough: warming is a
    matter of time spent, not of runs.
    """
    i = 0
    start = perf_counter_ns()
    while True:
        run_once(i)
        i += 1
        if perf_counter_ns() - start >= warmup_s * 1e9:
            break
    samples: list[Any] = []
    start = perf_counter_ns()
    while len(samples) < min_runs or (perf_counter_ns() - start < min_time_s * 1e9 and len(samples) < max_runs):
        samples.append(run_once(i))
        i += 1
    return samples

"""Synthetic access traces for the hit-ratio part of bench_local.py.

All traces are lists of pre-built ``str`` keys drawn with ``random.Random(seed)``, so a
given (seed, length, key space) always yields the same trace. Ranks are mapped to keys
through a seeded permutation so the hot keys are not the lexicographically first ones.

  zipf-0.9 / zipf-0.99  independent draws, P(rank r) ~ 1 / r**s over the key space
  scan                  Zipf 0.99 bursts over the key space, each followed by a long
                        sequential scan of keys that are never seen again (a cache
                        should keep the hot set and let the scan pass through)
  recency               LRU-friendly: with probability p_reuse the next key repeats one of
                        the last `window` accesses (picked uniformly, so a key seen
                        recently is seen again soon), otherwise a key uniform over the key
                        space; frequency carries little information beyond recency
"""

from __future__ import annotations

import itertools
import random

__all__ = ["WORKLOADS", "make_trace"]

WORKLOADS = ("zipf-0.9", "zipf-0.99", "scan", "recency")

# scan workload: one cycle is SCAN_BURST Zipf accesses then SCAN_LENGTH one-off keys
SCAN_BURST = 60_000
SCAN_LENGTH = 20_000
# recency workload
RECENCY_WINDOW = 5_000
RECENCY_REUSE = 0.8


def _zipf_sampler(rng: random.Random, keys: list[str], s: float):
    n = len(keys)
    cum = list(itertools.accumulate(1.0 / (r**s) for r in range(1, n + 1)))
    perm = keys[:]
    rng.shuffle(perm)
    population = range(n)

    def draw(k: int) -> list[str]:
        return [perm[i] for i in rng.choices(population, cum_weights=cum, k=k)]

    return draw


def make_trace(name: str, length: int, key_space: int, seed: int) -> tuple[list[str], dict]:
    """Return (trace, description) for one workload."""
    rng = random.Random(f"{seed}:{name}")
    keys = [f"key:{i:07d}" for i in range(key_space)]
    if name in ("zipf-0.9", "zipf-0.99"):
        s = float(name.split("-")[1])
        trace = _zipf_sampler(rng, keys, s)(length)
        return trace, {"kind": "zipf", "s": s}
    if name == "scan":
        draw = _zipf_sampler(rng, keys, 0.99)
        # short traces (--trace-length) keep at least ~4 cycles
        burst, scan = min(SCAN_BURST, length * 3 // 16), min(SCAN_LENGTH, length // 16)
        trace: list[str] = []
        scan_next = 0
        while len(trace) < length:
            trace.extend(draw(min(burst, length - len(trace))))
            n = min(scan, length - len(trace))
            trace.extend(f"scan:{i:08d}" for i in range(scan_next, scan_next + n))
            scan_next += n
        return trace, {
            "kind": "zipf 0.99 bursts + one-off sequential scans",
            "burst": burst,
            "scan_length": scan,
            "scan_fraction": round(scan_next / length, 3),
        }
    if name == "recency":
        window = [keys[rng.randrange(key_space)] for _ in range(RECENCY_WINDOW)]
        trace = []
        append = trace.append
        rand = rng.random
        randrange = rng.randrange
        for i in range(length):
            if rand() < RECENCY_REUSE:
                k = window[randrange(RECENCY_WINDOW)]
            else:
                k = keys[randrange(key_space)]
            window[i % RECENCY_WINDOW] = k
            append(k)
        return trace, {
            "kind": "recency (reuse one of the last accesses)",
            "window": RECENCY_WINDOW,
            "p_reuse": RECENCY_REUSE,
        }
    raise ValueError(f"unknown workload {name!r}")

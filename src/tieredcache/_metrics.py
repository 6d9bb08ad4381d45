"""Fixed-bucket latency histograms.

One bucket layout for every latency the cache measures (L1 hits, L2 round trips, loader
calls): upper bounds from 100 ns to 10 s, about three per decade, then +Inf. Fixed
buckets make an observation a bisect and an increment, merge by addition, and map onto
Prometheus histograms (``_bucket{le=...}``, ``_sum``, ``_count``) as they are.

The C core keeps the same layout for the L1 hits it samples (cachedcall.c,
``TC_HIST_BOUNDS_NS``): ``BOUNDS_NS`` must stay equal to it (a test checks).

Quantiles interpolate linearly inside the bucket that holds them, and never exceed the
largest value observed: p99 of a histogram is exact to within its bucket's width.
"""

from __future__ import annotations

import bisect
import os
import threading
import weakref
from typing import Any

# Upper bounds in nanoseconds; the last bucket (index len(BOUNDS_NS)) is +Inf.
BOUNDS_NS: tuple[int, ...] = (
    100, 250, 500,
    1_000, 2_500, 5_000,
    10_000, 25_000, 50_000,
    100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000,
    10_000_000, 25_000_000, 50_000_000,
    100_000_000, 250_000_000, 500_000_000,
    1_000_000_000, 2_500_000_000, 5_000_000_000,
    10_000_000_000,
)
BOUNDS_SECONDS: tuple[float, ...] = tuple(b / 1e9 for b in BOUNDS_NS)
NBUCKETS = len(BOUNDS_NS) + 1


class Histogram:
    """Counts of durations per fixed bucket, with their sum and maximum (nanoseconds)."""

    __slots__ = ("counts", "total_ns", "max_ns", "_lock", "__weakref__")

    def __init__(self) -> None:
        self.counts = [0] * NBUCKETS
        self.total_ns = 0
        self.max_ns = 0
        self._lock = threading.Lock()
        _histograms.add(self)

    def observe(self, ns: int) -> None:
        i = bisect.bisect_left(BOUNDS_NS, ns)
        with self._lock:
            self.counts[i] += 1
            self.total_ns += ns
            if ns > self.max_ns:
                self.max_ns = ns

    @classmethod
    def from_counts(cls, counts: list[int] | tuple[int, ...], total_ns: int, max_ns: int) -> Histogram:
        if len(counts) != NBUCKETS:
            raise ValueError(f"counts must have {NBUCKETS} buckets, got {len(counts)}")
        h = cls()
        h.counts = list(counts)
        h.total_ns = total_ns
        h.max_ns = max_ns
        return h

    def merge(self, other: Histogram) -> Histogram:
        out = Histogram()
        out.counts = [a + b for a, b in zip(self.counts, other.counts)]
        out.total_ns = self.total_ns + other.total_ns
        out.max_ns = max(self.max_ns, other.max_ns)
        return out

    @property
    def count(self) -> int:
        return sum(self.counts)

    def quantile(self, q: float) -> float | None:
        """The q-quantile in nanoseconds (None when empty)."""
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"q must be between 0 and 1, got {q!r}")
        n = self.count
        if n == 0:
            return None
        rank = q * n
        seen = 0
        for i, c in enumerate(self.counts):
            if c and seen + c >= rank:
                lo = BOUNDS_NS[i - 1] if i > 0 else 0
                hi = BOUNDS_NS[i] if i < len(BOUNDS_NS) else self.max_ns
                hi = min(hi, self.max_ns) if self.max_ns else hi
                lo = min(lo, hi)
                return lo + (hi - lo) * ((rank - seen) / c)
            seen += c
        return float(self.max_ns)

    def summary(self) -> dict[str, Any]:
        """``{"count", "avg_ms", "p50_ms", "p90_ms", "p99_ms", "max_ms"}`` (ms, None when empty)."""
        n = self.count

        def ms(ns: float | None) -> float | None:
            return None if ns is None else round(ns / 1e6, 6)

        return {
            "count": n,
            "avg_ms": ms(self.total_ns / n) if n else None,
            "p50_ms": ms(self.quantile(0.5)),
            "p90_ms": ms(self.quantile(0.9)),
            "p99_ms": ms(self.quantile(0.99)),
            "max_ms": ms(self.max_ns) if n else None,
        }

    def buckets(self) -> list[tuple[float, int]]:
        """Cumulative ``(upper bound in seconds, count)`` pairs, +Inf last (Prometheus)."""
        out, run = [], 0
        for i, c in enumerate(self.counts):
            run += c
            out.append((BOUNDS_SECONDS[i] if i < len(BOUNDS_SECONDS) else float("inf"), run))
        return out

    def reset(self) -> None:
        with self._lock:
            self.counts = [0] * NBUCKETS
            self.total_ns = 0
            self.max_ns = 0


# Every live histogram: after os.fork() each gets a new lock, since a thread of the parent
# may have been inside observe() (every Redis round trip records one) when the process
# forked, and that thread does not exist in the child to release it.
_histograms: weakref.WeakSet[Histogram] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for h in list(_histograms):
        h._lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)

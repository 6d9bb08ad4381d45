"""Statistics: exact counters under a scripted workload, and latency histograms.

Counting is exact: every hit, miss and eviction below is counted to the unit. Latencies go
into fixed buckets (tieredcache._metrics), and a known duration lands in its bucket.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import tieredcache
from tieredcache import TieredCache
from tieredcache._metrics import BOUNDS_NS, NBUCKETS, Histogram
from tieredcache.testing import advance_clock

from tiered_helpers import redis_caches, wait_until  # noqa: F401 - fixture

ROOT = Path(__file__).resolve().parent.parent


# ---- histograms ----------------------------------------------------------------------------


def test_a_duration_lands_in_the_first_bucket_whose_bound_holds_it():
    h = Histogram()
    h.observe(100)        # exactly on a bound: that bucket
    h.observe(101)        # just above: the next
    h.observe(3_000_000)  # 3 ms: the (2.5 ms, 5 ms] bucket
    h.observe(10**12)     # beyond the last bound: +Inf
    assert h.counts[0] == 1
    assert h.counts[1] == 1
    assert h.counts[BOUNDS_NS.index(5_000_000)] == 1
    assert h.counts[NBUCKETS - 1] == 1
    assert h.count == 4 and h.max_ns == 10**12 and h.total_ns == 100 + 101 + 3_000_000 + 10**12


def test_buckets_are_cumulative_and_end_with_inf_holding_everything():
    h = Histogram()
    for ns in (50, 700, 700, 2_000_000):
        h.observe(ns)
    b = h.buckets()
    assert b[-1] == (float("inf"), 4)
    assert [c for _, c in b] == sorted(c for _, c in b)
    assert dict(b)[1e-07] == 1 and dict(b)[1e-06] == 3


def test_quantiles_interpolate_inside_the_bucket_and_never_exceed_the_maximum():
    h = Histogram()
    for _ in range(99):
        h.observe(1_000)        # 1 µs
    h.observe(40_000_000)       # one 40 ms outlier
    assert 500 <= h.quantile(0.5) <= 1_000
    assert h.quantile(0.99) <= 1_000
    assert 25_000_000 <= h.quantile(1.0) <= 40_000_000
    s = h.summary()
    assert s["count"] == 100 and s["max_ms"] == 40.0
    assert Histogram().summary() == {"count": 0, "avg_ms": None, "p50_ms": None, "p90_ms": None,
                                     "p99_ms": None, "max_ms": None}
    with pytest.raises(ValueError):
        h.quantile(1.5)


def test_the_c_core_uses_the_same_buckets_as_python():
    text = (ROOT / "csrc" / "cachedcall.c").read_text()
    body = re.search(r"TC_HIST_BOUNDS_NS\[\] = \{(.*?)\};", text, re.S).group(1)
    c_bounds = tuple(int(x.strip().rstrip("u")) for x in body.split(",") if x.strip())
    assert c_bounds == BOUNDS_NS


# ---- per function --------------------------------------------------------------------------


@pytest.fixture
def cache():
    c = TieredCache(namespace="stats")
    yield c
    c.close()


def test_l1_hits_are_sampled_one_in_sixteen_into_the_histogram(cache):
    @cache.cached()
    def f(x):
        return x

    f(1)
    for _ in range(160):
        f(1)
    row = f.stats()
    assert (row["calls"], row["l1_hits"], row["misses"]) == (161, 160, 1)
    lat = row["latency"]
    assert lat["l1_hit"]["count"] == 10
    assert lat["miss"]["count"] == 1 and lat["load"]["count"] == 1
    assert lat["l2_hit"]["count"] == 0
    assert 0 < lat["l1_hit"]["p50_ms"] < lat["miss"]["max_ms"]


def test_monitoring_off_keeps_the_counts_and_drops_the_histograms():
    c = TieredCache(monitoring=False)

    @c.cached()
    def f(x):
        return x

    for _ in range(40):
        f(1)
    row = f.stats()
    assert (row["calls"], row["hits"], row["misses"]) == (40, 39, 1)
    assert all(v["count"] == 0 for v in row["latency"].values())
    assert c.stats()["monitoring"] is False
    c.close()


def test_cache_monitoring_enabled_false_in_the_environment_turns_monitoring_off(monkeypatch):
    monkeypatch.setenv("CACHE_MONITORING_ENABLED", "false")
    c = TieredCache.from_env()
    assert c.stats()["monitoring"] is False
    c.close()
    monkeypatch.setenv("CACHE_MONITORING_ENABLED", "maybe")
    with pytest.raises(tieredcache.ConfigurationError, match="CACHE_MONITORING_ENABLED"):
        TieredCache.from_env()


def test_a_scripted_workload_is_counted_to_the_unit():
    c = TieredCache(max_entries=4, namespace="script")

    @c.cached(ttl=10)
    def f(x):
        if x < 0:
            raise ValueError(x)
        return x

    for x in (1, 2, 1, 3, 1, 2):           # 3 misses, 3 hits
        f(x)
    with pytest.raises(ValueError):
        f(-1)                              # 1 error
    advance_clock(11)
    f(1)                                   # expired: a miss
    c.set("a", 1), c.set("b", 2), c.delete("a")
    s = c.stats()
    row = s["functions"][0]
    assert (row["calls"], row["hits"], row["misses"], row["errors"]) == (8, 3, 4, 1)
    assert s["loads"] == 5 and s["load_errors"] == 1
    assert s["l1"]["expirations"] >= 1  # the expired entries met on reads
    assert s["l1"]["evictions_by_reason"]["expired"] == s["l1"]["expirations"]
    assert s["l1"]["deletes"] == 1
    assert (s["l1"]["hits"], s["l1"]["misses"]) == (3, 5)  # one lookup counted per call
    assert s["l1"]["hit_rate"] == s["l1"]["hits"] / (s["l1"]["hits"] + s["l1"]["misses"])


def test_each_call_counts_one_l1_lookup_whichever_path_serves_it():
    """Regression: a decorated miss was counted as two L1 misses (the C probe, then
    get_or_set's own look), so ``l1.hit_rate`` read low for cached functions."""
    import asyncio

    c = TieredCache(namespace="lookups")

    @c.cached(ttl=10)
    def sync_f(x):
        return x

    @c.cached(ttl=10)
    async def async_f(x):
        return x

    @c.cached(ttl=10)
    def unkeyed_by_c(x: object):  # an argument type the C key writer defers on
        return 1

    try:
        sync_f(1), sync_f(1)
        asyncio.run(async_f(1)), asyncio.run(async_f(1))
        unkeyed_by_c((1, 2)), unkeyed_by_c((1, 2))
        c.get_or_set("k", lambda: 1), c.get_or_set("k", lambda: 2)
        l1 = c.stats()["l1"]
        assert (l1["hits"], l1["misses"]) == (4, 4)
    finally:
        c.close()


def test_evictions_are_counted_by_reason():
    c = TieredCache(max_entries=100, max_bytes=None)
    for i in range(300):
        c.set(f"k{i}", i)
    c.set("t", 1, tags=["x"])
    c.invalidate_tags("x")
    ev = c.stats()["l1"]["evictions_by_reason"]
    assert ev["size"] >= 199  # over the bound of 100 entries
    assert ev["invalidated"] == 1
    assert ev["bytes"] == 0
    c.close()


def test_warming_counts_what_it_warmed(cache):
    @cache.warmer("g")
    def w():
        return {"a": 1, "b": 2}

    cache.warm("g")
    assert cache.stats()["warmed"] == 2


# ---- L2 ------------------------------------------------------------------------------------


def test_l2_round_trips_and_hits_are_timed_and_counted(redis_caches):
    one, two = redis_caches(), redis_caches()

    def define(c):
        @c.cached()
        def f(x):
            return [x]
        return f

    f1, f2 = define(one), define(two)
    f1(1)
    f2(1)  # from Redis
    s = two.stats()
    assert s["l2"]["hits"] == 1 and s["l2"]["hit_rate"] == 1.0
    assert s["l2"]["latency"]["count"] >= 1 and s["l2"]["latency"]["p99_ms"] > 0
    assert f2.stats()["latency"]["l2_hit"]["count"] == 1


def test_reconnects_are_counted_after_redis_restarts(fresh_redis_server):
    c = TieredCache(redis_url=fresh_redis_server.url, namespace="rc", breaker_cooldown=0.05)
    wait_until(lambda: c.stats()["l2"]["connected"])
    c.set("a", 1)
    fresh_redis_server.restart()
    assert wait_until(lambda: c.stats()["l2"]["connected"], timeout=10)

    def reconnected():
        c.set("b", 2)
        return c.stats()["l2"]["reconnects"] >= 2  # the pool's and the listener's
    assert wait_until(reconnected, timeout=10)
    c.close()


def test_async_l1_hits_are_sampled_too(cache):
    import asyncio

    @cache.cached()
    async def f(x):
        return x

    async def main():
        for _ in range(33):
            await f(1)

    asyncio.run(main())
    row = f.stats()
    assert (row["l1_hits"], row["misses"]) == (32, 1)
    assert row["latency"]["l1_hit"]["count"] == 2 and row["avg_hit_ms"] > 0

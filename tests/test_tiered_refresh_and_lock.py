"""Two opt-in behaviours of ``get_or_set``/``aget_or_set``: the cross-process loader lock
(``lock_timeout``) and probabilistic early refresh (``early_refresh``, XFetch).

Separate caches on one Redis stand for separate processes here: each has its own L1 and
in-process single-flight, so only Redis can make them share a load.
"""

from __future__ import annotations

import asyncio
import time

from tieredcache import TieredCache
from tiered_helpers import redis_caches  # noqa: F401  (fixture)


def test_with_lock_timeout_async_callers_in_separate_caches_call_the_loader_once(redis_caches):
    caches = [redis_caches(lock_timeout=5) for _ in range(3)]
    loads = []

    async def loader():
        loads.append(1)
        await asyncio.sleep(0.2)  # long enough for the others to find the lock taken
        return {"menu": "soup"}

    async def main():
        return await asyncio.gather(*[c.aget_or_set("menu", loader, ttl=60) for c in caches])

    assert asyncio.run(main()) == [{"menu": "soup"}] * 3
    assert loads == [1]


def test_without_lock_timeout_separate_caches_each_load(redis_caches):
    caches = [redis_caches() for _ in range(3)]
    loads = []

    async def loader():
        loads.append(1)
        await asyncio.sleep(0.2)
        return 1

    async def main():
        return await asyncio.gather(*[c.aget_or_set("menu", loader, ttl=60) for c in caches])

    assert asyncio.run(main()) == [1, 1, 1]
    assert len(loads) == 3  # the lock above is what made them share


def test_early_refresh_reloads_a_hit_close_to_expiry_and_keeps_serving_the_old_value_meanwhile(redis_caches):
    writer = redis_caches()
    # a load that took 100 ms, cached for 1 s: with beta=1000 (absurdly eager, for the
    # test) every L2 hit within seconds of expiry is refreshed by its caller
    slow = redis_caches(early_refresh=1000.0, l1_ttl=0.001)
    calls = []

    def loader():
        calls.append(time.monotonic())
        time.sleep(0.1)
        return len(calls)

    assert writer.get_or_set("k", loader, ttl=1) == 1
    time.sleep(0.01)  # let the L1 copies (1 ms) lapse
    assert slow.get_or_set("k", loader, ttl=1) == 2, "the hit was refreshed early by this caller"
    assert writer.get("k") in (1, 2)


def test_without_early_refresh_a_hit_is_served_until_it_expires(redis_caches):
    writer = redis_caches()
    reader = redis_caches(l1_ttl=0.001)
    loads = []
    writer.get_or_set("k", lambda: loads.append(1) or "v", ttl=30)
    time.sleep(0.01)
    assert reader.get_or_set("k", lambda: loads.append(1) or "other", ttl=30) == "v"
    assert loads == [1]


def test_early_refresh_must_be_a_positive_number():
    import pytest

    from tieredcache import ConfigurationError

    with pytest.raises(ConfigurationError, match="early_refresh"):
        TieredCache(early_refresh=0)
    with pytest.raises(ConfigurationError, match="early_refresh"):
        TieredCache(early_refresh=-1.0)

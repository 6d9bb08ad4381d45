"""The C core owns its references correctly.

A value leaves the cache (evicted, expired, invalidated, overwritten, deleted, cleared,
rejected) and the cache lets go of it at once; a value that refers back to its cache is
collected by the cycle collector; reference counts return to their baseline after a
million operations; and a value whose ``__del__`` calls back into the cache cannot
corrupt it, because references are released only once the store is consistent again.
"""

from __future__ import annotations

import gc
import sys
import weakref

import pytest

from tieredcache import LocalCache
from tieredcache.testing import advance_clock


class Payload:
    """A weakly referenceable value."""


def stored_payload(cache, key, **kwargs):
    """Store a fresh Payload under key and return a weak reference to it."""
    value = Payload()
    ref = weakref.ref(value)
    cache.set(key, value, **kwargs)
    return ref


# ------------------------------------------------------------- values are released


def test_evicted_values_are_released():
    cache = LocalCache(max_entries=5)
    refs = [stored_payload(cache, f"k{i}") for i in range(100)]
    alive = [ref for ref in refs if ref() is not None]
    assert len(alive) == len(cache) == 5


def test_values_evicted_for_max_bytes_are_released():
    cache = LocalCache(max_bytes=1000)
    refs = [stored_payload(cache, f"k{i}", size=300) for i in range(20)]
    assert sum(ref() is not None for ref in refs) == len(cache) == 3


def test_expired_values_are_released_by_expire():
    cache = LocalCache()
    refs = [stored_payload(cache, f"k{i}", ttl=10) for i in range(10)]
    kept = stored_payload(cache, "kept")
    advance_clock(11)
    assert cache.expire() == 10
    assert all(ref() is None for ref in refs)
    assert kept() is not None


def test_an_expired_value_is_released_when_it_is_read():
    cache = LocalCache()
    ref = stored_payload(cache, "k", ttl=10)
    advance_clock(11)
    assert cache.get("k") is None
    assert ref() is None


def test_values_invalidated_by_tag_are_released():
    cache = LocalCache()
    tagged = [stored_payload(cache, f"k{i}", tags=["t"]) for i in range(10)]
    other = stored_payload(cache, "other", tags=["u"])
    assert cache.invalidate_tags("t") == 10
    assert all(ref() is None for ref in tagged)
    assert other() is not None


def test_values_invalidated_by_prefix_are_released():
    cache = LocalCache()
    matching = [stored_payload(cache, f"p:{i}") for i in range(10)]
    other = stored_payload(cache, "q:1")
    assert cache.invalidate_prefix("p:") == 10
    assert all(ref() is None for ref in matching)
    assert other() is not None


def test_an_overwritten_value_is_released():
    cache = LocalCache()
    ref = stored_payload(cache, "k")
    cache.set("k", "new")
    assert ref() is None


def test_a_value_replaced_by_a_rejected_value_is_released():
    cache = LocalCache(max_bytes=10)
    ref = stored_payload(cache, "k", size=1)
    assert cache.set("k", b"x" * 11) is False
    assert ref() is None


def test_deleted_values_are_released():
    cache = LocalCache()
    first = stored_payload(cache, "a")
    second = stored_payload(cache, "b")
    cache.delete("a")
    del cache["b"]
    assert first() is None
    assert second() is None


def test_cleared_values_are_released():
    cache = LocalCache()
    refs = [stored_payload(cache, f"k{i}", tags=["t"]) for i in range(10)]
    cache.clear()
    assert all(ref() is None for ref in refs)


def test_values_are_released_when_the_cache_is_deallocated():
    cache = LocalCache()
    refs = [stored_payload(cache, f"k{i}", ttl=100, tags=["t"]) for i in range(10)]
    del cache
    assert all(ref() is None for ref in refs)


# ------------------------------------------------------------------------- cycles


def test_the_cache_is_tracked_by_the_cycle_collector_and_reports_its_values():
    cache = LocalCache()
    value = Payload()
    cache.set("k", value)
    assert gc.is_tracked(cache)
    assert any(referent is value for referent in gc.get_referents(cache))


def test_a_value_that_refers_to_its_cache_is_collected_with_it():
    cache = LocalCache()
    value = Payload()
    value.cache = cache
    cache.set("k", value, tags=["t"], ttl=100)
    ref = weakref.ref(value)
    del cache, value
    gc.collect()
    assert ref() is None


def test_a_cache_stored_in_itself_is_collected():
    cache = LocalCache()
    cache.set("self", cache)
    sentinel = stored_payload(cache, "sentinel")
    del cache
    gc.collect()
    assert sentinel() is None


def test_two_caches_holding_each_other_are_collected():
    first, second = LocalCache(), LocalCache()
    first.set("other", second)
    second.set("other", first)
    sentinels = [stored_payload(first, "s"), stored_payload(second, "s")]
    del first, second
    gc.collect()
    assert [ref() for ref in sentinels] == [None, None]


# --------------------------------------------------------------------- refcounts


def test_reference_counts_return_to_baseline_after_a_million_operations():
    key = "".join(["refcount-", "key"])  # built at run time: not shared with code objects
    bkey = b"".join([b"refcount-", b"bkey"])
    value = Payload()
    other = Payload()
    tag = "".join(["refcount-", "tag"])
    prefix = "".join(["refcount-", "k"])
    default = Payload()
    watched = [key, bkey, value, other, tag, prefix, default]
    baseline = [sys.getrefcount(obj) for obj in watched]

    cache = LocalCache(max_entries=8, max_bytes=10_000)
    tags = [tag]
    keys = [key, bkey]
    mapping = {key: other, bkey: value}
    for i in range(50_000):  # 20 operations per round: one million in all
        cache.set(key, value, tags=tags)
        cache.get(key)
        cache.get(bkey, default)
        cache.set(bkey, other, ttl=5, tags=tags, size=10)
        cache.get_many(keys)
        cache.ttl(key)
        cache.touch(bkey, 10)
        key in cache
        cache[key]
        cache.delete(key)
        cache.set_many(mapping, tags=tags)
        cache.invalidate_tags(tag)
        cache[key] = value
        cache.invalidate_prefix(prefix)
        cache.set(key, other, size=20_000)  # rejected
        cache.set(key, value, ttl=1)
        cache.get(key, default)
        cache.keys()
        cache.stats()
        cache.expire()
    advance_clock(2)
    cache.get(key)
    cache.expire()
    cache.clear()
    del mapping, keys, tags
    assert [sys.getrefcount(obj) for obj in watched] == baseline
    del cache
    assert [sys.getrefcount(obj) for obj in watched] == baseline


def test_a_stored_value_holds_exactly_one_reference():
    value = Payload()
    baseline = sys.getrefcount(value)
    cache = LocalCache()
    cache.set("k", value, tags=["a", "b"], ttl=10)
    assert sys.getrefcount(value) == baseline + 1
    cache.set("k", value)
    cache.touch("k", 5)
    assert sys.getrefcount(value) == baseline + 1
    cache.delete("k")
    assert sys.getrefcount(value) == baseline


def test_a_key_subclass_is_not_kept_by_the_cache():
    class Key(str):
        pass

    key = Key("subclass-key")
    baseline = sys.getrefcount(key)
    cache = LocalCache()
    cache.set(key, 1)
    cache[key] = 2
    cache.set_many({key: 3})
    assert sys.getrefcount(key) == baseline
    assert cache.get("subclass-key") == 3


# ------------------------------------------------------------------- re-entrancy


class CallsBack:
    """A value whose __del__ calls back into the cache that held it."""

    def __init__(self, cache, action, log):
        self.cache, self.action, self.log = cache, action, log

    def __del__(self):
        try:
            self.action(self.cache)
            self.cache._selfcheck()
            self.log.append("ok")
        except BaseException as exc:  # recorded, so the test can report it
            self.log.append(exc)


ACTIONS = {
    "get": lambda c: c.get("other"),
    "set": lambda c: c.set("from-del", 1, tags=["t"], ttl=50),
    "delete": lambda c: c.delete("other"),
    "clear": lambda c: c.clear(),
    "invalidate_tags": lambda c: c.invalidate_tags("t"),
    "invalidate_prefix": lambda c: c.invalidate_prefix("k"),
    "expire": lambda c: c.expire(),
    "keys_len_stats": lambda c: (c.keys(), len(c), c.stats()),
}


SCENARIOS = {
    "overwrite": lambda c, make: [c.set(f"k{i}", "plain") for i in range(4)],
    "set_many overwrite": lambda c, make: c.set_many({f"k{i}": "plain" for i in range(4)}),
    "rejected overwrite": lambda c, make: [c.set(f"k{i}", b"x" * 10_000) for i in range(4)],
    "delete": lambda c, make: [c.delete(f"k{i}") for i in range(4)],
    "delitem": lambda c, make: [c.__delitem__(f"k{i}") for i in range(4) if f"k{i}" in c],
    "eviction": lambda c, make: [c.set(f"filler{i}", make()) for i in range(10)],
    "clear": lambda c, make: c.clear(),
    "invalidate_tags": lambda c, make: c.invalidate_tags("doomed"),
    "invalidate_prefix": lambda c, make: c.invalidate_prefix("k"),
    "expire": lambda c, make: (advance_clock(200), c.expire()),
}


@pytest.mark.parametrize("action", list(ACTIONS))
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_a_value_whose_del_calls_back_into_the_cache_cannot_corrupt_it(scenario, action):
    cache = LocalCache(max_entries=6, max_bytes=5000)
    log = []

    def make():
        return CallsBack(cache, ACTIONS[action], log)

    cache.set("other", "other", tags=["t"])
    for i in range(4):
        cache.set(f"k{i}", make(), tags=["doomed", "t"], ttl=100)
    SCENARIOS[scenario](cache, make)
    assert log, "no __del__ ran during the operation"
    assert all(entry == "ok" for entry in log), log
    cache._selfcheck()
    assert len(cache) <= 6
    cache.set("after", 1)
    assert cache.get("after") == 1
    cache.clear()
    gc.collect()
    assert all(entry == "ok" for entry in log), log
    cache._selfcheck()


def test_a_chain_of_del_hooks_that_store_more_such_values_terminates_cleanly():
    """Each released value stores a new one, which evicts another, and so on, 50 times."""
    cache = LocalCache(max_entries=3)
    log = []
    budget = [50]

    def store_another(c):
        if budget[0] > 0:
            budget[0] -= 1
            c.set(f"chain{budget[0]}", CallsBack(c, store_another, log))

    for i in range(6):
        cache.set(f"k{i}", CallsBack(cache, store_another, log))
    cache.clear()
    gc.collect()
    assert budget == [0]
    assert len(log) >= 50
    assert all(entry == "ok" for entry in log), log
    cache._selfcheck()
    assert len(cache) <= 3

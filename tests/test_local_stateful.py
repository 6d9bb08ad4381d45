"""The C core and the reference model, driven side by side by Hypothesis.

A ``RuleBasedStateMachine`` applies the same random sequence of calls (get, set,
set_many, get_many, delete, ttl, touch, tag and prefix invalidation, clear, expire, and
moving the clock) to a small ``LocalCache`` and to a ``ModelCache`` that does not evict
by itself. The C core's bounds are small, so it evicts often; which entries it evicts is
its policy's business, so the model *follows* it:

- after every step, every key the C cache holds is live in the model with the very same
  value object (C ⊆ model);
- the model's extra live keys are exactly the C core's evictions: they appear only
  after a call that inserts, and ``stats()["evictions"]`` grew by at least as many;
  the model then drops them, so with no eviction the two hold the same entries;
- ``len`` and ``bytes`` stay within the bounds, and ``_selfcheck()`` passes.

The C core may reclaim expired entries earlier than the model (its timing wheel runs
during every call), so counts that include expired entries (``clear``, invalidations,
``expire``) are checked to lie between "live entries only" and "every entry the model
still stores".

TTLs end on a quarter second and the clock moves in half seconds, so no read ever falls
within a quarter second of a deadline: the two caches read the clock at slightly
different moments, and this keeps them from disagreeing about an entry at its deadline.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from refmodel import ModelCache
from tieredcache import LocalCache
from tieredcache.testing import advance_clock

KEYS = st.sampled_from(["a", "ab", "b", "b:1", "b:2", b"a", b"ab", b"b:1"])
PREFIXES = st.sampled_from(["", "a", "ab", "b:", "zz", b"", b"a", b"b:"])
TAGS = st.sampled_from(["t1", "t2", "t3", "t4"])
TTLS = st.sampled_from([None, None, 0.75, 2.25, 10.25])
STEPS = st.sampled_from([0.5, 1.0, 2.0, 20.0])
SIZES = st.one_of(st.none(), st.none(), st.integers(0, 80), st.integers(150, 250))


class Thing:
    """A value with identity and a fixed shallow size."""

    __slots__ = ("n",)

    def __init__(self, n):
        self.n = n

    def __repr__(self):
        return f"Thing({self.n})"


VALUES = st.one_of(
    st.integers(0, 90).map(lambda n: b"v" * n),
    st.integers(0, 90).map(lambda n: "s" * n),
    st.integers(0, 1000).map(Thing),
)
MISSING = object()


class FollowerModel(ModelCache):
    """The reference model, minus its own eviction: it drops what the C core evicted."""

    def _enforce_bounds(self):
        pass

    def forget(self, key):
        self._remove(key)


class CacheVersusModel(RuleBasedStateMachine):
    @initialize(max_entries=st.sampled_from([1, 3, 5, 8]),
                max_bytes=st.sampled_from([None, 150, 400]),
                default_ttl=st.sampled_from([None, 5.25]))
    def create(self, max_entries, max_bytes, default_ttl):
        self.bounds = (max_entries, max_bytes)
        self.c = LocalCache(max_entries=max_entries, max_bytes=max_bytes, default_ttl=default_ttl)
        self.m = FollowerModel(max_entries=max_entries, max_bytes=max_bytes, default_ttl=default_ttl)
        self.inserted = False
        self.evictions_seen = 0

    # -- helpers ------------------------------------------------------------------------

    def stored_matching(self, predicate):
        """(live, stored) counts of model entries matching predicate(key, entry)."""
        now = self.m._now()
        stored = [(k, e) for k, e in self.m._data.items() if predicate(k, e)]
        return sum(1 for _, e in stored if not e.expired(now)), len(stored)

    # -- rules --------------------------------------------------------------------------

    @rule(key=KEYS, value=VALUES, ttl=TTLS, tags=st.lists(TAGS, max_size=3), size=SIZES)
    def set(self, key, value, ttl, tags, size):
        self.inserted = True
        assert self.c.set(key, value, ttl=ttl, tags=tags, size=size) == \
            self.m.set(key, value, ttl=ttl, tags=tags, size=size)

    @rule(items=st.dictionaries(KEYS, VALUES, max_size=4), ttl=TTLS, tags=st.lists(TAGS, max_size=2))
    def set_many(self, items, ttl, tags):
        self.inserted = True
        assert self.c.set_many(items, ttl=ttl, tags=tags) == self.m.set_many(items, ttl=ttl, tags=tags)

    @rule(key=KEYS)
    def get(self, key):
        hits = self.c.stats()["hits"]
        expected = self.m.get(key, MISSING)
        assert self.c.get(key, MISSING) is expected
        assert self.c.stats()["hits"] == hits + (expected is not MISSING)

    @rule(keys=st.lists(KEYS, max_size=4))
    def get_many(self, keys):
        before = self.c.stats()
        got, expected = self.c.get_many(keys), self.m.get_many(keys)
        assert got.keys() == expected.keys()
        assert all(got[k] is expected[k] for k in got)
        after = self.c.stats()
        found = sum(1 for k in keys if k in expected)
        assert after["hits"] - before["hits"] == found
        assert after["misses"] - before["misses"] == len(keys) - found

    @rule(key=KEYS)
    def delete(self, key):
        entry = self.m._data.get(key)
        expired = entry is not None and entry.expired(self.m._now())
        removed, expected = self.c.delete(key), self.m.delete(key)
        if not expired:  # deleting an expired entry may or may not count as removing it
            assert removed is expected

    @rule(key=KEYS)
    def ttl(self, key):
        try:
            expected = self.m.ttl(key)
        except KeyError:
            with pytest.raises(KeyError):
                self.c.ttl(key)
            return
        remaining = self.c.ttl(key)
        if expected is None:
            assert remaining is None
        else:
            assert remaining is not None and abs(remaining - expected) < 0.2

    @rule(key=KEYS, ttl=TTLS)
    def touch(self, key, ttl):
        assert self.c.touch(key, ttl) is self.m.touch(key, ttl)

    @rule(tags=st.lists(TAGS, min_size=1, max_size=2))
    def invalidate_tags(self, tags):
        live, stored = self.stored_matching(lambda k, e: not e.tags.isdisjoint(tags))
        removed = self.c.invalidate_tags(*tags)
        self.m.invalidate_tags(*tags)
        assert live <= removed <= stored

    @rule(prefix=PREFIXES)
    def invalidate_prefix(self, prefix):
        live, stored = self.stored_matching(lambda k, e: type(k) is type(prefix) and k.startswith(prefix))
        removed = self.c.invalidate_prefix(prefix)
        self.m.invalidate_prefix(prefix)
        assert live <= removed <= stored

    @rule()
    def clear(self):
        live, stored = self.stored_matching(lambda k, e: True)
        removed = self.c.clear()
        self.m.clear()
        assert live <= removed <= stored
        assert self.c.stats()["entries"] == 0

    @rule()
    def expire(self):
        _, expired = self.stored_matching(lambda k, e: e.expired(self.m._now()))
        removed = self.c.expire()
        self.m.expire()
        assert 0 <= removed <= expired
        stats, model = self.c.stats(), self.m.stats()
        for name in ("entries", "bytes", "tags"):
            assert stats[name] == model[name], name

    @rule(seconds=STEPS)
    def advance(self, seconds):
        advance_clock(seconds)

    # -- invariants ---------------------------------------------------------------------

    @precondition(lambda self: hasattr(self, "c"))
    @invariant()
    def c_core_is_consistent_and_within_bounds(self):
        self.c._selfcheck()
        max_entries, max_bytes = self.bounds
        stats = self.c.stats()
        assert len(self.c) <= max_entries
        assert stats["entries"] <= max_entries
        if max_bytes is not None:
            assert stats["bytes"] <= max_bytes  # (peak_bytes: see test_local_conformance)
        assert stats["rejected"] == self.m.stats()["rejected"]

    @precondition(lambda self: hasattr(self, "c"))
    @invariant()
    def c_core_holds_a_subset_of_the_model_and_the_rest_was_evicted(self):
        c_keys = self.c.keys()
        assert len(c_keys) == len(set(c_keys)) == len(self.c)
        live = set(self.m.keys())
        assert set(c_keys) <= live, f"the C cache has keys the model does not: {set(c_keys) - live}"
        for key in c_keys:
            assert self.c.get(key, MISSING) is self.m.get(key, MISSING), key
        evicted = live - set(c_keys)
        evictions = self.c.stats()["evictions"]
        if evicted:
            assert self.inserted, f"{evicted} vanished without an insert"
            assert evictions - self.evictions_seen >= len(evicted)
            for key in evicted:
                self.m.forget(key)
        self.evictions_seen = evictions
        self.inserted = False
        assert sorted(self.m.keys(), key=repr) == sorted(c_keys, key=repr)


CacheVersusModel.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_c_core_behaves_like_the_reference_model = CacheVersusModel.TestCase

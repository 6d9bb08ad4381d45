"""What a LocalCache refuses, and how (C core and reference model alike).

Wrong types raise ``TypeError`` and out-of-range values raise ``ValueError``; the message
names the offending argument (or, for keys, the offending type). A refused call changes
nothing. Key subclasses are stored as their plain ``str``/``bytes`` value, so none of
their methods ever runs inside the cache.
"""

from __future__ import annotations

import math

import pytest

YEAR = 365.25 * 86400

BAD_KEYS = [1, 1.5, None, ("a",), ["a"], bytearray(b"a"), memoryview(b"a"), object()]

# Calls that take a key, each as a function of (cache, key).
KEY_CALLS = {
    "get": lambda c, k: c.get(k),
    "set": lambda c, k: c.set(k, 1),
    "delete": lambda c, k: c.delete(k),
    "ttl": lambda c, k: c.ttl(k),
    "touch": lambda c, k: c.touch(k, 10),
    "getitem": lambda c, k: c[k],
    "setitem": lambda c, k: c.__setitem__(k, 1),
    "delitem": lambda c, k: c.__delitem__(k),
    "contains": lambda c, k: k in c,
    "get_many": lambda c, k: c.get_many(["fine", k]),
    "set_many": lambda c, k: c.set_many({k: 1}),
}

BAD_TTLS = [0, 0.0, -1, -0.5, math.nan, math.inf, -math.inf, 101 * YEAR, 10**30, 10**400]
BAD_TTL_IDS = ["0", "0.0", "-1", "-0.5", "nan", "inf", "-inf", "101years", "1e30", "1e400"]

# Calls that take a ttl, each as a function of (cache, ttl).
TTL_CALLS = {
    "set": lambda c, t: c.set("k", 1, ttl=t),
    "set_many": lambda c, t: c.set_many({"k": 1}, ttl=t),
    "touch": lambda c, t: c.touch("present", t),
}


# ------------------------------------------------------------------------------ keys


@pytest.mark.parametrize("call", list(KEY_CALLS), ids=list(KEY_CALLS))
@pytest.mark.parametrize("key", BAD_KEYS, ids=lambda k: type(k).__name__)
def test_a_key_that_is_not_str_or_bytes_is_a_typeerror_naming_its_type(impl, call, key):
    cache = impl()
    with pytest.raises(TypeError, match=type(key).__name__):
        KEY_CALLS[call](cache, key)
    assert len(cache) == 0


def test_the_key_typeerror_message_reads_as_documented(impl):
    with pytest.raises(TypeError, match=r"^key must be str or bytes, not int$"):
        impl().get(1)


class RecordingStr(str):
    """A str subclass whose hooks record any call; the cache must never make one."""

    calls: list[str] = []

    def __hash__(self):
        RecordingStr.calls.append("__hash__")
        raise AssertionError("the cache called __hash__ on a key")

    def __eq__(self, other):
        RecordingStr.calls.append("__eq__")
        raise AssertionError("the cache called __eq__ on a key")

    def __ne__(self, other):
        RecordingStr.calls.append("__ne__")
        raise AssertionError("the cache called __ne__ on a key")

    def __str__(self):
        RecordingStr.calls.append("__str__")
        return "something else"

    def __len__(self):
        RecordingStr.calls.append("__len__")
        return 0

    def startswith(self, *args):
        RecordingStr.calls.append("startswith")
        return False


class RecordingBytes(bytes):
    """A bytes subclass whose hooks record any call; the cache must never make one."""

    calls: list[str] = []

    def __hash__(self):
        RecordingBytes.calls.append("__hash__")
        raise AssertionError("the cache called __hash__ on a key")

    def __eq__(self, other):
        RecordingBytes.calls.append("__eq__")
        raise AssertionError("the cache called __eq__ on a key")

    def __bytes__(self):
        RecordingBytes.calls.append("__bytes__")
        return b"something else"

    def __getitem__(self, index):
        RecordingBytes.calls.append("__getitem__")
        return b""


@pytest.fixture
def recorded_calls():
    RecordingStr.calls.clear()
    RecordingBytes.calls.clear()
    yield
    RecordingStr.calls.clear()
    RecordingBytes.calls.clear()


@pytest.mark.parametrize("subclass, plain", [(RecordingStr, "user:1"), (RecordingBytes, b"user:1")],
                         ids=["str", "bytes"])
def test_a_key_subclass_is_stored_as_its_plain_value_without_calling_its_methods(
        impl, recorded_calls, subclass, plain):
    cache = impl()
    key = subclass(plain)
    assert cache.set(key, "v") is True
    assert cache.get(key) == "v"
    assert cache.get(plain) == "v"
    assert key in cache
    assert cache[key] == "v"
    assert cache.get_many([key]) == {plain: "v"}
    assert cache.ttl(key) is None
    assert cache.touch(key, 10) is True
    (stored,) = cache.keys()
    assert type(stored) is type(plain)
    assert stored.__eq__(plain) is True  # compare through the plain type only
    assert cache.delete(key) is True
    cache[key] = "again"
    del cache[key]
    cache.set(key, "again")
    found = cache.get_many([key])
    assert list(map(type, found)) == [type(plain)]
    assert cache.invalidate_prefix(subclass(plain[:4])) == 1
    assert subclass.calls == []


def test_a_str_subclass_prefix_matches_by_its_plain_value(impl, recorded_calls):
    cache = impl()
    cache.set("user:1", 1)
    assert cache.invalidate_prefix(RecordingStr("user:")) == 1
    assert RecordingStr.calls == []


class ReentrantKey(str):
    """A key whose __hash__ and __eq__ would use the cache while it is being modified."""

    cache = None
    calls = 0

    def __hash__(self):
        ReentrantKey.calls += 1
        ReentrantKey.cache.clear()
        return 0

    def __eq__(self, other):
        ReentrantKey.calls += 1
        ReentrantKey.cache.set("reentered", 1)
        return True


def test_a_key_whose_hash_or_eq_would_reenter_the_cache_is_never_called(impl):
    cache = impl(max_entries=4)
    ReentrantKey.cache, ReentrantKey.calls = cache, 0
    try:
        for i in range(20):
            cache.set(ReentrantKey(f"k{i}"), i, tags=["t"])
            cache.get(ReentrantKey(f"k{i // 2}"))
            cache.delete(ReentrantKey(f"k{i // 3}"))
        assert cache.invalidate_prefix(ReentrantKey("zz")) == 0
        assert ReentrantKey.calls == 0
        assert "reentered" not in cache
        assert len(cache) <= 4
        cache._selfcheck()
    finally:
        ReentrantKey.cache = None


@pytest.mark.parametrize("mapping", [[("k", 1)], 42, None, "k"], ids=["pairs", "int", "None", "str"])
def test_set_many_of_something_that_is_not_a_mapping_is_a_typeerror(impl, mapping):
    cache = impl()
    with pytest.raises(TypeError):
        cache.set_many(mapping)
    assert len(cache) == 0


# ------------------------------------------------------------------------------ tags


@pytest.mark.parametrize("tags", ["orders", b"orders"], ids=["str", "bytes"])
def test_tags_given_as_a_lone_string_are_a_typeerror(impl, tags):
    cache = impl()
    with pytest.raises(TypeError):
        cache.set("k", 1, tags=tags)
    with pytest.raises(TypeError):
        cache.set_many({"k": 1}, tags=tags)
    assert "k" not in cache


@pytest.mark.parametrize("tag", [1, None, b"orders", ("a",)], ids=lambda t: type(t).__name__)
def test_a_tag_that_is_not_a_str_is_a_typeerror(impl, tag):
    cache = impl()
    with pytest.raises(TypeError):
        cache.set("k", 1, tags=["fine", tag])
    with pytest.raises(TypeError):
        cache.invalidate_tags("fine", tag)
    assert "k" not in cache


def test_tags_that_are_not_iterable_are_a_typeerror(impl):
    with pytest.raises(TypeError):
        impl().set("k", 1, tags=42)


# ------------------------------------------------------------------------- prefixes


@pytest.mark.parametrize("prefix", [1, None, bytearray(b"a"), ["a"]], ids=lambda p: type(p).__name__)
def test_a_prefix_that_is_not_str_or_bytes_is_a_typeerror(impl, prefix):
    cache = impl()
    cache.set("a", 1)
    with pytest.raises(TypeError):
        cache.invalidate_prefix(prefix)
    assert "a" in cache


# ------------------------------------------------------------------------------- ttl


@pytest.mark.parametrize("call", list(TTL_CALLS), ids=list(TTL_CALLS))
@pytest.mark.parametrize("ttl", BAD_TTLS, ids=BAD_TTL_IDS)
def test_a_ttl_that_is_not_positive_finite_and_at_most_100_years_is_a_valueerror(impl, call, ttl):
    cache = impl()
    cache.set("present", 1)
    with pytest.raises(ValueError, match="ttl"):
        TTL_CALLS[call](cache, ttl)
    assert "k" not in cache
    assert cache.ttl("present") is None


@pytest.mark.parametrize("call", list(TTL_CALLS), ids=list(TTL_CALLS))
@pytest.mark.parametrize("ttl", ["10", b"10", [10], 1j], ids=["str", "bytes", "list", "complex"])
def test_a_ttl_that_is_not_a_number_is_a_typeerror(impl, call, ttl):
    cache = impl()
    cache.set("present", 1)
    with pytest.raises(TypeError, match="ttl"):
        TTL_CALLS[call](cache, ttl)
    assert "k" not in cache


@pytest.mark.parametrize("ttl", [1e-3, 1, 2.5, 99 * YEAR], ids=["1ms", "1", "2.5", "99years"])
def test_a_ttl_from_a_millisecond_to_99_years_is_accepted(impl, ttl):
    cache = impl()
    assert cache.set("k", 1, ttl=ttl) is True
    assert cache.touch("k", ttl) in (True, False)  # False only if 1 ms already went by
    if ttl >= 1:
        assert ttl - 1 < cache.ttl("k") <= ttl


# ------------------------------------------------------------------------------ size


@pytest.mark.parametrize("size, error", [(-1, ValueError), (1.5, TypeError), ("10", TypeError)],
                         ids=["negative", "float", "str"])
def test_a_bad_size_is_refused_naming_size(impl, size, error):
    cache = impl()
    with pytest.raises(error, match="size"):
        cache.set("k", 1, size=size)
    assert "k" not in cache


# ----------------------------------------------------------------------- constructor


@pytest.mark.parametrize("value, error", [
    (0, ValueError), (-1, ValueError), (2**31, ValueError), (2**64, ValueError),
    (1.5, TypeError), ("10", TypeError), (None, TypeError),
], ids=["0", "-1", "2**31", "2**64", "float", "str", "None"])
def test_a_bad_max_entries_is_refused_naming_max_entries(impl, value, error):
    with pytest.raises(error, match="max_entries"):
        impl(max_entries=value)


@pytest.mark.parametrize("value, error", [(-1, ValueError), (1.5, TypeError), ("10", TypeError)],
                         ids=["-1", "float", "str"])
def test_a_bad_max_bytes_is_refused_naming_max_bytes(impl, value, error):
    with pytest.raises(error, match="max_bytes"):
        impl(max_bytes=value)


@pytest.mark.parametrize("value", BAD_TTLS, ids=BAD_TTL_IDS)
def test_a_bad_default_ttl_is_a_valueerror_naming_default_ttl(impl, value):
    with pytest.raises(ValueError, match="default_ttl"):
        impl(default_ttl=value)


def test_a_default_ttl_that_is_not_a_number_is_a_typeerror_naming_default_ttl(impl):
    with pytest.raises(TypeError, match="default_ttl"):
        impl(default_ttl="300")


# ------------------------------------------------------------------ nothing changes


def test_a_refused_set_leaves_the_previous_value_and_its_ttl_and_tags_in_place(impl):
    cache = impl()
    cache.set("k", "old", ttl=100, tags=["t"])
    attempts = [
        lambda: cache.set("k", "new", ttl=-1),
        lambda: cache.set("k", "new", tags="t"),
        lambda: cache.set("k", "new", tags=[1]),
        lambda: cache.set("k", "new", size=-1),
        lambda: cache.set_many({"k": "new"}, ttl=math.nan),
        lambda: cache.touch("k", 0),
    ]
    for attempt in attempts:
        with pytest.raises((TypeError, ValueError)):
            attempt()
    assert cache.get("k") == "old"
    assert 99 < cache.ttl("k") <= 100
    assert cache.stats()["tags"] == 1
    assert cache.stats()["sets"] == 1
    assert cache.invalidate_tags("t") == 1

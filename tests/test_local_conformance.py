"""How a LocalCache behaves, checked against the C core and the reference model alike.

Every test here takes the ``impl`` fixture and runs twice: once against the C core
(``tieredcache.LocalCache``) and once against the pure-Python model
(``refmodel.ModelCache``). The section headings follow ``docs/local-cache.md``.

Time never passes by sleeping: ``advance_clock`` moves the caches' clock forward, and
the ``_fresh_clock`` fixture resets it after each test.
"""

from __future__ import annotations

import collections
import sys
import types

import pytest

from tieredcache.testing import advance_clock

DAY = 86400.0
YEAR = 365 * DAY

STATS_KEYS = {
    "hits", "misses", "sets", "deletes", "evictions", "evictions_bytes", "expirations",
    "invalidations", "rejected", "entries", "bytes", "peak_bytes", "max_entries",
    "max_bytes", "tags", "overhead_bytes",
}
IMPLEMENTATION_DEFINED = {"overhead_bytes"}  # the C structures' own memory; 0 in the model


class Payload:
    """A value with identity, to show values are stored by reference."""


# --------------------------------------------------------------------------- get / set


def test_get_of_a_missing_key_returns_none_or_the_given_default(impl):
    cache = impl()
    sentinel = object()
    assert cache.get("missing") is None
    assert cache.get("missing", sentinel) is sentinel
    assert cache.get(b"missing", 7) == 7


def test_set_returns_true_and_get_returns_the_very_same_object(impl):
    cache = impl()
    value = {"name": "Chez Nous"}
    assert cache.set("profile:42", value) is True
    assert cache.get("profile:42") is value


def test_values_are_stored_by_reference_so_mutations_show_through(impl):
    cache = impl()
    orders = [1, 2]
    cache.set("orders", orders)
    orders.append(3)
    assert cache.get("orders") == [1, 2, 3]


def test_any_python_object_can_be_a_value_including_none(impl):
    cache = impl()
    for key, value in [("none", None), ("int", 0), ("obj", Payload()), ("tuple", (1, 2))]:
        cache.set(key, value)
        assert cache.get(key, "default") is value
    assert "none" in cache


def test_str_and_bytes_keys_with_the_same_characters_are_different_keys(impl):
    cache = impl()
    cache.set("a", "str value")
    cache.set(b"a", "bytes value")
    assert cache.get("a") == "str value"
    assert cache.get(b"a") == "bytes value"
    assert len(cache) == 2
    cache.delete("a")
    assert cache.get(b"a") == "bytes value"


def test_empty_and_non_ascii_keys_are_ordinary_keys(impl):
    cache = impl()
    for key in ["", b"", "café", "日本", b"\x00\xff", "a\x00b"]:
        cache.set(key, key)
    for key in ["", b"", "café", "日本", b"\x00\xff", "a\x00b"]:
        assert cache.get(key) == key
    assert cache.get("a") is None  # "a\x00b" is not truncated at the NUL


def test_setting_a_key_again_replaces_its_value(impl):
    cache = impl()
    cache.set("k", "old")
    cache.set("k", "new")
    assert cache.get("k") == "new"
    assert len(cache) == 1


def test_setting_a_key_again_replaces_its_ttl(impl):
    cache = impl()
    cache.set("short-then-forever", 1, ttl=10)
    cache.set("short-then-forever", 2)
    cache.set("forever-then-short", 3)
    cache.set("forever-then-short", 4, ttl=10)
    assert cache.ttl("short-then-forever") is None
    advance_clock(11)
    assert cache.get("short-then-forever") == 2
    assert cache.get("forever-then-short") is None


def test_setting_a_key_again_replaces_its_tags(impl):
    cache = impl()
    cache.set("k", 1, tags=["old", "both"])
    cache.set("k", 2, tags=["new", "both"])
    assert cache.invalidate_tags("old") == 0
    assert cache.get("k") == 2
    assert cache.invalidate_tags("new") == 1
    assert "k" not in cache


def test_setting_a_key_again_without_tags_removes_its_tags(impl):
    cache = impl()
    cache.set("k", 1, tags=["t"])
    cache.set("k", 2)
    assert cache.invalidate_tags("t") == 0
    assert cache.get("k") == 2


# ----------------------------------------------------------------------------- delete


def test_delete_removes_the_key_and_reports_whether_it_was_there(impl):
    cache = impl()
    cache.set("k", 1)
    assert cache.delete("k") is True
    assert cache.get("k") is None
    assert cache.delete("k") is False
    assert cache.delete("never-set") is False


def test_a_deleted_key_leaves_no_trace_in_the_tag_index(impl):
    cache = impl()
    cache.set("k", 1, tags=["t"])
    cache.delete("k")
    cache.set("k", 2)
    assert cache.invalidate_tags("t") == 0
    assert cache.get("k") == 2
    assert cache.stats()["tags"] == 0


# ---------------------------------------------------------------------- dunder methods


def test_len_counts_entries(impl):
    cache = impl()
    assert len(cache) == 0
    cache.set("a", 1)
    cache.set(b"a", 1)
    cache.set("a", 2)
    assert len(cache) == 2


def test_in_tells_whether_a_key_is_present(impl):
    cache = impl()
    cache.set("here", None)
    assert "here" in cache
    assert "absent" not in cache
    assert b"here" not in cache


def test_len_and_in_do_not_count_hits_or_misses(impl):
    cache = impl()
    cache.set("k", 1)
    len(cache)
    assert "k" in cache
    assert "absent" not in cache
    stats = cache.stats()
    assert (stats["hits"], stats["misses"]) == (0, 0)


def test_getitem_returns_the_value_or_raises_keyerror(impl):
    cache = impl()
    cache["k"] = "v"
    assert cache["k"] == "v"
    with pytest.raises(KeyError):
        cache["absent"]


def test_setitem_stores_like_set_with_the_default_ttl(impl):
    cache = impl(default_ttl=5)
    cache["k"] = "v"
    assert cache.get("k") == "v"
    assert 4 < cache.ttl("k") <= 5
    advance_clock(6)
    assert "k" not in cache


def test_delitem_removes_the_key_or_raises_keyerror(impl):
    cache = impl()
    cache["k"] = 1
    del cache["k"]
    assert "k" not in cache
    with pytest.raises(KeyError):
        del cache["k"]


# ------------------------------------------------------------------- get_many / set_many


def test_get_many_returns_a_dict_of_the_keys_found(impl):
    cache = impl()
    value = Payload()
    cache.set("a", value)
    cache.set(b"b", 2)
    found = cache.get_many(["a", b"b", "missing", b"a"])
    assert found == {"a": value, b"b": 2}
    assert found["a"] is value


def test_get_many_accepts_any_iterable_of_keys(impl):
    cache = impl()
    cache.set("a", 1)
    assert cache.get_many(key for key in ["a", "b"]) == {"a": 1}
    assert cache.get_many(()) == {}


def test_get_many_counts_a_hit_or_a_miss_per_key(impl):
    cache = impl()
    cache.set_many({"a": 1, "b": 2})
    cache.get_many(["a", "b", "c"])
    stats = cache.stats()
    assert (stats["hits"], stats["misses"]) == (2, 1)


def test_set_many_stores_every_entry_and_returns_how_many(impl):
    cache = impl()
    assert cache.set_many({"a": 1, b"b": 2, "c": 3}) == 3
    assert cache.get_many(["a", b"b", "c"]) == {"a": 1, b"b": 2, "c": 3}
    assert cache.set_many({}) == 0


def test_set_many_accepts_any_mapping(impl):
    cache = impl()
    assert cache.set_many(types.MappingProxyType({"a": 1})) == 1
    assert cache.set_many(collections.OrderedDict([("b", 2), ("c", 3)])) == 2
    assert cache.set_many(collections.ChainMap({"d": 4}, {"e": 5})) == 2
    assert sorted(cache.keys()) == ["a", "b", "c", "d", "e"]


def test_set_many_gives_every_entry_the_same_ttl_and_tags(impl):
    cache = impl()
    cache.set_many({"a": 1, "b": 2}, ttl=10, tags=["batch"])
    cache.set("other", 3, tags=["other"])
    assert 9 < cache.ttl("a") <= 10
    assert 9 < cache.ttl("b") <= 10
    assert cache.invalidate_tags("batch") == 2
    assert cache.keys() == ["other"]


def test_set_many_does_not_count_a_rejected_value(impl):
    cache = impl(max_bytes=10)
    assert cache.set_many({"small": b"12345", "large": b"12345678901"}) == 1
    assert "small" in cache
    assert "large" not in cache


# ----------------------------------------------------------------------- ttl and touch


def test_ttl_reports_the_remaining_seconds(impl):
    cache = impl()
    cache.set("k", 1, ttl=60)
    remaining = cache.ttl("k")
    assert isinstance(remaining, float)
    assert 59 < remaining <= 60
    advance_clock(20)
    assert 39 < cache.ttl("k") <= 40


def test_ttl_is_none_for_an_entry_that_never_expires(impl):
    cache = impl()
    cache.set("k", 1)
    assert cache.ttl("k") is None


def test_ttl_of_a_missing_or_expired_key_raises_keyerror(impl):
    cache = impl()
    with pytest.raises(KeyError):
        cache.ttl("missing")
    cache.set("k", 1, ttl=1)
    advance_clock(2)
    with pytest.raises(KeyError):
        cache.ttl("k")


def test_touch_gives_a_present_key_a_new_ttl_counted_from_now(impl):
    cache = impl()
    cache.set("k", 1, ttl=10)
    advance_clock(8)
    assert cache.touch("k", 10) is True
    assert 9 < cache.ttl("k") <= 10
    advance_clock(8)  # 16 s after set, 8 s after touch
    assert cache.get("k") == 1
    advance_clock(3)
    assert cache.get("k") is None


def test_touch_can_give_an_expiry_to_an_entry_that_had_none(impl):
    cache = impl()
    cache.set("k", 1)
    assert cache.touch("k", 5) is True
    advance_clock(6)
    assert "k" not in cache


def test_touch_with_none_removes_the_expiry_even_with_a_default_ttl(impl):
    cache = impl(default_ttl=10)
    cache.set("k", 1)
    assert cache.touch("k", None) is True
    assert cache.ttl("k") is None
    advance_clock(100)
    assert cache.get("k") == 1


def test_touch_of_a_missing_key_returns_false(impl):
    cache = impl()
    assert cache.touch("missing", 10) is False
    assert "missing" not in cache


def test_touch_does_not_bring_an_expired_entry_back(impl):
    cache = impl()
    cache.set("k", 1, ttl=1)
    advance_clock(2)
    assert cache.touch("k", 100) is False
    assert cache.get("k") is None


# ---------------------------------------------------------------------------- expiry


@pytest.mark.parametrize("ttl", [0.25, 1, 1.5, 30, 3600, 2 * DAY, 40 * DAY, 10 * YEAR])
def test_an_entry_is_present_until_its_ttl_and_absent_right_after(impl, ttl):
    """Every read checks the deadline: expiry is exact, not rounded to a wheel tick."""
    cache = impl()
    margin = min(0.1, ttl / 10)
    cache.set("k", "v", ttl=ttl)
    advance_clock(ttl - margin)
    assert cache.get("k") == "v"
    assert "k" in cache
    advance_clock(2 * margin)
    assert cache.get("k") is None
    assert "k" not in cache


def test_entries_with_many_different_ttls_each_expire_at_their_own_deadline(impl):
    """TTLs spread over every level of a hierarchical timing wheel."""
    cache = impl()
    ttls = [0.5, 1.5, 3.5, 70.5, 4000.5, 90_000.5, 3_000_000.5, 400_000_000.5]
    for ttl in ttls:
        cache.set(f"ttl:{ttl}", ttl, ttl=ttl)
    cache.set("forever", "forever")
    elapsed = 0.0
    for deadline in ttls:
        advance_clock(deadline - 0.25 - elapsed)
        elapsed = deadline - 0.25
        assert f"ttl:{deadline}" in cache, f"expired early at {elapsed} s"
        assert sorted(cache.keys(), key=str) == sorted(
            ["forever"] + [f"ttl:{t}" for t in ttls if t > elapsed], key=str)
        advance_clock(0.5)
        elapsed += 0.5
        assert cache.get(f"ttl:{deadline}") is None, f"still served at {elapsed} s"
    assert cache.keys() == ["forever"]


def test_entries_expiring_while_the_clock_jumps_far_ahead_are_all_gone(impl):
    cache = impl()
    for i in range(200):
        cache.set(f"k{i}", i, ttl=1 + i * 37.5)
    advance_clock(10 * YEAR)
    assert len(cache) == 0
    assert cache.keys() == []
    assert cache.get_many([f"k{i}" for i in range(200)]) == {}


def test_a_set_without_ttl_uses_the_default_ttl(impl):
    cache = impl(default_ttl=30)
    cache.set("k", 1)
    assert 29 < cache.ttl("k") <= 30
    advance_clock(29.5)
    assert cache.get("k") == 1
    advance_clock(1)
    assert cache.get("k") is None


def test_an_explicit_ttl_overrides_the_default_ttl(impl):
    cache = impl(default_ttl=30)
    cache.set("short", 1, ttl=5)
    cache.set("long", 2, ttl=3600)
    advance_clock(60)
    assert cache.get("short") is None
    assert cache.get("long") == 2


def test_without_a_default_ttl_entries_never_expire(impl):
    cache = impl()
    cache.set("k", 1)
    advance_clock(25 * YEAR)
    advance_clock(25 * YEAR)
    assert cache.get("k") == 1


def test_expired_entries_are_not_counted_contained_or_listed(impl):
    cache = impl()
    cache.set("gone", 1, ttl=1)
    cache.set("kept", 2)
    advance_clock(2)
    assert len(cache) == 1
    assert "gone" not in cache
    assert cache.keys() == ["kept"]
    with pytest.raises(KeyError):
        cache["gone"]


def test_reading_an_expired_entry_counts_a_miss(impl):
    cache = impl()
    cache.set("k", 1, ttl=1)
    advance_clock(2)
    assert cache.get("k") is None
    assert cache.stats()["misses"] == 1
    assert cache.stats()["hits"] == 0


def test_an_expired_key_can_be_set_again(impl):
    cache = impl()
    cache.set("k", 1, ttl=1, tags=["old"])
    advance_clock(2)
    cache.set("k", 2, tags=["new"])
    assert cache.get("k") == 2
    assert cache.invalidate_tags("old") == 0
    assert cache.ttl("k") is None


def test_expire_removes_every_expired_entry_and_returns_how_many(impl):
    cache = impl()
    for i in range(5):
        cache.set(f"short{i}", i, ttl=10)
    cache.set("long", "long", ttl=100)
    cache.set("forever", "forever")
    advance_clock(11)
    assert cache.expire() == 5
    assert cache.expire() == 0
    stats = cache.stats()
    assert stats["expirations"] == 5
    assert stats["entries"] == 2
    assert sorted(cache.keys()) == ["forever", "long"]


def test_expire_with_nothing_expired_removes_nothing(impl):
    cache = impl()
    cache.set("k", 1, ttl=10)
    assert cache.expire() == 0
    assert cache.get("k") == 1


def test_expire_reclaims_the_bytes_and_tags_of_expired_entries(impl):
    cache = impl()
    cache.set("k", b"12345", ttl=1, tags=["t"])
    cache.set("kept", b"123")
    advance_clock(2)
    cache.expire()
    stats = cache.stats()
    assert (stats["entries"], stats["bytes"], stats["tags"]) == (1, 3, 0)


# ------------------------------------------------------------------------------ tags


def test_invalidate_tags_removes_exactly_the_entries_carrying_the_tag(impl):
    cache = impl()
    cache.set("order:1", 1, tags=["shop:42", "orders"])
    cache.set("order:2", 2, tags=["shop:43", "orders"])
    cache.set("revenue", 3, tags=["shop:42", "revenue"])
    cache.set("untagged", 4)
    assert cache.invalidate_tags("shop:42") == 2
    assert sorted(cache.keys()) == ["order:2", "untagged"]
    assert cache.invalidate_tags("orders") == 1
    assert cache.keys() == ["untagged"]


def test_invalidate_tags_removes_entries_carrying_any_of_the_tags_once(impl):
    cache = impl()
    cache.set("both", 1, tags=["a", "b"])
    cache.set("a-only", 2, tags=["a"])
    cache.set("b-only", 3, tags=["b"])
    cache.set("c-only", 4, tags=["c"])
    assert cache.invalidate_tags("a", "b") == 3
    assert cache.keys() == ["c-only"]
    assert cache.stats()["invalidations"] == 3


def test_an_entry_can_carry_many_tags_and_any_one_invalidates_it(impl):
    cache = impl()
    tags = [f"tag{i}" for i in range(50)]
    for tag in tags:
        cache.set("k", 1, tags=tags)
        assert cache.invalidate_tags(tag) == 1
        assert "k" not in cache
    assert cache.stats()["tags"] == 0


def test_invalidating_an_unknown_tag_removes_nothing(impl):
    cache = impl()
    cache.set("k", 1, tags=["known"])
    assert cache.invalidate_tags("unknown") == 0
    assert cache.invalidate_tags() == 0
    assert cache.get("k") == 1


def test_a_tag_is_matched_exactly_not_as_a_prefix(impl):
    cache = impl()
    cache.set("k", 1, tags=["shop:42"])
    assert cache.invalidate_tags("shop:4") == 0
    assert cache.invalidate_tags("shop:420") == 0
    assert cache.invalidate_tags("shop:42") == 1


@pytest.mark.parametrize("make_tags", [list, tuple, set, frozenset, iter, lambda t: (x for x in t)],
                         ids=["list", "tuple", "set", "frozenset", "iterator", "generator"])
def test_tags_may_be_any_iterable_of_str(impl, make_tags):
    cache = impl()
    assert cache.set("k", 1, tags=make_tags(["a", "b"])) is True
    assert cache.invalidate_tags("b") == 1


def test_any_str_is_a_tag_even_with_nul_or_a_lone_surrogate(impl):
    """Tags are compared as whole strings, whatever characters they hold."""
    cache = impl()
    odd_tags = ["", "a\x00b", "\ud800", "caf\u00e9", "cafe\u0301", "日本"]
    for i, tag in enumerate(odd_tags):
        assert cache.set(f"k{i}", i, tags=[tag]) is True
    assert cache.invalidate_tags("a") == 0
    for i, tag in enumerate(odd_tags):
        assert cache.invalidate_tags(tag) == 1, repr(tag)
    assert len(cache) == 0


def test_a_tag_repeated_in_one_set_is_one_tag(impl):
    cache = impl()
    cache.set("k", 1, tags=["t", "t", "t"])
    assert cache.stats()["tags"] == 1
    assert cache.invalidate_tags("t") == 1


def test_the_tags_stat_counts_distinct_tags_in_use(impl):
    cache = impl()
    cache.set("a", 1, tags=["x", "y"])
    cache.set("b", 2, tags=["y", "z"])
    assert cache.stats()["tags"] == 3
    cache.invalidate_tags("x")
    assert cache.stats()["tags"] == 2
    cache.delete("b")
    assert cache.stats()["tags"] == 0


def test_a_tag_used_again_after_invalidation_works_again(impl):
    cache = impl()
    cache.set("a", 1, tags=["t"])
    cache.invalidate_tags("t")
    cache.set("b", 2, tags=["t"])
    assert cache.invalidate_tags("t") == 1


# --------------------------------------------------------------------------- prefixes


def test_invalidate_prefix_removes_the_keys_starting_with_the_prefix(impl):
    cache = impl()
    for key in ["user:1", "user:2", "user:10:orders", "users", "org:1", "user"]:
        cache.set(key, key)
    assert cache.invalidate_prefix("user:") == 3
    assert sorted(cache.keys()) == ["org:1", "user", "users"]
    assert cache.stats()["invalidations"] == 3


def test_a_str_prefix_matches_only_str_keys_and_a_bytes_prefix_only_bytes_keys(impl):
    cache = impl()
    cache.set("user:1", 1)
    cache.set(b"user:1", 2)
    assert cache.invalidate_prefix("user:") == 1
    assert cache.keys() == [b"user:1"]
    cache.set("user:1", 1)
    assert cache.invalidate_prefix(b"user:") == 1
    assert cache.keys() == ["user:1"]


def test_glob_and_regex_characters_in_a_prefix_are_literal(impl):
    cache = impl()
    for key in ["a*b", "axb", "a?c", "abc", "a[1]", "a1", "a.b", "a%b", "a\\b"]:
        cache.set(key, key)
    assert cache.invalidate_prefix("a*") == 1
    assert cache.invalidate_prefix("a?") == 1
    assert cache.invalidate_prefix("a[") == 1
    assert cache.invalidate_prefix("a.") == 1
    assert cache.invalidate_prefix("a%") == 1
    assert cache.invalidate_prefix("a\\") == 1
    assert sorted(cache.keys()) == ["a1", "abc", "axb"]


def test_the_empty_prefix_matches_every_key_of_its_type(impl):
    cache = impl()
    cache.set_many({"a": 1, "b": 2, b"a": 3})
    assert cache.invalidate_prefix("") == 2
    assert cache.keys() == [b"a"]
    assert cache.invalidate_prefix(b"") == 1
    assert len(cache) == 0


def test_a_prefix_matches_the_key_equal_to_it_and_not_shorter_keys(impl):
    cache = impl()
    cache.set_many({"ab": 1, "a": 2, "abc": 3})
    assert cache.invalidate_prefix("ab") == 2
    assert cache.keys() == ["a"]


def test_prefixes_compare_code_points_for_str_and_bytes_for_bytes(impl):
    cache = impl()
    cache.set_many({"été": 1, "etc": 2, "é": 3, "日本語": 4})
    cache.set("e\u0301t", 5)  # "e" + combining accent: not "é"
    cache.set_many({"été".encode(): 6, b"\xc3\xa0": 7})
    assert cache.invalidate_prefix("é") == 2
    assert cache.invalidate_prefix("日本") == 1
    assert cache.invalidate_prefix(b"\xc3") == 2  # the UTF-8 lead byte of é and à
    assert sorted(cache.keys(), key=repr) == sorted(["etc", "e\u0301t"], key=repr)


def test_a_prefix_invalidation_leaves_no_trace_in_the_tag_index(impl):
    cache = impl()
    cache.set("p:1", 1, tags=["t"])
    cache.set("q:1", 2, tags=["t"])
    cache.invalidate_prefix("p:")
    assert cache.stats()["tags"] == 1
    assert cache.invalidate_tags("t") == 1


# ----------------------------------------------------------------------------- clear


def test_clear_removes_everything_and_returns_how_many(impl):
    cache = impl()
    cache.set_many({"a": 1, b"b": 2, "c": 3}, tags=["t"])
    assert cache.clear() == 3
    assert len(cache) == 0
    assert cache.keys() == []
    stats = cache.stats()
    assert (stats["entries"], stats["bytes"], stats["tags"]) == (0, 0, 0)
    assert cache.clear() == 0


def test_a_cleared_cache_is_fully_usable(impl):
    cache = impl(max_entries=3)
    cache.set_many({"a": 1, "b": 2, "c": 3}, tags=["t"], ttl=5)
    cache.clear()
    cache.set_many({"a": 4, "b": 5, "c": 6}, tags=["t"])
    assert cache.get_many(["a", "b", "c"]) == {"a": 4, "b": 5, "c": 6}
    advance_clock(10)
    assert cache.expire() == 0
    assert cache.invalidate_tags("t") == 3


# ---------------------------------------------------------------------------- bounds


def test_the_cache_never_holds_more_than_max_entries(impl):
    cache = impl(max_entries=10)
    for i in range(1000):
        cache.set(f"k{i}", i)
        assert len(cache) <= 10
        assert cache.stats()["entries"] <= 10
    assert len(cache) == 10
    assert cache.stats()["evictions"] == 990
    cache._selfcheck()


def test_every_surviving_entry_keeps_its_own_value_after_evictions(impl):
    cache = impl(max_entries=16)
    for i in range(500):
        cache.set(f"k{i}", i)
        if i % 3 == 0:
            cache.get(f"k{i // 2}")
    for key in cache.keys():
        assert cache.get(key) == int(key[1:])


def test_a_single_entry_cache_holds_one_entry(impl):
    cache = impl(max_entries=1)
    for i in range(10):
        cache.set(f"k{i}", i)
        assert len(cache) == 1
    (key,) = cache.keys()
    assert cache.get(key) == int(key[1:])
    assert cache.stats()["evictions"] == 9


def test_overwriting_a_key_in_a_full_cache_evicts_nothing(impl):
    cache = impl(max_entries=5)
    cache.set_many({f"k{i}": i for i in range(5)})
    for _ in range(3):
        cache.set("k2", "new")
    assert len(cache) == 5
    assert cache.stats()["evictions"] == 0
    assert cache.get("k2") == "new"


def test_the_cache_never_holds_more_than_max_bytes(impl):
    cache = impl(max_entries=1000, max_bytes=1000)
    for i in range(500):
        cache.set(f"k{i}", b"x" * ((i * 37) % 200))
        stats = cache.stats()
        assert stats["bytes"] <= 1000
        assert stats["peak_bytes"] <= 1000
    stats = cache.stats()
    assert stats["evictions_bytes"] > 0
    assert stats["evictions_bytes"] == stats["evictions"]
    assert stats["bytes"] == sum(len(cache.get(k)) for k in cache.keys())
    cache._selfcheck()


def test_growing_a_value_in_place_evicts_other_entries_to_stay_within_max_bytes(impl):
    cache = impl(max_bytes=100)
    cache.set_many({"a": b"1" * 30, "b": b"2" * 30, "c": b"3" * 30})
    cache.set("b", b"4" * 90)
    stats = cache.stats()
    assert stats["bytes"] <= 100
    assert stats["evictions_bytes"] >= 1
    assert sum(len(cache.get(k)) for k in cache.keys()) == stats["bytes"]


def test_a_value_larger_than_max_bytes_is_rejected_and_the_old_value_removed(impl):
    cache = impl(max_bytes=100)
    assert cache.set("k", b"small", tags=["t"]) is True
    assert cache.set("k", b"x" * 101) is False
    assert cache.get("k") is None
    assert "k" not in cache
    stats = cache.stats()
    assert stats["rejected"] == 1
    assert (stats["entries"], stats["bytes"], stats["tags"]) == (0, 0, 0)


def test_a_rejected_value_does_not_evict_anything(impl):
    cache = impl(max_entries=3, max_bytes=100)
    cache.set_many({"a": b"1" * 30, "b": b"2" * 30, "c": b"3" * 30})
    assert cache.set("huge", b"x" * 1000) is False
    assert sorted(cache.keys()) == ["a", "b", "c"]
    assert cache.stats()["evictions"] == 0


def test_a_value_whose_charge_equals_max_bytes_is_stored(impl):
    cache = impl(max_bytes=100)
    assert cache.set("k", b"x" * 100) is True
    assert cache.get("k") == b"x" * 100
    assert cache.set("zero", b"", size=0) is True
    assert cache.stats()["bytes"] == 100


def test_without_max_bytes_a_charge_above_4_gib_minus_1_is_rejected(impl):
    cache = impl()
    assert cache.set("largest", 1, size=2**32 - 1) is True
    assert cache.set("too-large", 2, size=2**32) is False
    assert cache.set("far-too-large", 3, size=2**70) is False
    assert "largest" in cache
    assert cache.stats()["rejected"] == 2
    assert cache.stats()["bytes"] == 2**32 - 1


def test_max_entries_may_be_as_large_as_2_to_the_31_minus_1(impl):
    cache = impl(max_entries=2**31 - 1)
    cache.set("k", 1)
    assert cache.get("k") == 1
    assert cache.stats()["max_entries"] == 2**31 - 1


# --------------------------------------------------------------------------- charges


def test_the_charge_is_size_when_given(impl):
    cache = impl()
    cache.set("a", b"123", size=1000)
    cache.set("b", Payload(), size=0)
    assert cache.stats()["bytes"] == 1000


def test_the_charge_of_bytes_and_str_values_is_their_len(impl):
    cache = impl()
    cache.set("bytes", b"12345")
    cache.set("str", "héllo wörld")  # len counts code points, not encoded bytes
    cache.set("empty", "")
    assert cache.stats()["bytes"] == 5 + 11


@pytest.mark.parametrize("value", [12345, 0, -1, 2**62, -2**100, 10**300, True, False, None, 1.5, float("nan"),
                                   [1, 2, 3], {"a": 1}, (1, 2), bytearray(b"abc"), Payload()],
                         ids=lambda v: f"{type(v).__name__}:{v!r:.12}")
def test_the_charge_of_other_values_is_sys_getsizeof(impl, value):
    cache = impl()
    cache.set("k", value)
    assert cache.stats()["bytes"] == sys.getsizeof(value)


def test_bytes_follow_overwrites_deletes_and_invalidations(impl):
    cache = impl()
    cache.set("a", b"x" * 10, tags=["t"])
    cache.set("b", b"x" * 20)
    assert cache.stats()["bytes"] == 30
    cache.set("a", b"x" * 5, tags=["t"])
    assert cache.stats()["bytes"] == 25
    cache.delete("b")
    assert cache.stats()["bytes"] == 5
    cache.invalidate_tags("t")
    assert cache.stats()["bytes"] == 0


def test_peak_bytes_is_the_high_water_mark_of_bytes(impl):
    cache = impl()
    cache.set("a", b"x" * 70)
    cache.set("b", b"x" * 30)
    cache.delete("a")
    cache.set("c", b"x" * 10)
    stats = cache.stats()
    assert stats["bytes"] == 40
    assert stats["peak_bytes"] == 100


# ----------------------------------------------------------------------------- stats


def test_stats_has_exactly_the_documented_keys(impl):
    assert set(impl().stats()) == STATS_KEYS


def test_a_new_cache_has_zero_counters_and_reports_its_bounds(impl):
    stats = impl(max_entries=123, max_bytes=4567).stats()
    counters = STATS_KEYS - {"max_entries", "max_bytes"} - IMPLEMENTATION_DEFINED
    assert {k: stats[k] for k in counters} == dict.fromkeys(counters, 0)
    assert stats["max_entries"] == 123
    assert stats["max_bytes"] == 4567
    assert impl().stats()["max_bytes"] is None
    assert impl().stats()["max_entries"] == 100_000


def test_overhead_bytes_is_a_non_negative_int(impl):
    cache = impl()
    assert cache.stats()["overhead_bytes"] >= 0
    cache.set_many({f"k{i}": i for i in range(1000)}, tags=["t"])
    overhead = cache.stats()["overhead_bytes"]
    assert isinstance(overhead, int) and overhead >= 0


def test_stats_returns_a_new_dict_each_time(impl):
    cache = impl()
    first = cache.stats()
    first["hits"] = 99
    assert cache.stats()["hits"] == 0
    assert cache.stats() is not cache.stats()


def test_stats_count_a_scripted_workload_exactly(impl):
    cache = impl(max_entries=3, max_bytes=100)
    cache.set("a", b"x" * 10, tags=["t"])
    cache.set("b", b"y" * 20)
    cache.get("a")
    cache.get("a")
    cache.get("zzz")
    cache.get_many(["a", "b", "nope"])
    cache.delete("b")
    cache.set("e", b"", ttl=1)
    advance_clock(2)
    assert cache.expire() == 1
    cache.set("p1", 1, size=5)
    cache.set("p2", 2, size=5)
    assert cache.invalidate_prefix("p") == 2
    assert cache.invalidate_tags("t") == 1
    assert len(cache) == 0
    cache.set("f1", b"1" * 60)
    cache.set("f2", b"2" * 60)  # 120 bytes > max_bytes: one of f1/f2 is evicted
    assert len(cache) == 1
    for i in range(5):  # 6 entries for max_entries=3: three are evicted
        cache.set(f"k{i}", b"", size=0)
    stats = {k: v for k, v in cache.stats().items() if k not in IMPLEMENTATION_DEFINED}
    assert stats == {
        "hits": 4, "misses": 2, "sets": 12, "deletes": 1,
        "evictions": 4, "evictions_bytes": 1, "expirations": 1, "invalidations": 3,
        "rejected": 0, "entries": 3, "bytes": stats["bytes"], "peak_bytes": 60,
        "max_entries": 3, "max_bytes": 100, "tags": 0,
    }
    assert stats["bytes"] == sum(len(cache.get(k)) for k in cache.keys())


def test_hits_and_misses_count_get_calls(impl):
    cache = impl()
    cache.set("k", 1)
    for _ in range(3):
        cache.get("k")
    for _ in range(2):
        cache.get("absent", 0)
    stats = cache.stats()
    assert (stats["hits"], stats["misses"]) == (3, 2)


def test_deletes_count_entries_removed_by_delete_and_del(impl):
    cache = impl()
    cache.set_many({"a": 1, "b": 2})
    cache.delete("a")
    del cache["b"]
    assert cache.stats()["deletes"] == 2


# ------------------------------------------------------------------------------ keys


def test_keys_returns_a_list_snapshot_of_the_live_keys(impl):
    cache = impl()
    cache.set_many({"a": 1, b"b": 2})
    snapshot = cache.keys()
    assert isinstance(snapshot, list)
    assert sorted(snapshot, key=repr) == sorted(["a", b"b"], key=repr)
    cache.set("c", 3)
    cache.delete("a")
    assert sorted(snapshot, key=repr) == sorted(["a", b"b"], key=repr)
    snapshot.clear()
    assert len(cache) == 2


def test_keys_excludes_expired_entries(impl):
    cache = impl()
    cache.set("short", 1, ttl=1)
    cache.set("long", 2, ttl=100)
    advance_clock(2)
    assert cache.keys() == ["long"]


def test_keys_do_not_count_hits_or_misses(impl):
    cache = impl()
    cache.set("k", 1)
    cache.keys()
    stats = cache.stats()
    assert (stats["hits"], stats["misses"]) == (0, 0)


def test_selfcheck_passes_after_a_mixed_workload(impl):
    cache = impl(max_entries=50, max_bytes=2000)
    for i in range(400):
        key = f"k{i % 80}" if i % 2 else f"k{i % 80}".encode()
        cache.set(key, b"v" * (i % 60), ttl=(i % 7) + 0.5 if i % 3 else None, tags=[f"t{i % 5}", f"u{i % 11}"])
        if i % 17 == 0:
            cache.invalidate_tags(f"t{i % 5}")
        if i % 23 == 0:
            cache.invalidate_prefix("k1")
        if i % 29 == 0:
            advance_clock(1)
            cache.expire()
        cache._selfcheck()

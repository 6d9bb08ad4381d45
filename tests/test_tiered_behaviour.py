"""What a TieredCache does, tier by tier (docs/tiered-cache.md).

Most tests run twice through the ``tier`` fixture: against ``TieredCache()`` (no Redis:
L1 only, the embedded mode) and against ``TieredCache(redis_url=...)``. The spec says
"everything else works the same", so one suite describes both. Tests that only make sense
with Redis (a second instance standing in for another process, the keys in Redis, the
serializers) take the ``redis_url`` fixture directly.

Time: ``travel(seconds, raw)`` moves the L1 clock and lowers every Redis key's TTL by
the same amount, so TTL tests read the same on both tiers and never sleep.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import hmac
import math
import pickle
import uuid
import zlib
from collections import OrderedDict
from decimal import Decimal
from pathlib import Path

import pytest

from tieredcache.testing import advance_clock
from tiered_helpers import (  # noqa: F401  (rawr, redis_caches: fixtures)
    Caches,
    ConfigurationError,
    RawRedis,
    SerializationError,
    TieredCache,
    rawr,
    redis_caches,
    travel,
    wait_until,
)

NS = "test"
SECRET = "a pickle secret of 32 bytes or more"  # the pickle serializer wants 16 at least


# ---- fixtures -----------------------------------------------------------------------------


@pytest.fixture(params=["l1", "redis"])
def tier(request: pytest.FixtureRequest) -> str:
    """"l1": TieredCache() with no Redis; "redis": TieredCache(redis_url=...)."""
    return request.param


@pytest.fixture
def raw(tier: str, request: pytest.FixtureRequest):
    """A raw client on the test's Redis database, or None on the L1-only tier."""
    if tier == "l1":
        yield None
        return
    with RawRedis(request.getfixturevalue("redis_url")) as client:
        yield client


@pytest.fixture
def make_cache(tier: str, request: pytest.FixtureRequest):
    """``make_cache(**kwargs)``: a TieredCache on the tier under test, namespace "test"."""
    url = request.getfixturevalue("redis_url") if tier == "redis" else None
    caches = Caches(redis_url=url, namespace=NS)
    yield caches
    caches.close()


@pytest.fixture
def cache(make_cache) -> TieredCache:
    return make_cache()


class Loader:
    """A loader that counts its calls and returns (or raises) what it was given."""

    def __init__(self, value=None, error: BaseException | None = None) -> None:
        self.value, self.error, self.calls = value, error, 0

    def __call__(self):
        self.calls += 1
        if self.error is not None:
            raise self.error
        return self.value


# ---- get, set, delete ---------------------------------------------------------------------

VALUES = [
    {"name": "Chez Nous", "tables": [1, 2, 3]},
    42,
    3.5,
    "a string",
    True,
    [1, "two", {"three": 3.0}],
]


def test_get_of_a_missing_key_returns_the_default(cache):
    assert cache.get("absent") is None
    marker = object()
    assert cache.get("absent", marker) is marker
    assert cache.get("absent", default=0) == 0


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_set_then_get_returns_the_value(cache, value):
    assert cache.set("k", value) is None
    assert cache.get("k") == value


def test_set_replaces_the_previous_value(cache):
    cache.set("k", "old")
    cache.set("k", "new")
    assert cache.get("k") == "new"


def test_delete_reports_whether_the_key_was_held(cache):
    cache.set("k", 1)
    assert cache.delete("k") is True
    assert cache.get("k") is None
    assert cache.delete("k") is False
    assert cache.delete("never-set") is False


def test_keys_that_differ_only_by_characters_redis_treats_specially_are_distinct(cache):
    keys = ["a:b", "a%3Ab", "a b", "ключ", "🍕", "a*", "a\\b", "", "k:x"]
    for i, key in enumerate(keys):
        cache.set(key, i)
    assert [cache.get(key) for key in keys] == list(range(len(keys)))


def test_keys_must_be_str(cache):
    with pytest.raises(TypeError):
        cache.set(1, "one")
    with pytest.raises(TypeError):
        cache.get(1)
    with pytest.raises(TypeError):
        cache.get_or_set(1, lambda: "one")


def test_a_lone_string_is_refused_as_tags(cache, raw):
    # It would otherwise become one tag per character.
    with pytest.raises(TypeError):
        cache.set("k", 1, tags="org:1")
    assert cache.get("k") is None
    if raw is not None:
        assert not raw.exists(cache.redis_key("k"))


@pytest.mark.parametrize("ttl", [0, -1, math.nan, math.inf])
def test_a_bad_ttl_raises_value_error_and_stores_nothing(cache, raw, ttl):
    with pytest.raises(ValueError, match="ttl"):
        cache.set("k", 1, ttl=ttl)
    assert cache.get("k") is None
    if raw is not None:
        assert raw.keys("*") == set()


# ---- get_many, set_many -------------------------------------------------------------------


def test_get_many_returns_only_the_keys_found(cache):
    cache.set("a", 1)
    cache.set("c", 3)
    assert cache.get_many(["a", "b", "c"]) == {"a": 1, "c": 3}
    assert cache.get_many([]) == {}
    assert cache.get_many(["x", "y"]) == {}


def test_set_many_stores_every_entry_with_the_same_ttl_and_tags(cache, raw):
    assert cache.set_many({"a": 1, "b": [2], "c": {"three": 3}}, ttl=30, tags=["batch"]) is None
    assert cache.get_many(["a", "b", "c"]) == {"a": 1, "b": [2], "c": {"three": 3}}
    travel(29, raw)
    assert cache.get_many(["a", "b", "c"]) == {"a": 1, "b": [2], "c": {"three": 3}}
    cache.set("untagged", 0)
    assert cache.invalidate_tags("batch") == 3
    assert cache.get_many(["a", "b", "c", "untagged"]) == {"untagged": 0}


def test_set_many_entries_expire_together(cache, raw):
    cache.set_many({"a": 1, "b": 2}, ttl=30)
    travel(31, raw)
    assert cache.get_many(["a", "b"]) == {}


# ---- get_or_set ---------------------------------------------------------------------------


def test_get_or_set_calls_the_loader_once_and_caches_the_result(cache):
    loader = Loader({"profile": 42})
    assert cache.get_or_set("profile:42", loader) == {"profile": 42}
    assert cache.get_or_set("profile:42", loader) == {"profile": 42}
    assert cache.get("profile:42") == {"profile": 42}
    assert loader.calls == 1
    assert cache.stats()["loads"] == 1


def test_get_or_set_does_not_call_the_loader_on_a_hit(cache):
    cache.set("k", "cached")
    loader = Loader("loaded")
    assert cache.get_or_set("k", loader) == "cached"
    assert loader.calls == 0


def test_a_loader_that_raises_stores_nothing_and_the_exception_reaches_the_caller(cache, raw):
    class DatabaseDown(Exception):
        pass

    boom = DatabaseDown("db down")
    failing = Loader(error=boom)
    with pytest.raises(DatabaseDown) as info:
        cache.get_or_set("k", failing)
    assert info.value is boom
    assert cache.get("k") is None
    if raw is not None:
        assert not raw.exists(cache.redis_key("k"))
    assert cache.stats()["load_errors"] == 1
    # Nothing was cached, so the next call loads again.
    assert cache.get_or_set("k", Loader("recovered")) == "recovered"


def test_get_or_set_applies_ttl_and_tags(cache, raw):
    cache.get_or_set("order:1", Loader("o1"), ttl=120, tags=["shop:42", "orders"])
    cache.get_or_set("order:2", Loader("o2"), ttl=120, tags=["shop:43", "orders"])
    assert cache.invalidate_tags("shop:42") == 1
    assert cache.get("order:1") is None
    assert cache.get("order:2") == "o2"
    travel(121, raw)
    assert cache.get("order:2") is None


# ---- TTLs ---------------------------------------------------------------------------------


def test_an_entry_lives_for_its_ttl_and_no_longer(cache, raw):
    cache.set("k", "v", ttl=60)
    travel(59, raw)
    assert cache.get("k") == "v"
    travel(2, raw)
    assert cache.get("k") is None


def test_default_ttl_applies_when_a_call_gives_none(make_cache, raw):
    cache = make_cache(default_ttl=30)
    cache.set("k", "v")
    cache.get_or_set("loaded", Loader("l"))
    travel(29, raw)
    assert cache.get_many(["k", "loaded"]) == {"k": "v", "loaded": "l"}
    travel(2, raw)
    assert cache.get_many(["k", "loaded"]) == {}


def test_default_ttl_none_means_no_expiry(make_cache, raw):
    cache = make_cache(default_ttl=None)
    cache.set("k", "v")
    travel(10 * 365 * 86400, raw)
    assert cache.get("k") == "v"
    if raw is not None:
        assert raw.execute("PTTL", cache.redis_key("k")) == -1


def test_an_explicit_ttl_overrides_default_ttl(make_cache, raw):
    cache = make_cache(default_ttl=10)
    cache.set("k", "v", ttl=100)
    travel(50, raw)
    assert cache.get("k") == "v"


def test_an_l1_copy_lives_at_most_l1_ttl(make_cache, raw):
    cache = make_cache(l1_ttl=5)
    cache.set("k", "v", ttl=100)
    if raw is not None:
        raw.execute("DEL", cache.redis_key("k"))  # only the L1 copy is left
    assert cache.get("k") == "v"
    advance_clock(6)
    assert cache.get("k") is None


def test_redis_keeps_the_full_ttl_when_l1_ttl_is_shorter(redis_caches, rawr):
    cache = redis_caches(l1_ttl=5)
    cache.set("k", "v", ttl=3600)
    assert 3000_000 < rawr.execute("PTTL", cache.redis_key("k")) <= 3600_000
    advance_clock(6)  # the L1 copy is gone; Redis still serves it
    assert cache.get("k") == "v"


def test_redis_holds_the_entry_for_exactly_the_ttl_asked(redis_caches, rawr):
    cache = redis_caches(default_ttl=3600)
    cache.set("explicit", 1, ttl=1800)
    cache.set("default", 1)
    assert 1700_000 < rawr.execute("PTTL", cache.redis_key("explicit")) <= 1800_000
    assert 3500_000 < rawr.execute("PTTL", cache.redis_key("default")) <= 3600_000


# ---- the read path with Redis -------------------------------------------------------------


def test_another_instance_reads_through_redis_and_backfills_its_l1(redis_caches, rawr):
    writer, reader = redis_caches(), redis_caches()
    writer.set("k", {"v": 1}, ttl=300)
    assert reader.get("k") == {"v": 1}
    assert reader.stats()["l2"]["hits"] == 1
    rawr.execute("DEL", writer.redis_key("k"))  # no message: only an L1 can still serve it
    assert reader.get("k") == {"v": 1}


def test_the_backfilled_l1_ttl_is_no_longer_than_the_redis_ttl(redis_caches, rawr):
    writer, reader = redis_caches(), redis_caches()
    writer.set("k", "v", ttl=2)
    assert reader.get("k") == "v"  # backfilled while Redis has (at most) 2 s left
    rawr.execute("DEL", writer.redis_key("k"))  # no message: only the reader's L1 has it now
    assert reader.get("k") == "v"
    advance_clock(2.5)
    assert reader.get("k") is None


def test_the_backfilled_l1_ttl_follows_the_ttl_redis_reports(redis_caches, rawr):
    # What remains is what Redis says (PTTL). It differs from the TTL the writer asked
    # for when anything shortened it in Redis, or when the hosts' clocks disagree.
    writer, reader = redis_caches(), redis_caches()
    writer.set("k", "v", ttl=300)
    rawr.execute("PEXPIRE", writer.redis_key("k"), 2000)  # 2 s left in Redis
    assert reader.get("k") == "v"
    rawr.execute("DEL", writer.redis_key("k"))
    assert reader.get("k") == "v"  # from the reader's L1
    advance_clock(2.5)
    assert reader.get("k") is None


def test_the_backfilled_l1_ttl_is_capped_by_l1_ttl(redis_caches, rawr):
    writer, reader = redis_caches(), redis_caches(l1_ttl=5)
    writer.set("k", "v", ttl=300)
    assert reader.get("k") == "v"
    rawr.execute("DEL", writer.redis_key("k"))
    assert reader.get("k") == "v"
    advance_clock(6)
    assert reader.get("k") is None


def test_get_many_reads_the_l1_misses_from_redis(redis_caches):
    writer, reader = redis_caches(), redis_caches()
    writer.set_many({"a": 1, "b": 2})
    reader.set("c", 3)
    assert reader.get_many(["a", "b", "c", "d"]) == {"a": 1, "b": 2, "c": 3}


def test_get_or_set_in_another_instance_finds_the_value_in_redis(redis_caches):
    first, second = redis_caches(), redis_caches()
    first.get_or_set("k", Loader("from the database"))
    loader = Loader("loaded again")
    assert second.get_or_set("k", loader) == "from the database"
    assert loader.calls == 0


def test_an_entry_deleted_in_one_instance_is_gone_from_redis(redis_caches, rawr):
    first, second = redis_caches(), redis_caches()
    first.set("k", 1)
    assert rawr.exists(first.redis_key("k"))
    assert second.delete("k") is True  # Redis held it, even though second's L1 did not
    assert not rawr.exists(first.redis_key("k"))


# ---- tags, prefixes, clear ----------------------------------------------------------------


def test_invalidate_tags_removes_exactly_the_entries_carrying_a_tag(cache, raw):
    cache.set("a", 1, tags=["t1"])
    cache.set("b", 2, tags=["t1", "t2"])
    cache.set("c", 3, tags=["t2"])
    cache.set("d", 4)
    assert cache.invalidate_tags("t1") == 2
    assert cache.get_many(["a", "b", "c", "d"]) == {"c": 3, "d": 4}


def test_invalidate_tags_takes_several_tags(cache, raw):
    cache.set("a", 1, tags=["t1"])
    cache.set("b", 2, tags=["t2"])
    cache.set("c", 3, tags=["t3"])
    assert cache.invalidate_tags("t1", "t2") == 2
    assert cache.get_many(["a", "b", "c"]) == {"c": 3}


def test_an_unknown_tag_removes_nothing(cache):
    cache.set("a", 1, tags=["t1"])
    assert cache.invalidate_tags("nobody") == 0
    assert cache.get("a") == 1


def test_setting_a_key_again_replaces_its_tags(cache, raw):
    cache.set("k", "first", tags=["old"])
    cache.set("k", "second", tags=["new"])
    assert cache.invalidate_tags("old") == 0
    assert cache.get("k") == "second"
    assert cache.invalidate_tags("new") == 1
    assert cache.get("k") is None


def test_invalidate_prefix_removes_exactly_the_keys_with_that_prefix(cache, raw):
    cache.set_many({"user:1": 1, "user:2": 2, "user": 0, "users:1": 9, "org:1": 5})
    assert cache.invalidate_prefix("user:") == 2
    assert cache.get_many(["user:1", "user:2", "user", "users:1", "org:1"]) == {
        "user": 0, "users:1": 9, "org:1": 5}


GLOB_KEYS = ["a*1", "ab", "a?", "aX", "a[b]c", "ab]c", "a\\x", "ax", "a^", "a-"]


@pytest.mark.parametrize("prefix, removed", [
    ("a*", {"a*1"}),
    ("a?", {"a?"}),
    ("a[b]", {"a[b]c"}),
    ("a\\", {"a\\x"}),
    ("a[", {"a[b]c"}),
    ("a^", {"a^"}),
], ids=["star", "question", "brackets", "backslash", "open-bracket", "caret"])
def test_glob_metacharacters_in_a_prefix_are_literal(cache, raw, prefix, removed):
    cache.set_many({key: key for key in GLOB_KEYS})
    assert cache.invalidate_prefix(prefix) == len(removed)
    assert set(cache.get_many(GLOB_KEYS)) == set(GLOB_KEYS) - removed


def test_clear_removes_every_entry_of_the_namespace(cache, raw):
    cache.set_many({f"k{i}": i for i in range(10)}, tags=["t"])
    assert cache.clear() == 10
    assert cache.get_many([f"k{i}" for i in range(10)]) == {}
    if raw is not None:
        assert raw.keys(f"tc:{NS}:k:*") == set()


def test_invalidations_in_redis_reach_instances_that_never_held_the_entry(redis_caches):
    writer, other = redis_caches(), redis_caches()
    writer.set("tagged", 1, tags=["t"])
    writer.set("user:1", 1)
    writer.set("plain", 1)
    other.invalidate_tags("t")
    other.invalidate_prefix("user:")
    fresh = redis_caches()
    assert fresh.get_many(["tagged", "user:1", "plain"]) == {"plain": 1}
    other.clear()
    assert redis_caches().get("plain") is None


# ---- namespaces ---------------------------------------------------------------------------


def test_namespace_views_hold_different_values_under_the_same_key(cache):
    shop1, shop2 = cache.namespace("shop:1"), cache.namespace("shop:2")
    shop1.set("menu", "pizza")
    shop2.set("menu", "sushi")
    assert (shop1.get("menu"), shop2.get("menu"), cache.get("menu")) == ("pizza", "sushi", None)
    assert shop1.get_many(["menu"]) == {"menu": "pizza"}
    assert shop2.get_or_set("menu", Loader("wrong")) == "sushi"


def fill(view, value):
    view.set("menu", value, tags=["menus"])
    view.set("menu:today", value, tags=["menus"])


@pytest.mark.parametrize("operation", [
    lambda view: view.clear(),
    lambda view: view.invalidate_tags("menus"),
    lambda view: view.invalidate_prefix("menu"),
    lambda view: view.invalidate_prefix(""),
    lambda view: view.delete("menu"),
], ids=["clear", "invalidate_tags", "invalidate_prefix", "empty-prefix", "delete"])
def test_an_invalidation_in_one_namespace_never_touches_another(cache, operation):
    shop1, shop2 = cache.namespace("shop:1"), cache.namespace("shop:2")
    fill(shop1, "pizza")
    fill(shop2, "sushi")
    fill(cache, "root")
    operation(shop1)
    assert shop1.get("menu") is None
    assert shop2.get_many(["menu", "menu:today"]) == {"menu": "sushi", "menu:today": "sushi"}
    assert cache.get_many(["menu", "menu:today"]) == {"menu": "root", "menu:today": "root"}


@pytest.mark.parametrize("name", ["shop*", "shop?", "shop[1]", "shop[", "shop\\", "shop", "s"])
def test_glob_metacharacters_in_a_namespace_are_literal(cache, name):
    target, bystander = cache.namespace(name), cache.namespace("shop1")
    target.set("k", "target", tags=["t"])
    bystander.set("k", "bystander", tags=["t"])
    target.clear()
    target.set("k", "target", tags=["t"])
    target.invalidate_prefix("k")
    target.set("k", "target", tags=["t"])
    target.invalidate_tags("t")
    assert target.get("k") is None
    assert bystander.get("k") == "bystander"


def test_namespaces_that_escape_alike_stay_apart(make_cache):
    # ":" and "%" are percent-encoded, so "a:b" and the literal "a%3Ab" must differ.
    colon, percent = make_cache(namespace="a:b"), make_cache(namespace="a%3Ab")
    assert colon.redis_key("k") != percent.redis_key("k")
    colon.set("k", "colon")
    percent.set("k", "percent")
    colon.clear()
    assert (colon.get("k"), percent.get("k")) == (None, "percent")


def test_a_namespace_view_in_another_instance_reads_the_same_entries(redis_caches):
    first, second = redis_caches(), redis_caches()
    first.namespace("shop:1").set("menu", "pizza")
    assert second.namespace("shop:1").get("menu") == "pizza"
    assert second.namespace("shop:2").get("menu") is None


def test_clearing_a_sub_namespace_leaves_its_parent_alone(cache):
    child = cache.namespace("child")
    cache.set("k", "parent")
    child.set("k", "child")
    child.clear()
    assert (cache.get("k"), child.get("k")) == ("parent", None)


# ---- redis_key ----------------------------------------------------------------------------


def test_redis_key_is_tc_namespace_k_key(make_cache):
    assert make_cache(namespace="billing").redis_key("profile:42") == "tc:billing:k:profile:42"


def test_redis_key_percent_encodes_the_namespace(make_cache):
    assert make_cache(namespace="a:b%c").redis_key("k:1") == "tc:a%3Ab%25c:k:k:1"


def test_redis_key_of_a_view_is_under_the_sub_namespace(make_cache):
    shop = make_cache(namespace="billing").namespace("shop:1")
    assert shop.redis_key("menu") == "tc:billing/shop%3A1:k:menu"
    assert shop.namespace("x").redis_key("menu") == "tc:billing/shop%3A1/x:k:menu"


def test_the_entry_is_stored_at_its_redis_key(redis_caches, rawr):
    cache = redis_caches(namespace="billing")
    shop = cache.namespace("shop:1")
    cache.set("profile:42", 1)
    shop.set("menu", 2)
    assert rawr.exists(cache.redis_key("profile:42"))
    assert rawr.exists(shop.redis_key("menu"))
    assert rawr.keys("tc:*:k:*") == {b"tc:billing:k:profile:42", b"tc:billing/shop%3A1:k:menu"}


# ---- stats --------------------------------------------------------------------------------

L2_STATS = {"enabled", "hits", "misses", "errors", "timeouts", "sets", "deletes", "rejected", "breaker",
            "breaker_transitions", "connected", "reconnects", "hit_rate", "latency"}
TOP_STATS = {"namespace", "l1", "l2", "loads", "load_errors", "invalidations_sent",
             "invalidations_received", "l1_flushes", "stale_writes_refused", "monitoring",
             "uptime_seconds", "warmed", "functions", "alerts"}
INT_STATS = TOP_STATS - {"namespace", "l1", "l2", "monitoring", "uptime_seconds", "functions", "alerts"}


def test_stats_has_the_documented_shape(cache, tier):
    cache.get_or_set("k", Loader(1))
    cache.get("k")
    stats = cache.stats()
    assert set(stats) == TOP_STATS
    assert set(stats["l2"]) == L2_STATS
    assert {"hits", "misses", "sets", "entries", "bytes"} <= set(stats["l1"])
    assert stats["namespace"] == NS
    assert cache.namespace("shop").stats()["namespace"] == f"{NS}/shop"
    assert stats["l2"]["enabled"] is (tier == "redis")
    assert stats["l2"]["connected"] is (tier == "redis")  # the invalidation subscriber
    assert stats["l2"]["breaker"] == "closed"
    for name in INT_STATS:
        assert type(stats[name]) is int
    for name in L2_STATS - {"enabled", "breaker", "connected", "hit_rate", "latency"}:
        assert type(stats["l2"][name]) is int
    assert stats["monitoring"] is True and stats["functions"] == []
    assert stats["loads"] == 1
    assert stats["l1"]["hits"] >= 1


def test_stats_count_redis_traffic(redis_caches):
    cache = redis_caches()
    cache.set("k", 1)
    other = redis_caches()
    other.get("k")
    other.get("absent")
    other.delete("k")
    assert cache.stats()["l2"]["sets"] == 1
    stats = other.stats()["l2"]
    assert (stats["hits"], stats["misses"], stats["deletes"], stats["errors"]) == (1, 1, 1, 0)
    assert other.stats()["invalidations_sent"] >= 1


# ---- from_env -----------------------------------------------------------------------------

ENV_VARS = ["REDIS_URL", "REDIS_SSL", "REDIS_MAX_CONNECTIONS", "CACHE_ENABLED",
            "CACHE_DEFAULT_TTL", "CACHE_NAMESPACE"]


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch):
    """A clean environment for from_env(): none of its variables set."""
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    made: list[TieredCache] = []

    def from_env(**overrides) -> TieredCache:
        cache = TieredCache.from_env(**overrides)
        made.append(cache)
        return cache

    from_env.setenv = monkeypatch.setenv
    yield from_env
    for cache in made:
        cache.close()


def test_from_env_without_variables_is_l1_only(env):
    cache = env()
    cache.set("k", 1)
    assert cache.get("k") == 1
    assert cache.stats()["l2"]["connected"] is False
    assert cache.redis_key("k") == "tc:default:k:k"


def test_from_env_reads_redis_url_and_namespace(env, redis_url, rawr):
    env.setenv("REDIS_URL", redis_url)
    env.setenv("CACHE_NAMESPACE", "billing")
    cache = env()
    cache.set("k", 1)
    assert rawr.exists("tc:billing:k:k")


def test_from_env_reads_the_default_ttl(env):
    env.setenv("CACHE_DEFAULT_TTL", "60")
    cache = env()
    cache.set("k", 1)
    advance_clock(59)
    assert cache.get("k") == 1
    advance_clock(2)
    assert cache.get("k") is None


def test_keyword_arguments_override_the_environment(env):
    env.setenv("CACHE_NAMESPACE", "from-env")
    env.setenv("CACHE_DEFAULT_TTL", "60")
    cache = env(namespace="from-kwargs", default_ttl=600)
    assert cache.redis_key("k") == "tc:from-kwargs:k:k"
    cache.set("k", 1)
    advance_clock(100)
    assert cache.get("k") == 1


@pytest.mark.parametrize("with_redis", [False, True], ids=["l1", "redis"])
def test_cache_enabled_false_stores_nothing_and_always_calls_the_loader(env, with_redis, request):
    env.setenv("CACHE_ENABLED", "false")
    if with_redis:
        env.setenv("REDIS_URL", request.getfixturevalue("redis_url"))
    cache = env()
    loader = Loader("fresh")
    cache.set("k", 1)
    assert cache.get("k") is None
    assert cache.get_or_set("j", loader) == "fresh"
    assert cache.get_or_set("j", loader) == "fresh"
    assert loader.calls == 2
    assert cache.get_many(["k", "j"]) == {}
    if with_redis:
        with RawRedis(request.getfixturevalue("redis_url")) as client:
            assert client.keys("*") == set()


@pytest.mark.parametrize("name, value", [
    ("CACHE_DEFAULT_TTL", "soon"),
    ("CACHE_DEFAULT_TTL", "-5"),
    ("CACHE_ENABLED", "perhaps"),
    ("REDIS_SSL", "maybe"),
    ("REDIS_MAX_CONNECTIONS", "lots"),
    ("REDIS_MAX_CONNECTIONS", "0"),
    ("REDIS_URL", "http://127.0.0.1:1/"),
])
def test_a_bad_environment_value_raises_configuration_error_naming_the_variable(env, name, value):
    env.setenv(name, value)
    with pytest.raises(ConfigurationError, match=name):
        env()


@pytest.mark.parametrize("kwargs", [
    {"redis_url": "http://127.0.0.1:1/"},
    {"redis_url": "redis://127.0.0.1:1/notanumber"},
    {"serializer": "yaml"},
    {"on_error": "explode"},
    {"default_ttl": -1},
], ids=["url-scheme", "url-db", "serializer", "on_error", "default_ttl"])
def test_bad_settings_raise_configuration_error(kwargs):
    with pytest.raises(ConfigurationError):
        TieredCache(**kwargs).close()


# ---- serializers through Redis ------------------------------------------------------------

ROUND_TRIP = {
    "datetime": dt.datetime(2024, 2, 29, 13, 45, 7, 123456),
    "aware": dt.datetime(2024, 2, 29, 13, 45, 7, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))),
    "date": dt.date(2024, 2, 29),
    "time": dt.time(23, 59, 59, 999999),
    "decimal": Decimal("1234.5600"),
    "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "bytes": b"\x00\xffbinary\n",
    "tuple": (1, "two", (3.0,)),
    "set": {1, 2, 3},
    "frozenset": frozenset({"a", "b"}),
    "nested": {"when": [dt.date(2024, 1, 1), {Decimal("0.1")}], "ids": (uuid.UUID(int=7),)},
}


@pytest.mark.parametrize("name", list(ROUND_TRIP))
def test_the_json_serializer_round_trips_rich_types_through_redis(redis_caches, name):
    value = ROUND_TRIP[name]
    redis_caches().set("k", value)
    got = redis_caches().get("k")  # another instance: decoded from Redis
    assert got == value
    assert type(got) is type(value)
    if name == "decimal":
        assert str(got) == "1234.5600"
    if name == "aware":
        assert got.utcoffset() == value.utcoffset()


def test_register_codec_adds_a_type_to_the_json_serializer(redis_caches):
    bson = pytest.importorskip("bson")
    import tieredcache

    tieredcache.register_codec(bson.ObjectId, "objectid", str, bson.ObjectId)
    oid = bson.ObjectId("65f1c0ffee00000000000001")
    redis_caches().set("k", {"_id": oid})
    assert redis_caches().get("k") == {"_id": oid}


class Colour(enum.IntEnum):
    RED = 1


@pytest.mark.parametrize("value", [object(), Colour.RED, OrderedDict(a=1)],
                         ids=["object", "IntEnum", "OrderedDict"])
def test_a_value_json_cannot_encode_exactly_raises_serialization_error(redis_caches, rawr, value):
    # Types match exactly: an IntEnum must not come back from Redis as a plain int while
    # L1 returns the enum member.
    cache = redis_caches()
    with pytest.raises(SerializationError):
        cache.set("k", value)
    assert not rawr.exists(cache.redis_key("k"))


def test_pickle_without_a_secret_key_is_refused():
    with pytest.raises(ConfigurationError, match="secret_key"):
        TieredCache(serializer="pickle").close()


class Point:
    """A class only pickle can carry."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __eq__(self, other):
        return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)


def test_signed_pickle_round_trips_through_redis(redis_caches):
    redis_caches(serializer="pickle", secret_key=SECRET).set("k", Point(1, 2))
    assert redis_caches(serializer="pickle", secret_key=SECRET).get("k") == Point(1, 2)


def test_a_payload_signed_with_another_secret_is_a_miss(redis_caches):
    redis_caches(serializer="pickle", secret_key="their secret, at least 16 bytes").set("k", Point(1, 2))
    mine = redis_caches(serializer="pickle", secret_key="my secret, also 16 bytes or more")
    assert mine.get("k") is None
    assert mine.get_or_set("k", Loader("reloaded")) == "reloaded"


class Plant:
    """Unpickling this creates a file: proof that the payload was executed."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def signed(body: bytes, key: bytes) -> bytes:
    """The pickle serializer's documented format: b"TCPK", 0x01, HMAC-SHA256, pickle."""
    return b"TCPK\x01" + hmac.new(key, b"TCPK\x01" + body, hashlib.sha256).digest() + body


def framing(cache, rawr) -> bytes:
    """What a real payload of this cache carries before the serializer's bytes (the
    TieredCache header): read from an entry the cache wrote itself."""
    cache.set("real", "x")
    real = rawr.execute("GET", cache.redis_key("real"))
    start = real.find(b"TCPK")
    return real[:start] if start >= 0 else real[:-len(b'"x"')]


def test_a_correctly_signed_payload_planted_in_redis_is_read(redis_caches, rawr):
    # Checks the framing the next test forges: with the right key it does decode.
    cache = redis_caches(serializer="pickle", secret_key=SECRET)
    body = pickle.dumps(Point(3, 4), protocol=5)
    rawr.execute("SET", cache.redis_key("planted"), framing(cache, rawr) + signed(body, SECRET.encode()))
    assert cache.get("planted") == Point(3, 4)


def forged_payloads(header: bytes, marker: Path) -> dict[str, bytes]:
    """A code-executing pickle behind every framing short of a valid signature."""
    body = pickle.dumps(Plant(marker), protocol=5)
    forged_mac = signed(body, b"not the cache's secret key, 32 b")
    return {
        "bare pickle": body,
        "header + bare pickle": header + body,
        "zero MAC": header + b"TCPK\x01" + bytes(32) + body,
        "MAC under another key": header + forged_mac,
        "truncated MAC": header + forged_mac[:20] + body,
        "another version": header + b"TCPK\x02" + forged_mac[5:],
        "compressed, MAC under another key": header + b"\x01" + zlib.compress(forged_mac),
        "stored flag, zero MAC": header + b"\x00TCPK\x01" + bytes(32) + body,
    }


@pytest.mark.parametrize("serializer", [{"serializer": "pickle", "secret_key": SECRET}, {}],
                         ids=["pickle", "json"])
def test_a_pickle_planted_in_redis_is_never_unpickled(redis_caches, rawr, tmp_path, serializer):
    cache = redis_caches(**serializer)
    marker = tmp_path / "executed"
    for name, payload in forged_payloads(framing(cache, rawr), marker).items():
        rawr.execute("SET", cache.redis_key("planted"), payload)
        assert cache.get("planted") is None, name
        assert cache.get_many(["planted"]) == {}, name
        assert not marker.exists(), f"{name}: the payload was unpickled"
        assert cache.get_or_set("planted", Loader("safe")) == "safe", name
        cache.delete("planted")
    assert not marker.exists()


def test_large_values_are_compressed_in_redis_and_read_back(redis_caches, rawr):
    value = {"rows": ["the same line of text"] * 500}
    cache = redis_caches(compress_threshold=256)
    cache.set("big", value)
    cache.set("small", "tiny")
    stored = rawr.execute("GET", cache.redis_key("big"))
    assert len(stored) < len(str(value)) // 4
    assert redis_caches().get("big") == value  # a flag byte says it is compressed
    assert redis_caches(compress_threshold=256).get("small") == "tiny"

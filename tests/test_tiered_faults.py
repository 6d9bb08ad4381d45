"""Redis failing under a TieredCache: killed, paused (SIGSTOP), restarted, answering errors.

Each test owns a Redis (``fresh_redis_server``) it may kill. With the default
``on_error="ignore"`` no Redis failure reaches the caller: every call returns from L1 and
the loader, and nothing stale is served after an invalidation. With ``on_error="raise"``
the failures surface as ``BackendError`` subclasses. The circuit breaker opens after
``breaker_threshold`` failures and closes by itself once Redis is back; while the
invalidation channel is down, L1 entries live at most ``degraded_l1_ttl``.

Short timeouts keep each failure cheap (``socket_timeout=0.1``); the assertions never
depend on them: waits are bounded polls of a state, not measurements of speed.
"""

from __future__ import annotations

import logging
import random
import threading
import time

import pytest

from tieredcache._redis_server import RedisServer
from tieredcache.testing import advance_clock
from tiered_helpers import (  # noqa: F401  (_peer_pool, peers: fixtures)
    BackendError,
    BackendResponseError,
    BackendTimeout,
    BackendUnavailable,
    Caches,
    CircuitOpenError,
    PoolTimeout,
    RawRedis,
    _peer_pool,
    peers,
    wait_until,
)

NS = "test"
FAST = dict(socket_timeout=0.1, connect_timeout=0.1, pool_timeout=0.1)
RECOVERY = 20.0  # seconds: the bound on "recovers by itself" (cool-down doubles while down)


@pytest.fixture
def server(fresh_redis_server):
    """A Redis of this test's own, resumed (if paused) before it is torn down."""
    yield fresh_redis_server
    try:
        fresh_redis_server.resume()
    except Exception:
        pass


@pytest.fixture
def caches(server):
    """``caches(**kwargs)``: TieredCaches on the test's own Redis with short timeouts."""
    made = Caches(redis_url=server.url, namespace=NS, **FAST)
    yield made
    made.close()


def breaker(cache) -> str:
    return cache.stats()["l2"]["breaker"]


def connected(cache) -> bool:
    return cache.stats()["l2"]["connected"]


def recovered(cache) -> bool:
    """Make a call (a half-open breaker needs one to probe), then report whether L2 is back."""
    cache.get("probe")
    return breaker(cache) == "closed" and connected(cache)


def bring_back(server) -> None:
    """Start a killed Redis again on the same address (empty: it runs without persistence)."""
    server.start()


# ---- traffic through failures -------------------------------------------------------------


class Traffic:
    """Readers, a writer and a "database" around one cache, counting what callers saw.

    The writer bumps an item's version in the database, then invalidates it (by key, tag
    or prefix, in turn), then raises that item's *floor*: a read that starts after the
    floor was raised must return at least that version. ``errors`` are exceptions that
    reached a caller; ``stale`` are reads below their floor.
    """

    ITEMS = [f"item:{i}" for i in range(4)]

    def __init__(self, cache, readers: int = 3) -> None:
        self.cache = cache
        self.db = {key: 0 for key in self.ITEMS}
        self.floor = dict(self.db)
        self.errors: list[str] = []
        self.stale: list[tuple] = []
        self.reads = 0
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.reader, args=(i,), daemon=True)
                        for i in range(readers)]
        self.threads.append(threading.Thread(target=self.writer, daemon=True))

    def reader(self, seed: int) -> None:
        rng = random.Random(seed)
        while not self.stop.is_set():
            key = rng.choice(self.ITEMS)
            floor = self.floor[key]
            try:
                if rng.random() < 0.8:
                    got = self.cache.get_or_set(key, lambda: self.db[key], ttl=60, tags=[key, "items"])
                else:
                    got = self.cache.get(key)
                    if got is None:
                        continue
            except Exception as exc:
                self.errors.append(f"read {key}: {exc!r}")
                continue
            self.reads += 1
            if got < floor:
                self.stale.append((key, got, floor))
            time.sleep(0.001)

    def writer(self) -> None:
        rng = random.Random(99)
        invalidations = [
            lambda key: self.cache.delete(key),
            lambda key: self.cache.invalidate_tags(key),
            lambda key: self.cache.invalidate_prefix(key),
            lambda key: self.cache.invalidate_tags("items"),
        ]
        step = 0
        while not self.stop.is_set():
            key = rng.choice(self.ITEMS)
            self.db[key] += 1
            version = self.db[key]
            try:
                invalidations[step % len(invalidations)](key)
            except Exception as exc:
                self.errors.append(f"invalidate {key}: {exc!r}")
            self.floor[key] = version
            step += 1
            time.sleep(0.005)

    def __enter__(self) -> Traffic:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(10)
            assert not thread.is_alive(), "a traffic thread hangs"


def test_traffic_through_a_kill_and_a_restart_sees_no_errors_and_nothing_stale(server, caches):
    cache = caches(breaker_threshold=3, breaker_cooldown=0.1, degraded_l1_ttl=1.0)
    with Traffic(cache) as traffic:
        time.sleep(0.3)
        server.kill()
        time.sleep(0.5)
        bring_back(server)
        assert wait_until(lambda: recovered(cache), timeout=RECOVERY)
        time.sleep(0.3)
    assert traffic.errors == []
    assert traffic.stale == []
    assert traffic.reads > 0


def test_traffic_through_a_pause_sees_no_errors_and_nothing_stale(server, caches):
    cache = caches(breaker_threshold=3, breaker_cooldown=0.1, degraded_l1_ttl=1.0)
    with Traffic(cache) as traffic:
        time.sleep(0.3)
        server.pause()
        time.sleep(0.5)
        server.resume()
        assert wait_until(lambda: recovered(cache), timeout=RECOVERY)
        time.sleep(0.3)
    assert traffic.errors == []
    assert traffic.stale == []
    assert traffic.reads > 0


def test_traffic_through_a_restart_sees_no_errors_and_nothing_stale(server, caches):
    cache = caches(breaker_threshold=3, breaker_cooldown=0.1, degraded_l1_ttl=1.0)
    with Traffic(cache) as traffic:
        time.sleep(0.3)
        server.restart()
        assert wait_until(lambda: recovered(cache), timeout=RECOVERY)
        time.sleep(0.3)
    assert traffic.errors == []
    assert traffic.stale == []


# What the application does to "price" while Redis cannot hear it. "set" too: a set that
# cannot reach Redis must not leave the old value there.
LOST_WRITES = {
    "delete": lambda cache: cache.delete("price"),
    "invalidate_tags": lambda cache: cache.invalidate_tags("prices"),
    "invalidate_prefix": lambda cache: cache.invalidate_prefix("pri"),
    "clear": lambda cache: cache.clear(),
    "set": lambda cache: cache.set("price", "new", tags=["prices"]),
}


@pytest.mark.parametrize("how", list(LOST_WRITES))
def test_a_write_made_while_redis_is_unreachable_is_not_lost(server, caches, how):
    # Redis keeps its data through a pause, and with the breaker open the write below is
    # not even sent. Once Redis is back, neither this process nor another may read the
    # old value from it.
    cache = caches(breaker_threshold=2, breaker_cooldown=0.1)
    cache.set("price", "old", tags=["prices"])
    server.pause()
    assert wait_until(lambda: (cache.get("other"), breaker(cache))[1] == "open", timeout=RECOVERY)
    LOST_WRITES[how](cache)
    server.resume()
    assert wait_until(lambda: recovered(cache), timeout=RECOVERY)
    assert cache.get("price") in (None, "new")
    assert caches().get("price") is None  # another process: Redis holds no old value


def test_past_ten_thousand_waiting_invalidations_the_namespace_is_cleared(server, caches):
    cache = caches(breaker_threshold=2, breaker_cooldown=0.1)
    cache.set("never-invalidated", "old")
    server.pause()
    assert wait_until(lambda: (cache.get("other"), breaker(cache))[1] == "open", timeout=RECOVERY)
    for i in range(10_001):
        cache.delete(f"k{i}")
    server.resume()
    assert wait_until(lambda: recovered(cache), timeout=RECOVERY)
    assert caches().get("never-invalidated") is None


# ---- on_error="raise" ---------------------------------------------------------------------


def test_with_on_error_raise_a_dead_redis_raises_backend_unavailable(server, caches):
    cache = caches(on_error="raise", breaker_threshold=100)
    cache.set("k", 1)
    server.kill()
    with pytest.raises(BackendUnavailable):
        cache.get("absent")
    with pytest.raises(BackendUnavailable):
        cache.set("k", 2)
    with pytest.raises(BackendUnavailable):
        cache.get_or_set("other", lambda: 3)
    with pytest.raises(BackendUnavailable):
        cache.invalidate_tags("t")
    assert cache.stats()["l2"]["errors"] >= 4


def test_with_on_error_raise_a_paused_redis_raises_backend_timeout(server, caches):
    cache = caches(on_error="raise", breaker_threshold=100)
    cache.set("warm", 1)  # a pooled connection exists: the timeout is a reply timeout
    server.pause()
    with pytest.raises(BackendTimeout) as info:
        cache.get("absent")
    assert isinstance(info.value, TimeoutError)
    assert cache.stats()["l2"]["timeouts"] >= 1


def test_with_on_error_raise_an_open_breaker_raises_circuit_open_error(server, caches):
    cache = caches(on_error="raise", breaker_threshold=2, breaker_cooldown=30)
    server.kill()
    for _ in range(2):
        with pytest.raises(BackendError):
            cache.get("absent")
    assert breaker(cache) == "open"
    with pytest.raises(CircuitOpenError):
        cache.get("absent")


def test_with_on_error_raise_a_busy_pool_raises_pool_timeout(server, caches):
    cache = caches(on_error="raise", breaker_threshold=100, max_connections=1,
                   socket_timeout=3.0, pool_timeout=0.05)
    cache.set("warm", 1)
    server.pause()
    outcome: list = []

    def hold_the_only_connection():
        try:
            outcome.append(cache.get("a"))
        except BackendError as exc:
            outcome.append(exc)

    holder = threading.Thread(target=hold_the_only_connection, daemon=True)
    holder.start()  # waits up to socket_timeout (3 s) for a reply that cannot come
    time.sleep(0.5)  # let it take the connection first
    with pytest.raises(PoolTimeout):
        cache.get("b")
    server.resume()
    holder.join(10)
    assert len(outcome) == 1


def forbid_scripts(raw: RawRedis) -> None:
    """From now on Redis answers every script call with a NOPERM error reply."""
    raw.execute("ACL", "SETUSER", "default", "-@scripting")


def test_with_on_error_raise_redis_error_replies_raise_backend_response_error(server, caches):
    cache = caches(on_error="raise")
    with RawRedis(server.url) as raw:
        raw.execute("LPUSH", cache.redis_key("listy"), "not a payload")
        with pytest.raises(BackendResponseError):
            cache.get("listy")
        forbid_scripts(raw)
        with pytest.raises(BackendResponseError):
            cache.set("k", "v")
        with pytest.raises(BackendResponseError):
            cache.invalidate_tags("t")


def test_a_loader_exception_still_reaches_the_caller_as_itself_with_on_error_raise(server, caches):
    cache = caches(on_error="raise")

    def loader():
        raise KeyError("no such order")

    with pytest.raises(KeyError):
        cache.get_or_set("order", loader)


def test_redis_error_replies_never_reach_the_caller_by_default(server, caches):
    cache = caches()
    with RawRedis(server.url) as raw:
        raw.execute("LPUSH", cache.redis_key("listy"), "not a payload")
        assert cache.get("listy") is None
        assert cache.get_or_set("listy", lambda: "loaded") == "loaded"
        forbid_scripts(raw)
        cache.set("k", "v")
        assert cache.get_or_set("j", lambda: "loaded") == "loaded"
        assert isinstance(cache.invalidate_tags("t"), int)
    assert cache.stats()["l2"]["errors"] >= 1


def test_scripts_flushed_from_redis_are_loaded_again(server, caches):
    cache = caches(on_error="raise")
    cache.set("a", 1, tags=["t"])
    cache.invalidate_tags("nothing")  # the scripts are now cached in Redis...
    with RawRedis(server.url) as raw:
        raw.execute("SCRIPT", "FLUSH")  # ...and now they are not
        cache.set("b", 2, tags=["t"])
        assert cache.invalidate_tags("t") >= 2
        assert raw.keys("tc:*:k:*") == set()


# ---- the circuit breaker ------------------------------------------------------------------


def test_the_breaker_opens_the_cache_serves_from_the_loader_and_recovers_by_itself(server, caches):
    cache = caches(breaker_threshold=3, breaker_cooldown=0.2)
    loads: list[int] = []

    def loader():
        loads.append(1)
        return "from the database"

    assert cache.get_or_set("warm", loader) == "from the database"
    server.kill()
    for i in range(50):
        assert cache.get_or_set(f"k{i}", loader) == "from the database"
        if breaker(cache) == "open":
            break
    assert breaker(cache) == "open"
    assert cache.get_or_set("while-open", loader) == "from the database"
    bring_back(server)
    assert wait_until(lambda: recovered(cache), timeout=RECOVERY)
    # Redis is used again: what this instance writes, another one reads there.
    cache.set("after", "recovery", tags=["t"])
    assert caches().get("after") == "recovery"
    assert cache.invalidate_tags("t") >= 1
    assert caches().get("after") is None


def test_breaker_state_changes_are_logged_once_each(server, caches, caplog):
    cache = caches(breaker_threshold=3, breaker_cooldown=30)
    cache.set("k", 1)
    with caplog.at_level(logging.INFO, logger="tieredcache"):
        server.kill()
        for i in range(60):
            cache.get_or_set(f"k{i}", lambda: 0)
        assert breaker(cache) == "open"
    records = [r for r in caplog.records if r.name.startswith("tieredcache")]
    assert 1 <= len(records) <= 6, [r.getMessage() for r in records]


def test_failures_never_log_values_or_passwords(caplog):
    with RedisServer(password="hunter2-s3cret") as server:
        with caplog.at_level(logging.DEBUG, logger="tieredcache"):
            made = Caches(redis_url=server.url, namespace=NS, **FAST)
            try:
                cache = made()
                cache.set("card", "card 4111-1111-1111-1111")
                assert made().get("card") is not None  # through Redis: the password is right
                server.kill()
                for i in range(10):
                    cache.set(f"k{i}", "card 4111-1111-1111-1111")
                    cache.get_or_set(f"j{i}", lambda: "card 4111-1111-1111-1111")
            finally:
                made.close()
    text = "\n".join(logging.Formatter().format(record) for record in caplog.records)
    assert "hunter2" not in text
    assert "4111" not in text


# ---- the invalidation channel -------------------------------------------------------------


def test_l1_is_flushed_when_the_invalidation_channel_drops(server, caches):
    cache = caches(degraded_l1_ttl=5)
    cache.set("k", "v")
    assert wait_until(lambda: connected(cache))
    flushes = cache.stats()["l1_flushes"]
    server.kill()
    assert wait_until(lambda: cache.stats()["l1_flushes"] > flushes)
    assert cache.get("k") is None  # L1 was dropped and Redis is gone
    assert connected(cache) is False


def test_while_the_channel_is_down_l1_entries_live_at_most_degraded_l1_ttl(server, caches):
    cache = caches(degraded_l1_ttl=5, breaker_cooldown=30)
    assert wait_until(lambda: connected(cache))
    server.kill()
    assert wait_until(lambda: not connected(cache))
    loads: list[int] = []

    def loader():
        loads.append(1)
        return "loaded"

    cache.set("k", "v", ttl=300)
    assert cache.get_or_set("j", loader, ttl=300) == "loaded"
    assert cache.get("k") == "v"  # L1 still serves, for a while
    assert cache.get_or_set("j", loader, ttl=300) == "loaded"
    assert len(loads) == 1
    advance_clock(6)
    assert cache.get("k") is None
    assert cache.get_or_set("j", loader, ttl=300) == "loaded"
    assert len(loads) == 2


def test_l1_is_flushed_again_on_resubscribing(server, caches):
    cache = caches(degraded_l1_ttl=60, breaker_cooldown=0.1)
    assert wait_until(lambda: connected(cache))
    server.kill()
    assert wait_until(lambda: not connected(cache))
    cache.set("written-while-down", "v")  # L1 only: Redis is down
    assert cache.get("written-while-down") == "v"
    flushes = cache.stats()["l1_flushes"]
    bring_back(server)
    assert wait_until(lambda: recovered(cache), timeout=RECOVERY)
    assert wait_until(lambda: cache.stats()["l1_flushes"] > flushes)
    assert cache.get("written-while-down") is None


def test_invalidations_reach_other_processes_again_after_a_restart(server, caches, peers):
    cache = caches(breaker_cooldown=0.1)
    there = peers[0]
    there.open("c", redis_url=server.url, namespace=NS, breaker_cooldown=0.1, **FAST)
    assert wait_until(lambda: connected(cache))
    server.kill()
    bring_back(server)
    assert wait_until(lambda: recovered(cache), timeout=RECOVERY)

    def peer_recovered() -> bool:
        there.cache("c", "get", "probe")
        l2 = there.cache("c", "stats")["l2"]
        return l2["breaker"] == "closed" and l2["connected"]

    assert wait_until(peer_recovered, timeout=RECOVERY)
    cache.set("k", "v")
    assert there.cache("c", "get", "k") == "v"
    cache.delete("k")
    assert wait_until(lambda: there.cache("c", "get", "k") is None)


def test_every_call_returns_while_redis_is_paused(server, caches):
    # Whether L1 still serves "cached" depends on when the listener gives up on the
    # silent channel (it then flushes L1): either answer is fine, an exception is not.
    cache = caches(breaker_threshold=3, breaker_cooldown=30)
    cache.set("cached", "v", tags=["t"])
    server.pause()
    assert cache.get("cached") in ("v", None)
    assert cache.get_or_set("new", lambda: "loaded") == "loaded"
    assert cache.get_many(["cached", "nope"]) in ({"cached": "v"}, {})
    cache.set_many({"a": 1})
    assert cache.delete("a") in (True, False)
    assert isinstance(cache.invalidate_tags("t"), int)
    assert isinstance(cache.invalidate_prefix("x"), int)
    assert isinstance(cache.clear(), int)
    assert cache.get("cached") is None

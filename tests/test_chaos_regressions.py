"""Regressions found by the Redis chaos campaign (hardening/chaos.sh): two caches on one
Redis stand for two workers of an app; a write through one must never leave the other
serving what it replaced, also while Redis is paused, slowed or cut off.

- A paused Redis (SIGSTOP) keeps the subscriber connection open while it holds
  invalidations up: the listener PINGs the subscriber and, when a PING goes unanswered
  past its lease, flushes L1 (before: the other worker served its L1 entry until Redis
  came back, after the writer had answered its client).
- An L2 reply read while the channel is suspect is not trusted (before: a read that
  overtook a delayed invalidation returned the value it replaced).
- A reader that finds the channel lost while applying waiting messages (the fence) does
  not trust L1 any more (before: it read L1 until the listener thread noticed).
- ``degraded_l1_ttl=0``: nothing enters L1 while invalidations may be missed.
- An invalidating write is sent even when the breaker is open, while the channel answers
  (before: it was queued, and the other workers served the old value until the queue was
  replayed).
- One caller at a time applies the outbox; the others do without Redis meanwhile
  (before: every call replayed it too, an async one in a thread of the default executor:
  with Redis hanging, 30 concurrent requests each took 5 timeouts instead of 1).
- ``PubSub.pongs`` counts the answers to ``ping()``.

Pass: every assertion holds; waits are bounded polls of a state, never measures of speed.
"""

from __future__ import annotations

import threading
import types

import pytest

from tieredcache._redis import RedisClient
from tieredcache._tiered import _Core, _Heartbeat
from tiered_helpers import BackendUnavailable, Caches, RawRedis, wait_until

NS = "chaos"
FAST = dict(socket_timeout=0.1, connect_timeout=0.1, pool_timeout=0.1)
RECOVERY = 20.0


@pytest.fixture
def server(fresh_redis_server):
    yield fresh_redis_server
    try:
        fresh_redis_server.resume()
    except Exception:
        pass


@pytest.fixture
def caches(server):
    made = Caches(redis_url=server.url, namespace=NS, **FAST)
    yield made
    made.close()


def live(cache) -> bool:
    return bool(cache.health()["l2"].get("invalidations_live"))


def test_a_paused_redis_makes_the_other_worker_drop_its_l1_before_a_write_is_answered(server, caches):
    writer, reader = caches(), caches()
    writer.set("price", "old")
    assert reader.get("price") == "old"  # now in the reader's L1
    server.pause()
    assert wait_until(lambda: not live(reader), timeout=RECOVERY)  # a PING went unanswered
    writer.delete("price")  # Redis does not answer: the invalidation waits in the outbox
    assert reader.get("price") is None  # not "old" from L1
    server.resume()
    assert wait_until(lambda: live(reader) and not writer._core.outbox, timeout=RECOVERY)
    assert wait_until(lambda: reader.get("price") is None and live(reader), timeout=RECOVERY)


def test_while_the_channel_is_suspect_an_l2_answer_is_a_miss(server, caches, monkeypatch):
    cache = caches()
    cache.set("k", "in-redis")
    cache._core.l1.clear()
    # the channel judged lapsed (a PING unanswered past its lease), Redis itself answers
    monkeypatch.setattr(_Heartbeat, "step", lambda self, ps, now: (ps.ping(), (False, 0.01))[1])
    assert wait_until(lambda: cache._core.suspect, timeout=RECOVERY)
    loads = []
    assert cache.get("k") is None
    assert cache.get_or_set("k", lambda: loads.append(1) or "loaded") == "loaded"
    assert loads == [1]
    assert not live(cache) and cache.health()["status"] == "degraded"
    monkeypatch.undo()
    assert wait_until(lambda: not cache._core.suspect, timeout=RECOVERY)
    assert wait_until(lambda: cache.get("k") == "in-redis", timeout=RECOVERY)


def test_a_fence_that_finds_the_channel_lost_stops_trusting_l1():
    flushed = []

    def drain(ps):
        raise BackendUnavailable("connection to redis closed by the server")

    lowered = []
    core = types.SimpleNamespace(
        l1=types.SimpleNamespace(_pending=True, _take_pending=lambda: lowered.append(1) or True),
        pubsub=object(), listen_lock=threading.Lock(),
        _drain=drain, suspect=False, flush_l1=flushed.append, log_error=None)
    _Core.fence(core)
    assert core.suspect is True
    assert flushed == [None]
    assert lowered == [1]  # after the flush: the next reads do not flush again


def test_degraded_l1_ttl_zero_keeps_l1_empty_while_invalidations_may_be_missed(server, caches):
    cache = caches(degraded_l1_ttl=0)
    default = caches()
    server.kill()
    assert wait_until(lambda: not cache.health()["l2"]["invalidations_subscribed"], timeout=RECOVERY)
    assert wait_until(lambda: not default.health()["l2"]["invalidations_subscribed"], timeout=RECOVERY)
    loads = []
    for _ in range(3):
        assert cache.get_or_set("k", lambda: loads.append(1) or 1) == 1
    assert len(loads) == 3  # every call loads: nothing was kept
    loads.clear()
    for _ in range(3):
        assert default.get_or_set("k", lambda: loads.append(1) or 1) == 1
    assert len(loads) == 1  # the default keeps it degraded_l1_ttl (5 s)
    server.start()
    assert wait_until(lambda: cache.health()["status"] == "ok" or (cache.get("probe"), False)[1], timeout=RECOVERY)
    loads.clear()
    for _ in range(3):
        assert cache.get_or_set("k2", lambda: loads.append(1) or 2) == 2
    assert len(loads) == 1  # back to normal


def test_degraded_l1_ttl_accepts_zero_and_refuses_negative(server, caches):
    from tieredcache import ConfigurationError

    assert caches(degraded_l1_ttl=0)._core.degraded_l1_ttl == 0.0
    with pytest.raises(ConfigurationError):
        caches(degraded_l1_ttl=-1)


def test_an_invalidation_goes_to_redis_even_with_the_breaker_open_while_the_channel_answers(server, caches):
    writer, reader = caches(breaker_threshold=1, breaker_cooldown=60), caches()
    writer.set("price", "old")
    assert reader.get("price") == "old"
    writer._core.breaker.failure(BackendUnavailable("simulated"))
    assert writer.stats()["l2"]["breaker"] == "open"
    sent = writer.stats()["invalidations_sent"]
    writer.delete("price")
    assert writer.stats()["invalidations_sent"] == sent + 1  # sent, not queued
    with RawRedis(server.url) as raw:
        assert raw.execute("GET", writer.redis_key("price")) is None
    assert wait_until(lambda: reader.get("price") is None, timeout=RECOVERY)


def test_pubsub_counts_the_answers_to_ping(server):
    client = RedisClient(server.url)
    ps = client.pubsub()
    try:
        ps.subscribe("c")
        assert ps.pongs == 0
        ps.ping()
        ps.ping()
        assert wait_until(lambda: ps.get_message(timeout=0.05) is None and ps.pongs == 2, timeout=RECOVERY)
    finally:
        ps.close()
        client.close()


@pytest.mark.parametrize("api", ["sync", "async"])
def test_one_caller_at_a_time_applies_the_outbox_the_others_do_without_redis(caches, api):
    import asyncio

    cache = caches()
    core = cache._core
    cache.set("k", "v")
    core.l1.clear()
    inside, release, calls = threading.Event(), threading.Event(), []

    def slow_replay():  # stands for a replay against a Redis that hangs
        calls.append(1)
        inside.set()
        release.wait(10)
        core.outbox.clear()

    core.replay = slow_replay
    core.outbox.append((cache, "cmds", (("PING",),)))
    first = threading.Thread(target=cache.get, args=("k",))
    first.start()  # the listener thread or this one takes the replay
    try:
        assert inside.wait(10)
        if api == "sync":
            got = cache.get("k", "default")
        else:
            got = asyncio.run(cache.aget("k", "default"))
        assert got == "default"  # Redis not used while the outbox is being applied
        assert calls == [1]
    finally:
        release.set()
        first.join(10)
    assert wait_until(lambda: cache.get("k") == "v", timeout=RECOVERY)

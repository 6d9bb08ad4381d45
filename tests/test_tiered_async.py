"""The async twins: ``aget``, ``aset``... behave like ``get``, ``set``... and never block the loop.

Each test drives its own event loop with ``asyncio.run`` and runs on both tiers (no
Redis, and Redis). What one twin writes the other reads, so the two APIs are one cache.
Cancellation (``asyncio.wait_for`` with tiny timeouts at random points) must never leave
anything behind that corrupts a later result: a half-read reply on a pooled connection,
a poisoned in-flight load, a half-written entry.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import random
import threading
import warnings

import pytest

from tiered_helpers import (  # noqa: F401  (rawr: fixture)
    Caches,
    RawRedis,
    TieredCache,
    rawr,
    wait_until,
)

NS = "test"


@pytest.fixture(autouse=True)
def _collect_leaked_connections():
    """Collect each test's garbage at its end, so that connections an event loop left
    open are reported by test_close_closes_the_connections_of_every_event_loop and not
    as a ResourceWarning in whichever later test the garbage collector happens to run."""
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


@pytest.fixture(params=["l1", "redis"])
def tier(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def caches(tier: str, request: pytest.FixtureRequest):
    url = request.getfixturevalue("redis_url") if tier == "redis" else None
    made = Caches(redis_url=url, namespace=NS)
    yield made
    made.close()


@pytest.fixture
def cache(caches) -> TieredCache:
    return caches()


def run(coroutine, timeout: float = 30.0):
    """Run a coroutine on a new event loop; a hang fails the test instead of blocking it."""
    return asyncio.run(asyncio.wait_for(coroutine, timeout))


# ---- the twins ----------------------------------------------------------------------------


def test_aset_then_aget_and_the_sync_api_sees_the_same_cache(cache):
    async def main():
        assert await cache.aset("k", {"v": 1}) is None
        assert await cache.aget("k") == {"v": 1}
        assert await cache.aget("absent") is None
        assert await cache.aget("absent", "default") == "default"
        cache.set("sync", 2)
        assert await cache.aget("sync") == 2

    run(main())
    assert cache.get("k") == {"v": 1}


def test_adelete_reports_whether_the_key_was_held(cache):
    async def main():
        await cache.aset("k", 1)
        assert await cache.adelete("k") is True
        assert await cache.adelete("k") is False
        assert await cache.aget("k") is None

    run(main())
    assert cache.get("k") is None


def test_aget_many_and_aset_many(cache):
    async def main():
        assert await cache.aset_many({"a": 1, "b": 2}, ttl=60, tags=["batch"]) is None
        assert await cache.aget_many(["a", "b", "c"]) == {"a": 1, "b": 2}
        assert await cache.aget_many([]) == {}
        assert await cache.ainvalidate_tags("batch") >= 2
        assert await cache.aget_many(["a", "b"]) == {}

    run(main())


@pytest.mark.parametrize("kind", ["async", "sync"])
def test_aget_or_set_calls_the_loader_once_and_caches_the_result(cache, kind):
    calls: list[int] = []

    def sync_loader():
        calls.append(1)
        return [1, 2, 3]

    async def async_loader():
        calls.append(1)
        await asyncio.sleep(0)
        return [1, 2, 3]

    loader = async_loader if kind == "async" else sync_loader

    async def main():
        assert await cache.aget_or_set("k", loader, ttl=60, tags=["t"]) == [1, 2, 3]
        assert await cache.aget_or_set("k", loader) == [1, 2, 3]

    run(main())
    assert calls == [1]
    assert cache.get("k") == [1, 2, 3]
    assert cache.invalidate_tags("t") >= 1


@pytest.mark.parametrize("kind", ["async", "sync"])
def test_an_aget_or_set_loader_that_raises_stores_nothing(cache, kind):
    class Gone(Exception):
        pass

    def sync_loader():
        raise Gone()

    async def async_loader():
        await asyncio.sleep(0)
        raise Gone()

    async def main():
        with pytest.raises(Gone):
            await cache.aget_or_set("k", async_loader if kind == "async" else sync_loader)
        assert await cache.aget("k") is None
        assert await cache.aget_or_set("k", lambda: "second try") == "second try"

    run(main())
    assert cache.stats()["load_errors"] == 1


def test_ainvalidate_prefix_and_aclear(cache):
    async def main():
        await cache.aset_many({"user:1": 1, "user:2": 2, "org:1": 3, "a*": 4, "ab": 5})
        assert await cache.ainvalidate_prefix("user:") >= 2
        assert await cache.aget_many(["user:1", "user:2", "org:1"]) == {"org:1": 3}
        assert await cache.ainvalidate_prefix("a*") >= 1
        assert await cache.aget_many(["a*", "ab"]) == {"ab": 5}
        other = cache.namespace("other")
        await other.aset("kept", 1)
        assert await cache.aclear() >= 2
        assert await cache.aget_many(["org:1", "ab"]) == {}
        assert await other.aget("kept") == 1

    run(main())


def tieredcache_connections(raw: RawRedis) -> int:
    """Connections open to Redis under the client name "tieredcache" (pooled and pub/sub)."""
    clients = raw.execute("CLIENT", "LIST").decode().splitlines()
    return sum(" name=tieredcache " in f" {line} " for line in clients)


@pytest.fixture
def own_redis(fresh_redis_server):
    """(url, raw client) of a Redis only this test connects to, so CLIENT LIST is ours."""
    with RawRedis(fresh_redis_server.url) as raw:
        yield fresh_redis_server.url, raw


def test_close_closes_the_connections_of_every_event_loop(own_redis):
    redis_url, rawr = own_redis
    cache = TieredCache(redis_url=redis_url, namespace=NS)
    cache.set("sync", 1)
    for i in range(3):  # three loops, each ended by asyncio.run
        run(cache.aset(f"k{i}", i))
    assert tieredcache_connections(rawr) > 0
    cache.close()
    assert wait_until(lambda: tieredcache_connections(rawr) == 0), \
        f"{tieredcache_connections(rawr)} connections still open after close()"


def test_aclose_closes_the_connections_of_every_event_loop(own_redis):
    redis_url, rawr = own_redis
    cache = TieredCache(redis_url=redis_url, namespace=NS)
    run(cache.aset("first", 1))

    async def last():
        await cache.aset("second", 2)
        await cache.aclose()

    run(last())
    assert wait_until(lambda: tieredcache_connections(rawr) == 0), \
        f"{tieredcache_connections(rawr)} connections still open after aclose()"


def test_the_async_twins_of_another_instance_read_through_redis(redis_url):
    made = Caches(redis_url=redis_url, namespace=NS)
    try:
        writer, reader = made(), made()

        async def main():
            await writer.aset("k", (1, "tuple"), tags=["t"])
            assert await reader.aget("k") == (1, "tuple")
            assert await reader.aget_many(["k"]) == {"k": (1, "tuple")}
            await writer.ainvalidate_tags("t")
            assert await made().aget("k") is None

        run(main())
    finally:
        made.close()


def test_a_cache_works_from_one_event_loop_after_another(cache):
    # asyncio.run() makes a new loop each time (so does a test framework per test).
    for i in range(3):
        run(cache.aset(f"k{i}", i))
        assert run(cache.aget(f"k{i}")) == i
        assert run(cache.aget_or_set(f"j{i}", lambda: i)) == i
    assert cache.get_many(["k0", "k1", "k2"]) == {"k0": 0, "k1": 1, "k2": 2}


def test_a_cache_works_from_event_loops_in_several_threads_at_once(cache):
    errors: list[BaseException] = []

    def thread_main(t: int) -> None:
        async def work():
            for i in range(50):
                await cache.aset(f"t{t}:{i}", [t, i])
                got = await cache.aget(f"t{t}:{i}")
                assert got == [t, i], got
        try:
            run(work())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=thread_main, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors[0]


# ---- never block the loop -----------------------------------------------------------------


def test_a_sync_loader_runs_off_the_event_loop(cache):
    # The loader waits for an event that only a task on the loop can set: if the loader
    # ran on the loop thread, that task could not run and the loader would time out.
    unblocked = threading.Event()

    def loader():
        return "released" if unblocked.wait(5) else "the loop was blocked"

    async def main():
        async def set_soon():
            await asyncio.sleep(0.01)
            unblocked.set()

        setter = asyncio.create_task(set_soon())
        value = await cache.aget_or_set("k", loader)
        await setter
        return value

    assert run(main()) == "released"


def test_awaiting_a_paused_redis_does_not_block_the_loop(fresh_redis_server):
    made = Caches(redis_url=fresh_redis_server.url, namespace=NS, socket_timeout=0.5,
                  breaker_threshold=100)
    cache = made()
    ticks = 0

    async def main():
        nonlocal ticks
        await cache.aset("warm", 1)

        async def heartbeat():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        beat = asyncio.create_task(heartbeat())
        fresh_redis_server.pause()
        try:
            assert await cache.aget_or_set("k", lambda: "loaded") == "loaded"
        finally:
            fresh_redis_server.resume()
            beat.cancel()
        return ticks

    try:
        assert run(main()) > 0
    finally:
        made.close()


# ---- stampede -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["async", "sync"])
def test_twenty_tasks_missing_one_key_call_the_loader_once(cache, kind):
    calls: list[int] = []

    async def main():
        release = asyncio.Event()
        release_thread = threading.Event()

        async def async_loader():
            calls.append(1)
            await release.wait()
            return {"slots": [9, 10]}

        def sync_loader():
            calls.append(1)
            release_thread.wait(10)
            return {"slots": [9, 10]}

        loader = async_loader if kind == "async" else sync_loader
        tasks = [asyncio.create_task(cache.aget_or_set("slots", loader, ttl=60)) for _ in range(20)]
        # Let every task reach its miss (a second loader call would show up meanwhile).
        for _ in range(200):
            await asyncio.sleep(0.0025)
            if len(calls) > 1:
                break
        release.set()
        release_thread.set()
        return await asyncio.gather(*tasks)

    results = run(main())
    assert len(calls) == 1
    assert results == [{"slots": [9, 10]}] * 20


def test_threads_and_tasks_missing_one_key_share_one_load(cache):
    # "Concurrent callers in this process wait for that one call, threads and asyncio
    # alike": a sync route in the thread pool and an async one on the loop, say.
    calls: list[int] = []
    release = threading.Event()

    def loader():
        calls.append(1)
        release.wait(10)
        return "shared"

    thread_results: list = []
    threads = [threading.Thread(target=lambda: thread_results.append(cache.get_or_set("k", loader)))
               for _ in range(10)]

    async def main():
        tasks = [asyncio.create_task(cache.aget_or_set("k", loader)) for _ in range(10)]
        for thread in threads:
            thread.start()
        for _ in range(200):
            await asyncio.sleep(0.0025)
            if len(calls) > 1:
                break
        release.set()
        return await asyncio.gather(*tasks)

    task_results = run(main())
    for thread in threads:
        thread.join(10)
    assert len(calls) == 1
    assert task_results + thread_results == ["shared"] * 20


def test_cancelling_the_caller_whose_load_is_running_does_not_fail_the_others(cache):
    calls: list[int] = []

    async def main():
        release = asyncio.Event()

        async def loader():
            calls.append(1)
            await release.wait()
            return "value"

        first = asyncio.create_task(cache.aget_or_set("k", loader))
        for _ in range(2000):  # until first is inside the loader
            if calls:
                break
            await asyncio.sleep(0.005)
        others = [asyncio.create_task(cache.aget_or_set("k", loader)) for _ in range(5)]
        await asyncio.sleep(0.05)  # let them reach their miss and wait
        first.cancel()
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await first
        return await asyncio.wait_for(asyncio.gather(*others), 10)

    assert run(main()) == ["value"] * 5
    assert cache.get("k") in ("value", None)


# ---- cancellation at random points --------------------------------------------------------


def right(key: str) -> dict:
    """The one correct value of key: anything else read back is corruption."""
    return {"key": key, "n": int(key[1:])}


def test_cancellation_at_random_points_never_corrupts_later_results(caches):
    cache = caches()
    rng = random.Random(20240229)
    keys = [f"k{i}" for i in range(8)]

    async def load(key: str) -> dict:
        await asyncio.sleep(rng.choice([0, 0, 0.0002, 0.001]))
        return right(key)

    async def main() -> int:
        cancelled = 0
        for _ in range(300):
            key = rng.choice(keys)
            roll = rng.random()
            if roll < 0.5:
                call = cache.aget_or_set(key, functools.partial(load, key), ttl=60, tags=[key])
            elif roll < 0.7:
                call = cache.aset(key, right(key), ttl=60, tags=[key])
            elif roll < 0.8:
                call = cache.adelete(key)
            elif roll < 0.9:
                call = cache.ainvalidate_tags(key)
            else:
                call = cache.aget_many([key, rng.choice(keys)])
            try:
                got = await asyncio.wait_for(call, rng.choice([0, 1e-6, 1e-4, 5e-4, 2e-3, 1.0]))
            except asyncio.TimeoutError:
                cancelled += 1
                continue
            if roll < 0.5:
                assert got == right(key)
            elif roll >= 0.9:
                assert all(value == right(k) for k, value in got.items())
        # Afterwards every answer is right, from this loop...
        for key in keys:
            assert await cache.aget(key) in (None, right(key))
            assert await cache.aget_or_set(key, functools.partial(load, key)) == right(key)
            assert await cache.aget(key) == right(key)
        for i in range(50):
            await cache.aset(f"check{i}", [i])
            assert await cache.aget(f"check{i}") == [i]
        return cancelled

    assert run(main(), timeout=60) > 0
    # ...from the sync API, and from another instance reading Redis.
    for key in keys:
        assert cache.get(key) == right(key)
        assert caches().get(key) in (None, right(key))

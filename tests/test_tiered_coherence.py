"""Coherence: every process's L1 follows the invalidations made anywhere.

"A process" here is real: ``peers[i]`` are other Python interpreters (multiprocessing
"spawn") holding their own TieredCache on the same Redis and namespace. Waits are bounded
(``wait_until``, 5 s) and the assertions are about what eventually holds, not how fast:
an invalidation normally arrives in milliseconds.

Also here: no stale write-back (a value loaded before an invalidation is never cached
after it), stampede protection (one loader call per key, in a process and, with
``lock_timeout``, across processes), Redis's tag bookkeeping, and ``os.fork()``.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import traceback
import warnings

import pytest

from tiered_helpers import (  # noqa: F401  (_peer_pool, peers, rawr, redis_caches: fixtures)
    Caches,
    RawRedis,
    _peer_pool,
    line_count,
    peers,
    rawr,
    redis_caches,
    subscribers,
    wait_until,
)

NS = "test"

# Each invalidation, as the process that makes it calls it. The entry under test is
# "menu:today" tagged "menus"; the bystander "other" carries another tag and prefix.
INVALIDATIONS = {
    "delete": ("delete", ("menu:today",)),
    "invalidate_tags": ("invalidate_tags", ("menus",)),
    "invalidate_prefix": ("invalidate_prefix", ("menu:",)),
    "clear": ("clear", ()),
}


def invalidate(cache, how: str) -> None:
    method, args = INVALIDATIONS[how]
    getattr(cache, method)(*args)


def listening(raw: RawRedis, count: int = 2, namespace: str = NS) -> None:
    """Wait until count caches listen for the namespace's invalidations.

    Until a process has subscribed it may miss messages, so by design it keeps L1 entries
    only briefly (degraded_l1_ttl) and flushes L1 when it subscribes: a test that cached
    before that could pass whether or not messages work.
    """
    assert wait_until(lambda: subscribers(raw, namespace) >= count), "the caches never subscribed"


def in_peer_l1(peer, name: str, key: str) -> bool:
    """Whether the peer's cache `name` serves key from its L1 (its L1 hit count moves)."""
    before = peer.cache(name, "stats")["l1"]["hits"]
    peer.cache(name, "get", key)
    return peer.cache(name, "stats")["l1"]["hits"] == before + 1


@pytest.fixture(params=["l1", "redis"])
def tier_caches(request: pytest.FixtureRequest):
    """Caches on the tier under test: no Redis, or the test's Redis."""
    url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    caches = Caches(redis_url=url, namespace=NS)
    yield caches
    caches.close()


def run_threads(target, count: int, timeout: float = 30.0) -> list:
    """Run target(i) in count threads released together; return results; re-raise failures."""
    barrier = threading.Barrier(count)
    results: list = [None] * count
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait(timeout)
            results[i] = target(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
        assert not thread.is_alive(), "a thread is still running: hung?"
    if errors:
        raise errors[0]
    return results


class BlockingLoader:
    """A loader that signals it has started, then waits until released (bounded)."""

    def __init__(self, value) -> None:
        self.value = value
        self.started, self.release = threading.Event(), threading.Event()
        self.calls = 0

    def __call__(self):
        self.calls += 1
        self.started.set()
        assert self.release.wait(30), "the loader was never released"
        return self.value


# ---- invalidations reach other processes --------------------------------------------------


@pytest.mark.parametrize("how", list(INVALIDATIONS))
def test_an_invalidation_in_one_process_drops_the_entry_from_another_process_l1(
        redis_url, redis_caches, rawr, peers, how):
    here = redis_caches()
    there = peers[0]
    there.open("c", redis_url=redis_url, namespace=NS)
    listening(rawr)
    here.set("menu:today", "pizza", tags=["menus"])
    assert there.cache("c", "get", "menu:today") == "pizza"
    assert in_peer_l1(there, "c", "menu:today")
    invalidate(here, how)
    assert wait_until(lambda: there.cache("c", "get", "menu:today") is None), \
        f"the other process still serves the entry after {how}"
    assert wait_until(lambda: there.cache("c", "stats")["invalidations_received"] >= 1)


@pytest.mark.parametrize("how", ["invalidate_tags", "invalidate_prefix", "delete"])
def test_another_process_drops_only_the_invalidated_entries(redis_url, redis_caches, rawr, peers, how):
    here = redis_caches()
    there = peers[0]
    there.open("c", redis_url=redis_url, namespace=NS)
    listening(rawr)
    here.set("menu:today", "pizza", tags=["menus"])
    here.set("other", "kept", tags=["others"])
    assert there.cache("c", "get_many", ["menu:today", "other"]) == {"menu:today": "pizza", "other": "kept"}
    assert in_peer_l1(there, "c", "menu:today") and in_peer_l1(there, "c", "other")
    rawr.execute("DEL", here.redis_key("other"))  # from now on only the peer's L1 has "other"
    invalidate(here, how)
    assert wait_until(lambda: there.cache("c", "get", "menu:today") is None)
    assert there.cache("c", "get", "other") == "kept", "the peer flushed more than was invalidated"


def test_an_invalidation_in_one_namespace_leaves_another_process_other_namespaces(
        redis_url, redis_caches, rawr, peers):
    here = redis_caches()
    there = peers[0]
    there.open("c", redis_url=redis_url, namespace=NS)
    there("view", "shop1", "c", "shop:1")
    there("view", "shop2", "c", "shop:2")
    here.namespace("shop:1").set("menu", "pizza")
    here.namespace("shop:2").set("menu", "sushi")
    listening(rawr, namespace=f"{NS}/shop:1")
    listening(rawr, namespace=f"{NS}/shop:2")
    assert there.cache("shop1", "get", "menu") == "pizza"
    assert there.cache("shop2", "get", "menu") == "sushi"
    assert in_peer_l1(there, "shop1", "menu") and in_peer_l1(there, "shop2", "menu")
    rawr.execute("DEL", here.namespace("shop:2").redis_key("menu"))  # only the peer's L1 has it
    here.namespace("shop:1").clear()
    assert wait_until(lambda: there.cache("shop1", "get", "menu") is None)
    assert there.cache("shop2", "get", "menu") == "sushi", "the peer flushed another namespace"


def test_a_set_in_one_process_replaces_what_another_process_serves(redis_url, redis_caches, rawr, peers):
    here = redis_caches()
    there = peers[0]
    there.open("c", redis_url=redis_url, namespace=NS)
    listening(rawr)
    here.set("price", 10)
    assert there.cache("c", "get", "price") == 10
    assert in_peer_l1(there, "c", "price")
    here.set("price", 12)
    assert wait_until(lambda: there.cache("c", "get", "price") == 12), \
        "another process keeps serving the value a set replaced"


def test_invalidations_travel_both_ways(redis_url, redis_caches, rawr, peers):
    here = redis_caches()
    there = peers[0]
    there.open("c", redis_url=redis_url, namespace=NS)
    listening(rawr)
    there.cache("c", "set", "k", "v")
    assert here.get("k") == "v"
    assert there.cache("c", "delete", "k") is True
    assert wait_until(lambda: here.get("k") is None)
    assert wait_until(lambda: here.stats()["invalidations_received"] >= 1)


# ---- what invalidation leaves in Redis ----------------------------------------------------


def redis_layout(raw: RawRedis) -> dict[str, set[str]]:
    """Keys of namespace "test", grouped: payloads "k", tag sets "t", key-tag sets "kt"."""
    layout: dict[str, set[str]] = {"k": set(), "t": set(), "kt": set()}
    for key in raw.keys(f"tc:{NS}:*"):
        kind, _, name = key.decode()[len(f"tc:{NS}:"):].partition(":")
        if kind in layout:
            layout[kind].add(name)
    return layout


def test_tag_invalidation_removes_exactly_the_tagged_entries_from_redis(redis_caches, rawr):
    cache = redis_caches()
    cache.set("a", 1, tags=["t1"])
    cache.set("b", 2, tags=["t1", "t2"])
    cache.set("c", 3, tags=["t2"])
    cache.set("d", 4)
    cache.invalidate_tags("t1")
    layout = redis_layout(rawr)
    assert layout["k"] == {"c", "d"}
    assert "t1" not in layout["t"]
    assert layout["kt"] <= {"c"}
    assert rawr.execute("SMEMBERS", f"tc:{NS}:t:t2") == [cache.redis_key("c").encode()]


def test_no_tag_bookkeeping_is_left_once_every_tagged_entry_is_gone(redis_caches, rawr):
    cache = redis_caches()
    cache.set("a", 1, tags=["t1"])
    cache.set("b", 2, tags=["t1", "t2"])
    cache.set("c", 3, tags=["t2", "t3"])
    cache.set("user:1", 5, tags=["t4"])
    cache.set("e", 6, tags=["t5"])
    cache.set("f", 7, tags=["t6"])
    cache.invalidate_tags("t1", "t2")
    cache.invalidate_prefix("user:")
    cache.delete("e")
    cache.clear()
    assert redis_layout(rawr) == {"k": set(), "t": set(), "kt": set()}


def test_retagging_a_key_moves_it_between_tag_sets_in_redis(redis_caches, rawr):
    cache = redis_caches()
    cache.set("k", 1, tags=["old"])
    cache.set("k", 2, tags=["new"])
    assert cache.invalidate_tags("old") == 0
    assert redis_caches().get("k") == 2
    cache.invalidate_tags("new")
    assert redis_layout(rawr) == {"k": set(), "t": set(), "kt": set()}


def test_tag_sets_expire_with_their_longest_lived_member(redis_caches, rawr):
    cache = redis_caches()
    cache.set("short", 1, ttl=60, tags=["t"])
    cache.set("long", 2, ttl=600, tags=["t"])
    assert 500_000 < rawr.execute("PTTL", f"tc:{NS}:t:t") <= 600_000
    cache.delete("long")  # a delete takes the key out of its tag sets
    assert rawr.execute("SMEMBERS", f"tc:{NS}:t:t") == [cache.redis_key("short").encode()]


def test_every_invalidation_leaves_a_mark_that_refuses_loads_in_flight(redis_caches, rawr):
    """A load of the key may be in flight; its write-back compares what it saw at the miss
    with these marks, so each invalidation must change one, even when it removes nothing:
    a delete leaves a tombstone, a tag invalidation bumps the tag's generation, a prefix
    invalidation or a clear bumps the namespace's."""
    cache = redis_caches()
    cache.set("k", 1, tags=["t"])

    def marks() -> tuple:
        return (rawr.execute("GET", f"tc:{NS}:x:k"), rawr.execute("GET", f"tc:{NS}:tg:t"),
                rawr.execute("GET", f"tc:{NS}:gen"))

    for invalidation in [lambda: cache.invalidate_tags("t"), lambda: cache.invalidate_prefix("k"),
                         lambda: cache.delete("k"), lambda: cache.clear(),
                         lambda: cache.invalidate_tags("t"), lambda: cache.delete("k")]:
        before = marks()
        invalidation()
        assert marks() != before


# ---- no stale write-back ------------------------------------------------------------------


@pytest.mark.parametrize("how", list(INVALIDATIONS))
def test_a_read_racing_an_invalidation_does_not_leave_the_old_value_in_l1(redis_caches, rawr, how):
    # Redis is made to hold the invalidation's writes (CLIENT PAUSE WRITE lets reads
    # through), so a reader in the same process runs while the invalidation is half done:
    # L1 already dropped, Redis still holding the old value. The reader may get the old
    # value then; once the invalidation has returned, nobody may.
    cache = redis_caches(socket_timeout=10)
    cache.set("menu:today", "old", tags=["menus"])
    rawr.execute("CLIENT", "PAUSE", 10_000, "WRITE")
    try:
        invalidating = threading.Thread(target=invalidate, args=(cache, how), daemon=True)
        invalidating.start()
        time.sleep(0.2)  # let it drop L1 and block on Redis
        assert cache.get("menu:today") in ("old", None)
    finally:
        rawr.execute("CLIENT", "UNPAUSE")
    invalidating.join(10)
    assert not invalidating.is_alive()
    assert not rawr.exists(cache.redis_key("menu:today"))
    assert cache.get("menu:today") is None


@pytest.mark.parametrize("how", list(INVALIDATIONS))
def test_a_value_loaded_before_an_invalidation_in_another_thread_is_not_cached(tier_caches, how):
    cache = tier_caches()
    loader = BlockingLoader("stale")
    result: list = []
    worker = threading.Thread(
        target=lambda: result.append(cache.get_or_set("menu:today", loader, tags=["menus"])), daemon=True)
    worker.start()
    assert loader.started.wait(10)
    invalidate(cache, how)  # the database changed while the loader was reading it
    loader.release.set()
    worker.join(10)
    assert result == ["stale"], "the caller gets the value it loaded"
    assert cache.get("menu:today") is None
    assert tier_caches().get("menu:today") is None  # nor in Redis (another instance reads there)


@pytest.mark.parametrize("how", list(INVALIDATIONS))
def test_a_value_loaded_before_an_invalidation_by_another_instance_is_not_cached(redis_caches, rawr, how):
    cache, other = redis_caches(), redis_caches()
    listening(rawr)
    loader = BlockingLoader("stale")
    result: list = []
    worker = threading.Thread(
        target=lambda: result.append(cache.get_or_set("menu:today", loader, tags=["menus"])), daemon=True)
    worker.start()
    assert loader.started.wait(10)
    invalidate(other, how)
    assert wait_until(lambda: cache.stats()["invalidations_received"] >= 1)
    loader.release.set()
    worker.join(10)
    assert result == ["stale"]
    assert not rawr.exists(cache.redis_key("menu:today"))
    assert cache.get("menu:today") is None


@pytest.mark.parametrize("how", list(INVALIDATIONS))
def test_a_value_loaded_before_an_invalidation_in_another_process_is_not_cached(
        redis_url, redis_caches, rawr, peers, how):
    cache = redis_caches()
    there = peers[0]
    there.open("c", redis_url=redis_url, namespace=NS)
    listening(rawr)
    loader = BlockingLoader("stale")
    result: list = []
    worker = threading.Thread(
        target=lambda: result.append(cache.get_or_set("menu:today", loader, tags=["menus"])), daemon=True)
    worker.start()
    assert loader.started.wait(10)
    method, args = INVALIDATIONS[how]
    there.cache("c", method, *args)
    # Let the message arrive first, so an L1 write-back could not be undone by it.
    assert wait_until(lambda: cache.stats()["invalidations_received"] >= 1)
    loader.release.set()
    worker.join(10)
    assert result == ["stale"]
    assert not rawr.exists(cache.redis_key("menu:today"))
    assert cache.get("menu:today") is None
    assert there.cache("c", "get", "menu:today") is None


@pytest.mark.parametrize("how", ["delete", "clear"])
def test_a_caller_arriving_after_an_invalidation_does_not_share_the_load_it_outdated(tier_caches, how):
    # The first caller's load began before the invalidation: it may return "old" to that
    # caller, but a call that begins after the invalidation returned must not wait for
    # that load and take its result; it loads anew.
    cache = tier_caches()
    outdated = BlockingLoader("old")
    first = threading.Thread(target=lambda: cache.get_or_set("menu:today", outdated, tags=["menus"]),
                             daemon=True)
    first.start()
    assert outdated.started.wait(10)
    invalidate(cache, how)
    later: list = []
    second = threading.Thread(target=lambda: later.append(cache.get_or_set("menu:today", lambda: "new")),
                              daemon=True)
    second.start()
    wait_until(lambda: later, timeout=0.5)  # a correct cache answers without the first load
    outdated.release.set()
    first.join(10)
    second.join(10)
    assert later == ["new"]
    assert cache.get("menu:today") == "new"


def test_a_set_made_while_a_loader_runs_is_not_overwritten_by_the_loaded_value(tier_caches, request):
    # Write-through: the application stores the new value itself while an older read of
    # the database is still loading. The newer write must win, in L1 and in Redis.
    cache = tier_caches()
    loader = BlockingLoader("read before the write")
    worker = threading.Thread(target=lambda: cache.get_or_set("price", loader), daemon=True)
    worker.start()
    assert loader.started.wait(10)
    cache.set("price", "written")
    loader.release.set()
    worker.join(10)
    assert cache.get("price") == "written"
    if "redis" in request.node.callspec.id:
        assert tier_caches().get("price") == "written"


def test_a_loader_whose_entry_was_not_invalidated_still_caches(tier_caches):
    # The guard against stale write-back must not stop ordinary caching.
    cache = tier_caches()
    assert cache.get_or_set("k", lambda: "v") == "v"
    assert cache.get_or_set("k", lambda: "other") == "v"
    assert tier_caches().get("k") in ("v", None)  # a second instance: "v" with Redis


# ---- stampede -----------------------------------------------------------------------------


def test_twenty_threads_missing_one_key_call_the_loader_once(tier_caches):
    cache = tier_caches()
    calls: list[int] = []
    release = threading.Event()
    entered = threading.Semaphore(0)

    def loader():
        calls.append(1)
        # Hold the load open until every thread has been released into get_or_set (and a
        # second loader call would show up), so the others truly miss concurrently.
        release.wait(10)
        return {"report": 1}

    def call(i):
        entered.release()
        return cache.get_or_set("report", loader, ttl=60)

    def releaser():
        for _ in range(20):
            entered.acquire(timeout=10)
        wait_until(lambda: len(calls) > 1, timeout=0.5)
        release.set()

    helper = threading.Thread(target=releaser, daemon=True)
    helper.start()
    results = run_threads(call, 20)
    helper.join(10)
    assert len(calls) == 1
    assert results == [{"report": 1}] * 20
    assert cache.stats()["loads"] == 1


def test_concurrent_callers_of_a_failing_loader_all_return(tier_caches):
    cache = tier_caches()
    calls: list[int] = []

    def loader():
        calls.append(1)
        time.sleep(0.01)
        raise LookupError("not in the database")

    def call(i):
        try:
            return cache.get_or_set("missing", loader)
        except LookupError as exc:
            return exc

    results = run_threads(call, 20)
    assert all(isinstance(r, LookupError) for r in results)
    assert 1 <= len(calls) <= 20
    assert cache.get("missing") is None


def test_with_lock_timeout_three_processes_call_the_loader_once(redis_url, peers, tmp_path):
    counter, release = tmp_path / "loads", tmp_path / "release"
    for i in range(3):
        peers[i].open("c", redis_url=redis_url, namespace=NS, lock_timeout=20)
    peers[0].start("load", "c", "report", {"total": 7}, str(counter), str(release), ttl=60)
    assert wait_until(lambda: line_count(counter) == 1, timeout=10), "the first loader never ran"
    # The first process now holds the lock inside its loader; the others miss and must wait.
    peers[1].start("load", "c", "report", "loaded twice", str(counter), str(release), ttl=60)
    peers[2].start("load", "c", "report", "loaded twice", str(counter), str(release), ttl=60)
    wait_until(lambda: line_count(counter) > 1, timeout=1.0)  # give a wrong implementation rope
    release.touch()
    results = [peers[i].result() for i in range(3)]
    assert line_count(counter) == 1
    assert results == [{"total": 7}] * 3


def test_a_lock_holder_slower_than_lock_timeout_does_not_block_the_others(redis_url, peers, tmp_path):
    counter, release = tmp_path / "loads", tmp_path / "release"
    for i in range(2):
        peers[i].open("c", redis_url=redis_url, namespace=NS, lock_timeout=0.5)
    peers[0].start("load", "c", "k", "slow", str(counter), str(release))
    assert wait_until(lambda: line_count(counter) == 1, timeout=10)
    # The holder is stuck until released; the other waits lock_timeout, then loads itself.
    assert peers[1]("load", "c", "k", "own", str(counter)) == "own"
    assert line_count(counter) == 2
    release.touch()
    assert peers[0].result() == "slow"


# ---- fork ---------------------------------------------------------------------------------

CHILD_DEADLINE = 30.0


def fork_and_run(body):
    """Fork; run body() in the child; return (exit status, report). A hung child is killed."""
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:
        status = 1
        try:
            os.close(read_end)
            report = body()
            os.write(write_end, repr(report).encode())
            status = 0
        except BaseException:
            os.write(write_end, traceback.format_exc().encode()[-4000:])
        finally:
            os._exit(status)
    os.close(write_end)
    return pid, read_end


def reap(pid: int, read_end: int) -> tuple[int, str]:
    deadline = time.monotonic() + CHILD_DEADLINE
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            status = -1
            break
        time.sleep(0.01)
    with os.fdopen(read_end, "rb") as pipe:
        report = pipe.read().decode(errors="replace")
    return status, report


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_cache_used_before_fork_works_in_the_child_and_the_parent(redis_caches):
    cache = redis_caches()
    cache.set("shared", "before fork", tags=["t"])
    assert cache.get_or_set("loaded", lambda: "before fork") == "before fork"

    def work(who: str) -> str:
        # Distinct keys and values per process: replies crossing on a shared socket show up.
        for i in range(200):
            cache.set(f"{who}:{i}", f"{who}-{i}")
            got = cache.get(f"{who}:{i}")
            assert got == f"{who}-{i}", (i, got)
            assert cache.get_or_set(f"{who}:loaded:{i}", lambda: [who, i]) == [who, i]
        assert cache.get("shared") == "before fork"
        cache.invalidate_tags(f"{who}-tag")
        return "ok"

    pid, read_end = fork_and_run(lambda: work("child"))
    parent = work("parent")
    status, report = reap(pid, read_end)
    assert status == 0, report
    assert report == "'ok'" and parent == "ok"
    reader = redis_caches()  # both processes wrote to Redis
    assert reader.get("child:199") == "child-199"
    assert reader.get("parent:199") == "parent-199"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_receives_invalidations(redis_caches):
    cache = redis_caches()
    cache.set("k", "v1")
    assert wait_until(lambda: cache.stats()["l2"]["connected"])
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()

    def child() -> str:
        os.close(ready_r)
        os.close(go_w)
        assert cache.stats()["l1"]["entries"] == 0  # a forked child starts with an empty L1
        assert cache.get("k") == "v1"  # from Redis, into the child's L1
        assert cache.get("k") == "v1"
        os.write(ready_w, b"r")
        assert os.read(go_r, 1) == b"g"  # the parent has invalidated "k"
        dropped = wait_until(lambda: cache.get("k") is None)
        return "dropped" if dropped else f"still serves {cache.get('k')!r}"

    pid, read_end = fork_and_run(child)
    os.close(ready_w)
    os.close(go_r)
    try:
        assert os.read(ready_r, 1) == b"r"
        cache.delete("k")
        os.write(go_w, b"g")
    finally:
        os.close(ready_r)
        os.close(go_w)
    status, report = reap(pid, read_end)
    assert (status, report) == (0, "'dropped'"), report

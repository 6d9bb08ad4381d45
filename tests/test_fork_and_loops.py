"""Fork and event loops (issue 7, campaign 6): a cache used before ``fork()`` works in every
worker on the worker's own connections; many event loops share one cache; misuse raises
a clear error instead of hanging.

* Preload (gunicorn ``--preload``, ``multiprocessing`` with the fork start method): the
  parent uses the cache (sync calls, its invalidation listener, the async client of a
  loop), then forks workers. Each worker's sockets to Redis (read from ``/proc``: the
  descriptors it holds) are its own: none is the parent's or another worker's, each is
  a ``tieredcache`` client in Redis's ``CLIENT LIST``, each worker has its own
  subscriber; a write in one worker reaches the other workers' L1 through pub/sub; the
  parent keeps its connections and works after the workers have exited.
* Fork while other threads hammer the cache (from the main thread and from another
  thread): the child's cache works; every child is bounded by a deadline, so a deadlock
  fails the test instead of hanging it.
* Event loops: several ``asyncio.run()`` in a row, and two threads each running its own
  loop, use one cache (async calls, ``aget_or_set``, async cached functions); each loop
  gets its own async client; one load per key across the loops; the connections of
  ended loops are closed when the next loop starts, so their number does not grow with
  the number of loops.
* Misuse that used to hang forever now raises ``RuntimeError`` naming the problem: a
  loader asking for its own key (sync, async, the worker thread of a sync loader, a
  cached function calling itself with the same arguments), and a sync ``get_or_set`` on
  an event loop's thread while a task of that loop loads the same key. A closed cache
  opens no new Redis connection from async code.

Pass: every assertion; no test waits without a deadline.
"""

from __future__ import annotations

import asyncio
import gc
import json
import multiprocessing
import os
import select
import signal
import sys
import threading
import time
import traceback
import warnings
from typing import Any, Callable

import pytest

from tiered_helpers import RawRedis, TieredCache, wait_until

from tieredcache import BackendUnavailable

needs_fork = pytest.mark.skipif(not hasattr(os, "fork") or not sys.platform.startswith("linux"),
                                reason="needs os.fork and /proc")
DEADLINE = 30.0  # seconds any child or thread may take before the test fails as hung


# ---- helpers ------------------------------------------------------------------------------

def client_list(raw: RawRedis) -> list[dict[str, str]]:
    rows = []
    for line in raw.execute("CLIENT", "LIST").decode().splitlines():
        rows.append(dict(field.split("=", 1) for field in line.split(" ") if "=" in field))
    return rows


def tieredcache_clients(raw: RawRedis) -> dict[int, dict[str, str]]:
    """Redis's view of the tieredcache connections, by the client's local port."""
    return {int(row["addr"].rsplit(":", 1)[1]): row for row in client_list(raw) if row.get("name") == "tieredcache"}


def redis_ports(pid: int, redis_port: int) -> set[int]:
    """Local ports of the established TCP connections to ``redis_port`` whose sockets
    process ``pid`` holds (its descriptors in /proc, matched to /proc/net/tcp by inode)."""
    inodes = set()
    fd_dir = f"/proc/{pid}/fd"
    for fd in os.listdir(fd_dir):
        try:
            link = os.readlink(f"{fd_dir}/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[len("socket:["):-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                lines = f.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
            if state == "01" and inode in inodes and int(remote.rsplit(":", 1)[1], 16) == redis_port:
                ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports


def fork() -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
        return os.fork()


class Worker:
    """A forked child that runs the commands (names of ``commands``) the parent sends, one
    JSON line each way; every reply is awaited at most DEADLINE seconds."""

    def __init__(self, commands: dict[str, Callable[..., Any]]) -> None:
        cmd_r, cmd_w = os.pipe()
        rep_r, rep_w = os.pipe()
        self.pid = fork()
        if self.pid == 0:  # the child: serve commands until "exit", never return
            status = 1
            try:
                os.close(cmd_w)
                os.close(rep_r)
                with os.fdopen(cmd_r, "r") as cmds, os.fdopen(rep_w, "w") as reps:
                    for line in cmds:
                        name, args = json.loads(line)
                        if name == "exit":
                            status = 0
                            break
                        try:
                            reply = {"ok": commands[name](*args)}
                        except BaseException:
                            reply = {"error": traceback.format_exc()[-3000:]}
                        reps.write(json.dumps(reply) + "\n")
                        reps.flush()
            finally:
                os._exit(status)
        os.close(cmd_r)
        os.close(rep_w)
        self.cmds = os.fdopen(cmd_w, "w")
        self.reps = os.fdopen(rep_r, "r")

    def call(self, name: str, *args: Any) -> Any:
        self.cmds.write(json.dumps([name, list(args)]) + "\n")
        self.cmds.flush()
        ready, _, _ = select.select([self.reps], [], [], DEADLINE)
        if not ready:
            self.kill()
            pytest.fail(f"worker {self.pid} did not answer {name!r} within {DEADLINE:g} s (hung)")
        line = self.reps.readline()
        if not line:
            pytest.fail(f"worker {self.pid} died during {name!r}")
        reply = json.loads(line)
        if "error" in reply:
            pytest.fail(f"worker {self.pid}, {name!r}:\n{reply['error']}")
        return reply["ok"]

    def exit(self) -> int:
        self.cmds.write(json.dumps(["exit", []]) + "\n")
        self.cmds.flush()
        status = reap(self.pid)
        self.kill()
        return status

    def kill(self) -> None:
        """Kill the child if it still runs, reap it, close the pipes. Idempotent."""
        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        for f in (self.cmds, self.reps):
            try:
                f.close()
            except OSError:
                pass


def reap(pid: int) -> int:
    deadline = time.monotonic() + DEADLINE
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail(f"child {pid} still running after {DEADLINE:g} s (hung)")
        time.sleep(0.01)


def bounded(fn: Callable[[], Any], timeout: float = DEADLINE) -> Any:
    """fn() in a daemon thread; a hang fails the test instead of blocking the suite."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = fn()
        except BaseException as exc:
            out["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        pytest.fail(f"still running after {timeout:g} s: hung")
    if "error" in out:
        raise out["error"]
    return out["value"]


@pytest.fixture
def own_redis(fresh_redis_server):
    """(server, raw client): a Redis only this test connects to, so CLIENT LIST is ours."""
    with RawRedis(fresh_redis_server.url) as raw:
        yield fresh_redis_server, raw


def preloaded(url: str) -> tuple[TieredCache, asyncio.AbstractEventLoop]:
    """A cache used the way an app is used before gunicorn forks its workers."""
    cache = TieredCache(redis_url=url, namespace="preload")
    cache.set("shared", "v0", tags=["t"])
    assert cache.get("shared") == "v0"
    assert cache.get_or_set("loaded", lambda: "parent") == "parent"
    assert wait_until(lambda: cache.stats()["l2"]["connected"])  # the listener runs

    async def use_async() -> None:  # and an event loop's async client, still open at fork
        await cache.aset("async", 1)
        assert await cache.aget("async") == 1

    loop = asyncio.new_event_loop()
    loop.run_until_complete(use_async())
    return cache, loop  # the loop stays open across the fork, its client bound to it


# ---- gunicorn-style preload -----------------------------------------------------------------

@needs_fork
def test_preloaded_cache_forked_workers_use_their_own_connections_and_hear_each_other(own_redis):
    server, raw = own_redis
    cache, loop = preloaded(server.url)
    parent_ports = redis_ports(os.getpid(), server.port) & set(tieredcache_clients(raw))
    assert len(parent_ports) >= 3  # the listener's, the sync pool's, the open loop's
    own = redis_ports(os.getpid(), server.port) - parent_ports

    def work(n: int) -> dict:
        me = f"w{n}"
        assert cache.stats()["l1"]["entries"] == 0  # a forked child starts with an empty L1
        for i in range(50):  # replies crossing on a shared socket would show up as wrong values
            cache.set(f"{me}:{i}", [me, i])
            assert cache.get(f"{me}:{i}") == [me, i]
            assert cache.get_or_set(f"{me}:loaded:{i}", lambda: [me, "loaded", i]) == [me, "loaded", i]

        async def use_async() -> None:
            await cache.aset(f"{me}:async", me)
            assert await cache.aget(f"{me}:async") == me
            assert await cache.aget_or_set(f"{me}:aloaded", lambda: me) == me

        asyncio.run(use_async())
        assert cache.get("shared") == "v0"  # from Redis, now in this worker's L1
        assert wait_until(lambda: cache.stats()["l2"]["connected"])
        return {"pid": os.getpid()}

    def write(value: str) -> None:
        cache.set("shared", value, tags=["t"])

    def sees(value: str) -> bool:
        return wait_until(lambda: cache.get("shared") == value)

    commands = {"work": work, "write": write, "sees": sees}
    workers = [Worker(commands) for _ in range(3)]
    try:
        for n, w in enumerate(workers):
            assert w.call("work", n)["pid"] == w.pid
        # less the test's own raw client (inherited by the workers, not the cache's)
        ports = {w.pid: redis_ports(w.pid, server.port) - own for w in workers}
        in_redis = tieredcache_clients(raw)
        for pid, mine in ports.items():
            assert mine, f"worker {pid} holds no connection to Redis"
            assert not mine & parent_ports, f"worker {pid} holds the parent's sockets {mine & parent_ports}"
            for other, theirs in ports.items():
                assert other == pid or not mine & theirs, f"workers {pid} and {other} share sockets"
            assert mine <= set(in_redis), f"worker {pid}: {mine - set(in_redis)} not tieredcache clients"
            assert any(in_redis[p]["sub"] == "1" for p in mine), f"worker {pid} has no subscriber of its own"
        # a write in worker 0 drops the others' L1 copies (pub/sub), and the parent's
        workers[0].call("write", "v1")
        assert workers[1].call("sees", "v1") and workers[2].call("sees", "v1")
        assert wait_until(lambda: cache.get("shared") == "v1")
        for w in workers:
            assert w.exit() == 0
    finally:
        for w in workers:
            w.kill()
    # the workers closed their copies only: the parent's connections are still there
    assert parent_ports <= set(tieredcache_clients(raw))
    assert parent_ports <= redis_ports(os.getpid(), server.port)
    cache.set("after", "workers")
    assert cache.get_or_set("after:loaded", lambda: 2) == 2
    assert asyncio.run(cache.aget("w2:async")) == "w2"
    assert cache.stats()["l2"]["errors"] == 0
    loop.close()
    cache.close()


def _mp_worker(cache: TieredCache, port: int, ready: Any, go: Any, out: Any) -> None:
    try:
        assert cache.get("shared") == "v0"
        cache.set(f"mp:{os.getpid()}", os.getpid())
        assert asyncio.run(cache.aget_or_set(f"mp:{os.getpid()}:a", lambda: "a")) == "a"
        assert wait_until(lambda: cache.stats()["l2"]["connected"])
        ready.put(sorted(redis_ports(os.getpid(), port)))
        go.wait(DEADLINE)
        dropped = wait_until(lambda: cache.get("shared") == "v1")
        out.put(("ok" if dropped else f"still serves {cache.get('shared')!r}", os.getpid()))
    except BaseException:
        out.put((traceback.format_exc()[-3000:], os.getpid()))


@needs_fork
def test_multiprocessing_fork_workers_use_their_own_connections(own_redis):
    server, raw = own_redis
    cache, loop = preloaded(server.url)
    parent_ports = redis_ports(os.getpid(), server.port) & set(tieredcache_clients(raw))
    assert len(parent_ports) >= 3
    own = redis_ports(os.getpid(), server.port) - parent_ports
    ctx = multiprocessing.get_context("fork")
    ready, out, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        procs = [ctx.Process(target=_mp_worker, args=(cache, server.port, ready, go, out)) for _ in range(2)]
        for p in procs:
            p.start()
    try:
        seen: list[set[int]] = [set(ready.get(timeout=DEADLINE)) - own for _ in procs]
        for mine in seen:
            assert mine and not mine & parent_ports
        assert not seen[0] & seen[1]
        cache.set("shared", "v1")  # the parent's write reaches both workers' L1
        go.set()
        results = [out.get(timeout=DEADLINE) for _ in procs]
        assert [r[0] for r in results] == ["ok", "ok"], results
        for p in procs:
            p.join(DEADLINE)
            assert p.exitcode == 0
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join()
    assert parent_ports <= redis_ports(os.getpid(), server.port)
    assert cache.get("mp:%d" % procs[0].pid) == procs[0].pid  # written by a worker, read here
    loop.close()
    cache.close()


# ---- fork while other threads use the cache ---------------------------------------------------

def _child_uses(cache: TieredCache) -> str:
    cache.set("child", os.getpid(), tags=["c"])
    assert cache.get("child") == os.getpid()
    assert cache.get_or_set("child:loaded", lambda: "x") in ("x", "y")
    assert cache.invalidate_tags("c") >= 0
    assert cache.get("child") is None
    assert asyncio.run(cache.aget_or_set("child:a", lambda: 3)) == 3
    assert cache.get("hammer:0") in (None, 0, "v")
    return "ok"


def fork_child(body: Callable[[], str]) -> tuple[int, int]:
    """Fork; the child runs body() and writes its report; returns (pid, read end)."""
    r, w = os.pipe()
    pid = fork()
    if pid == 0:
        status = 1
        try:
            os.close(r)
            report = body()
            os.write(w, report.encode())
            status = 0
        except BaseException:
            os.write(w, traceback.format_exc().encode()[-3000:])
        finally:
            os._exit(status)
    os.close(w)
    return pid, r


@needs_fork
@pytest.mark.parametrize("from_thread", [False, True], ids=["main-thread", "other-thread"])
def test_fork_while_threads_hammer_the_tiered_cache_gives_a_working_child(own_redis, from_thread):
    server, _ = own_redis
    cache = TieredCache(redis_url=server.url, namespace="hammer")
    stop = threading.Event()
    errors: list[BaseException] = []

    def hammer(n: int) -> None:
        i = 0
        try:
            while not stop.is_set():
                k = f"hammer:{i % 50}"
                cache.set(k, "v", tags=[f"t{i % 5}"])
                cache.get(k)
                cache.get_or_set(f"{k}:l", lambda: "y")
                if i % 7 == 0:
                    cache.invalidate_tags(f"t{i % 5}")
                if i % 31 == 0:
                    cache.invalidate_prefix("hammer:1")
                if i % 13 == 0:
                    asyncio.run(cache.aget(k))
                i += 1
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=hammer, args=(n,), daemon=True) for n in range(4)]
    for t in threads:
        t.start()
    reports = []
    try:
        for _ in range(4):
            time.sleep(0.05)
            if from_thread:
                box: list[tuple[int, int]] = []
                forker = threading.Thread(target=lambda: box.append(fork_child(lambda: _child_uses(cache))))
                forker.start()
                forker.join(DEADLINE)
                pid, r = box[0]
            else:
                pid, r = fork_child(lambda: _child_uses(cache))
            status = reap(pid)
            with os.fdopen(r, "rb") as f:
                reports.append((status, f.read().decode(errors="replace")))
    finally:
        stop.set()
        for t in threads:
            t.join(DEADLINE)
    assert not errors, errors[0]
    assert reports == [(0, "ok")] * 4, reports
    assert cache.get_or_set("parent:after", lambda: 1) == 1
    cache.close()


@needs_fork
def test_a_child_forked_while_another_thread_records_a_latency_works(own_redis):
    # A thread inside Histogram.observe() (every Redis round trip and every miss of a
    # cached function records one) holds that histogram's lock at the moment of the fork;
    # the lock is held forever in the child, whose own first observe() must not wait for it.
    server, _ = own_redis
    cache = TieredCache(redis_url=server.url, namespace="latency")

    @cache.cached()
    def double(n: int) -> int:
        return 2 * n

    assert double(1) == 2 and cache.get("absent") is None
    [fn] = cache._core.functions.values()
    locks = [cache._core.l2_latency._lock, fn.h_l2._lock, fn.h_miss._lock, fn.h_load._lock]
    held, done = threading.Event(), threading.Event()

    def recorder() -> None:
        for lock in locks:
            lock.acquire()
        held.set()
        done.wait(DEADLINE)
        for lock in locks:
            lock.release()

    t = threading.Thread(target=recorder)
    t.start()
    try:
        assert held.wait(DEADLINE)

        def child() -> str:
            assert cache.get("absent") is None  # a Redis round trip: records its latency
            assert double(2) == 4  # a miss: records the miss and the load
            assert asyncio.run(cache.aget("absent")) is None
            return "ok"

        pid, r = fork_child(child)
        status = reap(pid)
        with os.fdopen(r, "rb") as f:
            assert (status, f.read().decode(errors="replace")) == (0, "ok")
    finally:
        done.set()
        t.join(DEADLINE)
    assert double(3) == 6  # the parent's locks were released by their thread
    cache.close()


@needs_fork
def test_a_child_forked_while_another_thread_builds_the_default_cache_works(monkeypatch):
    # get_cache() holds the default cache's lock while it builds the cache; a child forked
    # meanwhile must not wait for a thread that does not exist in it.
    from tieredcache import _decorators

    monkeypatch.delenv("REDIS_URL", raising=False)
    held, done = threading.Event(), threading.Event()

    def builder() -> None:
        with _decorators._default_lock:  # as inside get_cache()
            held.set()
            done.wait(DEADLINE)

    t = threading.Thread(target=builder)
    t.start()
    try:
        assert held.wait(DEADLINE)

        def child() -> str:
            import tieredcache

            @tieredcache.cached()
            def triple(n: int) -> int:
                return 3 * n

            assert triple(2) == 6 and triple(2) == 6
            tieredcache.get_cache().close()
            return "ok"

        pid, r = fork_child(child)
        status = reap(pid)
        with os.fdopen(r, "rb") as f:
            assert (status, f.read().decode(errors="replace")) == (0, "ok")
    finally:
        done.set()
        t.join(DEADLINE)


# ---- several event loops ----------------------------------------------------------------------

def test_sequential_asyncio_run_loops_share_the_cache_without_keeping_ended_loops_connections(own_redis):
    server, raw = own_redis
    cache = TieredCache(redis_url=server.url, namespace="loops")
    loads: list[str] = []

    @cache.cached(tags=["f:{n}"])
    async def fetch(n: int) -> list:
        loads.append(f"fetch({n})")
        await asyncio.sleep(0)
        return [n, "fetched"]

    def load_for(key: str) -> Callable[[], Any]:
        async def load() -> str:
            loads.append(key)
            return key.upper()
        return load

    async def main(i: int) -> None:
        await cache.aset(f"k{i}", i, tags=["all"])
        assert await cache.aget(f"k{i}") == i
        if i:
            assert await cache.aget(f"k{i - 1}") == i - 1  # written by the previous loop
        got = await asyncio.gather(*[cache.aget_or_set(f"g{i % 3}", load_for(f"g{i % 3}")) for _ in range(10)])
        assert got == [f"G{i % 3}"] * 10
        assert await asyncio.gather(*[fetch(i % 2) for _ in range(5)]) == [[i % 2, "fetched"]] * 5
        assert cache.get(f"k{i}") == i  # the sync API from a loop: allowed (L1 hit here)

    counts = []
    for i in range(6):
        asyncio.run(main(i))
        gc.collect()
        counts.append(len(tieredcache_clients(raw)))
    # every key loaded once, whichever loop asked first
    assert sorted(loads) == sorted(["g0", "g1", "g2", "fetch(0)", "fetch(1)"])
    # one listener, the sync pool, and the async client of the latest loop at most: the
    # connections of ended loops are closed when the next loop opens its own
    assert counts[1:] == [counts[0]] * 5, counts
    cache.close()
    assert wait_until(lambda: not tieredcache_clients(raw))


def test_two_threads_each_with_its_own_loop_share_the_cache(own_redis):
    server, raw = own_redis
    cache = TieredCache(redis_url=server.url, namespace="loops2")
    base = len(tieredcache_clients(raw))
    loads: dict[str, int] = {}
    lock = threading.Lock()
    start = threading.Barrier(2)
    clients = []

    async def load_one(key: str) -> str:
        with lock:
            loads[key] = loads.get(key, 0) + 1
        await asyncio.sleep(0.001)
        return f"v:{key}"

    async def main(t: int) -> None:
        start.wait(DEADLINE)
        for i in range(40):
            await cache.aset(f"t{t}:{i}", [t, i])
            assert await cache.aget(f"t{t}:{i}") == [t, i]
            key = f"shared:{i}"
            got = await asyncio.gather(*[cache.aget_or_set(key, lambda k=key: load_one(k)) for _ in range(3)])
            assert got == [f"v:{key}"] * 3
        clients.append(cache._core.aclient())

    def thread_main(t: int) -> None:
        asyncio.run(asyncio.wait_for(main(t), DEADLINE))

    def both() -> None:
        threads = [threading.Thread(target=thread_main, args=(t,)) for t in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    bounded(both)
    assert len(clients) == 2 and clients[0] is not clients[1]  # one async client per loop
    assert clients[0].loop is not clients[1].loop
    assert loads == {f"shared:{i}": 1 for i in range(40)}  # one load per key across both loops
    # both loops have ended: the next loop's first call closes their connections
    asyncio.run(cache.aget("absent"))  # a miss: goes to Redis on this new loop
    assert wait_until(lambda: len(tieredcache_clients(raw)) <= base + 1), tieredcache_clients(raw)
    cache.close()


# ---- misuse: a clear error, not a hang --------------------------------------------------------

@pytest.fixture(params=["l1", "redis"])
def any_cache(request):
    url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    cache = TieredCache(redis_url=url, namespace="misuse")
    yield cache
    cache.close()


def test_a_loader_asking_for_its_own_key_raises_instead_of_waiting_for_itself(any_cache):
    cache = any_cache
    with pytest.raises(RuntimeError, match="inside the loader of that same key"):
        bounded(lambda: cache.get_or_set("k", lambda: cache.get_or_set("k", lambda: 1)))
    assert cache.get("k") is None
    # another key from inside a loader is fine
    assert bounded(lambda: cache.get_or_set("a", lambda: cache.get_or_set("b", lambda: 2))) == 2


def test_an_async_loader_asking_for_its_own_key_raises(any_cache):
    cache = any_cache

    async def loader() -> int:
        return await cache.aget_or_set("k", lambda: 1)

    async def via_task() -> int:  # a task created by the loader inherits its context
        return await asyncio.create_task(cache.aget_or_set("k2", lambda: 1))

    for key, fn in (("k", loader), ("k2", via_task)):
        with pytest.raises(RuntimeError, match="inside the loader of that same key"):
            bounded(lambda: asyncio.run(cache.aget_or_set(key, fn)))
    # a sync loader of aget_or_set runs in a worker thread: same answer there
    with pytest.raises(RuntimeError, match="inside the loader of that same key"):
        bounded(lambda: asyncio.run(cache.aget_or_set("k3", lambda: cache.get_or_set("k3", lambda: 1))))
    assert bounded(lambda: asyncio.run(cache.aget_or_set("k", lambda: 5))) == 5  # nothing left behind


def test_a_cached_function_calling_itself_with_the_same_arguments_raises(any_cache):
    cache = any_cache

    @cache.cached()
    def looping(n: int) -> int:
        return looping(n) if n else looping(n + 1)

    with pytest.raises(RuntimeError, match="must not ask the cache for its own key"):
        bounded(lambda: looping(1))
    with pytest.raises(RuntimeError):
        bounded(lambda: looping(0))  # looping(1) inside looping(0): the inner one raises


def test_sync_get_or_set_on_the_loop_thread_while_a_task_of_that_loop_loads_the_key_raises(any_cache):
    cache = any_cache

    async def main() -> tuple:
        started = asyncio.Event()

        async def slow() -> str:
            started.set()
            await asyncio.sleep(0.01)
            return "async"

        task = asyncio.create_task(cache.aget_or_set("k", slow))
        await started.wait()
        with pytest.raises(RuntimeError, match="aget_or_set"):
            cache.get_or_set("k", lambda: "sync")  # would block the loop the task needs
        return await task, cache.get_or_set("k", lambda: "sync")  # loaded: an L1 hit

    assert bounded(lambda: asyncio.run(main())) == ("async", "async")


def test_sync_get_or_set_on_a_loop_thread_may_wait_for_a_load_in_another_thread(any_cache):
    # Not misuse: the other thread's load finishes without this loop.
    cache = any_cache
    loading, release = threading.Event(), threading.Event()

    def slow() -> str:
        loading.set()
        release.wait(DEADLINE)
        return "thread"

    other = threading.Thread(target=lambda: cache.get_or_set("k", slow))
    other.start()
    assert loading.wait(DEADLINE)

    async def main() -> str:
        threading.Timer(0.05, release.set).start()
        return cache.get_or_set("k", lambda: "loop")

    assert bounded(lambda: asyncio.run(main())) == "thread"
    other.join(DEADLINE)


def test_a_closed_cache_opens_no_connection_from_async_code(own_redis):
    server, raw = own_redis
    cache = TieredCache(redis_url=server.url, namespace="closed", on_error="raise")
    asyncio.run(cache.aset("k", 1))
    cache.close()
    assert wait_until(lambda: not tieredcache_clients(raw))
    with pytest.raises(BackendUnavailable, match="closed"):
        asyncio.run(cache.aget("other"))
    with pytest.raises(BackendUnavailable, match="closed"):
        cache.get("other")
    assert not tieredcache_clients(raw)
    quiet = TieredCache(redis_url=server.url, namespace="closed")  # on_error="ignore"
    quiet.close()
    assert asyncio.run(quiet.aget("other", "default")) == "default"
    assert wait_until(lambda: not tieredcache_clients(raw))  # its listener's goes; none comes

"""AsyncRedisClient: the asyncio Redis client of the L2 tier, against a private redis-server.

Each test drives its own event loop (``asyncio.run`` or an explicit loop) and closes its
clients in that loop.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import ssl
import subprocess
import threading
import time

import pytest

from tieredcache._aioredis import AsyncRedisClient, AsyncScript
from tieredcache._errors import (
    BackendResponseError,
    BackendTimeout,
    BackendUnavailable,
    ConfigurationError,
    PoolTimeout,
)
from tieredcache._redis import RedisClient, RedisURL
from tieredcache._redis_server import RedisServer


def run(coro):
    return asyncio.run(coro)


async def wait_until(predicate, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.002)


def blocked_clients(url: str) -> int:
    with RedisClient(url, socket_timeout=5) as admin:
        info = admin.execute("INFO", "clients").decode()
    return int(info.split("blocked_clients:")[1].split()[0])


async def blocked(url: str, n: int) -> None:
    async def check() -> bool:
        return blocked_clients(url) == n

    await wait_until(check, what=f"{n} blocked client(s)")


# --------------------------------------------------------------------------------------
# Construction
# --------------------------------------------------------------------------------------


def test_constructor_does_no_io_and_validates():
    c = AsyncRedisClient("redis://127.0.0.1:1/0")
    assert c.loop is None and c.stats()["connections"] == 0
    assert isinstance(c.url, RedisURL)
    with pytest.raises(ConfigurationError, match="max_connections"):
        AsyncRedisClient("redis://h", max_connections=0)
    with pytest.raises(ConfigurationError, match="unsupported scheme"):
        AsyncRedisClient("http://h")


def test_connect_failure_is_unavailable():
    async def main():
        c = AsyncRedisClient("redis://127.0.0.1:1/0")
        with pytest.raises(BackendUnavailable, match="cannot connect"):
            await c.execute("PING")
        assert c.stats()["connections"] == 0
        await c.aclose()

    run(main())


# --------------------------------------------------------------------------------------
# execute / pipeline / script
# --------------------------------------------------------------------------------------


def test_execute_replies_and_errors(redis_url):
    async def main():
        async with AsyncRedisClient(redis_url, socket_timeout=5) as c:
            assert await c.execute("SET", "k", "v") == b"OK"
            assert await c.execute("GET", "k") == b"v"
            assert await c.execute("GET", "missing") is None
            assert await c.execute("RPUSH", "l", b"a", 1, 2.5) == 3
            assert await c.execute("LRANGE", "l", 0, -1) == [b"a", b"1", b"2.5"]
            blob = bytes(range(256)) * 4096
            assert await c.execute("SET", b"\x00b\r\n", blob) == b"OK"
            assert await c.execute("GET", b"\x00b\r\n") == blob
            with pytest.raises(BackendResponseError, match="^WRONGTYPE"):
                await c.execute("INCR", "l")
            with pytest.raises(TypeError):
                await c.execute("SET", "k", None)
            with pytest.raises(TypeError):
                await c.execute()
            assert await c.execute("ECHO", "after") == b"after"
            assert c.stats()["connections"] == 1

    run(main())


def test_pipeline(redis_url):
    async def main():
        async with AsyncRedisClient(redis_url, socket_timeout=5) as c:
            replies = await c.pipeline([("SET", "a", 1), ("INCR", "a"), ("LPUSH", "a", "x"), ("GET", "a")])
            assert replies[:2] == [b"OK", 2]
            assert isinstance(replies[2], BackendResponseError)
            assert replies[3] == b"2"
            assert await c.pipeline([]) == []
            many = await c.pipeline([("ECHO", i) for i in range(5000)])
            assert many == [str(i).encode() for i in range(5000)]
            # 16 MB in one write: more than the socket buffer takes at once.
            big = [bytes([65 + i]) * 2_000_000 for i in range(8)]
            assert await c.pipeline([("SET", f"big{i}", v) for i, v in enumerate(big)]) == [b"OK"] * 8
            assert await c.pipeline([("GET", f"big{i}") for i in range(8)]) == big
            with pytest.raises(TypeError):
                await c.pipeline([()])

    run(main())


def test_script_falls_back_to_eval_after_a_flush(redis_url):
    async def main():
        async with AsyncRedisClient(redis_url) as c:
            script = c.script("return {KEYS[1], ARGV[1], redis.call('INCR', KEYS[1])}")
            assert isinstance(script, AsyncScript)
            assert await script(["n"], ["a"]) == [b"n", b"a", 1]
            await c.execute("SCRIPT", "FLUSH")
            assert await script(["n"], ["a"]) == [b"n", b"a", 2]
            assert await c.execute("SCRIPT", "EXISTS", script.sha) == [1]
            with pytest.raises(BackendResponseError, match="boom"):
                await c.script("return redis.error_reply('boom')")()

    run(main())


# --------------------------------------------------------------------------------------
# Connection setup
# --------------------------------------------------------------------------------------


def test_auth_select_and_client_name():
    async def main(server):
        url = f"redis://:secret@127.0.0.1:{server.port}/5"
        async with AsyncRedisClient(url, client_name="tc-async") as c:
            assert await c.execute("CLIENT", "GETNAME") == b"tc-async"
            assert " db=5 " in (await c.execute("CLIENT", "INFO")).decode()
        async with AsyncRedisClient(f"redis://:wrong@127.0.0.1:{server.port}/0") as c:
            with pytest.raises(BackendResponseError, match="WRONGPASS|invalid password"):
                await c.execute("PING")
            assert c.stats()["connections"] == 0

    with RedisServer(password="secret") as server:
        run(main(server))


def test_unix_socket():
    async def main(server):
        async with AsyncRedisClient(server.unix_url + "?db=1") as c:
            assert await c.execute("SET", "k", "v") == b"OK"
            assert " db=1 " in (await c.execute("CLIENT", "INFO")).decode()

    with RedisServer(unix_socket=True) as server:
        run(main(server))


def test_tls(tmp_path):
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not on PATH (needed to make a test certificate)")
    cert, key = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "2",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True,
    )  # fmt: skip
    try:
        server = RedisServer(tls=(cert, key, cert)).start()
    except Exception as exc:
        pytest.skip(f"redis-server cannot serve TLS: {exc}")

    async def main():
        ctx = ssl.create_default_context(cafile=cert)
        async with AsyncRedisClient(server.url, ssl_context=ctx) as c:
            assert await c.execute("SET", "k", b"x" * 100_000) == b"OK"
            assert await c.execute("GET", "k") == b"x" * 100_000
            big = [bytes([65 + i]) * 2_000_000 for i in range(4)]
            assert await c.pipeline([("SET", f"big{i}", v) for i, v in enumerate(big)]) == [b"OK"] * 4
            assert await c.pipeline([("GET", f"big{i}") for i in range(4)]) == big
            server.pause()
            try:
                with pytest.raises(BackendTimeout):
                    await c.execute("ECHO", "lost")
            finally:
                server.resume()
            assert await c.execute("ECHO", "mine") == b"mine"
        async with AsyncRedisClient(server.url) as c:
            with pytest.raises(BackendUnavailable, match="cannot connect"):
                await c.execute("PING")

    try:
        run(main())
    finally:
        server.stop()


# --------------------------------------------------------------------------------------
# Pool
# --------------------------------------------------------------------------------------


def test_pool_timeout_and_handoff(redis_url):
    async def main():
        c = AsyncRedisClient(redis_url, max_connections=1, pool_timeout=0.05, socket_timeout=30)
        holder = asyncio.create_task(c.execute("BLPOP", "q", 30))
        await blocked(redis_url, 1)
        with pytest.raises(PoolTimeout, match="no free connection"):
            await c.execute("PING")
        assert c.stats()["waiting"] == 0
        # A patient waiter gets the connection when the holder releases it.
        patient = AsyncRedisClient(redis_url, max_connections=1, pool_timeout=30, socket_timeout=30)
        h2 = asyncio.create_task(patient.execute("BLPOP", "q2", 30))
        await blocked(redis_url, 2)
        waiter = asyncio.create_task(patient.execute("ECHO", "waited"))
        await asyncio.sleep(0.01)
        assert patient.stats()["waiting"] == 1
        async with AsyncRedisClient(redis_url) as pusher:
            await pusher.execute("RPUSH", "q", "x")
            await pusher.execute("RPUSH", "q2", "y")
        assert await holder == [b"q", b"x"]
        assert await h2 == [b"q2", b"y"]
        assert await waiter == b"waited"
        assert patient.stats()["connections"] == 1
        await c.aclose()
        await patient.aclose()

    run(main())


def test_cancelled_waiter_does_not_leak_the_connection(redis_url):
    async def main():
        c = AsyncRedisClient(redis_url, max_connections=1, pool_timeout=30, socket_timeout=30)
        holder = asyncio.create_task(c.execute("BLPOP", "q", 30))
        await blocked(redis_url, 1)
        waiters = [asyncio.create_task(c.execute("ECHO", f"w{i}")) for i in range(5)]
        await asyncio.sleep(0.01)
        for w in waiters[:3]:
            w.cancel()
        async with AsyncRedisClient(redis_url) as pusher:
            await pusher.execute("RPUSH", "q", "x")
        assert await holder == [b"q", b"x"]
        for w in waiters[:3]:
            with pytest.raises(asyncio.CancelledError):
                await w
        assert [await w for w in waiters[3:]] == [b"w3", b"w4"]
        assert c.stats() == {"connections": 1, "idle": 1, "max_connections": 1, "waiting": 0}
        await c.aclose()

    run(main())


def test_many_tasks_share_a_bounded_pool(redis_url):
    async def main():
        c = AsyncRedisClient(redis_url, max_connections=5, pool_timeout=10, socket_timeout=10)
        tokens = [f"t{i}".encode() for i in range(2000)]
        replies = await asyncio.gather(*[c.execute("ECHO", t) for t in tokens])
        assert replies == tokens
        assert c.stats()["connections"] == 5
        await c.aclose()

    run(main())


# --------------------------------------------------------------------------------------
# Timeouts, failures, restarts
# --------------------------------------------------------------------------------------


def test_timeout_discards_the_connection(fresh_redis_server):
    async def main():
        c = AsyncRedisClient(fresh_redis_server.url, socket_timeout=0.1)
        assert await c.execute("ECHO", "warm") == b"warm"
        fresh_redis_server.pause()
        try:
            with pytest.raises(BackendTimeout, match="connection discarded"):
                await c.execute("ECHO", "first")
            with pytest.raises(BackendTimeout):
                await c.pipeline([("ECHO", "second")])
            assert c.stats()["connections"] == 0
        finally:
            fresh_redis_server.resume()
        assert await c.execute("ECHO", "third") == b"third"
        await c.aclose()

    run(main())


def test_server_restart_next_call_reconnects(fresh_redis_server):
    async def main():
        c = AsyncRedisClient(fresh_redis_server.url, socket_timeout=2)
        assert await asyncio.gather(*[c.execute("ECHO", i) for i in range(3)]) == [b"0", b"1", b"2"]
        assert c.stats()["connections"] == 3
        fresh_redis_server.restart()  # blocks the loop: it has not seen the EOFs yet
        assert await c.execute("ECHO", "after") == b"after"
        assert c.stats()["connections"] == 1
        fresh_redis_server.restart()
        await asyncio.sleep(0.05)  # now the loop sees the EOFs of the idle connections
        assert await c.pipeline([("ECHO", "again")]) == [b"again"]
        await c.aclose()

    run(main())


def test_connection_killed_by_the_server_is_replaced(redis_url):
    async def main():
        async with AsyncRedisClient(redis_url) as c:
            own = await c.execute("CLIENT", "ID")
            async with AsyncRedisClient(redis_url) as admin:
                assert await admin.execute("CLIENT", "KILL", "ID", own) == 1
            assert await c.execute("ECHO", "x") == b"x"
            assert await c.execute("CLIENT", "ID") != own

    run(main())


def test_server_down_raises_unavailable(fresh_redis_server):
    async def main():
        c = AsyncRedisClient(fresh_redis_server.url)
        assert await c.execute("PING") == b"PONG"
        fresh_redis_server.kill()
        with pytest.raises(BackendUnavailable):
            await c.execute("PING")
        fresh_redis_server.restart()
        assert await c.execute("PING") == b"PONG"
        await c.aclose()

    run(main())


# --------------------------------------------------------------------------------------
# Wrong-reply safety: cancellations and timeouts at random points
# --------------------------------------------------------------------------------------


def test_cancellations_and_timeouts_never_deliver_a_reply_to_the_wrong_request(redis_url):
    """3000 requests from 4 concurrent workers, cancelled at random points (before the
    write, while waiting, as the reply arrives) or timing out while a staller keeps
    pausing the server with DEBUG SLEEP: every reply that arrives is the request's own."""

    async def main():
        rng = random.Random(4321)
        c = AsyncRedisClient(redis_url, socket_timeout=0.003, max_connections=4, pool_timeout=5)
        setup = AsyncRedisClient(redis_url, socket_timeout=5)
        await setup.pipeline([("SET", f"key:{i}", f"key:{i}") for i in range(100)])
        stop = asyncio.Event()
        counts = {"ok": 0, "cancelled": 0, "timeout": 0}

        async def staller():
            while not stop.is_set():
                await setup.execute("DEBUG", "SLEEP", "0.01")
                await asyncio.sleep(rng.uniform(0.0, 0.03))

        async def request(i: int) -> None:
            kind = i % 3
            if kind == 0:
                key = f"key:{rng.randrange(100)}".encode()
                assert await c.execute("GET", key) == key
            elif kind == 1:
                token = f"token:{i}".encode()
                assert await c.execute("ECHO", token) == token
            else:
                a, b = f"p:{i}:a".encode(), f"p:{i}:b".encode()
                assert await c.pipeline([("ECHO", a), ("ECHO", b)]) == [a, b]

        async def worker(w: int) -> None:
            loop = asyncio.get_running_loop()
            for n in range(750):
                i = w * 1000 + n
                task = asyncio.create_task(request(i))
                mode = rng.random()
                if mode < 0.35:
                    for _ in range(rng.randrange(5)):
                        await asyncio.sleep(0)
                    task.cancel()
                elif mode < 0.7:
                    loop.call_later(rng.uniform(0.0, 0.0004), task.cancel)
                try:
                    await task
                    counts["ok"] += 1
                except asyncio.CancelledError:
                    counts["cancelled"] += 1
                except BackendTimeout:
                    counts["timeout"] += 1

        stall = asyncio.create_task(staller())
        try:
            await asyncio.gather(*[worker(w) for w in range(4)])
        finally:
            stop.set()
            await stall
        assert counts["ok"] > 0 and counts["cancelled"] > 0 and counts["timeout"] > 0, counts
        assert c.stats()["connections"] <= 4
        # The pool still works at full size.
        assert await asyncio.gather(*[c.execute("ECHO", f"end{i}") for i in range(20)]) == [
            f"end{i}".encode() for i in range(20)
        ]
        await c.aclose()
        await setup.aclose()

    run(main())


def test_cancel_while_connecting_releases_the_slot(redis_url):
    async def main():
        c = AsyncRedisClient(redis_url, max_connections=1, pool_timeout=1)
        for i in range(200):
            task = asyncio.create_task(c.execute("ECHO", i))
            for _ in range(i % 4):
                await asyncio.sleep(0)
            task.cancel()
            try:
                assert await task == str(i).encode()
            except asyncio.CancelledError:
                pass
            assert c.stats()["connections"] <= 1
        assert await c.execute("ECHO", "works") == b"works"
        await c.aclose()

    run(main())


# --------------------------------------------------------------------------------------
# Loops
# --------------------------------------------------------------------------------------


def test_each_loop_with_its_own_client(redis_url):
    async def use(tag: str) -> None:
        async with AsyncRedisClient(redis_url) as c:
            for i in range(50):
                assert await c.execute("ECHO", f"{tag}{i}") == f"{tag}{i}".encode()

    run(use("first"))
    run(use("second"))
    errors: list = []

    def thread(tag):
        try:
            run(use(tag))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=thread, args=(f"t{n}",)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []


def test_one_client_from_two_loops_raises(redis_url):
    c = AsyncRedisClient(redis_url)
    loop1 = asyncio.new_event_loop()
    try:
        assert loop1.run_until_complete(c.execute("ECHO", "one")) == b"one"
        assert c.loop is loop1

        async def from_another_loop():
            with pytest.raises(RuntimeError, match="bound to the event loop"):
                await c.execute("PING")
            with pytest.raises(RuntimeError, match="one AsyncRedisClient per event loop"):
                await c.pipeline([("PING",)])
            with pytest.raises(RuntimeError):
                await c.script("return 1")()

        run(from_another_loop())
        # Nothing was touched: the client still works in its own loop.
        assert loop1.run_until_complete(c.execute("ECHO", "still")) == b"still"
        assert c.stats()["connections"] == 1
        loop1.run_until_complete(c.aclose())
    finally:
        loop1.close()


def test_use_outside_a_loop_raises():
    c = AsyncRedisClient("redis://127.0.0.1:1/0")
    coro = c.execute("PING")
    with pytest.raises(RuntimeError):
        coro.send(None)
    coro.close()


# --------------------------------------------------------------------------------------
# close, fork
# --------------------------------------------------------------------------------------


def client_ids(url: str, name: str) -> list[str]:
    with RedisClient(url) as admin:
        lines = admin.execute("CLIENT", "LIST").decode().splitlines()
    return [ln.split()[0] for ln in lines if f" name={name} " in f" {ln} "]


def test_close_after_the_loop_ended_closes_the_connections(redis_url):
    clients = [AsyncRedisClient(redis_url, client_name="ended-loop") for _ in range(3)]

    async def use(c):
        assert await asyncio.gather(*[c.execute("ECHO", i) for i in range(3)]) == [b"0", b"1", b"2"]

    for c in clients:
        asyncio.run(use(c))  # each loop ends with its connections open
    assert len(client_ids(redis_url, "ended-loop")) == 9
    for c in clients:
        c.close()
        c.close()
    assert client_ids(redis_url, "ended-loop") == []
    # aclose() of a client of an ended loop, awaited in another loop, does the same.
    c = AsyncRedisClient(redis_url, client_name="ended-loop")
    asyncio.run(use(c))
    assert len(client_ids(redis_url, "ended-loop")) == 3
    asyncio.run(c.aclose())
    assert client_ids(redis_url, "ended-loop") == []


def test_close_from_another_thread_while_the_loop_runs(redis_url):
    c = AsyncRedisClient(redis_url, client_name="threaded")
    ready = threading.Event()
    done = threading.Event()
    outcome: list = []

    async def main():
        await c.execute("PING")
        ready.set()
        while not done.is_set():
            await asyncio.sleep(0.005)
        try:
            await c.execute("PING")
        except BackendUnavailable as exc:
            outcome.append(exc)

    t = threading.Thread(target=lambda: asyncio.run(main()))
    t.start()
    assert ready.wait(10)
    c.close()  # scheduled in the loop's thread

    def closed() -> bool:
        return client_ids(redis_url, "threaded") == []

    deadline = time.monotonic() + 10
    while not closed() and time.monotonic() < deadline:
        time.sleep(0.005)
    done.set()
    t.join(10)
    assert closed()
    assert len(outcome) == 1 and "client closed" in str(outcome[0])


def test_aclose_fails_waiters_and_later_calls(redis_url):
    async def main():
        c = AsyncRedisClient(redis_url, max_connections=1, pool_timeout=30, socket_timeout=30)
        holder = asyncio.create_task(c.execute("BLPOP", "q", 30))
        await blocked(redis_url, 1)
        waiter = asyncio.create_task(c.execute("PING"))
        await asyncio.sleep(0.01)
        await c.aclose()
        with pytest.raises(BackendUnavailable, match="client closed"):
            await waiter
        with pytest.raises(BackendUnavailable, match="client closed"):
            await c.execute("PING")
        async with AsyncRedisClient(redis_url) as pusher:
            await pusher.execute("RPUSH", "q", "x")
        assert await holder == [b"q", b"x"]  # a request under way completes...
        await asyncio.sleep(0.01)
        assert c.stats()["idle"] == 0  # ...and its connection is closed, not pooled
        await c.aclose()  # idempotent

    run(main())


def test_fork_child_binds_to_its_own_loop(redis_url):
    c = AsyncRedisClient(redis_url)
    loop = asyncio.new_event_loop()
    try:
        parent_id = loop.run_until_complete(c.execute("CLIENT", "ID"))

        pid = os.fork()
        if pid == 0:
            code = 1
            try:

                async def child():
                    assert c.loop is None and c.stats()["connections"] == 0
                    assert await c.execute("CLIENT", "ID") != parent_id
                    for i in range(100):
                        assert await c.execute("ECHO", f"child{i}") == f"child{i}".encode()
                    await c.aclose()

                asyncio.run(child())
                code = 0
            except BaseException:  # noqa: BLE001
                import traceback

                traceback.print_exc()
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        # The parent's connection was neither used nor shut down by the child.
        assert loop.run_until_complete(c.execute("CLIENT", "ID")) == parent_id
        assert loop.run_until_complete(c.execute("ECHO", "parent")) == b"parent"
        loop.run_until_complete(c.aclose())
    finally:
        loop.close()

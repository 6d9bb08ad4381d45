"""Helpers for the TieredCache tests: an independent view of Redis, other processes, waits.

- ``RawRedis`` speaks RESP on a plain socket (parsed by hiredis), so what the tests see in
  Redis never depends on the client under test.
- ``Peer`` is another process (``multiprocessing`` "spawn": a clean interpreter, no
  inherited threads or sockets) that opens its own ``TieredCache`` objects and runs
  commands sent over a pipe. ``peers`` is a module-scoped pool of them.
- ``wait_until`` polls a condition for a bounded time and returns whether it became
  true: tests assert on *what* eventually holds, never on how fast.
- ``travel`` moves time forward for both tiers: the LocalCache clock (``advance_clock``)
  and the remaining TTL of every key in Redis (lowered with ``PEXPIRE``, deleted when it
  runs out, as Redis's own expiry would).
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import threading
import time
import traceback
import urllib.parse
from pathlib import Path
from typing import Any, Callable

import hiredis
import pytest

from tieredcache.testing import advance_clock

try:
    from tieredcache import TieredCache
except ImportError:  # not exported yet
    from tieredcache._tiered import TieredCache

try:
    from tieredcache import (
        BackendError,
        BackendResponseError,
        BackendTimeout,
        BackendUnavailable,
        CacheError,
        CircuitOpenError,
        ConfigurationError,
        PoolTimeout,
        SerializationError,
        SignatureError,
    )
except ImportError:  # not exported yet
    from tieredcache._errors import (  # noqa: F401
        BackendError,
        BackendResponseError,
        BackendTimeout,
        BackendUnavailable,
        CacheError,
        CircuitOpenError,
        ConfigurationError,
        PoolTimeout,
        SerializationError,
        SignatureError,
    )

__all__ = [
    "BackendError", "BackendResponseError", "BackendTimeout", "BackendUnavailable",
    "CacheError", "CircuitOpenError", "ConfigurationError", "Peer", "PeerError", "PoolTimeout",
    "Caches", "RawRedis", "SerializationError", "SignatureError", "TieredCache", "line_count",
    "peers", "subscribers", "rawr", "redis_caches", "travel", "wait_until",
]

WAIT = 5.0        # seconds: the bound on "eventually" (invalidations arrive in milliseconds)
PEER_REPLY = 30.0  # seconds: a peer that has not answered by then is hung


def wait_until(condition: Callable[[], Any], timeout: float = WAIT, interval: float = 0.01) -> bool:
    """Poll condition() until it is true or timeout seconds pass; return its last truth."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return bool(condition())
        time.sleep(interval)


def line_count(path: Path) -> int:
    """Lines in a file that loaders in several processes append to (0 if absent)."""
    try:
        return len(path.read_text().splitlines())
    except FileNotFoundError:
        return 0


# ---- an independent Redis client ----------------------------------------------------------


class RawRedis:
    """A minimal blocking RESP client on one socket; error replies raise ``hiredis.ReplyError``."""

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        parts = urllib.parse.urlsplit(url)
        query = urllib.parse.parse_qs(parts.query)
        if parts.scheme == "unix":
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(parts.path)
            db = query.get("db", ["0"])[0]
        else:
            self.sock = socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379),
                                                 timeout=timeout)
            db = parts.path.strip("/") or query.get("db", ["0"])[0]
        self.reader = hiredis.Reader()
        if parts.password:
            self.execute("AUTH", *([parts.username] if parts.username else []), parts.password)
        if db and db != "0":
            self.execute("SELECT", db)

    def execute(self, *args: Any) -> Any:
        self.sock.sendall(hiredis.pack_command(tuple(args)))
        while (reply := self.reader.gets()) is False:
            data = self.sock.recv(1 << 16)
            if not data:
                raise ConnectionError("Redis closed the connection")
            self.reader.feed(data)
        if isinstance(reply, hiredis.ReplyError):
            raise reply
        return reply

    def keys(self, pattern: str = "*") -> set[bytes]:
        found, cursor = set(), b"0"
        while True:
            cursor, batch = self.execute("SCAN", cursor, "MATCH", pattern, "COUNT", 1000)
            found.update(batch)
            if cursor == b"0":
                return found

    def exists(self, key: str | bytes) -> bool:
        return self.execute("EXISTS", key) == 1

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawRedis:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def subscribers(raw: RawRedis, namespace: str) -> int:
    """How many connections listen on the namespace's invalidation channel, tc:{top}:inv
    (top: the namespace up to its first "/", whose channel its sub-namespaces share)."""
    escaped = namespace.split("/", 1)[0].replace("%", "%25").replace(":", "%3A")
    _, count = raw.execute("PUBSUB", "NUMSUB", f"tc:{escaped}:inv")
    return count


def travel(seconds: float, raw: RawRedis | None = None) -> None:
    """Move time forward by seconds for L1 (every LocalCache here) and, given raw, for Redis.

    Redis's clock cannot be moved, so every key's remaining TTL is lowered instead; a key
    whose TTL runs out is deleted, exactly as Redis would expire it (no message published).
    """
    advance_clock(seconds)
    if raw is None:
        return
    for key in raw.keys("*"):
        left = raw.execute("PTTL", key)
        if left < 0:
            continue  # no expiry (-1) or gone meanwhile (-2)
        left -= int(seconds * 1000)
        if left <= 0:
            raw.execute("DEL", key)
        else:
            raw.execute("PEXPIRE", key, left)


# ---- caches made by a test, closed after it -----------------------------------------------


class Caches:
    """Makes TieredCaches with shared defaults and closes them all at the end of the test.

    With Redis, each instance has its own L1: a second one stands for another process of
    the same application (same Redis, same namespace). A new Redis-backed cache is handed
    over once it listens for invalidations (``stats()["l2"]["connected"]``): until then
    it may miss messages, so it keeps L1 entries briefly and flushes L1 when it subscribes,
    which would make "only L1 can serve this now" steps of a test depend on timing.
    """

    def __init__(self, **defaults: Any) -> None:
        self.defaults = defaults
        self.made: list[Any] = []

    def __call__(self, **kwargs: Any) -> Any:
        kwargs = {**self.defaults, **kwargs}
        cache = TieredCache(**kwargs)
        self.made.append(cache)
        if kwargs.get("redis_url") is not None:
            wait_until(lambda: cache.stats()["l2"]["connected"])
        return cache

    def close(self) -> None:
        """Close them all at once: each close waits a moment for its listener thread."""
        closing = [threading.Thread(target=cache.close) for cache in self.made]
        self.made.clear()
        for thread in closing:
            thread.start()
        for thread in closing:
            thread.join(10)


@pytest.fixture
def redis_caches(redis_url: str):
    """``redis_caches(**kwargs)``: a TieredCache on the test's Redis, namespace "test"."""
    caches = Caches(redis_url=redis_url, namespace="test")
    yield caches
    caches.close()


@pytest.fixture
def rawr(redis_url: str):
    """A RawRedis on the test's (flushed) Redis database."""
    with RawRedis(redis_url) as client:
        yield client


# ---- other processes ----------------------------------------------------------------------


class PeerError(Exception):
    """A command raised in the peer; type_name is the exception's class name there."""

    def __init__(self, type_name: str, message: str, trace: str) -> None:
        super().__init__(f"{type_name}: {message}\n--- in the peer ---\n{trace}")
        self.type_name = type_name


def _peer_main(conn: Any) -> None:
    """The peer's loop: run each (command, args, kwargs) received, send back its outcome."""
    caches: dict[str, Any] = {}
    views: set[str] = set()  # share their root's connections: closed with it

    def open_cache(name: str, **kwargs: Any) -> None:
        caches[name] = TieredCache(**kwargs)

    def view(name: str, parent: str, sub: str) -> None:
        caches[name] = caches[parent].namespace(sub)
        views.add(name)

    def call(name: str, method: str, *args: Any, **kwargs: Any) -> Any:
        return getattr(caches[name], method)(*args, **kwargs)

    def load(name: str, key: str, value: Any, counter: str, release: str | None = None,
             **kwargs: Any) -> Any:
        """get_or_set whose loader appends a line to counter, then waits for release to exist."""
        def loader() -> Any:
            with open(counter, "a") as f:
                f.write(f"{os.getpid()}\n")
            if release is not None:
                deadline = time.monotonic() + PEER_REPLY
                while not os.path.exists(release) and time.monotonic() < deadline:
                    time.sleep(0.005)
            return value
        return caches[name].get_or_set(key, loader, **kwargs)

    def close_all() -> None:
        closing = [threading.Thread(target=cache.close) for name, cache in caches.items()
                   if name not in views]
        for thread in closing:
            thread.start()
        for thread in closing:
            thread.join(10)
        caches.clear()
        views.clear()

    commands = {"open": open_cache, "call": call, "load": load, "close_all": close_all,
                "pid": os.getpid, "view": view}
    while True:
        try:
            command, args, kwargs = conn.recv()
        except EOFError:
            return
        if command == "exit":
            close_all()
            conn.send(("ok", None))
            return
        try:
            conn.send(("ok", commands[command](*args, **kwargs)))
        except BaseException as exc:  # report everything, keep serving
            conn.send(("err", type(exc).__name__, str(exc), traceback.format_exc()[-3000:]))


class Peer:
    """Another process holding TieredCache objects by name; every reply is awaited boundedly."""

    def __init__(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child_conn = ctx.Pipe()
        self.process = ctx.Process(target=_peer_main, args=(child_conn,), daemon=True)
        self.process.start()
        child_conn.close()
        self.pending = False

    def start(self, command: str, *args: Any, **kwargs: Any) -> None:
        """Send a command without waiting for its reply (collect it with result())."""
        assert not self.pending, "a peer runs one command at a time"
        self.conn.send((command, args, kwargs))
        self.pending = True

    def result(self, timeout: float = PEER_REPLY) -> Any:
        if not self.conn.poll(timeout):
            raise TimeoutError(f"peer {self.process.pid} did not answer within {timeout} s")
        self.pending = False
        status, *rest = self.conn.recv()
        if status == "err":
            raise PeerError(*rest)
        return rest[0]

    def done(self) -> bool:
        return self.conn.poll(0)

    def __call__(self, command: str, *args: Any, **kwargs: Any) -> Any:
        self.start(command, *args, **kwargs)
        return self.result()

    def open(self, name: str, **kwargs: Any) -> None:
        self("open", name, **kwargs)

    def cache(self, name: str, method: str, *args: Any, **kwargs: Any) -> Any:
        return self("call", name, method, *args, **kwargs)

    def reset(self) -> None:
        """Close every cache the peer holds (a command still running is waited for first)."""
        if self.pending:
            try:
                self.result()
            except PeerError:
                pass
        self("close_all")

    def stop(self) -> None:
        try:
            if self.process.is_alive():
                if self.pending:
                    self.result(5.0)
                self.start("exit")
                self.result(5.0)
        except (TimeoutError, PeerError, OSError, EOFError):
            pass
        self.process.join(5.0)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()


class PeerPool:
    """Peer processes started on first use and reused by the tests of one module."""

    def __init__(self) -> None:
        self.started: list[Peer] = []

    def __getitem__(self, index: int) -> Peer:
        while len(self.started) <= index:
            self.started.append(Peer())
        return self.started[index]

    def reset(self) -> None:
        for peer in self.started:
            peer.reset()

    def stop(self) -> None:
        for peer in self.started:
            peer.stop()


@pytest.fixture(scope="module")
def _peer_pool():
    pool = PeerPool()
    yield pool
    pool.stop()


@pytest.fixture
def peers(_peer_pool: PeerPool):
    """Other processes: ``peers[0]``, ``peers[1]``...; their caches are closed after each test."""
    yield _peer_pool
    _peer_pool.reset()

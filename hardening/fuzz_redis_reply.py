"""Fuzz target (d): the Redis reply path fed fragmented and malformed replies.

The input chooses a client path, how the reply bytes are cut into ``recv`` fragments
(1 byte, a few bytes, fuzz-chosen cut points, or everything at once), how the stream
ends (EOF, a timeout, a reset, or nothing more to read) and the bytes themselves. A fake
socket delivers exactly those fragments; no network is involved and a socket that has
nothing left ends every read, so no input can block:

- ``RedisClient.execute`` (one reply; an error reply raises ``BackendResponseError``);
- ``RedisClient.pipeline`` (1..4 replies in one list);
- ``PubSub.get_message`` (messages, subscribe confirmations, error replies);
- the asyncio client's connection (``_aioredis._AConn._on_readable``), one fragment per
  readable callback, for one reply or a pipeline, its outcome mapped as the client does.

A stale connection (EOF before any reply byte) is retried by the client on a new
connection, which here is another fake socket with nothing to read.

Pass: only the module's documented exceptions escape (``BackendUnavailable`` for a lost
or garbled connection, ``BackendTimeout``, ``BackendResponseError`` for an error reply);
a failed request leaves no connection in the pool and a successful one puts it back;
a pipeline returns exactly as many replies as commands; ``get_message`` returns
``None`` or a ``(bytes, bytes)`` pair. No hang, no crash, no sanitizer report.
"""

from __future__ import annotations

import asyncio
import collections

from fuzz_common import Bytes
from tieredcache._aioredis import _AConn
from tieredcache._errors import BackendError, BackendResponseError, BackendTimeout, BackendUnavailable
from tieredcache._redis import RedisClient, _Conn

ALLOWED = (BackendUnavailable, BackendTimeout, BackendResponseError)
# How a stream ends once its fragments are used up.
ENDINGS = ["eof", "eof", "timeout", "reset", "idle"]

_client = RedisClient("redis://127.0.0.1:9/0", socket_timeout=0.01, connect_timeout=0.01, pool_timeout=0.0)


class FakeSocket:
    """Delivers ``chunks`` to ``recv_into`` one at a time, then ``ending``."""

    def __init__(self, chunks: list[bytes], ending: str) -> None:
        self.chunks = collections.deque(chunks)
        self.ending = ending
        self.closed = False

    def sendall(self, data: bytes) -> None:
        if self.closed:
            raise OSError(9, "closed")

    def send(self, data: bytes) -> int:
        self.sendall(data)
        return len(data)

    def recv_into(self, buf) -> int:
        if self.closed:
            raise OSError(9, "closed")
        if self.chunks:
            chunk = self.chunks.popleft()
            if len(chunk) > len(buf):
                self.chunks.appendleft(chunk[len(buf):])
                chunk = chunk[:len(buf)]
            buf[:len(chunk)] = chunk
            return len(chunk)
        if self.ending == "eof":
            return 0
        if self.ending == "timeout":
            raise TimeoutError("timed out")
        if self.ending == "reset":
            raise ConnectionResetError(104, "reset by peer")
        raise BlockingIOError(11, "would block")

    def settimeout(self, timeout) -> None:
        pass

    def shutdown(self, how) -> None:
        pass

    def fileno(self) -> int:
        return -1 if self.closed else 1000

    def close(self) -> None:
        self.closed = True


class FakeLoop:
    """What ``_AConn`` asks of its loop, without a selector."""

    def add_reader(self, fd, cb) -> None:
        pass

    def remove_reader(self, fd) -> None:
        pass

    def add_writer(self, fd, cb) -> None:
        pass

    def remove_writer(self, fd) -> None:
        pass

    def is_closed(self) -> bool:
        return False


def _fragments(src: Bytes, payload: bytes) -> list[bytes]:
    how = src.below(4)
    if how == 0:
        return [payload] if payload else []
    if how == 1:
        return [payload[i:i + 1] for i in range(len(payload))]
    if how == 2:
        size = 1 + src.below(16)
        return [payload[i:i + size] for i in range(0, len(payload), size)]
    cuts, pos = [], 0
    while pos < len(payload):
        step = 1 + src.below(32)
        cuts.append(payload[pos:pos + step])
        pos += step
    return cuts


def _fresh_acquire() -> _Conn:
    """The retry of a stale request: a new connection that has nothing to say."""
    return _Conn(FakeSocket([], "eof"))


def _sync(src: Bytes, mode: int) -> None:
    n = 1 + src.below(4)
    ending = src.pick(ENDINGS)
    if ending == "idle":
        ending = "timeout"  # a blocking socket: nothing more to read is a timeout
    payload = src.rest()
    conn = _Conn(FakeSocket(_fragments(Bytes(payload[:1] + payload[-1:]), payload), ending))
    client = _client
    client._idle.clear()
    client._idle.append(conn)
    client._acquire = _fresh_acquire
    try:
        if mode == 0:
            reply = client.execute("GET", "k")
            assert not isinstance(reply, BackendError), reply
        else:
            replies = client.pipeline([("GET", "k")] * n)
            assert type(replies) is list and len(replies) == n, (n, replies)
    except ALLOWED as exc:
        if isinstance(exc, BackendResponseError) and mode == 0 and exc.__cause__ is None \
                and exc.__context__ is None:
            assert list(client._idle) == [conn], "an error reply must leave the connection pooled"
        else:
            assert conn not in client._idle, f"a failed request left its connection pooled: {exc!r}"
        return
    assert len(client._idle) == 1, "a request that succeeded must pool its connection"


def _pubsub(src: Bytes) -> None:
    ending = src.pick(ENDINGS)
    payload = src.rest()
    ps = _client.pubsub()
    ps._conn = _Conn(FakeSocket(_fragments(Bytes(payload[:1]), payload), ending))
    try:
        for _ in range(1 + len(payload)):  # every call reads or ends: bounded
            msg = ps.get_message(0)
            if msg is None:
                if not ps._conn or not ps._conn.sock.chunks:
                    break
                continue
            assert type(msg) is tuple and len(msg) == 2 and all(type(x) is bytes for x in msg), msg
    except ALLOWED:
        assert ps._conn is None, "a failed pubsub must drop its connection"
    finally:
        ps.close()


def _async(src: Bytes) -> None:
    n = src.below(4)  # 0: one reply, else a pipeline of n
    ending = src.pick(ENDINGS)
    payload = src.rest()
    sock = FakeSocket(_fragments(Bytes(payload[:1]), payload), ending)
    loop = asyncio.new_event_loop()  # only to make the future: it never runs
    try:
        _async_conn(sock, loop.create_future(), n)
    finally:
        loop.close()


def _async_conn(sock: FakeSocket, fut: asyncio.Future, n: int) -> None:
    conn = _AConn(sock, FakeLoop())  # type: ignore[arg-type]
    conn.waiter = fut
    if n:
        conn.replies, conn.need = [], n
    for _ in range(len(sock.chunks) + 2):  # one fragment per readable event, then the end
        conn._on_readable()
        if conn.closed:
            break
    if not fut.done():
        assert not conn.closed or fut.cancelled(), "a closed connection left its request waiting"
        fut.cancel()
        conn.close()
        return
    exc = fut.exception()
    if exc is None:
        result = fut.result()
        if n:
            assert type(result) is list and len(result) == n, (n, result)
        return
    mapped = _client._cfg.map_error(exc)
    assert isinstance(mapped, ALLOWED), f"the async client would raise {exc!r}"
    assert conn.closed and conn.lost


def one_input(data: bytes) -> None:
    src = Bytes(data)
    mode = src.below(4)
    if mode <= 1:
        _sync(src, mode)
    elif mode == 2:
        _pubsub(src)
    else:
        _async(src)

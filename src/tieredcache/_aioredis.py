"""The asyncio twin of ``_redis.RedisClient``: same URL, arguments, errors and replies.

HOW IT WORKS
------------

Each connection (``_AConn``) is a non-blocking socket this module owns, registered with
``loop.add_reader`` for as long as it lives, with its own ``hiredis.Reader`` and receive
buffer. The read callback ``recv_into``s the buffer, feeds the reader and resolves the
one pending request's future (a single reply, or a list once a pipeline's ``need``
replies are in). Requests are written with ``sock.send`` (``add_writer`` for what does
not fit in the socket buffer). TLS uses a non-blocking ``ssl.SSLSocket`` the same way.
No asyncio transport is involved, so a connection can be closed from anywhere, even
after its loop has ended, without touching that loop.

A request holds its connection exclusively from the write to the last reply; a
``call_later`` timer fails its future after ``socket_timeout``.

Invariant: a connection goes back to the pool only after every reply of its request was
read. If the request's task is cancelled at any await, or times out, or the connection
breaks, the connection is closed and dropped, so a late reply can reach no one.

Loop binding: a client binds to the running loop at its first request; a request from
any other loop raises ``RuntimeError`` before touching a connection (the sockets are
registered with one loop's selector). Keep one client per loop. Closing is allowed from
anywhere: ``aclose()`` in any loop, ``close()`` from sync code.

Pool: ``_idle`` (LIFO deque), ``_count`` (connections alive or being made, at most
``max_connections``), ``_waiters`` (FIFO of futures; a released connection, or a freed
slot as ``None``, is handed to the first live one). ``pool_timeout`` bounds a wait.
Idle connections that the server closed are noticed by the read callback and skipped;
one found closed only after the request was written is handled as in ``_redis``: a
request that got no reply byte is sent once more on a new connection.

Fork: in the child every connection's socket is closed without a byte sent and without
touching the parent's loop (whose epoll set the child shares); the client unbinds from
its loop, and the child's first request binds it to the child's loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import ssl
import weakref
from collections import deque
from typing import Any, Sequence

import hiredis

from ._errors import BackendError, BackendResponseError, BackendUnavailable, PoolTimeout
from ._redis import _BUFSIZE, _CLOSED_IDLE, RedisURL, _ClientConfig, _ClosedIdle, _EOF, _is_stale, _pack

__all__ = ["AsyncRedisClient", "AsyncScript"]

_get_running_loop = asyncio.get_running_loop
_WOULD_BLOCK = (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError)


class _AConn:
    """One connection: its socket (registered for reading with ``loop``), reader,
    receive buffer, and the pending request's future."""

    __slots__ = (
        "__weakref__", "buf", "closed", "fd", "lost", "loop", "need", "reader", "replies",
        "sock", "tls", "waiter", "wbuf",
    )  # fmt: skip

    def __init__(self, sock: socket.socket, loop: asyncio.AbstractEventLoop) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.loop = loop
        self.tls = isinstance(sock, ssl.SSLSocket)
        self.reader = hiredis.Reader(replyError=BackendResponseError)
        self.buf = bytearray(_BUFSIZE)
        self.waiter: asyncio.Future[Any] | None = None
        self.replies: list[Any] | None = None  # a pipeline's replies so far
        self.need = 0  # how many replies the pipeline expects
        self.lost = False  # the connection broke (or was closed): never reuse it
        self.closed = False
        _aconns.add(self)
        self.wbuf: Any = None  # bytes not yet written
        loop.add_reader(self.fd, self._on_readable)

    # -- I/O callbacks (run by the loop) ----------------------------------------------

    def _on_readable(self) -> None:
        sock = self.sock
        buf = self.buf
        reader = self.reader
        try:
            if self.tls:
                # Read every record available: OpenSSL may hold data the selector
                # cannot see.
                while True:
                    try:
                        n = sock.recv_into(buf)
                    except _WOULD_BLOCK:
                        break
                    if not n:
                        raise _EOF()
                    reader.feed(buf, 0, n)
            else:
                try:
                    n = sock.recv_into(buf)
                except (BlockingIOError, InterruptedError):
                    return
                if not n:
                    raise _EOF()
                reader.feed(buf, 0, n)
        except Exception as exc:  # OSError, ssl.SSLError, _EOF
            self._fail(exc)
            return
        while True:
            try:
                reply = reader.gets()
            except (hiredis.ProtocolError, MemoryError) as exc:
                # MemoryError: hiredis allocates an array reply's declared length up front
                # ("*4294967295"); raised here it would only reach the loop's handler and
                # leave the request waiting for its timeout.
                self._fail(exc)
                return
            if reply is False:
                return
            waiter = self.waiter
            if waiter is None:
                # A reply nobody asked for: the stream cannot be trusted any more.
                self._fail(hiredis.ProtocolError("unexpected reply"))
                return
            replies = self.replies
            if replies is None:
                self.waiter = None
                if not waiter.done():
                    waiter.set_result(reply)
            else:
                replies.append(reply)
                if len(replies) == self.need:
                    self.waiter = None
                    self.replies = None
                    if not waiter.done():
                        waiter.set_result(replies)

    def write(self, data: bytes) -> None:
        try:
            n = self.sock.send(data)
        except _WOULD_BLOCK:
            n = 0
        except Exception as exc:
            self._fail(exc)
            return
        if n < len(data):
            # A TLS write is all or nothing, and is retried with the same bytes.
            self.wbuf = data if self.tls else memoryview(data)[n:]
            self.loop.add_writer(self.fd, self._on_writable)

    def _on_writable(self) -> None:
        data = self.wbuf
        try:
            n = self.sock.send(data)
        except _WOULD_BLOCK:
            return
        except Exception as exc:
            self._fail(exc)
            return
        if self.tls or n == len(data):
            self.wbuf = None
            self.loop.remove_writer(self.fd)
        else:
            self.wbuf = data[n:]

    def _fail(self, exc: BaseException) -> None:
        waiter, self.waiter = self.waiter, None
        self.close()
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    # -- closing ---------------------------------------------------------------------

    def close(self) -> None:
        """Unregister from the loop (unless it is closed) and close the socket. Must run
        in the loop's thread, or when the loop is not running."""
        if self.closed:
            return
        self.closed = self.lost = True
        loop = self.loop
        if not loop.is_closed():
            loop.remove_reader(self.fd)
            if self.wbuf is not None:
                loop.remove_writer(self.fd)
        self.sock.close()

    def forget(self) -> None:
        """In a forked child: close the descriptor without touching the loop."""
        self.closed = self.lost = True
        self.sock.close()

    def __del__(self) -> None:
        # Only reached when the loop no longer holds the read callback: closed loop.
        if not getattr(self, "closed", True):
            self.sock.close()


def _expire(fut: asyncio.Future[Any]) -> None:
    if not fut.done():
        fut.set_exception(TimeoutError())


def _resolve_soon(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _ip_family(host: str) -> int | None:
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except OSError:
            continue
        return family
    return None


_aclients: weakref.WeakSet[AsyncRedisClient] = weakref.WeakSet()
# Every live connection: one whose client is gone (dropped without closing) is still held
# by its loop's read callback, and its descriptor must not stay open in a forked child.
_aconns: weakref.WeakSet[_AConn] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for client in list(_aclients):
        client._reset_after_fork()
    for conn in list(_aconns):
        if not conn.closed:
            conn.forget()


os.register_at_fork(after_in_child=_after_fork_in_child)


class AsyncRedisClient:
    """A pooled asyncio Redis client, bound to one event loop (the first that uses it).

    Same constructor arguments, replies and errors as ``RedisClient``. Safe for any
    number of tasks of its loop; not thread-safe (like asyncio itself).
    """

    def __init__(
        self,
        url: str | RedisURL,
        *,
        socket_timeout: float = 0.25,
        connect_timeout: float = 0.5,
        max_connections: int = 50,
        pool_timeout: float = 0.25,
        ssl_context: ssl.SSLContext | None = None,
        client_name: str | None = None,
    ) -> None:
        self._cfg = _ClientConfig(
            url, socket_timeout, connect_timeout, max_connections, pool_timeout, ssl_context, client_name
        )
        self._timeout = self._cfg.socket_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._idle: deque[_AConn] | _ClosedIdle = deque()
        self._conns: weakref.WeakSet[_AConn] = weakref.WeakSet()
        # connections lost to an error or a server close, and the ones opened since to
        # replace them (stats: l2 reconnects)
        self.lost = 0
        self.reconnects = 0
        self._count = 0
        self._waiters: deque[asyncio.Future[_AConn | None]] = deque()
        self._closed = False
        self._pid = os.getpid()
        _aclients.add(self)

    @property
    def url(self) -> RedisURL:
        return self._cfg.url

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The loop this client is bound to (``None`` before its first request)."""
        return self._loop

    def __repr__(self) -> str:
        return f"<AsyncRedisClient {self._cfg.name} {self._count}/{self._cfg.max_connections} connections>"

    # -- requests ---------------------------------------------------------------------

    async def execute(self, *args: Any) -> Any:
        """Send one command and return its reply; errors as ``RedisClient.execute``."""
        if not args:
            raise TypeError("execute() needs a command")
        packed = _pack(args)
        loop = self._loop
        if loop is not _get_running_loop():
            loop = self._bind()
        conn = self._pop_idle()
        if conn is None:
            conn = await self._acquire()
        fut = loop.create_future()
        conn.waiter = fut
        conn.write(packed)
        timer = loop.call_later(self._timeout, _expire, fut)
        try:
            reply = await fut
        except BaseException as exc:
            timer.cancel()
            reply = await self._recover(conn, exc, packed, 0)
        else:
            timer.cancel()
            if self._waiters:
                self._handoff(conn)
            else:
                self._idle.append(conn)
        if reply.__class__ is BackendResponseError:
            raise reply
        return reply

    async def pipeline(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Every command in one write, the replies in order; an error reply is returned
        in the list as a ``BackendResponseError`` instance."""
        n = len(commands)
        if not n:
            return []
        parts = []
        for command in commands:
            if not command:
                raise TypeError("pipeline(): empty command")
            parts.append(_pack(tuple(command)))
        packed = b"".join(parts)
        if self._loop is not _get_running_loop():
            self._bind()
        conn = self._pop_idle()
        if conn is None:
            conn = await self._acquire()
        try:
            replies = await self._roundtrip(conn, packed, n)
        except BaseException as exc:
            return await self._recover(conn, exc, packed, n)  # type: ignore[no-any-return]
        self._release(conn)
        return replies  # type: ignore[no-any-return]

    def script(self, lua: str) -> AsyncScript:
        """``await script(keys, args)``: EVALSHA, falling back to EVAL once on NOSCRIPT."""
        return AsyncScript(self, lua)

    def stats(self) -> dict[str, int]:
        return {
            "connections": self._count,
            "idle": len(self._idle),
            "max_connections": self._cfg.max_connections,
            "waiting": sum(1 for w in self._waiters if not w.done()),
        }

    async def aclose(self) -> None:
        """Close the idle connections (the busy ones when their requests end) and fail
        the tasks waiting for a connection; afterwards every request raises
        ``BackendUnavailable("client closed")``. May be awaited in any loop: for a
        client of another loop it does what ``close()`` does. Idempotent."""
        self.close()

    def close(self) -> None:
        """``aclose()`` for sync code, e.g. for a client whose loop has ended.

        In the client's loop's thread, or while that loop is not running (ended,
        closed, never run): closes at once. While the loop runs in another thread: the
        closing is scheduled in that loop (``call_soon_threadsafe``). Idempotent.
        """
        self._closed = True
        loop = self._loop
        if loop is not None and not loop.is_closed() and loop.is_running():
            try:
                running = _get_running_loop()
            except RuntimeError:
                running = None
            if running is not loop:
                loop.call_soon_threadsafe(self._close_now)
                return
        self._close_now()

    def _close_now(self) -> None:
        idle, self._idle = self._idle, _CLOSED_IDLE
        waiters, self._waiters = self._waiters, deque()
        for w in waiters:
            if not w.done():
                w.set_exception(BackendUnavailable("client closed"))
        for conn in idle:
            conn.close()
        loop = self._loop
        if loop is None or loop.is_closed():
            # The loop has ended: no request of it can still be running.
            for conn in list(self._conns):
                conn.close()

    async def __aenter__(self) -> AsyncRedisClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- loop binding ------------------------------------------------------------------

    def _bind(self) -> asyncio.AbstractEventLoop:
        loop = _get_running_loop()
        if self._pid != os.getpid():
            self._reset_after_fork()
        if self._loop is None:
            self._loop = loop
        elif self._loop is not loop:
            raise RuntimeError(self._wrong_loop_message())
        return loop

    def _wrong_loop_message(self) -> str:
        return (
            f"this AsyncRedisClient ({self._cfg.name}) is bound to the event loop {self._loop!r}, "
            f"not to the running one: make one AsyncRedisClient per event loop"
        )

    # -- pool ------------------------------------------------------------------------

    def _pop_idle(self) -> _AConn | None:
        idle = self._idle
        while idle:
            conn = idle.pop()
            if not conn.lost:
                return conn
            self._discard(conn)  # closed by the server while idle
        return None

    async def _acquire(self) -> _AConn:
        """A new connection if the pool has room, else wait at most pool_timeout for a
        released connection or a freed slot."""
        cfg = self._cfg
        while True:
            if self._closed:
                raise BackendUnavailable("client closed")
            if self._count < cfg.max_connections:
                self._count += 1
                return await self._new_conn()
            loop = self._loop
            assert loop is not None
            fut: asyncio.Future[_AConn | None] = loop.create_future()
            self._waiters.append(fut)
            timer = loop.call_later(cfg.pool_timeout, _expire, fut)
            try:
                got = await fut
            except BaseException as exc:
                timer.cancel()
                if fut.done() and not fut.cancelled() and fut.exception() is None:
                    # Handed a connection or a slot just as this task was cancelled.
                    self._pass_on(fut.result())
                else:
                    try:
                        self._waiters.remove(fut)
                    except ValueError:
                        pass
                if isinstance(exc, TimeoutError) and not isinstance(exc, BackendError):
                    raise PoolTimeout(
                        f"no free connection to {cfg.name} within {cfg.pool_timeout:g} s "
                        f"({cfg.max_connections} in use)"
                    ) from None
                raise
            timer.cancel()
            if got is None:  # a slot: the count already includes it
                return await self._new_conn()
            if not got.lost:
                return got
            self._discard(got)

    def _pass_on(self, got: _AConn | None) -> None:
        if got is None:
            self._count -= 1
            self._give_slot()
        else:
            self._release(got)

    async def _new_conn(self) -> _AConn:
        """Connect; the caller has already counted the connection in ``_count``."""
        try:
            conn = await self._connect()
        except BaseException:
            self._count -= 1
            self._give_slot()
            raise
        self._conns.add(conn)
        if self.lost:
            self.lost -= 1
            self.reconnects += 1
        return conn

    def _release(self, conn: _AConn) -> None:
        if self._waiters:
            self._handoff(conn)
        else:
            self._idle.append(conn)

    def _handoff(self, conn: _AConn) -> None:
        waiters = self._waiters
        while waiters:
            w = waiters.popleft()
            if not w.done():
                w.set_result(conn)
                return
        self._idle.append(conn)

    def _give_slot(self) -> None:
        """A connection was dropped: let the first live waiter make a new one."""
        waiters = self._waiters
        while waiters:
            w = waiters.popleft()
            if not w.done():
                self._count += 1
                w.set_result(None)
                return

    def _discard(self, conn: _AConn) -> None:
        conn.close()
        self._conns.discard(conn)
        self.lost += 1
        self._count -= 1
        self._give_slot()

    def _drop_idle(self) -> None:
        idle = self._idle
        while idle:
            self._discard(idle.pop())

    async def _roundtrip(self, conn: _AConn, packed: bytes, n: int) -> Any:
        """Write ``packed`` and wait for one reply (``n == 0``) or a list of ``n``."""
        loop = self._loop
        assert loop is not None
        fut = loop.create_future()
        conn.waiter = fut
        if n:
            conn.replies = []
            conn.need = n
        conn.write(packed)
        timer = loop.call_later(self._timeout, _expire, fut)
        try:
            return await fut
        finally:
            timer.cancel()

    async def _recover(self, conn: _AConn, exc: BaseException, packed: bytes, n: int) -> Any:
        """After a failed request: drop ``conn``; resend once on a new connection if the
        server had closed it before any reply byte arrived; else raise."""
        stale = _is_stale(exc) and not conn.replies and not conn.reader.has_data()
        self._discard(conn)
        if not stale or self._closed:
            raise self._cfg.map_error(exc)
        self._drop_idle()
        conn = await self._acquire()
        try:
            reply = await self._roundtrip(conn, packed, n)
        except BaseException as exc2:
            self._discard(conn)
            raise self._cfg.map_error(exc2)
        self._release(conn)
        return reply

    async def _connect(self) -> _AConn:
        cfg = self._cfg
        u = cfg.url
        loop = self._loop
        assert loop is not None
        sock: socket.socket | None = None
        try:
            async with asyncio.timeout(cfg.connect_timeout):
                if u.scheme == "unix":
                    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    sock.setblocking(False)
                    await loop.sock_connect(sock, u.path)
                else:
                    sock = await self._tcp_connect(loop, u.host or "", u.port)
                    if u.scheme == "rediss":
                        sock = cfg.ssl_context.wrap_socket(sock, server_hostname=u.host, do_handshake_on_connect=False)
                        await self._tls_handshake(loop, sock)
        except OSError as exc:  # includes TimeoutError (asyncio.timeout) and ssl.SSLError
            if sock is not None:
                sock.close()
            reason = str(exc) or f"no connection within {cfg.connect_timeout:g} s"
            raise BackendUnavailable(f"cannot connect to {cfg.name}: {reason}") from exc
        except BaseException:
            if sock is not None:
                sock.close()
            raise
        conn = _AConn(sock, loop)
        if cfg.setup_n:
            try:
                replies = await self._roundtrip(conn, cfg.setup, cfg.setup_n)
                cfg.check_setup(replies)
            except BaseException as exc:
                conn.close()
                if isinstance(exc, BackendError):
                    raise
                raise cfg.map_error(exc)
        return conn

    @staticmethod
    async def _tcp_connect(loop: asyncio.AbstractEventLoop, host: str, port: int) -> socket.socket:
        family = _ip_family(host)
        if family is not None:
            addrs: list[tuple[int, Any]] = [(family, (host, port))]
        else:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            addrs = [(info[0], info[4]) for info in infos]
        error: OSError | None = None
        for family, addr in addrs:
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.setblocking(False)
                await loop.sock_connect(sock, addr)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
                return sock
            except OSError as exc:
                sock.close()
                error = exc
            except BaseException:
                sock.close()
                raise
        raise error or OSError(f"no address for {host!r}")

    @staticmethod
    async def _tls_handshake(loop: asyncio.AbstractEventLoop, sock: ssl.SSLSocket) -> None:
        fd = sock.fileno()
        while True:
            try:
                sock.do_handshake()
                return
            except ssl.SSLWantReadError:
                add, remove = loop.add_reader, loop.remove_reader
            except ssl.SSLWantWriteError:
                add, remove = loop.add_writer, loop.remove_writer
            fut: asyncio.Future[None] = loop.create_future()
            add(fd, _resolve_soon, fut)
            try:
                await fut
            finally:
                remove(fd)

    def _reset_after_fork(self) -> None:
        """In a forked child: close the parent's sockets without sending a byte and
        without touching the parent's loop, and start over unbound."""
        old = list(self._conns)
        self._conns = weakref.WeakSet()
        self._idle = _CLOSED_IDLE if self._closed else deque()
        self._waiters = deque()
        self._count = 0
        self._loop = None
        self._pid = os.getpid()
        for conn in old:
            conn.forget()


class AsyncScript:
    """``await script(keys, args)``: EVALSHA, falling back to EVAL once on NOSCRIPT."""

    __slots__ = ("_client", "lua", "sha")

    def __init__(self, client: AsyncRedisClient, lua: str) -> None:
        self._client = client
        self.lua = lua
        self.sha = hashlib.sha1(lua.encode()).hexdigest()

    async def __call__(self, keys: Sequence[Any] = (), args: Sequence[Any] = ()) -> Any:
        try:
            return await self._client.execute("EVALSHA", self.sha, len(keys), *keys, *args)
        except BackendResponseError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
        return await self._client.execute("EVAL", self.lua, len(keys), *keys, *args)

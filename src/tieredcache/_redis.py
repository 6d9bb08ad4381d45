"""A small synchronous Redis client for the L2 tier: hiredis parses, plain sockets carry.

No redis-py: requests are packed by ``hiredis.pack_command`` and replies parsed by a
``hiredis.Reader``; blocking socket I/O releases the GIL.

HOW IT WORKS
------------

::

    RedisClient
      _idle   deque of idle _Conn, LIFO: execute() pops the right end, puts back there
      _conns  WeakSet of every live _Conn (idle + checked out); with _connecting, the
              pool's size, never above max_connections
      _lock   guards the size and the waiters (with _cond, a Condition on it, for the
              bounded wait); the request path never takes it

    execute(*args):  pack -> pop an idle _Conn (else _acquire: create one or wait at
                     most pool_timeout) -> sendall -> recv_into a reused buffer, feed
                     the Reader until it yields one reply -> append the _Conn back

Invariant: a connection is put back in ``_idle`` only after every reply of its request
has been read. Any exception between the write and the last reply (a timeout, a reset,
EOF, a protocol error, KeyboardInterrupt or any exception a signal handler raises) closes
the connection and drops it from the pool, so no reply can reach the wrong request.

Timeouts: on plain TCP and unix sockets, ``socket_timeout`` is set as SO_RCVTIMEO and
SO_SNDTIMEO on a blocking socket (a timed-out read raises ``BlockingIOError``); this
saves the ``poll()`` that ``socket.settimeout()`` makes before every ``recv``. TLS
sockets, and platforms without those options, use ``settimeout()``. The timeout bounds
each socket operation, not a whole reply, and the kernel rounds it up to its clock tick
(1 to 10 ms): irrelevant at the default 0.25 s.

Stale connections: a pooled connection may have been closed by the server while idle (a
restart, the ``timeout`` setting). When a request fails with EOF or a reset before any
byte of its reply arrived, every idle connection is dropped and the request is sent once
more on a new connection. The request is therefore at-least-once in one narrow case:
the server executed it and closed the connection before answering.

Fork: ``os.register_at_fork`` resets every client in the child: the parent's
connections are closed in the child without a byte being sent on them (``close()``, not
``shutdown()``; the parent's side stays open) and new ones are made. ``_acquire`` also
compares ``os.getpid()`` with the pool's, for forks that bypass the hooks.

LIMITATIONS
-----------

RESP2 only; replies are ``bytes`` (never decoded). No cluster, no sentinel. The request
path does not check ``os.getpid()`` (a syscall): a child forked without the at-fork hooks
(a C ``fork()`` not followed by ``PyOS_AfterFork_Child``) must not reuse idle connections.
"""

from __future__ import annotations

import hashlib
import os
import socket
import ssl
import struct
import sys
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import hiredis

from ._errors import (
    BackendError,
    BackendResponseError,
    BackendTimeout,
    BackendUnavailable,
    ConfigurationError,
    PoolTimeout,
)

__all__ = ["PubSub", "RedisClient", "RedisURL", "Script"]

DEFAULT_PORT = 6379
_SCHEMES = ("redis", "rediss", "unix")
_BUFSIZE = 65536
_pack = hiredis.pack_command

# SO_RCVTIMEO takes a struct timeval: two C longs on 64-bit Linux.
_SOCKOPT_TIMEOUTS = sys.platform.startswith("linux") and struct.calcsize("l") == 8


# --------------------------------------------------------------------------------------
# URL
# --------------------------------------------------------------------------------------


def _mask_password(url: str) -> str:
    """``url`` with whatever sits between ``user:`` and the last ``@`` shown as ***
    (all of the user part when it has no ``:``: a password written without one).

    For error messages about URLs that may not parse: the password must never appear.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    at = rest.rfind("@")
    if at < 0:
        return url
    userinfo = rest[:at]
    user, colon, _ = userinfo.partition(":")
    if not colon:
        return f"{scheme}://***@{rest[at + 1:]}"
    return f"{scheme}://{user}:***@{rest[at + 1:]}"


def _parse_db(text: str, what: str, shown: str) -> int:
    if not text.isdigit() or not text.isascii():
        raise ConfigurationError(f"Redis URL {shown!r}: {what} must be a non-negative integer, not {text!r}")
    return int(text)


@dataclass(frozen=True)
class RedisURL:
    """Where and how to connect: a parsed ``redis://``, ``rediss://`` or ``unix://`` URL.

    ``port`` is 0 for unix sockets. The password is left out of ``repr()``; use
    ``redacted()`` to show the URL.
    """

    scheme: str
    host: str | None
    port: int
    path: str | None
    db: int
    username: str | None
    password: str | None = field(repr=False)

    @classmethod
    def parse(cls, url: str) -> RedisURL:
        """Parse ``redis://[user:password@]host[:port][/db]``, ``rediss://...`` (TLS) or
        ``unix://[user:password@]/path/to.sock[?db=N]``.

        ``?db=N`` is accepted by the TCP schemes too. User name and password are
        percent-decoded. Raises ``ConfigurationError`` naming the problem (the password
        never appears in the message).
        """
        if not isinstance(url, str):
            raise ConfigurationError(f"a Redis URL must be a str, not {type(url).__name__}")
        text = url.strip()
        shown = _mask_password(text)
        if not text:
            raise ConfigurationError("the Redis URL is empty")
        try:
            parts = urlsplit(text)
            port = parts.port
        except ValueError as exc:
            raise ConfigurationError(f"Redis URL {shown!r}: {exc}") from None
        scheme = parts.scheme.lower()
        if scheme not in _SCHEMES:
            raise ConfigurationError(
                f"Redis URL {shown!r}: unsupported scheme {scheme or '(none)'!r}; "
                "expected redis://, rediss:// (TLS) or unix://"
            )
        if parts.fragment:
            raise ConfigurationError(f"Redis URL {shown!r}: unexpected fragment '#...'")
        username = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password else None
        if username is not None and password is None:
            raise ConfigurationError(f"Redis URL {shown!r}: a user name needs a password (user:password@)")
        query_db: int | None = None
        for name, value in parse_qsl(parts.query, keep_blank_values=True):
            if name != "db":
                raise ConfigurationError(
                    f"Redis URL {shown!r}: unsupported query parameter {name!r} "
                    "(only db=N is understood; pass TLS settings as ssl_context=)"
                )
            if query_db is not None:
                raise ConfigurationError(f"Redis URL {shown!r}: db given twice")
            query_db = _parse_db(value, "db", shown)

        if scheme == "unix":
            if parts.hostname or port is not None:
                raise ConfigurationError(
                    f"Redis URL {shown!r}: unix:// URLs take a socket path and no host: unix:///path/to.sock"
                )
            path = unquote(parts.path)
            if not path:
                raise ConfigurationError(f"Redis URL {shown!r}: missing socket path (unix:///path/to.sock)")
            return cls("unix", None, 0, path, query_db or 0, username, password)

        host = parts.hostname
        if not host:
            raise ConfigurationError(f"Redis URL {shown!r}: missing host ({scheme}://host[:port][/db])")
        if port is None:
            port = DEFAULT_PORT
        elif not 0 < port < 65536:
            raise ConfigurationError(f"Redis URL {shown!r}: port {port} out of range 1-65535")
        db = query_db
        path = parts.path
        if path not in ("", "/"):
            path_db = _parse_db(path[1:], "the path (database number)", shown)
            if db is not None and db != path_db:
                raise ConfigurationError(f"Redis URL {shown!r}: db {path_db} in the path but db={db} in the query")
            db = path_db
        return cls(scheme, host, port, None, db or 0, username, password)

    def redacted(self) -> str:
        """The URL with the password shown as ``***``: safe for logs and messages."""
        auth = ""
        if self.username is not None or self.password is not None:
            auth = quote(self.username or "", safe="")
            if self.password is not None:
                auth += ":***"
            auth += "@"
        if self.scheme == "unix":
            query = f"?db={self.db}" if self.db else ""
            return f"unix://{auth}{self.path}{query}"
        host = self.host or ""
        if ":" in host:
            host = f"[{host}]"
        return f"{self.scheme}://{auth}{host}:{self.port}/{self.db}"

    def __str__(self) -> str:
        return self.redacted()


# --------------------------------------------------------------------------------------
# Shared by the sync and async clients
# --------------------------------------------------------------------------------------


class _EOF(Exception):
    """The server closed the connection (recv returned 0 bytes)."""


class _ClientConfig:
    """Validated constructor arguments and the connection-setup request; no I/O."""

    def __init__(
        self,
        url: str | RedisURL,
        socket_timeout: float,
        connect_timeout: float,
        max_connections: int,
        pool_timeout: float,
        ssl_context: ssl.SSLContext | None,
        client_name: str | None,
    ) -> None:
        if isinstance(url, RedisURL):
            self.url = url
        else:
            self.url = RedisURL.parse(url)
        for name, value in (
            ("socket_timeout", socket_timeout),
            ("connect_timeout", connect_timeout),
            ("pool_timeout", pool_timeout),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0 or value == float("inf"):
                raise ConfigurationError(f"{name} must be a finite number of seconds >= 0, not {value!r}")
        if socket_timeout <= 0 or connect_timeout <= 0:
            raise ConfigurationError("socket_timeout and connect_timeout must be > 0")
        if isinstance(max_connections, bool) or not isinstance(max_connections, int) or max_connections < 1:
            raise ConfigurationError(f"max_connections must be an int >= 1, not {max_connections!r}")
        if ssl_context is not None and not isinstance(ssl_context, ssl.SSLContext):
            raise ConfigurationError(f"ssl_context must be an ssl.SSLContext, not {type(ssl_context).__name__}")
        if ssl_context is not None and self.url.scheme != "rediss":
            raise ConfigurationError(f"ssl_context was given but the URL {self.url.redacted()!r} is not rediss://")
        if client_name is not None:
            if not isinstance(client_name, str) or not client_name or not all(33 <= ord(c) <= 126 for c in client_name):
                raise ConfigurationError(
                    f"client_name must be non-empty printable ASCII without spaces, not {client_name!r}"
                )
        self.socket_timeout = float(socket_timeout)
        self.connect_timeout = float(connect_timeout)
        self.max_connections = max_connections
        self.pool_timeout = float(pool_timeout)
        self.client_name = client_name
        self._ssl_context = ssl_context
        self.name = self.url.redacted()

        setup: list[tuple[Any, ...]] = []
        u = self.url
        if u.password is not None:
            setup.append(("AUTH", u.username, u.password) if u.username else ("AUTH", u.password))
        if u.db:
            setup.append(("SELECT", u.db))
        if client_name:
            setup.append(("CLIENT", "SETNAME", client_name))
        self.setup_n = len(setup)
        self.setup = b"".join(_pack(c) for c in setup)

    @property
    def ssl_context(self) -> ssl.SSLContext:
        """The TLS context; the default one is made at the first TLS connect (it reads
        the system's certificate store, so not in the constructor)."""
        if self._ssl_context is None:
            self._ssl_context = ssl.create_default_context()
        return self._ssl_context

    def map_error(self, exc: BaseException) -> BaseException:
        """The tieredcache exception for a transport failure; other exceptions as is."""
        if isinstance(exc, (TimeoutError, BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError)):
            err: BaseException = BackendTimeout(
                f"no reply from {self.name} within {self.socket_timeout:g} s (connection discarded)"
            )
        elif isinstance(exc, _EOF):
            err = BackendUnavailable(f"connection to {self.name} closed by the server")
        elif isinstance(exc, hiredis.ProtocolError):
            err = BackendUnavailable(f"protocol error on the connection to {self.name}: {exc}")
        elif isinstance(exc, MemoryError):
            # hiredis allocates an array reply's declared length up front: a garbled
            # header ("*4294967295") must cost this connection, not escape as a bug.
            err = BackendUnavailable(f"a reply from {self.name} too large to hold (connection discarded)")
        elif isinstance(exc, OSError):
            err = BackendUnavailable(f"connection to {self.name} lost: {exc}")
        else:
            return exc
        err.__cause__ = exc
        return err

    def check_setup(self, replies: list[Any]) -> None:
        for reply in replies:
            if isinstance(reply, BackendResponseError):
                raise reply


def _is_stale(exc: BaseException) -> bool:
    """Whether ``exc`` says the connection was already closed by the peer."""
    return isinstance(exc, (_EOF, ConnectionError))


# --------------------------------------------------------------------------------------
# Connection
# --------------------------------------------------------------------------------------


class _Conn:
    """One socket, its reply parser and its receive buffer. Used by one thread at a time."""

    __slots__ = ("__weakref__", "buf", "reader", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        # Error replies come back as BackendResponseError instances (also inside arrays).
        self.reader = hiredis.Reader(replyError=BackendResponseError)
        self.buf = bytearray(_BUFSIZE)

    def read_reply(self) -> Any:
        reader = self.reader
        reply = reader.gets()
        if reply is False:
            sock = self.sock
            buf = self.buf
            while True:
                n = sock.recv_into(buf)
                if not n:
                    raise _EOF()
                reader.feed(buf, 0, n)
                reply = reader.gets()
                if reply is not False:
                    break
        return reply

    def read_replies(self, replies: list[Any], n: int) -> None:
        """Append replies to ``replies`` until it holds ``n`` (the caller keeps the
        partial list if this raises)."""
        reader = self.reader
        sock = self.sock
        buf = self.buf
        while True:
            reply = reader.gets()
            while reply is not False:
                replies.append(reply)
                if len(replies) == n:
                    return
                reply = reader.gets()
            nbytes = sock.recv_into(buf)
            if not nbytes:
                raise _EOF()
            reader.feed(buf, 0, nbytes)

    def close(self) -> None:
        """Close the descriptor. Never ``shutdown()``: in a forked child the parent
        still uses the connection."""
        sock = getattr(self, "sock", None)  # None if __init__ was interrupted
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    __del__ = close


def _open_socket(cfg: _ClientConfig) -> socket.socket:
    u = cfg.url
    if u.scheme == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(cfg.connect_timeout)
            sock.connect(u.path)
        except BaseException:
            sock.close()
            raise
        return sock
    sock = socket.create_connection((u.host, u.port), timeout=cfg.connect_timeout)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if u.scheme == "rediss":
            # The TLS handshake runs under connect_timeout too.
            sock = cfg.ssl_context.wrap_socket(sock, server_hostname=u.host)
    except BaseException:
        sock.close()
        raise
    return sock


def _set_reply_timeout(sock: socket.socket, timeout: float, switchable: bool) -> None:
    if _SOCKOPT_TIMEOUTS and not switchable and not isinstance(sock, ssl.SSLSocket):
        sec = int(timeout)
        usec = int((timeout - sec) * 1e6)
        if sec == 0 and usec == 0:
            usec = 1  # a zero timeval means "wait forever"
        tv = struct.pack("ll", sec, usec)
        try:
            sock.settimeout(None)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, tv)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, tv)
            return
        except OSError:
            pass
    sock.settimeout(timeout)


def _connect(cfg: _ClientConfig, switchable_timeout: bool = False) -> _Conn:
    """A new connection, authenticated, on the right database, named.

    Raises BackendUnavailable (cannot connect), BackendTimeout (setup not answered) or
    BackendResponseError (AUTH / SELECT refused). ``switchable_timeout``: the caller
    changes the timeout with ``settimeout()`` (pub/sub), so do not use socket options.
    """
    try:
        sock = _open_socket(cfg)
    except OSError as exc:
        raise BackendUnavailable(f"cannot connect to {cfg.name}: {exc}") from exc
    conn = _Conn(sock)
    try:
        _set_reply_timeout(sock, cfg.socket_timeout, switchable_timeout)
        if cfg.setup_n:
            sock.sendall(cfg.setup)
            replies: list[Any] = []
            conn.read_replies(replies, cfg.setup_n)
            cfg.check_setup(replies)
    except BaseException as exc:
        conn.close()
        if isinstance(exc, BackendError):
            raise
        raise cfg.map_error(exc)
    return conn


# --------------------------------------------------------------------------------------
# Pool states
# --------------------------------------------------------------------------------------


class _ClosedIdle:
    """Stands in for the idle deque once the client is closed: nothing can be taken
    from it, and a connection put back is closed. The request path needs no flag."""

    __slots__ = ()

    def pop(self) -> _Conn:
        raise IndexError("client closed")

    def append(self, conn: _Conn) -> None:
        conn.close()

    def __len__(self) -> int:
        return 0

    def __iter__(self) -> Iterator[_Conn]:
        return iter(())


_CLOSED_IDLE = _ClosedIdle()

_clients: weakref.WeakSet[RedisClient] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for client in list(_clients):
        client._reset_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


# --------------------------------------------------------------------------------------
# Client
# --------------------------------------------------------------------------------------


class RedisClient:
    """A thread-safe pooled Redis client.

    Every method may be called from any thread; each request holds one connection for
    its duration. The constructor does no I/O: connections are made on first use.
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
        self._idle: deque[_Conn] | _ClosedIdle = deque()
        self._conns: weakref.WeakSet[_Conn] = weakref.WeakSet()
        # connections lost to an error or a server close, and the ones opened since to
        # replace them (stats: l2 reconnects)
        self.lost = 0
        self.reconnects = 0
        self._connecting = 0
        self._waiters = 0
        # ``with self._lock`` (a C context manager), never ``with self._cond``: the
        # Condition's Python-level __enter__ could be interrupted by a signal handler's
        # exception after taking the lock and before the ``with`` owns it.
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._closed = False
        self._pid = os.getpid()
        self._pubsubs: weakref.WeakSet[PubSub] = weakref.WeakSet()
        _clients.add(self)

    @property
    def url(self) -> RedisURL:
        return self._cfg.url

    def __repr__(self) -> str:
        return f"<RedisClient {self._cfg.name} {len(self._conns)}/{self._cfg.max_connections} connections>"

    # -- requests ---------------------------------------------------------------------

    def execute(self, *args: Any) -> Any:
        """Send one command and return its reply (``bytes``, ``int``, ``list``, ``None``).

        Raises BackendResponseError (an error reply), BackendTimeout (no reply within
        socket_timeout: the connection is discarded), BackendUnavailable (cannot connect,
        connection lost, client closed), PoolTimeout (no free connection within
        pool_timeout). A ``TypeError`` for an argument that is not str, bytes, int or
        float.
        """
        if not args:
            raise TypeError("execute() needs a command")
        packed = _pack(args)
        try:
            conn = self._idle.pop()
        except IndexError:
            conn = self._acquire()
        sock = conn.sock
        try:
            sock.sendall(packed)
            # _Conn.read_reply inlined: this is every L2 hit's path, and the method call
            # and attribute lookups it saves are measurable against a ~16 us round trip
            reader = conn.reader
            buf = conn.buf
            while True:
                n = sock.recv_into(buf)
                if not n:
                    raise _EOF()
                reader.feed(buf, 0, n)
                reply = reader.gets()
                if reply is not False:
                    break
        except BaseException as exc:
            reply = self._recover(conn, exc, packed, 0, None)
        else:
            self._idle.append(conn)
            if self._waiters:
                self._wake()
        if reply.__class__ is BackendResponseError:
            raise reply
        return reply

    def pipeline(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Send every command in one write and return their replies in order.

        An error reply is returned in the list as a ``BackendResponseError`` instance;
        transport failures raise as in ``execute()``.
        """
        n = len(commands)
        if not n:
            return []
        parts = []
        for command in commands:
            if not command:
                raise TypeError("pipeline(): empty command")
            parts.append(_pack(tuple(command)))
        packed = b"".join(parts)
        try:
            conn = self._idle.pop()
        except IndexError:
            conn = self._acquire()
        replies: list[Any] = []
        try:
            conn.sock.sendall(packed)
            conn.read_replies(replies, n)
        except BaseException as exc:
            return self._recover(conn, exc, packed, n, replies)  # type: ignore[no-any-return]
        self._idle.append(conn)
        if self._waiters:
            self._wake()
        return replies

    def script(self, lua: str) -> Script:
        """A callable running ``lua`` by EVALSHA (EVAL once when the server lacks it)."""
        return Script(self, lua)

    def pubsub(self) -> PubSub:
        """A subscriber on a dedicated connection (not from the pool)."""
        if self._closed:
            raise BackendUnavailable("client closed")
        ps = PubSub(self)
        self._pubsubs.add(ps)
        return ps

    def stats(self) -> dict[str, int]:
        """Pool figures: connections (live), idle, max_connections, waiting (threads)."""
        return {
            "connections": len(self._conns) + self._connecting,
            "idle": len(self._idle),
            "max_connections": self._cfg.max_connections,
            "waiting": self._waiters,
        }

    def close(self) -> None:
        """Close the idle connections and every PubSub of this client; the connections
        in use are closed when their requests end. Afterwards every request raises
        ``BackendUnavailable("client closed")``. Idempotent."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, _CLOSED_IDLE
            self._cond.notify_all()
        for conn in idle:
            conn.close()
        for ps in list(self._pubsubs):
            ps.close()

    def __enter__(self) -> RedisClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- pool ------------------------------------------------------------------------

    def _acquire(self) -> _Conn:
        """An idle connection, else a new one if the pool is below its size, else wait
        at most pool_timeout for either."""
        if self._pid != os.getpid():
            self._reset_after_fork()
        cfg = self._cfg
        cond = self._cond
        lock = self._lock
        deadline = None
        conn = None
        reserved = False
        # An exception (a signal handler's) may land at any bytecode: the reservation is
        # undone in the finally whatever happens once ``reserved`` is set.
        try:
            with lock:
                while True:
                    if self._closed:
                        raise BackendUnavailable("client closed")
                    try:
                        return self._idle.pop()
                    except IndexError:
                        pass
                    if len(self._conns) + self._connecting < cfg.max_connections:
                        self._connecting += 1
                        reserved = True
                        break
                    now = time.monotonic()
                    if deadline is None:
                        deadline = now + cfg.pool_timeout
                    remaining = deadline - now
                    if remaining <= 0:
                        raise PoolTimeout(
                            f"no free connection to {cfg.name} within {cfg.pool_timeout:g} s "
                            f"({cfg.max_connections} in use)"
                        )
                    # Registered before the last look at _idle: a request that puts a
                    # connection back after that look sees _waiters > 0 and notifies.
                    self._waiters += 1
                    try:
                        try:
                            return self._idle.pop()
                        except IndexError:
                            pass
                        cond.wait(remaining)
                    finally:
                        self._waiters -= 1
            conn = _connect(cfg)
            return conn
        finally:
            if reserved:
                with lock:
                    self._connecting -= 1
                    if conn is not None:
                        self._conns.add(conn)
                        if self.lost:
                            self.lost -= 1
                            self.reconnects += 1
                    else:
                        cond.notify()

    def _wake(self) -> None:
        with self._lock:
            self._cond.notify()

    def _discard(self, conn: _Conn) -> None:
        conn.close()
        with self._lock:
            self._conns.discard(conn)
            self.lost += 1
            self._cond.notify()

    def _recover(self, conn: _Conn, exc: BaseException, packed: bytes, n: int, replies: list[Any] | None) -> Any:
        """After a failed request: discard ``conn``; resend once on a new connection if
        it had been closed by the server before any reply byte arrived; else raise.
        ``n``: 0 for execute() (one reply), the number of replies for a pipeline."""
        stale = _is_stale(exc) and not replies and not conn.reader.has_data()
        self._discard(conn)
        if not stale or self._closed:
            raise self._cfg.map_error(exc)
        # Every idle connection predates the failure: after a restart they are all dead.
        self._drop_idle()
        conn = self._acquire()
        try:
            conn.sock.sendall(packed)
            if n:
                out: list[Any] = []
                conn.read_replies(out, n)
                reply: Any = out
            else:
                reply = conn.read_reply()
        except BaseException as exc2:
            self._discard(conn)
            raise self._cfg.map_error(exc2)
        self._idle.append(conn)
        if self._waiters:
            self._wake()
        return reply

    def _drop_idle(self) -> None:
        idle = self._idle
        dropped = []
        while True:
            try:
                dropped.append(idle.pop())
            except IndexError:
                break
        for conn in dropped:
            self._discard(conn)

    def _reset_after_fork(self) -> None:
        """In a forked child: forget the parent's pool, closing (never shutting down)
        its descriptors, and start a fresh one."""
        old = list(self._conns)
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._idle = _CLOSED_IDLE if self._closed else deque()
        self._conns = weakref.WeakSet()
        self._connecting = 0
        self._waiters = 0
        self._pid = os.getpid()
        for conn in old:
            conn.close()
        for ps in list(self._pubsubs):
            ps._forget_after_fork()


# --------------------------------------------------------------------------------------
# Scripts
# --------------------------------------------------------------------------------------


class Script:
    """A Lua script: ``script(keys, args)`` runs it by EVALSHA, falling back to EVAL
    once when the server answers NOSCRIPT (script cache flushed, server restarted)."""

    __slots__ = ("_client", "lua", "sha")

    def __init__(self, client: RedisClient, lua: str) -> None:
        self._client = client
        self.lua = lua
        self.sha = hashlib.sha1(lua.encode()).hexdigest()

    def __call__(self, keys: Sequence[Any] = (), args: Sequence[Any] = ()) -> Any:
        try:
            return self._client.execute("EVALSHA", self.sha, len(keys), *keys, *args)
        except BackendResponseError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
        return self._client.execute("EVAL", self.lua, len(keys), *keys, *args)


# --------------------------------------------------------------------------------------
# Pub/sub
# --------------------------------------------------------------------------------------


class PubSub:
    """A subscriber on its own connection.

    One thread calls ``subscribe`` / ``get_message`` / ``unsubscribe`` / ``ping``;
    ``close()`` may be called from any thread and wakes a ``get_message`` that waits.
    When the connection drops, ``get_message`` (or ``subscribe``) raises
    ``BackendUnavailable`` and this object is done: make a new one with
    ``client.pubsub()`` and subscribe again.
    """

    def __init__(self, client: RedisClient) -> None:
        self._client = client
        self._cfg = client._cfg
        self._conn: _Conn | None = None
        self._pending: deque[tuple[bytes, bytes]] = deque()
        self._channels: set[bytes] = set()
        self._closed = False
        self._lost = False
        self._pid = os.getpid()
        self.last_reply_at: float | None = None
        """``time.monotonic()`` when the server last sent anything on this connection
        (a message, a confirmation, a pong): with ``ping()``, detects a dead link."""
        self.pongs = 0
        """How many answers to ``ping()`` were read (they come back in order)."""

    @property
    def channels(self) -> frozenset[bytes]:
        return frozenset(self._channels)

    def subscribe(self, *channels: str | bytes) -> None:
        """Subscribe (connecting first if needed) and wait for every confirmation."""
        if not channels:
            raise TypeError("subscribe() needs at least one channel")
        names = [c.encode() if isinstance(c, str) else bytes(c) for c in channels]
        conn = self._live_conn(connect=True)
        try:
            conn.sock.settimeout(self._cfg.socket_timeout)
            conn.sock.sendall(_pack(("SUBSCRIBE", *names)))
            waiting = set(names)
            while waiting:
                self._dispatch(conn.read_reply(), waiting)
        except BaseException as exc:
            self._fail(exc)
        self._channels.update(names)

    def unsubscribe(self, *channels: str | bytes) -> None:
        """Unsubscribe (from every channel when none is given); does not wait for the
        confirmations, which ``get_message`` skips."""
        names = [c.encode() if isinstance(c, str) else bytes(c) for c in channels]
        conn = self._live_conn(connect=False)
        try:
            conn.sock.settimeout(self._cfg.socket_timeout)
            conn.sock.sendall(_pack(("UNSUBSCRIBE", *names)))
        except BaseException as exc:
            self._fail(exc)
        if names:
            self._channels.difference_update(names)
        else:
            self._channels.clear()

    def ping(self) -> None:
        """Send a PING; its answer updates ``last_reply_at`` when ``get_message`` reads it."""
        conn = self._live_conn(connect=False)
        try:
            conn.sock.settimeout(self._cfg.socket_timeout)
            conn.sock.sendall(_pack(("PING",)))
        except BaseException as exc:
            self._fail(exc)

    def get_message(self, timeout: float) -> tuple[bytes, bytes] | None:
        """The next ``(channel, data)`` published on a subscribed channel, or ``None``
        if none arrives within ``timeout`` seconds (0: do not wait). Raises
        ``BackendUnavailable`` when the connection drops or this PubSub is closed."""
        if self._pending:
            return self._pending.popleft()
        conn = self._live_conn(connect=False)
        deadline = time.monotonic() + timeout
        sock = conn.sock
        reader = conn.reader
        buf = conn.buf
        try:
            while True:
                reply = reader.gets()
                if reply is not False:
                    self._dispatch(reply, None)
                    if self._pending:
                        return self._pending.popleft()
                    continue
                remaining = deadline - time.monotonic()
                sock.settimeout(remaining if remaining > 0 else 0.0)
                try:
                    n = sock.recv_into(buf)
                except (TimeoutError, BlockingIOError, ssl.SSLWantReadError):
                    return None
                if not n:
                    raise _EOF()
                reader.feed(buf, 0, n)
        except BaseException as exc:
            self._fail(exc)
        raise AssertionError("unreachable")  # pragma: no cover

    def fileno(self) -> int:
        """The connection's socket descriptor (to wait for messages with ``poll``); raises
        ``BackendUnavailable`` when it is closed or lost. Call ``get_message(0)`` until it
        returns None before waiting: messages may already be buffered here."""
        return self._live_conn(connect=False).sock.fileno()

    def close(self) -> None:
        """Close the connection; a ``get_message`` waiting in another thread raises
        ``BackendUnavailable``. Idempotent."""
        self._closed = True
        conn, self._conn = self._conn, None
        if conn is not None:
            if self._pid == os.getpid():
                try:
                    conn.sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in recv
                except OSError:
                    pass
            conn.close()

    def __enter__(self) -> PubSub:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- private ---------------------------------------------------------------------

    def _live_conn(self, connect: bool) -> _Conn:
        if self._closed:
            raise BackendUnavailable("pubsub closed")
        if self._lost:
            raise BackendUnavailable("pubsub connection lost: make a new PubSub and subscribe again")
        conn = self._conn
        if conn is None:
            if not connect:
                raise BackendUnavailable("pubsub not connected: call subscribe() first")
            if self._client._closed:
                raise BackendUnavailable("client closed")
            conn = self._conn = _connect(self._cfg, switchable_timeout=True)
        return conn

    def _dispatch(self, reply: Any, waiting: set[bytes] | None) -> None:
        self.last_reply_at = time.monotonic()
        if reply.__class__ is BackendResponseError:
            raise reply
        if reply.__class__ is list and reply:
            kind = reply[0]
            if kind == b"message" or kind == b"pmessage":
                # A garbled push (short, or not bytes) means the stream cannot be trusted.
                shape = 3 if kind == b"message" else 4
                if len(reply) != shape or reply[-2].__class__ is not bytes or reply[-1].__class__ is not bytes:
                    raise hiredis.ProtocolError(f"malformed {kind.decode()} push: {reply!r:.200}")
                self._pending.append((reply[-2], reply[-1]))
            elif kind == b"subscribe" and waiting is not None and len(reply) > 1:
                waiting.discard(reply[1])
            elif kind == b"pong":
                self.pongs += 1

    def _fail(self, exc: BaseException) -> None:
        """Drop the connection and raise the mapped error (always raises)."""
        closed = self._closed
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
        if closed:
            raise BackendUnavailable("pubsub closed") from None
        self._lost = True
        if isinstance(exc, BackendError):
            raise exc
        raise self._cfg.map_error(exc)

    def _forget_after_fork(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
        self._lost = True
        self._pid = os.getpid()

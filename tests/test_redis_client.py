"""RedisClient: the synchronous Redis client of the L2 tier, against a private redis-server.

Every test talks to a redis-server started by the fixtures (never the system one):
``redis_url`` (the session server, emptied before each test) or ``fresh_redis_server``
(a server of the test's own, free to pause, kill and restart).
"""

from __future__ import annotations

import gc
import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time

import pytest

from tieredcache._errors import (
    BackendError,
    BackendResponseError,
    BackendTimeout,
    BackendUnavailable,
    ConfigurationError,
    PoolTimeout,
)
from tieredcache import _redis as redis_module
from tieredcache._redis import PubSub, RedisClient, RedisURL, Script
from tieredcache._redis_server import RedisServer


def wait_until(predicate, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.002)


def blocked_clients(url: str) -> int:
    with RedisClient(url, socket_timeout=5) as admin:
        info = admin.execute("INFO", "clients").decode()
    return int(info.split("blocked_clients:")[1].split()[0])


@pytest.fixture
def client(redis_url):
    c = RedisClient(redis_url, socket_timeout=5)
    yield c
    c.close()


# --------------------------------------------------------------------------------------
# RedisURL
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://localhost", ("redis", "localhost", 6379, None, 0, None, None)),
        ("redis://cache.internal:7000/5", ("redis", "cache.internal", 7000, None, 5, None, None)),
        ("redis://:s3cret@h", ("redis", "h", 6379, None, 0, None, "s3cret")),
        ("redis://alice:p%40ss%3Aw%2Frd@h:1/2", ("redis", "h", 1, None, 2, "alice", "p@ss:w/rd")),
        ("redis://h/?db=4", ("redis", "h", 6379, None, 4, None, None)),
        ("redis://h/4?db=4", ("redis", "h", 6379, None, 4, None, None)),
        ("rediss://secure.example:6380/1", ("rediss", "secure.example", 6380, None, 1, None, None)),
        ("REDIS://H", ("redis", "h", 6379, None, 0, None, None)),
        ("redis://[::1]:7001/3", ("redis", "::1", 7001, None, 3, None, None)),
        ("  redis://h:1/0\n", ("redis", "h", 1, None, 0, None, None)),
        ("unix:///var/run/redis.sock", ("unix", None, 0, "/var/run/redis.sock", 0, None, None)),
        ("unix:///tmp/r.sock?db=3", ("unix", None, 0, "/tmp/r.sock", 3, None, None)),
        ("unix://:pw@/tmp/r.sock", ("unix", None, 0, "/tmp/r.sock", 0, None, "pw")),
    ],
)
def test_url_parse_good(url, expected):
    u = RedisURL.parse(url)
    assert (u.scheme, u.host, u.port, u.path, u.db, u.username, u.password) == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "empty"),
        ("http://h", "unsupported scheme 'http'"),
        ("localhost:6379", "unsupported scheme"),
        ("redis://", "missing host"),
        ("redis://:pw@/0", "missing host"),
        ("redis://h:99999", "out of range"),
        ("redis://h:0", "out of range"),
        ("redis://h:abc", "ort"),
        ("redis://h/x", "non-negative integer"),
        ("redis://h/-1", "non-negative integer"),
        ("redis://h/1/2", "non-negative integer"),
        ("redis://h/1?db=2", "db 1 in the path but db=2"),
        ("redis://h?db=1&db=1", "db given twice"),
        ("redis://h?db=", "non-negative integer"),
        ("redis://h?ssl_cert_reqs=none", "unsupported query parameter 'ssl_cert_reqs'"),
        ("redis://h/0#x", "fragment"),
        ("redis://alice@h", "needs a password"),
        ("unix://", "missing socket path"),
        ("unix://host/tmp/r.sock", "no host"),
        ("redis://[::1/0", "nvalid"),
    ],
)
def test_url_parse_bad(url, message):
    with pytest.raises(ConfigurationError, match=None) as info:
        RedisURL.parse(url)
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)


def test_url_parse_rejects_non_str():
    with pytest.raises(ConfigurationError, match="must be a str"):
        RedisURL.parse(b"redis://h")  # type: ignore[arg-type]


@pytest.mark.parametrize("url", ["redis://:s3cret@h:99999", "http://u:s3cret@h", "redis://u:s3cret@h/x"])
def test_url_errors_never_show_the_password(url):
    with pytest.raises(ConfigurationError) as info:
        RedisURL.parse(url)
    assert "s3cret" not in str(info.value)
    assert "***" in str(info.value)


def test_url_redacted_hides_the_password():
    u = RedisURL.parse("redis://alice:s3cret@h:1/2")
    assert u.redacted() == "redis://alice:***@h:1/2"
    assert str(u) == u.redacted()
    assert "s3cret" not in repr(u)
    assert RedisURL.parse("redis://:s3cret@h").redacted() == "redis://:***@h:6379/0"
    assert RedisURL.parse("redis://h").redacted() == "redis://h:6379/0"
    assert RedisURL.parse("unix://:pw@/tmp/r.sock?db=2").redacted() == "unix://:***@/tmp/r.sock?db=2"
    assert RedisURL.parse("redis://[::1]:7001").redacted() == "redis://[::1]:7001/0"


def test_url_is_frozen_and_accepted_by_the_client():
    u = RedisURL.parse("redis://h:1/2")
    with pytest.raises(AttributeError):
        u.db = 3  # type: ignore[misc]
    c = RedisClient(u)
    assert c.url is u
    c.close()


# --------------------------------------------------------------------------------------
# Construction
# --------------------------------------------------------------------------------------


def test_constructor_does_no_io():
    port = _unused_port()
    c = RedisClient(f"redis://127.0.0.1:{port}/0", connect_timeout=0.5)  # nothing listens
    assert c.stats()["connections"] == 0
    with pytest.raises(BackendUnavailable, match="cannot connect"):
        c.execute("PING")
    assert c.stats()["connections"] == 0
    c.close()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"socket_timeout": 0}, "socket_timeout"),
        ({"socket_timeout": -1}, "socket_timeout"),
        ({"connect_timeout": float("nan")}, "connect_timeout"),
        ({"pool_timeout": "1"}, "pool_timeout"),
        ({"max_connections": 0}, "max_connections"),
        ({"max_connections": 2.0}, "max_connections"),
        ({"client_name": "has space"}, "client_name"),
        ({"client_name": ""}, "client_name"),
        ({"ssl_context": ssl.create_default_context()}, "not rediss://"),
    ],
)
def test_constructor_rejects_bad_settings(kwargs, message):
    with pytest.raises(ConfigurationError, match=message):
        RedisClient("redis://127.0.0.1:6379/0", **kwargs)


def test_bad_url_string_raises_configuration_error():
    with pytest.raises(ConfigurationError, match="unsupported scheme"):
        RedisClient("memcached://h")


# --------------------------------------------------------------------------------------
# execute / pipeline / script
# --------------------------------------------------------------------------------------


def test_execute_returns_replies_as_hiredis_gives_them(client):
    assert client.execute("SET", "k", "v") == b"OK"
    assert client.execute("GET", "k") == b"v"
    assert client.execute("GET", "missing") is None
    assert client.execute("INCRBY", "n", 5) == 5
    assert client.execute("RPUSH", "l", b"a", 1, 2.5) == 3
    assert client.execute("LRANGE", "l", 0, -1) == [b"a", b"1", b"2.5"]
    assert client.execute("LRANGE", "missing", 0, -1) == []


def test_execute_is_binary_safe_and_handles_large_values(client):
    blob = bytes(range(256)) * 4096 + b"\r\n$-1\r\n"  # 1 MiB, with protocol-looking bytes
    assert client.execute("SET", b"\x00key\r\n", blob) == b"OK"
    assert client.execute("GET", b"\x00key\r\n") == blob
    many = client.execute("MGET", *[b"\x00key\r\n"] * 8)
    assert many == [blob] * 8


def test_error_reply_raises_with_redis_message_and_keeps_the_connection(client):
    client.execute("SET", "s", "text")
    with pytest.raises(BackendResponseError, match="^ERR value is not an integer") as info:
        client.execute("INCR", "s")
    assert isinstance(info.value, BackendError)
    assert client.execute("ECHO", "after") == b"after"
    assert client.stats()["connections"] == 1  # an error reply is not a broken connection


def test_bad_argument_raises_type_error_without_using_a_connection(client):
    client.execute("PING")
    with pytest.raises(TypeError):
        client.execute("SET", "k", None)
    with pytest.raises(TypeError):
        client.execute()
    assert client.stats() == {"connections": 1, "idle": 1, "max_connections": 50, "waiting": 0}
    assert client.execute("ECHO", "ok") == b"ok"


def test_pipeline_returns_replies_in_order_with_errors_in_place(client):
    replies = client.pipeline(
        [("SET", "a", 1), ("INCR", "a"), ("LPUSH", "a", "x"), ("GET", "a"), ("GET", "missing"), ("ECHO", b"e")]
    )
    assert replies[:2] == [b"OK", 2]
    assert isinstance(replies[2], BackendResponseError)
    assert str(replies[2]).startswith("WRONGTYPE")
    assert replies[3:] == [b"2", None, b"e"]
    assert client.execute("ECHO", "next") == b"next"


def test_pipeline_of_many_commands_and_edge_cases(client):
    n = 5000
    replies = client.pipeline([("ECHO", f"v{i}") for i in range(n)])
    assert replies == [f"v{i}".encode() for i in range(n)]
    big = [bytes([65 + i]) * 2_000_000 for i in range(8)]  # 16 MB in one write
    assert client.pipeline([("SET", f"big{i}", v) for i, v in enumerate(big)]) == [b"OK"] * 8
    assert client.pipeline([("GET", f"big{i}") for i in range(8)]) == big
    assert client.pipeline([]) == []
    assert client.pipeline([["ECHO", "list-command"]]) == [b"list-command"]  # type: ignore[list-item]
    with pytest.raises(TypeError):
        client.pipeline([("PING",), ()])


def test_pipeline_is_one_write(redis_url, monkeypatch):
    c = RedisClient(redis_url, socket_timeout=5)
    c.execute("PING")
    conn = c._idle[-1]
    writes = []

    class Spy:
        def __init__(self, sock):
            self._sock = sock

        def sendall(self, data):
            writes.append(bytes(data))
            return self._sock.sendall(data)

        def __getattr__(self, name):
            return getattr(self._sock, name)

    real = conn.sock
    conn.sock = Spy(real)
    try:
        assert c.pipeline([("ECHO", i) for i in range(10)]) == [str(i).encode() for i in range(10)]
    finally:
        conn.sock = real
    assert len(writes) == 1
    c.close()


def test_script_runs_by_sha_and_falls_back_to_eval_after_a_flush(client):
    script = client.script("return {KEYS[1], ARGV[1], redis.call('INCR', KEYS[1])}")
    assert isinstance(script, Script)
    assert script(["counter"], ["arg"]) == [b"counter", b"arg", 1]
    assert client.execute("SCRIPT", "EXISTS", script.sha) == [1]
    client.execute("SCRIPT", "FLUSH")
    assert client.execute("SCRIPT", "EXISTS", script.sha) == [0]
    assert script(["counter"], ["arg"]) == [b"counter", b"arg", 2]  # NOSCRIPT -> EVAL
    assert client.execute("SCRIPT", "EXISTS", script.sha) == [1]  # EVAL cached it again
    assert client.script("return 7")() == 7


def test_script_errors_raise(client):
    with pytest.raises(BackendResponseError, match="boom"):
        client.script("return redis.error_reply('boom')")()
    with pytest.raises(BackendResponseError):
        client.script("this is not lua")()


# --------------------------------------------------------------------------------------
# Connection setup: AUTH, SELECT, CLIENT SETNAME, unix socket, TLS
# --------------------------------------------------------------------------------------


def test_auth_with_password():
    password = "p@ss:w/rd%"
    with RedisServer(password=password) as server:
        encoded = "p%40ss%3Aw%2Frd%25"
        url = f"redis://:{encoded}@127.0.0.1:{server.port}/0"
        with RedisClient(url) as c:
            assert c.execute("PING") == b"PONG"
        with RedisClient(f"redis://:wrong@127.0.0.1:{server.port}/0") as c:
            with pytest.raises(BackendResponseError, match="WRONGPASS|invalid password"):
                c.execute("PING")
            assert c.stats()["connections"] == 0
        with RedisClient(f"redis://127.0.0.1:{server.port}/0") as c:
            with pytest.raises(BackendResponseError, match="NOAUTH"):
                c.execute("PING")


def test_auth_with_username_and_password(redis_url, redis_server):
    with RedisClient(redis_url) as admin:
        admin.execute("ACL", "SETUSER", "alice", "on", ">alice-pw", "~*", "&*", "+@all")
        try:
            with RedisClient(f"redis://alice:alice-pw@127.0.0.1:{redis_server.port}/0") as c:
                assert c.execute("ACL", "WHOAMI") == b"alice"
            with RedisClient(f"redis://alice:nope@127.0.0.1:{redis_server.port}/0") as c:
                with pytest.raises(BackendResponseError, match="WRONGPASS"):
                    c.execute("PING")
        finally:
            admin.execute("ACL", "DELUSER", "alice")


def test_select_db_and_client_name(redis_url, redis_server):
    with RedisClient(f"redis://127.0.0.1:{redis_server.port}/3", client_name="tc-test") as c3, RedisClient(
        redis_url
    ) as c0:
        c3.execute("SET", "where", "db3")
        assert c0.execute("GET", "where") is None
        assert c3.execute("GET", "where") == b"db3"
        info = c3.execute("CLIENT", "INFO").decode()
        assert " db=3 " in info
        assert c3.execute("CLIENT", "GETNAME") == b"tc-test"
        assert c0.execute("CLIENT", "GETNAME") is None


def test_select_out_of_range_db_raises():
    port = None
    with RedisServer(args=["--databases", "4"]) as server:
        port = server.port
        with RedisClient(f"redis://127.0.0.1:{port}/9") as c:
            with pytest.raises(BackendResponseError, match="DB index is out of range"):
                c.execute("PING")


def test_unix_socket():
    with RedisServer(unix_socket=True) as server:
        with RedisClient(server.unix_url + "?db=2") as c:
            assert c.execute("SET", "k", "v") == b"OK"
            assert c.execute("GET", "k") == b"v"
            assert " db=2 " in c.execute("CLIENT", "INFO").decode()
            assert c.pipeline([("ECHO", "a"), ("ECHO", "b")]) == [b"a", b"b"]
        with RedisClient(server.url) as tcp:
            assert tcp.execute("SELECT", 2) == b"OK"
            assert tcp.execute("GET", "k") == b"v"


def test_unix_socket_missing_path_is_unavailable(tmp_path):
    with RedisClient(f"unix://{tmp_path}/nothing.sock") as c:
        with pytest.raises(BackendUnavailable, match="cannot connect"):
            c.execute("PING")


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not on PATH (needed to make a test certificate)")
    d = tmp_path_factory.mktemp("tls")
    cert, key = str(d / "cert.pem"), str(d / "key.pem")
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "2",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key, cert


def test_tls(tls_files):
    cert, key, ca = tls_files
    try:
        server = RedisServer(tls=(cert, key, ca)).start()
    except Exception as exc:  # a redis-server built without TLS
        pytest.skip(f"redis-server cannot serve TLS: {exc}")
    try:
        assert server.url.startswith("rediss://")
        ctx = ssl.create_default_context(cafile=ca)
        with RedisClient(server.url, ssl_context=ctx) as c:
            assert c.execute("SET", "k", b"x" * 100_000) == b"OK"
            assert c.execute("GET", "k") == b"x" * 100_000
            assert c.pipeline([("ECHO", "a"), ("ECHO", "b")]) == [b"a", b"b"]
            server.pause()
            try:
                with pytest.raises(BackendTimeout):
                    c.execute("ECHO", "lost")
            finally:
                server.resume()
            assert c.execute("ECHO", "mine") == b"mine"
        # The default context does not trust a self-signed certificate.
        with RedisClient(server.url) as c:
            with pytest.raises(BackendUnavailable, match="cannot connect.*CERTIFICATE_VERIFY_FAILED"):
                c.execute("PING")
    finally:
        server.stop()


# --------------------------------------------------------------------------------------
# Pool
# --------------------------------------------------------------------------------------


def _hold_connection(client: RedisClient, key: str, results: list) -> threading.Thread:
    """A thread that holds one of ``client``'s connections in BLPOP until ``key`` gets an
    element."""

    def run():
        results.append(client.execute("BLPOP", key, 30))

    t = threading.Thread(target=run)
    t.start()
    return t


def test_pool_timeout_when_every_connection_is_busy(redis_url):
    c = RedisClient(redis_url, max_connections=1, pool_timeout=0.05, socket_timeout=30)
    results: list = []
    t = _hold_connection(c, "q", results)
    wait_until(lambda: blocked_clients(redis_url) == 1, what="BLPOP to block")
    with pytest.raises(PoolTimeout, match="no free connection"):
        c.execute("PING")
    assert isinstance(PoolTimeout("x"), BackendError)
    with RedisClient(redis_url) as other:
        other.execute("RPUSH", "q", "item")
    t.join(10)
    assert results == [[b"q", b"item"]]
    assert c.execute("PING") == b"PONG"
    assert c.stats()["connections"] == 1
    c.close()


def test_pool_waiter_gets_the_released_connection(redis_url):
    c = RedisClient(redis_url, max_connections=1, pool_timeout=30, socket_timeout=30)
    held: list = []
    t = _hold_connection(c, "q", held)
    wait_until(lambda: blocked_clients(redis_url) == 1, what="BLPOP to block")
    waited: list = []
    w = threading.Thread(target=lambda: waited.append(c.execute("ECHO", "waiter")))
    w.start()
    wait_until(lambda: c.stats()["waiting"] == 1, what="the waiter to wait")
    with RedisClient(redis_url) as other:
        other.execute("RPUSH", "q", "item")
    t.join(10)
    w.join(10)
    assert held == [[b"q", b"item"]]
    assert waited == [b"waiter"]
    assert c.stats()["connections"] == 1
    c.close()


def test_pool_reuses_the_most_recently_released_connection(redis_url):
    c = RedisClient(redis_url, socket_timeout=30)
    held: list = []
    t = _hold_connection(c, "q", held)
    wait_until(lambda: blocked_clients(redis_url) == 1, what="BLPOP to block")
    other_id = c.execute("CLIENT", "ID")  # a second connection
    with RedisClient(redis_url) as pusher:
        pusher.execute("RPUSH", "q", "item")
    t.join(10)
    assert c.stats()["connections"] == 2
    # The BLPOP connection was released last: LIFO hands it out, every time.
    ids = {c.execute("CLIENT", "ID") for _ in range(20)}
    assert len(ids) == 1
    assert ids != {other_id}
    c.close()


def test_threads_share_a_bounded_pool(redis_url):
    c = RedisClient(redis_url, max_connections=3, pool_timeout=10, socket_timeout=10)
    errors: list = []
    peak = [0]

    def worker(n: int) -> None:
        try:
            for i in range(300):
                token = f"{n}:{i}".encode()
                if i % 3 == 0:
                    got = c.pipeline([("ECHO", token), ("ECHO", token + b"!")])
                    assert got == [token, token + b"!"], got
                else:
                    assert c.execute("ECHO", token) == token
                peak[0] = max(peak[0], c.stats()["connections"])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert 1 <= peak[0] <= 3
    assert c.stats()["connections"] <= 3
    c.close()


# --------------------------------------------------------------------------------------
# Timeouts, failures, restarts
# --------------------------------------------------------------------------------------


def test_timeout_discards_the_connection(fresh_redis_server):
    c = RedisClient(fresh_redis_server.url, socket_timeout=0.1)
    assert c.execute("ECHO", "warm") == b"warm"
    fresh_redis_server.pause()
    try:
        with pytest.raises(BackendTimeout, match="connection discarded") as info:
            c.execute("ECHO", "first")
        assert isinstance(info.value, TimeoutError)
        assert c.stats()["connections"] == 0
    finally:
        fresh_redis_server.resume()
    # The server now answers "first" on the discarded connection; nobody reads it.
    assert c.execute("ECHO", "second") == b"second"
    assert c.pipeline([("ECHO", "third")]) == [b"third"]
    c.close()


def test_slow_command_times_out_and_the_late_reply_is_never_read(redis_url):
    c = RedisClient(redis_url, socket_timeout=0.05)
    patient = RedisClient(redis_url, socket_timeout=10)
    c.execute("SET", "k", "value")
    with pytest.raises(BackendTimeout):
        c.execute("DEBUG", "SLEEP", "0.3")
    patient.execute("PING")  # returns once the server is awake again
    assert c.execute("GET", "k") == b"value"  # not the +OK of DEBUG SLEEP
    with pytest.raises(BackendTimeout):
        c.pipeline([("DEBUG", "SLEEP", "0.3"), ("ECHO", "late")])
    patient.execute("PING")
    assert c.pipeline([("ECHO", "a"), ("GET", "k")]) == [b"a", b"value"]
    c.close()
    patient.close()


def test_server_restart_next_call_reconnects(fresh_redis_server):
    c = RedisClient(fresh_redis_server.url, socket_timeout=2)
    # Three idle connections, all about to go stale.
    held: list = []
    ts = [_hold_connection(c, f"q{i}", held) for i in range(3)]
    wait_until(lambda: blocked_clients(fresh_redis_server.url) == 3, what="3 blocked clients")
    with RedisClient(fresh_redis_server.url) as pusher:
        pusher.pipeline([("RPUSH", f"q{i}", "x") for i in range(3)])
    for t in ts:
        t.join(10)
    assert c.stats()["connections"] == 3
    fresh_redis_server.restart()
    assert c.execute("ECHO", "after restart") == b"after restart"
    assert c.stats()["connections"] == 1  # the stale ones were dropped, not tried one by one
    assert c.pipeline([("SET", "k", 1), ("GET", "k")]) == [b"OK", b"1"]
    c.close()


def test_connection_killed_by_the_server_is_replaced(redis_url):
    c = RedisClient(redis_url)
    own_id = c.execute("CLIENT", "ID")
    with RedisClient(redis_url) as admin:
        assert admin.execute("CLIENT", "KILL", "ID", own_id) == 1
    assert c.execute("ECHO", "still here") == b"still here"
    assert c.execute("CLIENT", "ID") != own_id
    c.close()


def test_server_down_raises_unavailable_then_recovers(fresh_redis_server):
    c = RedisClient(fresh_redis_server.url)
    assert c.execute("PING") == b"PONG"
    fresh_redis_server.kill()
    with pytest.raises(BackendUnavailable):
        c.execute("PING")
    with pytest.raises(BackendUnavailable):
        c.pipeline([("PING",)])
    assert c.stats()["connections"] == 0
    fresh_redis_server.restart()
    assert c.execute("PING") == b"PONG"
    c.close()


def test_connection_closed_mid_reply_is_not_retried():
    """A connection that dies after part of the reply arrived raises: the server saw the
    request, so it is not sent again."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    port = listener.getsockname()[1]
    requests: list[bytes] = []

    def serve():
        s, _ = listener.accept()
        with s:
            requests.append(s.recv(1024))
            s.sendall(b"$10\r\nhalf")  # then close mid-reply

    t = threading.Thread(target=serve)
    t.start()
    c = RedisClient(f"redis://127.0.0.1:{port}/0", socket_timeout=5)
    try:
        with pytest.raises(BackendUnavailable, match="closed by the server"):
            c.execute("GET", "k")
    finally:
        c.close()
        t.join(10)
    # A resend would have connected again (the kernel completes it without accept()).
    listener.setblocking(False)
    with pytest.raises(BlockingIOError):
        listener.accept()
    listener.close()
    assert requests == [b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"]


# --------------------------------------------------------------------------------------
# Wrong-reply safety: timeouts and interrupts at random points
# --------------------------------------------------------------------------------------


def test_sync_timeouts_never_deliver_a_reply_to_the_wrong_request(redis_url):
    """Requests time out at random points while a second client keeps stalling the server
    with DEBUG SLEEP; every reply that does arrive must be the request's own."""
    rng = random.Random(1234)
    c = RedisClient(redis_url, socket_timeout=0.001, max_connections=4)
    c.pipeline([("SET", f"key:{i}", f"key:{i}") for i in range(100)])
    stop = threading.Event()

    def staller():
        with RedisClient(redis_url, socket_timeout=5) as s:
            while not stop.is_set():
                s.execute("DEBUG", "SLEEP", "0.02")
                time.sleep(rng.uniform(0.0, 0.01))

    t = threading.Thread(target=staller)
    t.start()
    ok = timeouts = 0
    try:
        # At least 3000 requests and 200 timeouts (a timeout lasts a clock tick or more,
        # 1-10 ms); the deadline only keeps a broken build from running forever.
        deadline = time.monotonic() + 20
        i = 0
        while (i < 3000 or timeouts < 200) and time.monotonic() < deadline:
            i += 1
            try:
                if i % 3 == 0:
                    key = f"key:{rng.randrange(100)}".encode()
                    assert c.execute("GET", key) == key
                elif i % 3 == 1:
                    token = f"token:{i}".encode()
                    assert c.execute("ECHO", token) == token
                else:
                    a, b = f"p:{i}:a".encode(), f"p:{i}:b".encode()
                    assert c.pipeline([("ECHO", a), ("ECHO", b)]) == [a, b]
                ok += 1
            except BackendTimeout:
                timeouts += 1
    finally:
        stop.set()
        t.join(10)
    assert ok > 0 and timeouts > 0, (ok, timeouts)
    assert c.stats()["connections"] <= 4
    c.close()


class _Interrupt(BaseException):
    """What a signal handler raises in the middle of a request."""


# An interrupt that lands inside socket.create_connection() leaves the new socket to the
# garbage collector, which closes it with a ResourceWarning: harmless, and not avoidable
# in Python code (the exception can land between socket() returning and any try block).
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_interrupts_mid_request_never_deliver_a_reply_to_the_wrong_request(redis_url):
    """An exception raised by a signal handler at a random point of execute() (before
    the write, during it, while waiting for the reply, after it, while connecting)
    never lets a reply reach another request, and never leaks a slot of the pool."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers run in the main thread only")
    rng = random.Random(99)
    c = RedisClient(redis_url, socket_timeout=5, max_connections=2, pool_timeout=5)
    armed = [False]

    # Interrupts land in the client's own code and the socket module. Elsewhere (a
    # weakref callback, a finalizer, threading internals) Python reports them as
    # "Exception ignored" or corrupts a Condition, whatever the client does: the timer
    # is re-armed to fire a few microseconds later instead.
    here = {__file__, redis_module.__file__, socket.__file__}
    finalizers = {"close", "_real_close", "__del__", "_remove"}

    def interruptible(frame) -> bool:
        if frame is None or frame.f_code.co_filename not in here:
            return False
        while frame is not None:
            if frame.f_code.co_name in finalizers:
                return False
            frame = frame.f_back
        return True

    def handler(signum, frame):
        if not armed[0]:
            return
        if not interruptible(frame):
            signal.setitimer(signal.ITIMER_REAL, 50e-6)  # after this handler has returned
            return
        armed[0] = False
        raise _Interrupt()

    # Timers fire anywhere in a request's span, which after an interrupt includes making
    # a new connection: up to 1.5 times that (150 µs normally; more under a sanitizer or on
    # a loaded machine, where otherwise every request would be interrupted while
    # reconnecting and none would complete).
    spans = []
    for _ in range(9):
        with RedisClient(redis_url, socket_timeout=5) as fresh:
            t0 = time.perf_counter()
            fresh.execute("ECHO", b"warm")
            spans.append(time.perf_counter() - t0)
    latest = max(150e-6, 1.5 * sorted(spans)[len(spans) // 2])
    # Callbacks other libraries hang on the garbage collector (hypothesis times GC runs)
    # run inside whatever the client is doing: an interrupt landing there is reported as
    # "Exception ignored". They are set aside while the timer fires.
    gc_callbacks = gc.callbacks[:]
    gc.callbacks.clear()
    old = signal.signal(signal.SIGALRM, handler)
    ok = interrupted = 0
    try:
        for i in range(3000):
            token = f"token:{i}".encode()
            try:
                armed[0] = True
                signal.setitimer(signal.ITIMER_REAL, rng.uniform(1e-6, latest))
                if i % 4 == 0:
                    reply = c.pipeline([("ECHO", token), ("ECHO", b"+" + token)])
                    armed[0] = False
                    assert reply == [token, b"+" + token]
                else:
                    reply = c.execute("ECHO", token)
                    armed[0] = False
                    assert reply == token
                ok += 1
            except _Interrupt:
                armed[0] = False
                interrupted += 1
            finally:
                armed[0] = False
                signal.setitimer(signal.ITIMER_REAL, 0)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        gc.callbacks[:] = gc_callbacks
    assert ok > 0 and interrupted > 0, (ok, interrupted)
    # Slots held by interrupted requests came back: two connections are still usable.
    assert c.stats()["connections"] <= 2
    results: list = []
    held = _hold_connection(c, "q", results)
    wait_until(lambda: blocked_clients(redis_url) == 1, what="BLPOP to block")
    assert c.execute("ECHO", "second slot") == b"second slot"
    with RedisClient(redis_url) as pusher:
        pusher.execute("RPUSH", "q", "x")
    held.join(10)
    assert results == [[b"q", b"x"]]
    c.close()


# --------------------------------------------------------------------------------------
# Fork
# --------------------------------------------------------------------------------------


def _in_child(fn) -> int:
    """Run ``fn`` in a forked child; return its exit status (0: fn returned)."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            fn()
            code = 0
        except BaseException:  # noqa: BLE001
            import traceback

            traceback.print_exc()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_fork_child_makes_its_own_connections(redis_url):
    c = RedisClient(redis_url)
    c.execute("SET", "owner", "parent")
    parent_id = c.execute("CLIENT", "ID")

    def child():
        assert c.stats()["connections"] == 0  # the parent's were dropped, never used
        assert c.execute("GET", "owner") == b"parent"
        assert c.execute("CLIENT", "ID") != parent_id
        for i in range(200):
            assert c.execute("ECHO", f"child:{i}") == f"child:{i}".encode()
        c.execute("SET", "child-was-here", os.getpid())
        c.close()

    assert _in_child(child) == 0
    # The parent's connection is intact: nothing was sent on it, and the child's close()
    # of its copy did not shut it down.
    assert c.execute("CLIENT", "ID") == parent_id
    assert c.execute("GET", "child-was-here") is not None
    for i in range(200):
        assert c.execute("ECHO", f"parent:{i}") == f"parent:{i}".encode()
    c.close()


def test_fork_while_requests_run_in_threads(redis_url):
    c = RedisClient(redis_url, max_connections=4)
    stop = threading.Event()
    errors: list = []

    def hammer(n):
        i = 0
        while not stop.is_set():
            token = f"{n}:{i}".encode()
            try:
                assert c.execute("ECHO", token) == token
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)
                return
            i += 1

    threads = [threading.Thread(target=hammer, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    try:
        for _ in range(5):

            def child():
                for i in range(50):
                    assert c.execute("ECHO", f"child:{i}") == f"child:{i}".encode()
                assert c.stats()["connections"] == 1

            assert _in_child(child) == 0
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert errors == []
    c.close()


# --------------------------------------------------------------------------------------
# Pub/sub
# --------------------------------------------------------------------------------------


def test_pubsub_delivers_messages_in_order(client):
    ps = client.pubsub()
    assert isinstance(ps, PubSub)
    ps.subscribe("ch:a", b"ch:b")
    assert ps.channels == {b"ch:a", b"ch:b"}
    assert client.execute("PUBLISH", "ch:a", "1") == 1
    assert client.execute("PUBLISH", "ch:b", b"\x00two") == 1
    assert client.execute("PUBLISH", "ch:other", "x") == 0
    assert ps.get_message(5) == (b"ch:a", b"1")
    assert ps.get_message(5) == (b"ch:b", b"\x00two")
    assert ps.get_message(0.01) is None
    assert ps.get_message(0) is None
    ps.close()


def test_pubsub_messages_that_arrive_during_subscribe_are_kept(client):
    ps = client.pubsub()
    ps.subscribe("first")
    client.execute("PUBLISH", "first", "m1")  # in flight while we subscribe again
    ps.subscribe("second")
    client.execute("PUBLISH", "second", "m2")
    assert ps.get_message(5) == (b"first", b"m1")
    assert ps.get_message(5) == (b"second", b"m2")
    ps.close()


def test_pubsub_unsubscribe_and_ping(client):
    ps = client.pubsub()
    ps.subscribe("a", "b")
    ps.unsubscribe("a")
    ps.ping()
    before = ps.last_reply_at
    client.execute("PUBLISH", "b", "for-b")
    assert ps.get_message(5) == (b"b", b"for-b")
    assert ps.last_reply_at is not None and before is not None and ps.last_reply_at >= before
    wait_until(lambda: client.execute("PUBSUB", "NUMSUB", "a")[1] == 0, what="unsubscribe")
    assert client.execute("PUBLISH", "a", "lost") == 0
    ps.close()


def test_pubsub_get_message_before_subscribe_raises(client):
    ps = client.pubsub()
    with pytest.raises(BackendUnavailable, match="subscribe"):
        ps.get_message(0)
    ps.close()


def test_pubsub_connection_drop_raises_and_a_new_pubsub_works(fresh_redis_server):
    c = RedisClient(fresh_redis_server.url)
    ps = c.pubsub()
    ps.subscribe("ch")
    fresh_redis_server.restart()
    with pytest.raises(BackendUnavailable):
        ps.get_message(5)
    with pytest.raises(BackendUnavailable):
        ps.get_message(0)
    with pytest.raises(BackendUnavailable):
        ps.subscribe("ch")
    ps2 = c.pubsub()
    ps2.subscribe("ch")
    assert c.execute("PUBLISH", "ch", "again") == 1
    assert ps2.get_message(5) == (b"ch", b"again")
    ps.close()
    ps2.close()
    c.close()


def test_pubsub_close_from_another_thread_wakes_get_message(client):
    ps = client.pubsub()
    ps.subscribe("ch")
    outcome: list = []

    def listen():
        try:
            outcome.append(ps.get_message(30))
        except BackendUnavailable as exc:
            outcome.append(exc)

    t = threading.Thread(target=listen)
    t.start()
    time.sleep(0.05)
    ps.close()
    t.join(10)
    assert not t.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], BackendUnavailable)
    assert "closed" in str(outcome[0])


def test_pubsub_with_password_and_client_name():
    with RedisServer(password="pw") as server:
        with RedisClient(server.url, client_name="listener") as c:
            ps = c.pubsub()
            ps.subscribe("ch")
            names = c.execute("CLIENT", "LIST").decode()
            assert "name=listener" in names and "sub=1" in names
            assert c.execute("PUBLISH", "ch", "x") == 1
            assert ps.get_message(5) == (b"ch", b"x")


def test_pubsub_survives_fork_only_in_the_parent(client):
    ps = client.pubsub()
    ps.subscribe("ch")

    def child():
        try:
            ps.get_message(0)
        except BackendUnavailable:
            pass
        else:
            raise AssertionError("the child must not read the parent's subscription")

    assert _in_child(child) == 0
    assert client.execute("PUBLISH", "ch", "parent") == 1
    assert ps.get_message(5) == (b"ch", b"parent")
    ps.close()


# --------------------------------------------------------------------------------------
# close
# --------------------------------------------------------------------------------------


def test_close_makes_every_call_raise_and_closes_pubsubs(redis_url):
    c = RedisClient(redis_url)
    c.execute("PING")
    ps = c.pubsub()
    ps.subscribe("ch")
    c.close()
    c.close()  # idempotent
    for call in (lambda: c.execute("PING"), lambda: c.pipeline([("PING",)]), c.pubsub):
        with pytest.raises(BackendUnavailable, match="client closed"):
            call()
    with pytest.raises(BackendUnavailable):
        ps.get_message(0)
    assert c.stats()["idle"] == 0


def test_close_while_a_request_runs_closes_its_connection_afterwards(redis_url):
    c = RedisClient(redis_url, socket_timeout=30)
    results: list = []
    t = _hold_connection(c, "q", results)
    wait_until(lambda: blocked_clients(redis_url) == 1, what="BLPOP to block")
    with RedisClient(redis_url) as admin:
        (line,) = [ln for ln in admin.execute("CLIENT", "LIST").decode().splitlines() if "cmd=blpop" in ln]
        busy_id = line.split()[0]  # "id=N"
        c.close()
        admin.execute("RPUSH", "q", "x")
        t.join(10)
        assert results == [[b"q", b"x"]]
        wait_until(lambda: busy_id + " " not in admin.execute("CLIENT", "LIST").decode(),
                   what="the busy connection to be closed")  # fmt: skip


def test_context_manager_closes(redis_url):
    with RedisClient(redis_url) as c:
        assert c.execute("PING") == b"PONG"
    with pytest.raises(BackendUnavailable):
        c.execute("PING")


# --------------------------------------------------------------------------------------
# RedisServer helper
# --------------------------------------------------------------------------------------


def test_redis_server_helper_strips_ld_preload(monkeypatch):
    monkeypatch.setenv("LD_PRELOAD", "/nonexistent/libnothing.so")
    with RedisServer() as server:
        with open(f"/proc/{server.pid}/environ", "rb") as fh:
            env = fh.read().split(b"\0")
        assert not any(e.startswith(b"LD_PRELOAD=") for e in env)
        with RedisClient(server.url) as c:
            assert c.execute("PING") == b"PONG"


def test_redis_server_helper_missing_binary():
    from tieredcache._redis_server import RedisServerError

    with pytest.raises(RedisServerError, match="not found on PATH"):
        RedisServer(binary="redis-server-that-does-not-exist").start()


def test_redis_server_restart_keeps_the_port(fresh_redis_server):
    port, pid = fresh_redis_server.port, fresh_redis_server.pid
    fresh_redis_server.restart()
    assert fresh_redis_server.port == port and fresh_redis_server.pid != pid
    with RedisClient(fresh_redis_server.url) as c:
        assert c.execute("PING") == b"PONG"
    fresh_redis_server.stop()
    assert not fresh_redis_server.running


def _unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

"""Regression tests for what the fuzzing campaign (``hardening/fuzz.sh``) found.

Each test below failed before its fix (the same inputs are in ``tests/fuzz_corpus/``,
replayed by ``test_fuzz_corpus.py``):

- ``LocalCache.set_many`` checked its ``ttl`` and ``tags`` once per item: with an empty
  mapping a bad TTL or a lone str as tags was accepted; a bad key stored the items
  before it; a one-shot iterable of tags tagged the first item only. The reference
  model checks everything first, and tags every item.
- ``TieredCache``'s L2 payload decoder let a corrupt tags section escape as
  ``TypeError``/``RecursionError`` (the read raised instead of missing), or read a JSON
  string or object as tags (``"ab"`` became the tags ``a`` and ``b``).
- ``PubSub.get_message`` raised ``IndexError`` on a short ``message`` push and returned
  a non-bytes channel/data pair for a garbled one; a reply header declaring a huge array
  escaped as ``MemoryError`` (in the asyncio client, out of the loop's read callback, to
  the loop's exception handler, leaving the request to time out). All now raise
  ``BackendUnavailable`` (or time out), as a garbled connection should.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading

import pytest

from tieredcache import BackendTimeout, BackendUnavailable, LocalCache, TieredCache
from tieredcache._redis import RedisClient

# ---- LocalCache.set_many ----------------------------------------------------------------


@pytest.mark.parametrize("kwargs, error", [
    ({"ttl": -1}, ValueError),
    ({"ttl": float("nan")}, ValueError),
    ({"ttl": "1"}, TypeError),
    ({"tags": "t1"}, TypeError),
    ({"tags": [1]}, TypeError),
])
def test_set_many_checks_ttl_and_tags_even_for_an_empty_mapping(impl, kwargs, error):
    cache = impl(max_entries=10)
    with pytest.raises(error):
        cache.set_many({}, **kwargs)
    with pytest.raises(error):
        cache.set_many({"a": 1}, **kwargs)
    assert "a" not in cache


def test_set_many_with_a_bad_key_stores_nothing(impl):
    cache = impl(max_entries=10)
    with pytest.raises(TypeError, match="key must be str or bytes"):
        cache.set_many({b"a": 1, "b": 2, None: 3})
    assert cache.keys() == []
    assert cache.stats()["sets"] == 0


def test_set_many_reads_tags_once_so_a_generator_tags_every_item(impl):
    cache = impl(max_entries=10)
    assert cache.set_many({"a": 1, "b": 2, "c": 3}, tags=(t for t in ["x", "y"])) == 3
    assert cache.invalidate_tags("y") == 3
    assert cache.keys() == []


def test_set_many_still_stores_str_subclass_keys_as_plain_str():
    class Key(str):
        pass

    cache = LocalCache(max_entries=10)
    assert cache.set_many({Key("a"): 1, b"b": 2}, ttl=5, tags=["t"]) == 2
    assert [type(k) for k in sorted(cache.keys(), key=repr)] == [str, bytes]
    assert 4 < cache.ttl("a") <= 5
    assert cache.invalidate_tags("t") == 2


# ---- TieredCache: a corrupt tags section in an L2 payload -------------------------------

_HEADER = struct.Struct(">BQIQH")  # _tiered._HEADER: version, expires, load ms, write id, tags length


@pytest.mark.parametrize("tags", [b"5", b'"ab"', b"[1]", b'{"a":1}', b"[" * 3000, b"[\"a\"", b"\xff"],
                         ids=["number", "string", "int-tag", "object", "deep", "truncated", "not-utf8"])
def test_a_payload_with_corrupt_tags_reads_as_a_miss(redis_url, tags):
    cache = TieredCache(redis_url=redis_url, namespace="fz")
    raw = RedisClient(redis_url)
    try:
        raw.execute("SET", "tc:fz:k:key", _HEADER.pack(2, 0, 0, 0, len(tags)) + tags + b'"value"')
        assert cache.get("key", "default") == "default"
        assert cache.get_or_set("key", lambda: "loaded") == "loaded"
    finally:
        raw.close()
        cache.close()


def test_a_payload_with_good_tags_still_reads(redis_url):
    cache = TieredCache(redis_url=redis_url, namespace="fz")
    raw = RedisClient(redis_url)
    try:
        tags = b'["t1","t2"]'
        raw.execute("SET", "tc:fz:k:key", _HEADER.pack(2, 0, 0, 0, len(tags)) + tags + b'"value"')
        assert cache.get("key", "default") == "value"
    finally:
        raw.close()
        cache.close()


# ---- the Redis reply path: a server that answers garbage ---------------------------------


class GarbageServer:
    """A one-connection TCP server on loopback: answers each request with ``reply``
    (after a subscribe confirmation for SUBSCRIBE), then keeps the connection open."""

    def __init__(self, reply: bytes) -> None:
        self.reply = reply
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(5)
        self.url = f"redis://127.0.0.1:{self.sock.getsockname()[1]}/0"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(5)
            try:
                request = conn.recv(65536)
                if b"SUBSCRIBE" in request:
                    conn.sendall(b"*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n")
                conn.sendall(self.reply)
                conn.recv(65536)  # until the client closes
            except OSError:
                pass

    def close(self) -> None:
        self.sock.close()
        self.thread.join(5)


@pytest.mark.parametrize("push", [
    b"*1\r\n$7\r\nmessage\r\n",
    b"*3\r\n$7\r\nmessage\r\n:1\r\n:2\r\n",
    b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n*0\r\n",
    b"*2\r\n$8\r\npmessage\r\n$1\r\np\r\n",
], ids=["short", "ints", "array-data", "short-pattern"])
def test_a_garbled_pubsub_push_is_a_lost_connection(push):
    server = GarbageServer(push)
    client = RedisClient(server.url, socket_timeout=2)
    try:
        ps = client.pubsub()
        ps.subscribe("ch")
        with pytest.raises(BackendUnavailable, match="malformed"):
            ps.get_message(2)
        with pytest.raises(BackendUnavailable):  # done for good: subscribe again
            ps.get_message(0)
    finally:
        client.close()
        server.close()


def test_a_reply_declaring_a_huge_array_is_a_backend_error():
    # hiredis allocates the declared length at once: MemoryError where the system refuses
    # 32 GiB (now BackendUnavailable), or a wait for elements that never come (a timeout).
    server = GarbageServer(b"*4294967295\r\n")
    client = RedisClient(server.url, socket_timeout=0.5)
    try:
        with pytest.raises((BackendUnavailable, BackendTimeout)):
            client.execute("GET", "k")
        assert client.stats()["connections"] == 0  # the garbled connection was discarded
    finally:
        client.close()
        server.close()


def test_the_async_client_turns_a_huge_array_header_into_a_backend_error():
    # Before the fix the reader's MemoryError escaped the read callback: the loop's
    # exception handler got it and the request waited for its timeout.
    from tieredcache._aioredis import AsyncRedisClient

    server = GarbageServer(b"*4294967295\r\n")
    escaped = []

    async def main():
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: escaped.append(context))
        client = AsyncRedisClient(server.url, socket_timeout=0.5)
        try:
            with pytest.raises((BackendUnavailable, BackendTimeout)):
                await client.execute("GET", "k")
        finally:
            await client.aclose()

    try:
        asyncio.run(main())
    finally:
        server.close()
    assert escaped == []

"""Fuzz target (b): the payload decoders on arbitrary bytes.

The first byte picks a decoder, the rest is the payload:

- ``JsonSerializer().loads``, plain and behind the compression framing
  (``make_serializer("json", compress_threshold=0)``), on the bytes as given, on them
  zlib-compressed behind the 0x01 flag (to reach the JSON decoder through a valid frame),
  and on them after the 0x20 "tagged" flag (to reach the tag decoders);
- ``PickleSerializer(key).loads`` (and its compressed form) on the bytes as given and
  behind a valid header with a wrong MAC: a payload this process did not sign must raise
  ``SignatureError`` and never reach ``pickle.loads`` (checked by recomputing the MAC of
  anything that decodes); a signed pickle of a fuzz-built value with one byte changed
  must raise ``SignatureError`` too;
- a custom serializer wrapped by the compression framing (only flagged payloads read);
- ``TieredCache``'s L2 payload decoder (``_Core.decode``: header, tags, then the
  serializer), on the bytes as given and behind a well-formed header.

Pass: every call returns or raises ``SerializationError`` (``SignatureError`` where a MAC
is involved), the documented exceptions of ``Serializer.loads`` and of the payload
decoder; nothing else escapes, and a decoded TieredCache payload has str tags.
"""

from __future__ import annotations

import hmac
import json
import struct
import zlib

from fuzz_common import Bytes
from tieredcache import SerializationError, SignatureError, TieredCache
from tieredcache._serializers import (
    _MAC_SIZE,
    _PICKLE_HEADER,
    JsonSerializer,
    PickleSerializer,
    make_serializer,
)

SECRET = b"fuzzing-secret-key-0123456789"
JSON = JsonSerializer()
JSON_Z = make_serializer("json", compress_threshold=0)
PICKLE = PickleSerializer(SECRET)
PICKLE_Z = make_serializer("pickle", secret_key=SECRET, compress_threshold=0)


class Custom:
    """A custom serializer: latin-1 text."""

    name = "latin1"

    def dumps(self, value):
        return str(value).encode("latin-1")

    def loads(self, data):
        return bytes(data).decode("latin-1")


CUSTOM_Z = make_serializer(Custom(), compress_threshold=0)

_cores: dict[str, object] = {}


def _core(serializer: str):
    """One L1-only TieredCache per serializer, made on first use (its _Core decodes)."""
    core = _cores.get(serializer)
    if core is None:
        kwargs = {"secret_key": SECRET} if serializer == "pickle" else {}
        cache = TieredCache(namespace=f"fuzz-{serializer}", serializer=serializer, **kwargs)
        core = _cores[serializer] = cache._core
    return core


# The TieredCache payload header (_tiered._HEADER): version, expires_at_ms, load_ms,
# write id, length of the JSON tags.
_HEADER = struct.Struct(">BQIQH")


def _signed(body: bytes) -> bool:
    return len(body) > len(_PICKLE_HEADER) + _MAC_SIZE and hmac.compare_digest(
        body[len(_PICKLE_HEADER):len(_PICKLE_HEADER) + _MAC_SIZE],
        hmac.digest(SECRET, _PICKLE_HEADER + body[len(_PICKLE_HEADER) + _MAC_SIZE:], "sha256"))


def _unwrapped(data: bytes) -> bytes:
    """The payload under the compression wrapper's flag byte (inflated if compressed)."""
    if data[:1] == b"\x01":
        return zlib.decompress(data[1:])
    if data[:1] == b"\x00":
        return data[1:]
    return data


def _loads(serializer, data: bytes, signed_only: bool = False):
    try:
        value = serializer.loads(data)
    except SignatureError:
        return None
    except SerializationError:
        if signed_only:
            # Only a payload whose MAC verified may fail later, as a SerializationError.
            assert _signed(_unwrapped(data)), f"an unsigned payload got past the MAC check: {data[:60]!r}"
        return None
    if signed_only:
        assert _signed(_unwrapped(data)), f"an unsigned payload was unpickled: {data[:60]!r}"
    return value


def _value(src: Bytes, depth: int = 0):
    kind = src.below(8 if depth < 3 else 5)
    if kind == 0:
        return src.below(1 << 16) - 32768
    if kind == 1:
        return src.text(12)
    if kind == 2:
        return src.blob(12)
    if kind == 3:
        return src.double()
    if kind == 4:
        return src.pick([None, True, False])
    if kind == 5:
        return [_value(src, depth + 1) for _ in range(src.below(4))]
    if kind == 6:
        return tuple(_value(src, depth + 1) for _ in range(src.below(4)))
    return {src.text(4): _value(src, depth + 1) for _ in range(src.below(4))}


def _decode_payload(core, payload: bytes) -> None:
    try:
        value, left, load_ms, tags, wid = core.decode(payload)
    except SerializationError:
        return
    assert type(tags) is tuple and all(type(t) is str for t in tags), f"tags {tags!r}"
    ntag = _HEADER.unpack_from(payload)[4]
    if ntag:  # what was decoded as tags must have been a JSON list of those very str
        raw = json.loads(payload[_HEADER.size:_HEADER.size + ntag])
        assert type(raw) is list and tuple(raw) == tags, f"tags {tags!r} decoded from {raw!r}"


def one_input(data: bytes) -> None:
    src = Bytes(data)
    mode = src.below(12)
    if mode == 0:
        _loads(JSON, src.rest())
    elif mode == 1:
        _loads(JSON_Z, src.rest())
    elif mode == 2:
        _loads(JSON_Z, b"\x01" + zlib.compress(src.rest()))
    elif mode == 3:
        _loads(JSON, b" " + src.rest())
    elif mode == 4:
        _loads(PICKLE, src.rest(), signed_only=True)
        _loads(PICKLE_Z, b"\x00" + data, signed_only=True)
    elif mode == 5:  # a well-formed header, a MAC from the fuzzer
        _loads(PICKLE, _PICKLE_HEADER + src.rest(), signed_only=True)
        _loads(PICKLE_Z, b"\x01" + zlib.compress(_PICKLE_HEADER + data), signed_only=True)
    elif mode == 6:  # a signed payload with one byte changed (or cut short)
        good = PICKLE.dumps(_value(src))
        pos = src.below(len(good) + 1)
        if pos == len(good):
            forged = good[:src.below(len(good))]
        else:
            forged = good[:pos] + bytes([good[pos] ^ (src.byte() | 1)]) + good[pos + 1:]
        try:
            PICKLE.loads(forged)
        except SignatureError:
            pass
        else:
            raise AssertionError(f"a forged payload was accepted: {forged!r}")
    elif mode == 7:
        _loads(CUSTOM_Z, src.rest())
    elif mode == 8:
        _decode_payload(_core(src.pick(["json", "pickle"])), src.rest())
    else:  # 9..11: the payload decoder behind a well-formed header
        serializer = src.pick(["json", "pickle"])
        tags = src.blob(40)
        if src.flag():
            tags = json.dumps([src.text(6) for _ in range(src.below(3))]).encode()
        head = _HEADER.pack(2, src.uint(8) if src.flag() else 0, src.uint(4), src.uint(8), len(tags))
        _decode_payload(_core(serializer), head + tags + src.rest())

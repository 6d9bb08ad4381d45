"""Serializers: how a value becomes the bytes stored in Redis (L2), and back.

L1 keeps Python objects; only L2 needs bytes. Every L2 hit decodes, so ``loads`` is the
hot path; ``dumps`` runs on misses and writes, next to a database query.

JSON (the default)
------------------
Plain JSON values are stored as plain JSON text (UTF-8, no spaces). Every other supported
value is written as a *tagged object*, a two-key JSON object::

    {"__t":"dt","v":"2024-05-01T12:30:00.123456+02:00"}

A payload that contains at least one tagged object starts with one space; a payload that
starts with anything else holds no tags and is decoded without any Python callback, at
the speed of ``json.loads``. Either way the payload is valid JSON.

Built-in tags::

    dt     datetime   "isoformat" (naive, or tzinfo a datetime.timezone, fold 0), or
                      ["isoformat", fold, zone]: zone an IANA key (zoneinfo; the
                      isoformat is then the naive wall time), null, or an offset in
                      microseconds (under one second: CPython gh-152079)
    date   date       "2024-05-01"
    time   time       like dt
    dec    Decimal    str(d): exact, NaN, sNaN, Infinity and -0 included
    uuid   UUID       "4b3c...-..." (str)
    b64    bytes      standard base64
    tup    tuple      [items]
    set    set        [items]
    fset   frozenset  [items]
    map    dict       [[key, value], ...]: a dict with a key that is not a str, or with
                      the key "__t" (so a user dict can never be mistaken for a tag)

``register_codec`` adds tags. Types are matched exactly: a subclass (``IntEnum``,
``OrderedDict``, ``numpy.float64``, a named tuple...) is refused with a
``SerializationError`` naming it unless it has a codec of its own, because the stdlib
encoder would silently turn it into its base type and an L2 hit would then return a
different type than an L1 hit.

HOW IT WORKS: ``dumps`` first walks the containers (exact ``dict`` and ``list``) and
checks every dict key is an exact ``str`` other than ``"__t"`` and every leaf is a JSON
scalar or a type with a codec that is not a tuple. That holds for almost every value;
then the C encoder writes it, calling ``default`` only for the codec leaves (datetime,
Decimal...). Otherwise (a tuple, a non-str key, a "__t" key, a subclass) ``_prepare``
builds a tagged copy of the value in Python and the C encoder writes that.

Pickle
------
Only signed::

    b"TCPK" | version 0x01 | HMAC-SHA256(secret, b"TCPK\\x01" + pickle) (32 bytes) | pickle

``loads`` checks magic, version and MAC (``hmac.compare_digest``) before the pickle
bytes reach ``pickle.loads``: whatever fails before the MAC verifies (unsigned,
truncated, forged, another key, a broken compression frame) raises ``SignatureError`` and
is never unpickled; a verified payload that does not unpickle raises
``SerializationError``.

Compression (``compress_threshold``)
------------------------------------
A payload of at least ``compress_threshold`` bytes that zlib makes smaller is stored as::

    0x01 | zlib(payload)           zlib format: the Adler-32 check catches corruption

No JSON or pickle payload of ours starts with 0x00 or 0x01, so the built-in serializers
store the others bare, and read every form (bare, 0x00 + payload, 0x01 + zlib) whatever
their own ``compress_threshold``: turning compression on or off loses no entry. A custom
serializer's payload could start with anything: wrapped, it always gets a flag byte,
0x00 (stored) or 0x01 (zlib), and reads only flagged payloads.
"""

from __future__ import annotations

import binascii
import hmac
import json
import pickle
import zlib
from collections.abc import Callable
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from json.encoder import c_make_encoder, encode_basestring
from typing import Any, Protocol, runtime_checkable
from uuid import UUID
from zoneinfo import ZoneInfo

from ._errors import ConfigurationError, SerializationError, SignatureError

__all__ = [
    "JsonSerializer",
    "PickleSerializer",
    "Serializer",
    "make_serializer",
    "register_codec",
]


@runtime_checkable
class Serializer(Protocol):
    """What ``TieredCache`` needs from a serializer.

    ``loads`` raises ``SerializationError`` (or its subclass ``SignatureError``) on any
    bad input, never another exception.
    """

    name: str

    def dumps(self, value: Any) -> bytes: ...

    def loads(self, data: bytes) -> Any: ...


# =========================================================================================
# JSON: the codec registry
# =========================================================================================

_TAG = "__t"
_VAL = "v"
# A payload holding tags starts with this (the encoder never writes leading whitespace).
_TAGGED_FLAG = " "

_JSON_SCALARS: frozenset[type] = frozenset({str, int, float, bool, type(None)})
# Types the C encoder writes by itself, without calling ``default``: a subclass of one
# of them would be written as its base type, so a codec for one can only run through
# the slow path (_prepare).
_C_NATIVE_BASES = (str, int, float, list, tuple, dict)

# type -> function returning the tagged dict (already JSON-ready) for a value of that type
_ENCODERS: dict[type, Callable[[Any], dict[str, Any]]] = {}
# tag -> function rebuilding the value from the tagged dict's "v"
_DECODERS: dict[str, Callable[[Any], Any]] = {}
# Leaves the fast path may hand to the C encoder's ``default``: JSON scalars plus every
# codec type that the C encoder does not mistake for a native type.
_FAST_LEAVES: set[type] = set(_JSON_SCALARS)
# tag -> type, for the codecs added by register_codec (so they can be removed in tests)
_USER_CODECS: dict[str, type] = {}


def _type_name(t: type) -> str:
    module = getattr(t, "__module__", None)
    qualname = getattr(t, "__qualname__", t.__name__)
    return qualname if module in (None, "builtins") else f"{module}.{qualname}"


def _unsupported(value: Any) -> SerializationError:
    t = type(value)
    hint = ""
    for base in (*_C_NATIVE_BASES, *tuple(_ENCODERS)):
        if isinstance(value, base):
            hint = (
                f" (a subclass of {_type_name(base)}: it would come back as a plain "
                f"{_type_name(base)}, so it is refused)"
            )
            break
    return SerializationError(
        f"cannot serialize a value of type {_type_name(t)} to JSON{hint}; "
        f"add it with tieredcache.register_codec({t.__qualname__}, name, encode, decode)"
    )


def _prepare(value: Any) -> Any:
    """A JSON-ready copy of ``value``: only exact JSON types, the rest tagged.

    Recursion is bounded by the interpreter's recursion limit: a cycle or an absurdly
    deep value raises ``RecursionError`` (turned into ``SerializationError`` by dumps).
    """
    t = type(value)
    if t in _JSON_SCALARS:
        return value
    if t is dict:
        if _TAG not in value:
            for k in value:
                if type(k) is not str:
                    break
            else:
                return {k: _prepare(v) for k, v in value.items()}
        return {_TAG: "map", _VAL: [[_prepare(k), _prepare(v)] for k, v in value.items()]}
    if t is list:
        return [_prepare(item) for item in value]
    encode = _ENCODERS.get(t)
    if encode is None:
        raise _unsupported(value)
    return encode(value)


def _scan(
    value: dict[Any, Any] | list[Any],
    _type: Callable[[Any], type] = type,
    _str: type = str,
    _dict: type = dict,
    _list: type = list,
    _scalars: frozenset[type] = _JSON_SCALARS,
    _leaves: set[type] = _FAST_LEAVES,
) -> int:
    """Whether the C encoder can write ``value`` as it stands: 0 no, 1 yes (no tags),
    3 yes but ``default`` will write tags.

    Work: one visit per dict key, container and leaf, stopping at the first "no"
    (~1.9 us for a 1 KB dict, about a third of encoding it). Recursion is bounded like
    _prepare's.
    """
    found = 1
    items: Any = value
    if _type(value) is _dict:
        if _TAG in value:
            return 0
        for k in value:
            if _type(k) is not _str:
                return 0
        items = value.values()
    for item in items:
        t = _type(item)
        if t in _scalars:
            continue
        if t is _dict or t is _list:
            sub = _scan(item)
            if not sub:
                return 0
            found |= sub
        elif t in _leaves:
            found = 3
        else:
            return 0
    return found


def _default(value: Any) -> Any:
    """``default`` of the C encoder: it is only handed the codec leaves _scan let by."""
    encode = _ENCODERS.get(type(value))
    if encode is None:
        raise _unsupported(value)
    return encode(value)


# ---- built-in codecs -------------------------------------------------------------------


_UTC = timezone.utc
_ONE_SECOND = timedelta(seconds=1)
_ONE_MICROSECOND = timedelta(microseconds=1)


def _encode_clock(tag: str) -> Callable[[Any], dict[str, Any]]:
    """The encoder of ``datetime`` (tag "dt") or ``time`` (tag "time")."""

    def encode(value: Any) -> dict[str, Any]:
        tz = value.tzinfo
        zone: str | int | None = None
        if tz is None or tz is _UTC:
            pass
        elif type(tz) is ZoneInfo and tz.key is not None:
            # Wall time, fold and zone: exact even in a DST gap or overlap.
            zone = tz.key
            value = value.replace(tzinfo=None)
        else:
            if type(tz) is not timezone:
                # pytz, dateutil, bson's FixedOffset, a ZoneInfo without a key: the
                # instant is kept, as a fixed offset (equal, same utcoffset()).
                offset = value.utcoffset()
                fixed = None if offset is None else timezone(offset)
                value = value.replace(tzinfo=fixed, fold=0)
            offset = value.utcoffset()
            if offset and -_ONE_SECOND < offset < _ONE_SECOND:
                # CPython's fromisoformat() reads an offset under one second as UTC
                # (gh-152079), so such an offset is stored apart, in microseconds.
                zone = offset // _ONE_MICROSECOND
                value = value.replace(tzinfo=None)
        if zone is None and value.fold == 0:
            return {_TAG: tag, _VAL: value.isoformat()}
        return {_TAG: tag, _VAL: [value.isoformat(), value.fold, zone]}

    return encode


def _decode_clock(cls: type[datetime] | type[time]) -> Callable[[Any], Any]:
    def decode(v: Any) -> Any:
        if type(v) is str:
            return cls.fromisoformat(v)
        iso, fold, zone = v
        value = cls.fromisoformat(iso)
        if type(zone) is str:
            value = value.replace(tzinfo=ZoneInfo(zone))
        elif type(zone) is int:
            value = value.replace(tzinfo=timezone(zone * _ONE_MICROSECOND))
        elif zone is not None:
            raise SerializationError(f"a bad zone in a {cls.__name__}: {zone!r}")
        return value.replace(fold=fold)

    return decode


def _decode_bytes(v: str) -> bytes:
    return binascii.a2b_base64(v, strict_mode=True)


def _from_list(build: Callable[[list[Any]], Any], tag: str) -> Callable[[Any], Any]:
    def decode(v: Any) -> Any:
        if type(v) is not list:
            raise SerializationError(f"a {tag!r} tag must hold a list")
        return build(v)

    return decode


def _add_builtin(
    type_: type | None,
    name: str,
    encode: Callable[[Any], Any] | None,
    decode: Callable[[Any], Any],
    *,
    fast: bool = True,
) -> None:
    _DECODERS[name] = decode
    if type_ is not None and encode is not None:
        _ENCODERS[type_] = encode
        if fast:
            _FAST_LEAVES.add(type_)


def _encode_items(tag: str) -> Callable[[Any], dict[str, Any]]:
    return lambda items: {_TAG: tag, _VAL: [_prepare(item) for item in items]}


def _encode_iso(tag: str) -> Callable[[Any], dict[str, Any]]:
    return lambda value: {_TAG: tag, _VAL: value.isoformat()}


def _encode_bytes(value: bytes) -> dict[str, Any]:
    return {_TAG: "b64", _VAL: binascii.b2a_base64(value, newline=False).decode("ascii")}


_add_builtin(datetime, "dt", _encode_clock("dt"), _decode_clock(datetime))
_add_builtin(date, "date", _encode_iso("date"), date.fromisoformat)
_add_builtin(time, "time", _encode_clock("time"), _decode_clock(time))
_add_builtin(Decimal, "dec", lambda d: {_TAG: "dec", _VAL: str(d)}, Decimal)
_add_builtin(UUID, "uuid", lambda u: {_TAG: "uuid", _VAL: str(u)}, UUID)
_add_builtin(bytes, "b64", _encode_bytes, _decode_bytes)
_add_builtin(tuple, "tup", _encode_items("tup"), _from_list(tuple, "tup"), fast=False)
_add_builtin(set, "set", _encode_items("set"), _from_list(set, "set"))
_add_builtin(frozenset, "fset", _encode_items("fset"), _from_list(frozenset, "fset"))
_add_builtin(None, "map", None, _from_list(dict, "map"))
_BUILTIN_TAGS = frozenset(_DECODERS)
_BUILTIN_TYPES: frozenset[type] = frozenset(_ENCODERS) | _JSON_SCALARS | {dict, list}


def register_codec(
    type_: type,
    name: str,
    encode: Callable[[Any], Any],
    decode: Callable[[Any], Any],
) -> None:
    """Teach the JSON serializer a type.

    ``encode(obj)`` returns a value the JSON serializer accepts (plain JSON, or any
    supported type, tuples and datetimes included); ``decode(that)`` rebuilds the object.
    The value is stored as ``{"__t": name, "v": encode(obj)}``, so ``name`` is part of
    the stored format: every process reading the same Redis must register the same
    codecs under the same names. Matching is by exact type (subclasses need their own).

    Registering a type again under the same name replaces its functions (a module
    imported twice). Raises ``TypeError`` if ``type_`` is not a type or a function is not
    callable; ``ValueError`` if ``name`` is empty or another type's (built-in ones
    included), or ``type_`` has a codec under another name or is supported natively.
    """
    if not isinstance(type_, type):
        raise TypeError(f"register_codec() needs a type, not {type(type_).__name__}")
    if not isinstance(name, str):
        raise TypeError(f"a codec name must be a str, not {type(name).__name__}")
    if not callable(encode) or not callable(decode):
        raise TypeError("encode and decode must be callable")
    if not name:
        raise ValueError("a codec name must not be empty")
    if name in _BUILTIN_TAGS:
        raise ValueError(f"the codec name {name!r} is already used by a built-in type")
    if type_ in _BUILTIN_TYPES:
        raise ValueError(f"{_type_name(type_)} is supported natively; it takes no codec")
    owner = _USER_CODECS.get(name)
    if owner is not None and owner is not type_:
        raise ValueError(f"the codec name {name!r} is already used by {_type_name(owner)}")
    if owner is None and type_ in _ENCODERS:
        raise ValueError(f"{_type_name(type_)} already has a codec, under another name")

    def encode_tagged(value: Any) -> dict[str, Any]:
        return {_TAG: name, _VAL: _prepare(encode(value))}

    _USER_CODECS[name] = type_
    _DECODERS[name] = decode
    _ENCODERS[type_] = encode_tagged
    if not issubclass(type_, _C_NATIVE_BASES):
        _FAST_LEAVES.add(type_)


def _unregister_codec(name: str) -> None:
    """Remove a codec added by ``register_codec`` (for tests). Unknown names are ignored."""
    type_ = _USER_CODECS.pop(name, None)
    if type_ is None:
        return
    del _DECODERS[name]
    del _ENCODERS[type_]
    _FAST_LEAVES.discard(type_)


# =========================================================================================
# JSON: encoding and decoding
# =========================================================================================


def _make_encoder() -> Callable[[Any], str]:
    """The C encoder, built once: compact, UTF-8 (not \\u escapes), NaN allowed, no
    circular check (a cycle ends in RecursionError). Falls back to the public API if the
    private constructor ever changes shape.
    """
    fallback = json.JSONEncoder(
        ensure_ascii=False,
        check_circular=False,
        allow_nan=True,
        separators=(",", ":"),
        default=_default,
    ).encode
    if c_make_encoder is None:
        return fallback
    try:
        c_encoder = c_make_encoder(
            None, _default, encode_basestring, None, ":", ",", False, False, True
        )

        def encode(value: Any, _join: Callable[[Any], str] = "".join) -> str:
            return _join(c_encoder(value, 0))

        probe = {"a": [1, 2.5, None, True, "é"], "b": {"c": float("nan")}}
        if encode(probe) != fallback(probe):
            return fallback
    except Exception:
        return fallback
    return encode


_encode_json = _make_encoder()


def _object_hook(obj: dict[str, Any], _tag: str = _TAG) -> Any:
    if _tag not in obj:
        return obj
    name = obj[_tag]
    decode = _DECODERS.get(name) if type(name) is str else None
    if decode is None:
        raise SerializationError(
            f"unknown type tag {name!r}: register its codec with "
            f"tieredcache.register_codec() in every process that reads this data"
        )
    if len(obj) != 2 or _VAL not in obj:
        raise SerializationError(f"a malformed {name!r} tag: {sorted(obj)}")
    try:
        return decode(obj[_VAL])
    except SerializationError:
        raise
    except Exception as exc:
        raise SerializationError(f"cannot decode a {name!r} value: {exc!r}") from exc


_scan_plain = json.JSONDecoder().scan_once
_scan_tagged = json.JSONDecoder(object_hook=_object_hook).scan_once


class JsonSerializer:
    """JSON that round-trips more than JSON: see the module docstring for the format."""

    name = "json"

    def dumps(self, value: Any) -> bytes:
        try:
            t = type(value)
            if t is dict or t is list:
                kind = _scan(value)
            elif t in _JSON_SCALARS:
                kind = 1
            elif t in _FAST_LEAVES:
                kind = 3
            else:
                kind = 0
            if kind == 1:
                return _encode_json(value).encode("utf-8", "surrogatepass")
            if kind == 0:
                value = _prepare(value)
            return (_TAGGED_FLAG + _encode_json(value)).encode("utf-8", "surrogatepass")
        except SerializationError:
            raise
        except RecursionError as exc:
            raise SerializationError(
                "cannot serialize: the value is circular or nested too deeply"
            ) from exc
        except Exception as exc:
            raise SerializationError(f"cannot serialize to JSON: {exc!r}") from exc

    def loads(self, data: bytes) -> Any:
        try:
            if data and data[0] <= _FLAG_ZLIB:  # written with compress_threshold
                data = _unframe(data)
            text = str(data, "utf-8", "surrogatepass")
            if text[:1] == _TAGGED_FLAG:
                value, end = _scan_tagged(text, 1)
            else:
                value, end = _scan_plain(text, 0)
        except SerializationError:
            raise
        except StopIteration:
            raise SerializationError("not a JSON payload") from None
        except RecursionError as exc:
            raise SerializationError("the JSON payload is nested too deeply") from exc
        except Exception as exc:
            raise SerializationError(f"cannot decode the JSON payload: {exc!r}") from exc
        if end != len(text):
            raise SerializationError(f"extra data after the JSON value, at offset {end}")
        return value

    def __repr__(self) -> str:
        return "JsonSerializer()"


# =========================================================================================
# Pickle, signed
# =========================================================================================

_PICKLE_MAGIC = b"TCPK"
_PICKLE_VERSION = 1
_PICKLE_HEADER = _PICKLE_MAGIC + bytes([_PICKLE_VERSION])
_MAC_SIZE = 32  # SHA-256
_PICKLE_PROTOCOL = 5
MIN_SECRET_KEY_BYTES = 16


class PickleSerializer:
    """Pickle whose payloads carry an HMAC-SHA256; nothing unsigned is ever unpickled.

    Anyone who can write to the Redis instance can plant a payload; unpickling it would
    run their code in this process. The MAC, checked before ``pickle.loads``, means only
    holders of ``secret_key`` can produce a payload this serializer will unpickle.
    """

    name = "pickle"

    def __init__(self, secret_key: bytes | str) -> None:
        if isinstance(secret_key, str):
            key = secret_key.encode("utf-8")
        elif isinstance(secret_key, bytes):
            key = secret_key
        elif secret_key is None:
            raise ConfigurationError("the pickle serializer needs a secret_key")
        else:
            raise ConfigurationError(
                f"secret_key must be bytes or str, not {type(secret_key).__name__}"
            )
        if len(key) < MIN_SECRET_KEY_BYTES:
            raise ConfigurationError(
                f"secret_key must be at least {MIN_SECRET_KEY_BYTES} bytes "
                f"(got {len(key)}): it is all that stands between Redis and pickle.loads"
            )
        self._key = key

    def dumps(self, value: Any) -> bytes:
        try:
            body = pickle.dumps(value, protocol=_PICKLE_PROTOCOL)
        except RecursionError as exc:
            raise SerializationError("cannot pickle: nested too deeply") from exc
        except Exception as exc:
            raise SerializationError(f"cannot pickle: {exc!r}") from exc
        mac = hmac.digest(self._key, _PICKLE_HEADER + body, "sha256")
        return b"".join((_PICKLE_HEADER, mac, body))

    def loads(self, data: bytes) -> Any:
        if not isinstance(data, bytes):
            try:
                data = bytes(data)
            except Exception:
                raise SerializationError(
                    f"a payload must be bytes, not {type(data).__name__}"
                ) from None
        if data and data[0] <= _FLAG_ZLIB:  # written with compress_threshold
            try:
                data = _unframe(data)
            except SerializationError as exc:
                # Whatever fails before the MAC is checked is an unauthenticated payload.
                raise SignatureError(f"not a signed pickle payload: {exc}") from exc
        start = len(_PICKLE_HEADER) + _MAC_SIZE
        if len(data) <= start or data[: len(_PICKLE_MAGIC)] != _PICKLE_MAGIC:
            raise SignatureError("not a signed pickle payload (unsigned or truncated)")
        if data[len(_PICKLE_MAGIC)] != _PICKLE_VERSION:
            version = data[len(_PICKLE_MAGIC)]
            raise SignatureError(f"unknown signed pickle version {version}")
        body = data[start:]
        expected = hmac.digest(self._key, _PICKLE_HEADER + body, "sha256")
        if not hmac.compare_digest(data[len(_PICKLE_HEADER) : start], expected):
            raise SignatureError("wrong signature: a forged payload, or another key's")
        try:
            return pickle.loads(body)
        except RecursionError as exc:
            raise SerializationError("cannot unpickle: nested too deeply") from exc
        except Exception as exc:
            raise SerializationError(f"cannot unpickle a signed payload: {exc!r}") from exc

    def __repr__(self) -> str:
        return "PickleSerializer(secret_key=<hidden>)"

    def __reduce__(self) -> Any:
        # Pickling a serializer would write its key wherever the pickle goes.
        raise TypeError("a PickleSerializer holds a secret key and cannot be pickled")


# =========================================================================================
# Compression
# =========================================================================================

_FLAG_STORED = 0x00
_FLAG_ZLIB = 0x01
# A decompressed payload larger than this is refused: a few bytes planted in Redis must
# not make every reader allocate gigabytes (zlib expands up to ~1000x).
MAX_DECOMPRESSED_BYTES = 256 * 1024 * 1024


def _unframe(data: Any) -> Any:
    """The payload inside a flagged one (0x00 stored, 0x01 zlib); SerializationError if
    the flag is unknown or the compressed data is corrupt, truncated or too large.
    """
    if not data:
        raise SerializationError("an empty payload")
    flag = data[0]
    if flag == _FLAG_STORED:
        return data[1:]
    if flag != _FLAG_ZLIB:
        raise SerializationError(f"unknown payload format byte 0x{flag:02x}")
    inflater = zlib.decompressobj()
    try:
        payload = inflater.decompress(memoryview(data)[1:], MAX_DECOMPRESSED_BYTES)
    except Exception as exc:
        raise SerializationError(f"corrupt compressed payload: {exc}") from exc
    if inflater.unconsumed_tail:
        raise SerializationError(
            f"compressed payload inflates beyond {MAX_DECOMPRESSED_BYTES} bytes"
        )
    if not inflater.eof:
        raise SerializationError("corrupt compressed payload: truncated")
    if inflater.unused_data:
        raise SerializationError("corrupt compressed payload: data after the end")
    return payload


class _ZlibSerializer:
    """Wraps a serializer: payloads of at least ``threshold`` bytes are zlib-compressed
    (when that makes them smaller) behind the flag byte 0x01.

    A built-in inner serializer reads every framing itself, and its payloads never start
    with a flag byte, so an uncompressed payload is stored bare. A custom one gets the
    flag byte 0x00 in front of an uncompressed payload, and only flagged payloads read.
    """

    def __init__(self, inner: Serializer, threshold: int, level: int = 6) -> None:
        self.inner = inner
        self.threshold = threshold
        self.level = level
        self.name = f"{inner.name}+zlib"
        self._builtin = isinstance(inner, (JsonSerializer, PickleSerializer))

    def dumps(self, value: Any) -> bytes:
        payload = self.inner.dumps(value)
        if not isinstance(payload, bytes):
            raise SerializationError(
                f"serializer {self.inner.name!r} returned "
                f"{type(payload).__name__}, not bytes"
            )
        if len(payload) >= self.threshold:
            packed = zlib.compress(payload, self.level)
            if len(packed) < len(payload):
                return b"\x01" + packed
        return payload if self._builtin else b"\x00" + payload

    def loads(self, data: bytes) -> Any:
        if self._builtin:
            return self.inner.loads(data)
        return self.inner.loads(_unframe(data))

    def __repr__(self) -> str:
        return f"make_serializer({self.inner!r}, compress_threshold={self.threshold})"


# =========================================================================================
# Factory
# =========================================================================================


def make_serializer(
    spec: str | Serializer,
    *,
    secret_key: bytes | str | None = None,
    compress_threshold: int | None = None,
) -> Serializer:
    """The serializer ``TieredCache(serializer=spec, ...)`` uses.

    ``spec`` is ``"json"``, ``"pickle"`` (needs ``secret_key``) or an object with ``name``,
    ``dumps`` and ``loads``. With ``compress_threshold``, payloads of at least that many
    bytes are zlib-compressed. Raises ``ConfigurationError`` on a bad setting.
    """
    serializer: Serializer
    if isinstance(spec, str):
        if spec == "json":
            serializer = JsonSerializer()
        elif spec == "pickle":
            if secret_key is None or secret_key in (b"", ""):
                raise ConfigurationError(
                    "serializer='pickle' requires secret_key: payloads are read back from "
                    "a shared Redis, and unpickling one that is not signed lets anyone who "
                    "can write to that Redis run code in this process (remote code "
                    "execution). Pass secret_key (16 bytes or more), or use 'json'."
                )
            serializer = PickleSerializer(secret_key)
        else:
            raise ConfigurationError(
                f"unknown serializer {spec!r}: use 'json', 'pickle' (with secret_key) or "
                f"an object with name, dumps and loads"
            )
    elif (
        not isinstance(spec, type)
        and isinstance(getattr(spec, "name", None), str)
        and callable(getattr(spec, "dumps", None))
        and callable(getattr(spec, "loads", None))
    ):
        serializer = spec
    else:
        raise ConfigurationError(
            f"serializer must be 'json', 'pickle' or an instance with a str name, dumps "
            f"and loads; got {spec!r}"
        )
    if compress_threshold is None:
        return serializer
    if (
        not isinstance(compress_threshold, int)
        or isinstance(compress_threshold, bool)
        or compress_threshold < 0
    ):
        raise ConfigurationError(
            f"compress_threshold must be None or an int >= 0, not {compress_threshold!r}"
        )
    return _ZlibSerializer(serializer, compress_threshold)

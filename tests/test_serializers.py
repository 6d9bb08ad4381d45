"""Serializers: what a value looks like in Redis, and that it comes back exactly.

"Exactly" means the same types all the way down (a tuple stays a tuple, an aware datetime
keeps its zone and fold, ``Decimal("1.10")`` keeps its trailing zero), so an L2 hit
returns what an L1 hit would. ``same()`` below is that comparison; ``==`` is not enough
(``1 == 1.0 == True``, ``(1,) != [1]`` but ``{"a": (1,)}`` vs ``{"a": [1]}``...).
"""

from __future__ import annotations

import collections
import enum
import hmac
import json
import math
import os
import pickle
import shlex
import zlib
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple
from uuid import UUID
from zoneinfo import ZoneInfo

import bson
import pytest
from bson.codec_options import CodecOptions
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tieredcache import _serializers
from tieredcache._errors import ConfigurationError, SerializationError, SignatureError
from tieredcache._serializers import (
    JsonSerializer,
    PickleSerializer,
    Serializer,
    _unregister_codec,
    make_serializer,
    register_codec,
)

KEY = b"k" * 32
OTHER_KEY = b"o" * 32
PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")
IST_NEGATIVE = timezone(timedelta(hours=-5, minutes=-30))
ODD_OFFSET = timezone(timedelta(seconds=561, microseconds=5))


# =========================================================================================
# helpers
# =========================================================================================


def same(a: Any, b: Any) -> bool:
    """Equal, with identical types at every level; NaN equals NaN; zones and folds count."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        if math.isnan(a):
            return math.isnan(b)
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    if isinstance(a, Decimal):
        return str(a) == str(b)
    if isinstance(a, (datetime, time)):
        return (
            a.replace(tzinfo=None) == b.replace(tzinfo=None)
            and a.fold == b.fold
            and type(a.tzinfo) is type(b.tzinfo)
            and getattr(a.tzinfo, "key", None) == getattr(b.tzinfo, "key", None)
            and a.utcoffset() == b.utcoffset()
        )
    if isinstance(a, dict):
        return len(a) == len(b) and all(
            same(ka, kb) and same(va, vb)
            for (ka, va), (kb, vb) in zip(a.items(), b.items(), strict=True)
        )
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, (set, frozenset)):
        return len(a) == len(b) and all(any(same(x, y) for y in b) for x in a)
    return bool(a == b)


def roundtrip(serializer: Serializer, value: Any) -> Any:
    data = serializer.dumps(value)
    assert type(data) is bytes
    return serializer.loads(data)


@pytest.fixture(scope="module")
def objectid_codec():
    """pymongo's ObjectId as the JSON serializer's "objectid" type, for this module."""
    register_codec(bson.ObjectId, "objectid", str, bson.ObjectId)
    yield
    _unregister_codec("objectid")


@pytest.fixture
def codecs():
    """Register codecs for one test; they are removed afterwards."""
    names = []

    def add(type_, name, encode, decode):
        register_codec(type_, name, encode, decode)
        names.append(name)

    yield add
    for name in names:
        _unregister_codec(name)


JSON = JsonSerializer()


# =========================================================================================
# JSON: exact round trips
# =========================================================================================

ROUNDTRIP_VALUES = {
    "none": None,
    "bools": [True, False],
    "ints": [0, -1, 2**63, -(2**200)],
    "floats": [0.1, -0.0, 1e308, 5e-324, math.inf, -math.inf, math.nan],
    "str": "plain ascii",
    "unicode": "héllo wörld ✓ 🐍 \u0000\x1f",
    "lone surrogates": "\ud800 and \udfff",
    "empty containers": {"d": {}, "l": [], "t": (), "s": set(), "f": frozenset()},
    "naive datetime": datetime(2024, 5, 1, 12, 30, 15),
    "datetime with microseconds": datetime(2024, 5, 1, 12, 30, 15, 123456),
    "utc datetime": datetime(2024, 5, 1, 12, 30, tzinfo=timezone.utc),
    "fixed offset datetime": datetime(2024, 5, 1, 12, 30, 0, 7, tzinfo=IST_NEGATIVE),
    "sub-minute offset": datetime(1900, 1, 1, tzinfo=ODD_OFFSET),
    "zoneinfo datetime": datetime(2024, 7, 1, 9, 0, tzinfo=PARIS),
    "zoneinfo datetime, repeated hour, fold 1": datetime(2024, 11, 3, 1, 30, fold=1, tzinfo=NEW_YORK),
    "zoneinfo datetime in the spring-forward gap": datetime(2024, 3, 31, 2, 30, tzinfo=PARIS),
    "naive datetime with fold 1": datetime(2024, 11, 3, 1, 30, fold=1),
    "offset under a second (CPython gh-152079)": [
        datetime(2020, 1, 1, tzinfo=timezone(timedelta(microseconds=-1))),
        time(tzinfo=timezone(timedelta(microseconds=999_999))),
    ],
    "datetime extremes": [datetime.min, datetime.max],
    "date": date(2024, 2, 29),
    "time": time(23, 59, 59, 999999),
    "aware time": time(8, 15, tzinfo=timezone(timedelta(hours=2))),
    "time with fold": time(1, 30, fold=1),
    "zoneinfo time": time(8, 15, tzinfo=PARIS),
    "decimals": [Decimal(d) for d in ("1.10", "-0", "1E+3", "3.14159265358979323846264338327950")],
    "special decimals": [Decimal(d) for d in ("NaN", "-sNaN12", "Infinity", "-Infinity")],
    "uuid": UUID("12345678-1234-5678-1234-567812345678"),
    "bytes": [b"", b"\x00\xff binary \x80", bytes(range(256))],
    "tuple": (1, "a", None),
    "nested tuples": ((1, (2, (3, ()))),),
    "set": {1, "two", (3, 4), frozenset({5})},
    "frozenset": frozenset({b"x", Decimal("1.5"), date(2020, 1, 1)}),
    "int keys": {1: "a", 2: "b", -3: "c"},
    "mixed keys": {"a": 1, 2: "b", None: 3, True: 4, 1.5: 5, (1, 2): 6},
    "exotic keys": {
        frozenset({1}): 1, datetime(2020, 1, 1): 2, UUID(int=1): 3, b"k": 4, Decimal("2.50"): 5
    },
    "the tag key as user data": {"__t": "x"},
    "a user dict shaped like a tag": {"__t": "dt", "v": "2024-05-01T00:00:00"},
    "a user dict shaped like a map tag": {"__t": "map", "v": [["a", 1]]},
    "user dicts shaped like tags, nested": [{"__t": "tup", "v": [1]}, {"x": {"__t": "set"}}],
    "a user dict shaped like a tag next to a real tag": [{"__t": "dt", "v": "2024"}, date.min],
    "a v key alone": {"v": 1, "t": 2},
    "tag-looking strings": ["__t", '{"__t":"dt"}', " leading space"],
    "everything nested": {
        "when": [datetime(2024, 1, 1, tzinfo=PARIS), date(2024, 1, 1)],
        "money": {"total": Decimal("10.00"), "parts": (Decimal("4.50"), Decimal("5.50"))},
        "ids": {UUID(int=7), UUID(int=8)},
        "blobs": {"raw": b"\x01\x02"},
        "matrix": [[1, 2], (3, 4), {5: [6, (7,)]}],
    },
}


@pytest.mark.parametrize("value", ROUNDTRIP_VALUES.values(), ids=ROUNDTRIP_VALUES.keys())
def test_json_round_trips_supported_values_exactly(value):
    assert same(roundtrip(JSON, value), value)


@pytest.mark.parametrize("value", ROUNDTRIP_VALUES.values(), ids=ROUNDTRIP_VALUES.keys())
def test_json_round_trips_each_supported_value_at_the_top_level_and_deep_inside(value):
    in_a_set = {value} if _hashable(value) else value
    for wrapped in ([value], {"k": value}, ({"k": [value]},), {1: in_a_set}):
        assert same(roundtrip(JSON, wrapped), wrapped)


def _hashable(value):
    try:
        hash(value)
    except TypeError:
        return False
    return not (isinstance(value, float) and math.isnan(value))


def test_zoneinfo_datetimes_come_back_with_the_same_zone_object():
    back = roundtrip(JSON, datetime(2024, 7, 1, 9, 0, tzinfo=PARIS))
    assert back.tzinfo is PARIS


def test_other_tzinfo_implementations_come_back_as_the_same_instant_with_a_fixed_offset():
    """bson's FixedOffset (or pytz, dateutil) is not stored by name: the instant is kept."""
    value = datetime(2024, 1, 1, 12, tzinfo=bson.tz_util.FixedOffset(90, "X"))
    back = roundtrip(JSON, value)
    assert back == value
    assert back.utcoffset() == timedelta(minutes=90)
    assert type(back.tzinfo) is timezone


# =========================================================================================
# JSON: the stored format
# =========================================================================================


def test_plain_json_values_are_stored_as_compact_plain_json():
    value = {"id": 1, "name": "Zoë", "tags": ["a", "b"], "score": 1.5, "ok": True, "x": None}
    data = JSON.dumps(value)
    assert data == '{"id":1,"name":"Zoë","tags":["a","b"],"score":1.5,"ok":true,"x":null}'.encode()
    assert json.loads(data) == value


def test_tagged_payloads_start_with_a_space_and_are_still_valid_json():
    data = JSON.dumps({"at": datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=timezone.utc)})
    assert data == b' {"at":{"__t":"dt","v":"2024-05-01T12:30:15.123456+00:00"}}'
    assert json.loads(data) == {"at": {"__t": "dt", "v": "2024-05-01T12:30:15.123456+00:00"}}


@pytest.mark.parametrize(
    "value, stored",
    [
        (date(2024, 5, 1), {"__t": "date", "v": "2024-05-01"}),
        (time(8, 0, 1), {"__t": "time", "v": "08:00:01"}),
        (
            datetime(2024, 7, 1, 9, tzinfo=PARIS),
            {"__t": "dt", "v": ["2024-07-01T09:00:00", 0, "Europe/Paris"]},
        ),
        (
            datetime(2024, 11, 3, 1, 30, fold=1),
            {"__t": "dt", "v": ["2024-11-03T01:30:00", 1, None]},
        ),
        (Decimal("1.10"), {"__t": "dec", "v": "1.10"}),
        (UUID(int=1), {"__t": "uuid", "v": "00000000-0000-0000-0000-000000000001"}),
        (b"\x00\xff", {"__t": "b64", "v": "AP8="}),
        ((1, 2), {"__t": "tup", "v": [1, 2]}),
        ({3}, {"__t": "set", "v": [3]}),
        (frozenset({4}), {"__t": "fset", "v": [4]}),
        (
            datetime(2024, 1, 1, tzinfo=timezone(timedelta(microseconds=5))),
            {"__t": "dt", "v": ["2024-01-01T00:00:00", 0, 5]},
        ),
        ({1: "a"}, {"__t": "map", "v": [[1, "a"]]}),
        ({"__t": 1}, {"__t": "map", "v": [["__t", 1]]}),
    ],
    ids=[
        "date", "time", "dt zoneinfo", "dt fold", "dec", "uuid", "b64", "tup", "set", "fset",
        "dt offset under 1s", "map", "map escape",
    ],
)
def test_each_built_in_tag_is_stored_like_this(value, stored):
    assert json.loads(JSON.dumps(value)) == stored


def test_a_user_dict_shaped_like_a_tag_is_escaped_not_decoded():
    fake = {"__t": "dt", "v": "2024-05-01T00:00:00"}
    stored = {"__t": "map", "v": [["__t", "dt"], ["v", "2024-05-01T00:00:00"]]}
    assert json.loads(JSON.dumps(fake)) == stored
    assert roundtrip(JSON, fake) == fake


def test_non_ascii_text_is_stored_as_utf8_not_escapes():
    assert JSON.dumps("日本") == '"日本"'.encode()


def test_the_json_serializer_satisfies_the_protocol():
    assert isinstance(JSON, Serializer)
    assert JSON.name == "json"


# =========================================================================================
# JSON: what it refuses
# =========================================================================================


class Color(enum.IntEnum):
    RED = 1


class Mood(enum.StrEnum):
    HAPPY = "happy"


class Point(NamedTuple):
    x: int
    y: int


class MyFloat(float):
    pass


class Opaque:
    pass


@pytest.mark.parametrize(
    "value, type_name",
    [
        (Opaque(), "test_serializers.Opaque"),
        ({"deep": [1, {"x": Opaque()}]}, "test_serializers.Opaque"),
        (object(), "object"),
        (1 + 2j, "complex"),
        (bytearray(b"x"), "bytearray"),
        (timedelta(1), "datetime.timedelta"),
        (Color.RED, "test_serializers.Color"),
        ({"c": Color.RED}, "test_serializers.Color"),
        ({Mood.HAPPY: 1}, "test_serializers.Mood"),
        ([Mood.HAPPY], "test_serializers.Mood"),
        (Point(1, 2), "test_serializers.Point"),
        (collections.OrderedDict(a=1), "collections.OrderedDict"),
        (collections.defaultdict(list), "collections.defaultdict"),
        ({"f": MyFloat(1.5)}, "test_serializers.MyFloat"),
        ({1, Opaque()}, "test_serializers.Opaque"),
        ((1, Opaque()), "test_serializers.Opaque"),
    ],
)
def test_an_unsupported_type_raises_serialization_error_naming_it(value, type_name):
    """Subclasses of JSON types too: the stdlib would silently write their base type."""
    with pytest.raises(SerializationError, match=rf"\b{type_name}\b.*register_codec"):
        JSON.dumps(value)


def test_a_subclass_error_says_why_it_is_refused():
    with pytest.raises(SerializationError, match="subclass of int"):
        JSON.dumps(Color.RED)


def _list_cycle():
    outer = [1]
    outer.append([outer])
    return outer


def _dict_cycle():
    outer = {"a": 1}
    outer["me"] = {"again": outer}
    return outer


def _cycle_through_a_tuple():
    inner = []
    inner.append((inner,))
    return {"x": inner}


@pytest.mark.parametrize("make_cycle", [_list_cycle, _dict_cycle, _cycle_through_a_tuple])
def test_a_circular_value_raises_serialization_error(make_cycle):
    with pytest.raises(SerializationError, match="circular"):
        JSON.dumps(make_cycle())


def test_an_int_too_long_for_str_raises_serialization_error():
    with pytest.raises(SerializationError):
        JSON.dumps(10**5000)


# =========================================================================================
# JSON: bad payloads
# =========================================================================================

BAD_JSON_PAYLOADS = {
    "empty": b"",
    "truncated": b'{"a":',
    "not utf-8": b'"\xff\xfe"',
    "trailing data": b'{"a":1} {}',
    "trailing data after a tagged value": b' {"__t":"date","v":"2024-01-01"}x',
    "leading garbage": b"x[1]",
    "two spaces": b"  [1]",
    "not json": b"\x80\x05K\x01.",
    "unknown tag": b' {"__t":"nope","v":1}',
    "tag name not a str": b' {"__t":[1],"v":1}',
    "tag without v": b' {"__t":"date"}',
    "tag with extra keys": b' {"__t":"date","v":"2024-01-01","w":1}',
    "bad date": b' {"__t":"date","v":"2024-13-45"}',
    "date of the wrong type": b' {"__t":"date","v":20240101}',
    "bad datetime list": b' {"__t":"dt","v":["2024-01-01T00:00:00",5,null]}',
    "unknown zone": b' {"__t":"dt","v":["2024-01-01T00:00:00",0,"Mars/Olympus_Mons"]}',
    "bad decimal": b' {"__t":"dec","v":"one"}',
    "bad uuid": b' {"__t":"uuid","v":"xyz"}',
    "bad base64": b' {"__t":"b64","v":"***"}',
    "tuple of a str": b' {"__t":"tup","v":"abc"}',
    "unhashable set item": b' {"__t":"set","v":[[1]]}',
    "unhashable map key": b' {"__t":"map","v":[[[1],2]]}',
    "map of non-pairs": b' {"__t":"map","v":[[1,2,3]]}',
    "map not a list": b' {"__t":"map","v":{"a":1}}',
    "nested too deeply": b"[" * 100_000,
    "nested too deeply, tagged": b" " + b"[" * 100_000,
}


@pytest.mark.parametrize("data", BAD_JSON_PAYLOADS.values(), ids=BAD_JSON_PAYLOADS.keys())
def test_a_bad_json_payload_raises_serialization_error(data):
    with pytest.raises(SerializationError):
        JSON.loads(data)


@pytest.mark.parametrize("data", ["[1]", None, 42])
def test_loads_refuses_what_is_not_bytes_with_serialization_error(data):
    with pytest.raises(SerializationError):
        JSON.loads(data)


def test_loads_accepts_bytearray_and_memoryview():
    data = JSON.dumps({"a": (1,)})
    assert JSON.loads(bytearray(data)) == {"a": (1,)}
    assert JSON.loads(memoryview(data)) == {"a": (1,)}


def test_a_tag_from_a_codec_this_process_lacks_names_register_codec(codecs):
    codecs(Opaque, "opaque", lambda o: 1, lambda v: Opaque())
    data = JSON.dumps(Opaque())
    _unregister_codec("opaque")
    with pytest.raises(SerializationError, match="'opaque'.*register_codec"):
        JSON.loads(data)


# =========================================================================================
# register_codec
# =========================================================================================


def test_a_mongodb_document_with_object_ids_round_trips(objectid_codec):
    doc = {
        "_id": bson.ObjectId("65f1c0ffee0123456789abcd"),
        "org_id": bson.ObjectId(),
        "name": "Acme",
        "created_at": datetime(2024, 3, 1, 10, 0, 0, 123456),  # microseconds: kept by JSON
        "members": [{"user_id": bson.ObjectId(), "role": "owner", "since": date(2020, 1, 1)}],
        "by_id": {bson.ObjectId("65f1c0ffee0123456789abce"): "x"},
        "watchers": {bson.ObjectId("65f1c0ffee0123456789abcf")},
    }
    back = roundtrip(JSON, doc)
    assert same(back, doc)
    assert back["created_at"].microsecond == 123456


def test_a_document_as_pymongo_returns_it_round_trips(objectid_codec):
    """bson stores datetimes in milliseconds; what comes out of bson is what we keep."""
    original = {"_id": bson.ObjectId(), "at": datetime(2024, 3, 1, 10, 0, 0, 123456), "n": 1}
    naive = bson.decode(bson.encode(original))
    assert same(roundtrip(JSON, naive), naive)
    assert naive["at"].microsecond == 123000

    aware = bson.decode(bson.encode(original), codec_options=CodecOptions(tz_aware=True))
    back = roundtrip(JSON, aware)
    assert back == aware  # bson's FixedOffset UTC becomes datetime.timezone.utc
    assert back["at"].tzinfo is timezone.utc


def test_object_ids_are_stored_as_their_hex_string(objectid_codec):
    oid = bson.ObjectId("65f1c0ffee0123456789abcd")
    assert JSON.dumps({"_id": oid}) == b' {"_id":{"__t":"objectid","v":"65f1c0ffee0123456789abcd"}}'


def test_a_codec_for_a_subclass_of_a_json_type_is_used(codecs):
    codecs(Color, "color", lambda c: c.value, Color)
    codecs(Mood, "mood", lambda m: m.value, Mood)
    codecs(Point, "point", tuple, lambda v: Point(*v))
    codecs(collections.OrderedDict, "odict", lambda d: list(d.items()), collections.OrderedDict)
    value = {
        "color": Color.RED,
        "moods": [Mood.HAPPY],
        Mood.HAPPY: 1,
        "p": Point(1, 2),
        "od": collections.OrderedDict([("b", 1), ("a", (2,))]),
    }
    assert same(roundtrip(JSON, value), value)


def test_a_codec_may_return_any_supported_value(codecs):
    class Box:
        def __init__(self, inner):
            self.inner = inner

        def __eq__(self, other):
            return type(other) is Box and same(self.inner, other.inner)

    codecs(Box, "box", lambda b: b.inner, Box)
    for inner in [(1, 2), {"__t": "box", "v": 1}, {1: 2}, {"d": date(2024, 1, 1)}, Box(Box(None))]:
        assert roundtrip(JSON, Box(inner)) == Box(inner)


def test_errors_raised_by_a_codec_become_serialization_errors(codecs):
    def fail(value):
        raise RuntimeError("codec bug")

    codecs(Opaque, "opaque", fail, fail)
    with pytest.raises(SerializationError, match="codec bug"):
        JSON.dumps(Opaque())
    with pytest.raises(SerializationError, match="codec bug"):
        JSON.loads(b' {"__t":"opaque","v":1}')


def test_register_codec_needs_a_type():
    with pytest.raises(TypeError):
        register_codec(Opaque(), "opaque", str, str)


def test_register_codec_needs_a_str_name_and_callables():
    with pytest.raises(TypeError):
        register_codec(Opaque, 7, str, str)
    with pytest.raises(TypeError):
        register_codec(Opaque, "opaque", "str", str)
    with pytest.raises(ValueError):
        register_codec(Opaque, "", str, str)


@pytest.mark.parametrize(
    "name", ["dt", "date", "time", "dec", "uuid", "b64", "tup", "set", "fset", "map"]
)
def test_register_codec_refuses_a_built_in_name(name):
    with pytest.raises(ValueError, match="already used"):
        register_codec(Opaque, name, str, str)


def test_register_codec_refuses_a_name_already_taken(codecs):
    codecs(Opaque, "opaque", str, str)
    with pytest.raises(ValueError, match="already used by test_serializers.Opaque"):
        register_codec(Point, "opaque", str, str)


def test_register_codec_refuses_a_second_codec_for_a_type(codecs):
    codecs(Opaque, "opaque", str, str)
    with pytest.raises(ValueError, match="already has a codec"):
        register_codec(Opaque, "opaque2", str, str)


def test_registering_a_type_again_under_its_name_replaces_its_functions(codecs):
    """What a module imported twice (a notebook cell run again, a reload) does."""
    codecs(Opaque, "opaque", lambda o: 1, lambda v: "first")
    register_codec(Opaque, "opaque", lambda o: 2, lambda v: ("second", v))
    assert JSON.loads(JSON.dumps(Opaque())) == ("second", 2)


@pytest.mark.parametrize(
    "type_", [dict, list, str, int, float, bool, type(None), tuple, set, datetime, Decimal, bytes]
)
def test_register_codec_refuses_a_type_supported_natively(type_):
    with pytest.raises(ValueError, match="natively"):
        register_codec(type_, "mine", str, str)


def test_a_failed_registration_changes_nothing():
    with pytest.raises(ValueError):
        register_codec(Opaque, "dt", str, str)
    with pytest.raises(SerializationError):
        JSON.dumps(Opaque())


# =========================================================================================
# Pickle, signed
# =========================================================================================

PICKLE = PickleSerializer(KEY)


class Exploit:
    """A pickle that runs a shell command when loaded: what an attacker would plant."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


@pytest.fixture
def exploit(tmp_path):
    marker = tmp_path / "pwned"
    return marker, pickle.dumps(Exploit(marker), protocol=5)


def test_the_exploit_works_on_plain_pickle(exploit):
    """The control: the planted payloads below would run code if they were unpickled."""
    marker, payload = exploit
    pickle.loads(payload)
    assert marker.exists()


def sign(key: bytes, body: bytes) -> bytes:
    header = b"TCPK\x01"
    return header + hmac.digest(key, header + body, "sha256") + body


def planted_payloads(body: bytes) -> dict[str, bytes]:
    return {
        "raw pickle": body,
        "header, no mac": b"TCPK\x01" + body,
        "zero mac": b"TCPK\x01" + bytes(32) + body,
        "signed with another key": sign(OTHER_KEY, body),
        "mac over the pickle alone": b"TCPK\x01" + hmac.digest(KEY, body, "sha256") + body,
        "another version": b"TCPK\x02" + sign(KEY, body)[5:],
        "signed, then a byte appended": sign(KEY, body) + b".",
        "truncated mac": sign(KEY, body)[:20],
        "header only": b"TCPK\x01",
    }


@pytest.mark.parametrize("case", list(planted_payloads(b"")))
def test_a_planted_pickle_is_never_unpickled(exploit, case):
    marker, body = exploit
    with pytest.raises(SignatureError):
        PICKLE.loads(planted_payloads(body)[case])
    assert not marker.exists()


@pytest.mark.parametrize("case", list(planted_payloads(b"")))
def test_a_planted_pickle_never_reaches_pickle_loads(exploit, case, monkeypatch):
    calls = []

    class SpyPickle:
        @staticmethod
        def loads(data):
            calls.append(data)
            raise AssertionError("unpickled")

    payload = planted_payloads(exploit[1])[case]
    monkeypatch.setattr(_serializers, "pickle", SpyPickle)
    with pytest.raises(SignatureError):
        PICKLE.loads(payload)
    assert calls == []


def test_a_planted_pickle_is_never_unpickled_through_the_compression_wrapper(exploit):
    marker, body = exploit
    wrapped = make_serializer("pickle", secret_key=KEY, compress_threshold=0)
    for payload in (
        body,
        b"\x00" + body,
        b"\x01" + zlib.compress(body),
        b"\x01" + zlib.compress(sign(OTHER_KEY, body)),
    ):
        with pytest.raises(SignatureError):
            wrapped.loads(payload)
    assert not marker.exists()


def test_every_single_byte_change_to_a_signed_payload_is_refused():
    data = PICKLE.dumps({"a": [1, 2, 3], "b": "x" * 50})
    for i in range(len(data)):
        for bit in (0x01, 0x80):
            forged = bytearray(data)
            forged[i] ^= bit
            with pytest.raises(SignatureError):
                PICKLE.loads(bytes(forged))


def test_every_truncation_of_a_signed_payload_is_refused():
    data = PICKLE.dumps(["value"])
    for n in range(len(data)):
        with pytest.raises(SignatureError):
            PICKLE.loads(data[:n])


def test_a_key_given_as_str_or_bytes_signs_the_same():
    text = "s3cret-key-0123456789"
    assert PickleSerializer(text).loads(PickleSerializer(text.encode()).dumps(1)) == 1


def test_a_signed_payload_has_this_layout():
    data = PICKLE.dumps({"a": 1})
    body = pickle.dumps({"a": 1}, protocol=5)
    assert data[:5] == b"TCPK\x01"
    assert data[5:37] == hmac.digest(KEY, b"TCPK\x01" + body, "sha256")
    assert data[37:] == body


@pytest.mark.parametrize("value", ROUNDTRIP_VALUES.values(), ids=ROUNDTRIP_VALUES.keys())
def test_pickle_round_trips(value):
    assert same(roundtrip(PICKLE, value), value)


def test_pickle_round_trips_what_json_cannot():
    value = {"p": Point(1, 2), "c": Color.RED, "od": collections.OrderedDict(a=1), "t": timedelta(3)}
    assert same(roundtrip(PICKLE, value), value)


def test_a_value_pickle_refuses_raises_serialization_error():
    with pytest.raises(SerializationError):
        PICKLE.dumps(lambda: 1)


def test_a_signed_payload_that_cannot_be_unpickled_raises_serialization_error():
    with pytest.raises(SerializationError) as info:
        PICKLE.loads(sign(KEY, b"not a pickle"))
    assert not isinstance(info.value, SignatureError)


@pytest.mark.parametrize("key", [None, b"", "", b"short", "x" * 15, 12345, bytearray(32)])
def test_a_missing_short_or_mistyped_key_is_a_configuration_error(key):
    with pytest.raises(ConfigurationError):
        PickleSerializer(key)


def test_the_key_is_not_shown_and_the_serializer_cannot_be_pickled():
    assert "k" * 16 not in repr(PICKLE)
    with pytest.raises(TypeError):
        pickle.dumps(PICKLE)


# =========================================================================================
# make_serializer
# =========================================================================================


def test_make_serializer_builds_json_by_default_name():
    serializer = make_serializer("json")
    assert isinstance(serializer, JsonSerializer) and serializer.name == "json"


def test_make_serializer_builds_signed_pickle():
    serializer = make_serializer("pickle", secret_key=KEY)
    assert isinstance(serializer, PickleSerializer) and serializer.name == "pickle"
    assert PICKLE.loads(serializer.dumps((1, 2))) == (1, 2)


@pytest.mark.parametrize("key", [None, b"", ""])
def test_pickle_without_a_key_is_refused_and_the_error_says_why(key):
    with pytest.raises(ConfigurationError, match="remote code execution"):
        make_serializer("pickle", secret_key=key)


def test_pickle_with_a_short_key_is_refused():
    with pytest.raises(ConfigurationError, match="16 bytes"):
        make_serializer("pickle", secret_key="short")


def test_configuration_errors_are_value_errors():
    with pytest.raises(ValueError):
        make_serializer("yaml")


@pytest.mark.parametrize("spec", ["yaml", "JSON", "", None, 3, object(), JsonSerializer])
def test_make_serializer_refuses_anything_else(spec):
    with pytest.raises(ConfigurationError):
        make_serializer(spec)


def test_make_serializer_accepts_an_object_with_name_dumps_and_loads():
    class Upper:
        name = "upper"

        def dumps(self, value):
            return value.upper().encode()

        def loads(self, data):
            return data.decode()

    custom = Upper()
    assert make_serializer(custom) is custom
    wrapped = make_serializer(custom, compress_threshold=4)
    assert wrapped.name == "upper+zlib"
    assert wrapped.loads(wrapped.dumps("abc" * 10)) == "ABC" * 10


@pytest.mark.parametrize("threshold", [-1, 1.5, "100", True])
def test_a_bad_compress_threshold_is_a_configuration_error(threshold):
    with pytest.raises(ConfigurationError):
        make_serializer("json", compress_threshold=threshold)


# =========================================================================================
# Compression
# =========================================================================================

BIG = {"rows": [{"id": i, "name": "item %d" % i, "price": Decimal("1.50")} for i in range(100)]}


def test_payloads_below_the_threshold_are_stored_bare():
    plain = JSON.dumps(BIG)
    wrapped = make_serializer("json", compress_threshold=len(plain) + 1)
    assert wrapped.dumps(BIG) == plain


def test_payloads_at_the_threshold_are_compressed_with_flag_1():
    plain = JSON.dumps(BIG)
    wrapped = make_serializer("json", compress_threshold=len(plain))
    data = wrapped.dumps(BIG)
    assert data[0] == 0x01 and zlib.decompress(data[1:]) == plain
    assert len(data) < len(plain) // 5
    assert same(wrapped.loads(data), BIG)


def test_incompressible_payloads_are_stored_uncompressed():
    noise = os.urandom(4096)
    wrapped = make_serializer("pickle", secret_key=KEY, compress_threshold=0)
    data = wrapped.dumps(noise)
    assert data == PICKLE.dumps(noise)
    assert wrapped.loads(data) == noise


def test_the_wrapper_is_named_after_what_it_wraps():
    assert make_serializer("json", compress_threshold=10).name == "json+zlib"
    assert make_serializer("pickle", secret_key=KEY, compress_threshold=10).name == "pickle+zlib"


@pytest.mark.parametrize("spec", ["json", "pickle"])
def test_built_in_serializers_read_every_form_whatever_their_threshold(spec):
    """Turning compression on or off, or changing the threshold, loses no entry."""
    bare = make_serializer(spec, secret_key=KEY)
    wrapped = make_serializer(spec, secret_key=KEY, compress_threshold=100)
    for value in (BIG, "", 0, {"a": (1,)}):
        plain = bare.dumps(value)
        for data in (plain, b"\x00" + plain, b"\x01" + zlib.compress(plain), wrapped.dumps(value)):
            assert same(bare.loads(data), value)
            assert same(wrapped.loads(data), value)


def test_a_custom_serializer_is_always_flagged_when_wrapped():
    class Text:
        name = "text"

        def dumps(self, value):
            return value.encode()

        def loads(self, data):
            return bytes(data).decode()

    wrapped = make_serializer(Text(), compress_threshold=50)
    assert wrapped.dumps("short") == b"\x00short"
    assert wrapped.dumps("long " * 20)[0] == 0x01
    assert wrapped.loads(wrapped.dumps("long " * 20)) == "long " * 20


def test_a_custom_serializer_gets_no_unflagged_fallback():
    class Raw:
        name = "raw"

        def dumps(self, value):
            return value

        def loads(self, data):
            return data

    wrapped = make_serializer(Raw(), compress_threshold=100)
    with pytest.raises(SerializationError, match="format byte 0x02"):
        wrapped.loads(b"\x02abc")


def _corruptions(data: bytes) -> dict[str, bytes]:
    body = data[1:]
    return {
        "empty": b"",
        "flag only": data[:1],
        "truncated": data[:-5],
        "bit flip in the deflate stream": data[:20] + bytes([data[20] ^ 0x10]) + data[21:],
        "bit flip in the checksum": data[:-1] + bytes([data[-1] ^ 0x01]),
        "garbage after the stream": data + b"tail",
        "not zlib": b"\x01" + b"hello world" * 10,
        "unknown flag": b"\x07" + body,
        "stored flag before compressed data": b"\x00" + data,
    }


@pytest.mark.parametrize("case", list(_corruptions(b"\x01" + b"x" * 40)))
@pytest.mark.parametrize("spec", ["json", "pickle"])
def test_corrupted_compressed_data_raises_serialization_error(spec, case):
    wrapped = make_serializer(spec, secret_key=KEY, compress_threshold=0)
    data = wrapped.dumps(BIG)
    assert data[0] == 0x01
    with pytest.raises(SerializationError):
        wrapped.loads(_corruptions(data)[case])


def test_a_decompression_bomb_is_refused(monkeypatch):
    monkeypatch.setattr(_serializers, "MAX_DECOMPRESSED_BYTES", 1 << 20)
    wrapped = make_serializer("json", compress_threshold=0)
    bomb = b"\x01" + zlib.compress(b"[" + b"0," * (1 << 21) + b"0]", 9)
    assert len(bomb) < 10_000
    with pytest.raises(SerializationError, match="inflates beyond"):
        wrapped.loads(bomb)


# =========================================================================================
# Property tests
# =========================================================================================

text = st.text(st.characters(exclude_categories=()))  # lone surrogates included
tag_like_keys = st.sampled_from(["__t", "v", "dt", "map", "tup", "objectid", ""])
DAY = timedelta(hours=23, minutes=59, seconds=59, microseconds=999999)
timezones = (
    st.none()
    | st.timezones()
    | st.builds(timezone, st.timedeltas(min_value=-DAY, max_value=DAY))
)
datetimes = st.builds(
    lambda d, fold: d.replace(fold=fold), st.datetimes(timezones=timezones), st.sampled_from([0, 1])
)
times = st.builds(
    lambda t, fold: t.replace(fold=fold), st.times(timezones=timezones), st.sampled_from([0, 1])
)
object_ids = st.binary(min_size=12, max_size=12).map(bson.ObjectId)

hashable_leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | text
    | tag_like_keys
    | st.binary()
    | st.decimals(allow_nan=False)
    | st.dates()
    | datetimes
    | st.uuids()
    | object_ids
)
hashables = st.recursive(
    hashable_leaves,
    lambda inner: st.lists(inner, max_size=3).map(tuple) | st.frozensets(inner, max_size=3),
    max_leaves=6,
)
leaves = hashable_leaves | st.floats() | st.decimals() | times


def containers(children):
    return (
        st.lists(children, max_size=5)
        | st.lists(children, max_size=5).map(tuple)
        | st.dictionaries(text | tag_like_keys, children, max_size=5)
        | st.dictionaries(hashables, children, max_size=5)
        | st.sets(hashables, max_size=5)
        | st.frozensets(hashables, max_size=5)
    )


values = st.recursive(leaves, containers, max_leaves=40)
plain_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | text,
    lambda c: st.lists(c, max_size=5) | st.dictionaries(text.filter(lambda k: k != "__t"), c, max_size=5),
    max_leaves=40,
)
PROPERTY = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(value=values)
@example(value={"__t": "dt", "v": "2024-01-01T00:00:00"})
@example(value=({"__t": "map", "v": []}, {1: {"__t": None}}))
@example(value=[{"__t": "dt", "v": "2024-01-01T00:00:00"}, datetime(2024, 1, 1)])
def test_property_json_round_trips_any_nesting_of_supported_types(objectid_codec, value):
    assert same(roundtrip(JSON, value), value)


@PROPERTY
@given(value=plain_json)
def test_property_plain_json_values_are_stored_as_the_stdlib_writes_them(value):
    data = JSON.dumps(value)
    expected = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    assert data == expected.encode("utf-8", "surrogatepass")
    assert same(JSON.loads(data), value)


@PROPERTY
@given(value=values)
def test_property_pickle_round_trips(objectid_codec, value):
    assert same(roundtrip(PICKLE, value), value)


@PROPERTY
@given(value=values, threshold=st.integers(0, 300), spec=st.sampled_from(["json", "pickle"]))
def test_property_compressed_round_trips(objectid_codec, value, threshold, spec):
    wrapped = make_serializer(spec, secret_key=KEY, compress_threshold=threshold)
    assert same(roundtrip(wrapped, value), value)


SERIALIZERS = {
    "json": JSON,
    "pickle": PICKLE,
    "json+zlib": make_serializer("json", compress_threshold=0),
    "pickle+zlib": make_serializer("pickle", secret_key=KEY, compress_threshold=0),
}


@PROPERTY
@given(data=st.binary(max_size=300), name=st.sampled_from(sorted(SERIALIZERS)))
@example(data=b" {}", name="json")
@example(data=b'\x01x\x9c\x8b\x06\x00\x00\\\x00\\', name="json+zlib")
def test_property_loads_of_any_bytes_returns_or_raises_serialization_error(data, name):
    try:
        SERIALIZERS[name].loads(data)
    except SerializationError:
        pass


@PROPERTY
@given(value=values, name=st.sampled_from(sorted(SERIALIZERS)), edit=st.data())
def test_property_a_damaged_payload_decodes_or_raises_serialization_error(
    objectid_codec, value, name, edit
):
    data = bytearray(SERIALIZERS[name].dumps(value))
    where = edit.draw(st.integers(0, len(data) - 1))
    if edit.draw(st.booleans()):
        data[where] ^= edit.draw(st.integers(1, 255))
    else:
        del data[where:]
    check_damaged_payload(name, bytes(data))


def check_damaged_payload(name: str, data: bytes) -> None:
    """A damaged payload of SERIALIZERS[name] decodes or raises SerializationError; a
    signed (pickle) one always raises SignatureError. (Also replayed by
    hardening/refleak_replay.py.)"""
    try:
        SERIALIZERS[name].loads(data)
    except SignatureError:
        pass
    except SerializationError:
        assert not name.startswith("pickle"), "a damaged pickle must be a SignatureError"
    else:
        assert not name.startswith("pickle"), "a damaged signed payload was accepted"

"""Fuzz target (c): key and tag templates, the key encoder, and the C key writer.

Half the inputs build a key template and a tag template from fuzz-chosen pieces (literal
text with braces, ``{a}``, ``{b.x}``, ``{c[0]}``, ``{a!r}``, ``{a:>5}``, ``{0}``, ``{}``,
``{{``...), decorate ``f(a, b, c=None)`` with them (``cache.cached(key=..., tags=[...])``)
and call it with fuzz-built arguments (str with surrogates, bytes, ints beyond 64 bits,
floats incl. NaN/-0.0, bools, None, dates, Decimals, lists, dicts, an object with
attributes). The other half does the same with the default key (no template), and checks
that ``_keys.encode_args`` is injective on two fuzz-built argument lists.

Checks:
- decorating raises only ``TypeError``/``ValueError`` (docs/api.md, "Raises when
  decorating");
- the C key writer (``CachedCall._key``) returns ``None`` (defers) or exactly the Python
  key (namespace prefix + ``fn.cache_key``); when Python refuses the arguments, C defers
  or raises the same type;
- calling the function raises only what ``cache_key`` raises for those arguments (a
  ``TypeError``, or the ``ValueError``/``AttributeError``/``LookupError`` that ``str.format``
  raises for a spec or a field path that does not fit the value; a tag template, which
  renders only at the call, may refuse what the key took), and a second call with the
  same arguments is a hit (the function does not run again);
- ``encode_args(x) == encode_args(y)`` only if x and y are equal values of the same types.

Pass: no check fails, nothing else escapes, no sanitizer report.
"""

from __future__ import annotations

import datetime
import decimal
import math

from fuzz_common import Bytes
from tieredcache import TieredCache
from tieredcache import _keys

PIECES = ["{a}", "{b}", "{c}", "{a!r}", "{b!s}", "{c!a}", "{a:>5}", "{b:d}", "{a:.2f}", "{c:x}",
          "{b.x}", "{a.y}", "{c[0]}", "{b[k]}", "{a[0][1]}", "{a.x.y}", "{a:{b}}", "{0}", "{}",
          "{d}", "{a!z}", "{{", "}}", "{", "}", ":", "org:", "é", "\x00", "\udcff", "{a:%Y-%m}",
          "{a:*^9}", "{b:,}", "{c:08.3e}", "{a.__class__}", "{a[-1]}", "{ a }", "{a!r:>4}"]

_caches: dict[str, TieredCache] = {}


def _cache(namespace: str) -> TieredCache:
    cache = _caches.get(namespace)
    if cache is None:
        cache = _caches[namespace] = TieredCache(namespace=namespace, max_entries=1000)
    return cache


class Obj:
    """An argument with attributes and an index, and a stable text."""

    def __init__(self, x: object, y: object) -> None:
        self.x, self.y = x, y

    def __getitem__(self, i: object) -> object:
        return self.x

    def __repr__(self) -> str:
        return f"Obj({self.x!r}, {self.y!r})"


def _value(src: Bytes, depth: int = 0) -> object:
    kind = src.below(16 if depth < 2 else 11)
    if kind == 0:
        return src.below(1 << 16) - 32768
    if kind == 1:
        return src.pick([2**63 - 1, 2**63, -2**63, -2**63 - 1, 2**64, 10**30, -10**19])
    if kind == 2:
        return src.text(10)
    if kind == 3:
        return src.blob(8)
    if kind == 4:
        return src.double()
    if kind == 5:
        return src.pick([math.nan, math.inf, -math.inf, -0.0, 0.0, 1e-320, 1.5])
    if kind == 6:
        return src.pick([None, True, False])
    if kind == 7:
        return datetime.date(2000 + src.below(50), 1 + src.below(12), 1 + src.below(28))
    if kind == 8:
        return src.pick([datetime.datetime(2024, 5, 1, 12, 30, tzinfo=datetime.timezone.utc),
                         datetime.time(1, 2, 3), datetime.timedelta(seconds=src.below(10**6))])
    if kind == 9:
        return decimal.Decimal(src.pick(["1.10", "-0", "NaN", "1e+999", "sNaN", "Infinity", "0.000"]))
    if kind == 10:
        return src.pick(["", "a:b", "{a}", "x" * 300, "日本", "\udc80"])
    if kind == 11:
        return [_value(src, depth + 1) for _ in range(src.below(3))]
    if kind == 12:
        return tuple(_value(src, depth + 1) for _ in range(src.below(3)))
    if kind == 13:
        return {src.pick(["k", "j", 1]): _value(src, depth + 1) for _ in range(src.below(3))}
    if kind == 14:
        return frozenset(src.pick([1, "a", 2.5, b"b"]) for _ in range(src.below(3)))
    return Obj(_value(src, depth + 1), _value(src, depth + 1))


def _template(src: Bytes) -> str:
    parts = []
    for _ in range(1 + src.below(5)):
        parts.append(src.pick(PIECES) if src.below(4) else src.text(4))
    return "".join(parts)


def strict(v: object) -> object:
    """A value with its types spelled out, for comparing arguments type-strictly."""
    t = type(v)
    if t in (list, tuple):
        return (t.__name__, tuple(strict(x) for x in v))
    if t is dict:
        return ("dict", frozenset((strict(k), strict(x)) for k, x in v.items()))
    if t is frozenset:
        return ("frozenset", frozenset(strict(x) for x in v))
    if t is float:
        return ("float", repr(v))  # 0.0 and -0.0, and every NaN, by their text
    if t is decimal.Decimal:
        return ("Decimal", repr(v))
    return (t.__name__, v)


def _render_errors(template_text: str) -> tuple[type[BaseException], ...]:
    if any(ch in template_text for ch in ".["):
        return (TypeError, ValueError, AttributeError, LookupError)
    return (TypeError, ValueError)


def _check_call(fn, cache: TieredCache, args: tuple, kw: bool, allowed: tuple, tagged: bool) -> None:
    try:
        expected = cache._ns.l1prefix + fn.cache_key(*args)
        refused: type[BaseException] | None = None
    except allowed as exc:
        expected, refused = None, type(exc)
    try:
        built = fn._key(a=args[0], b=args[1], c=args[2]) if kw else fn._key(*args)
    except allowed as exc:
        assert refused is type(exc), f"C key raised {exc!r}, Python {refused}"
        built = None
    if built is not None:
        assert refused is None, f"C built {built!r} where Python raised {refused}"
        assert built == expected, f"C key {built!r} != Python key {expected!r}"
    runs = fn.uncached.runs
    try:
        first = fn(*args)
    except allowed as exc:
        # A tag template renders only at the call, so only it may refuse what the key took.
        assert refused is not None or tagged, f"the call raised {exc!r}, cache_key did not"
        return
    assert refused is None, f"the call succeeded where cache_key raised {refused}"
    after_first = runs[0]
    second = fn(*args)
    assert second == first and runs[0] == after_first, "the second, same call was not a hit"


def one_input(data: bytes) -> None:
    src = Bytes(data)
    mode = src.below(4)
    cache = _cache(src.pick(["ns", "ns", "café", "a:b"]))
    cache.clear()  # a full L1 may refuse an entry (admission policy): no hit to expect then
    args = tuple(_value(src) for _ in range(3))
    kw = src.flag()
    runs = [0]

    def f(a, b, c=None):
        runs[0] += 1
        return [runs[0]]

    f.runs = runs  # type: ignore[attr-defined]
    if mode <= 1:  # templates
        key, tag = _template(src), _template(src)
        tagged = src.flag()
        try:
            fn = cache.cached(key=key, tags=[tag] if tagged else ())(f)
        except (TypeError, ValueError):
            return
        _check_call(fn, cache, args, kw, _render_errors(key + tag), tagged and "{" in tag)
    elif mode == 2:  # the default key
        fn = cache.cached()(f)
        _check_call(fn, cache, args, kw, (TypeError,), False)
    else:  # injectivity of the key encoder
        other = tuple(_value(src) for _ in range(3)) if src.flag() else args
        try:
            ka = _keys.encode_args([(str(i), v) for i, v in enumerate(args)])
            kb = _keys.encode_args([(str(i), v) for i, v in enumerate(other)])
        except TypeError:
            return
        try:
            same = [strict(x) for x in args] == [strict(x) for x in other]
        except TypeError:  # an unhashable value inside strict(): compare by key only
            return
        if ka == kb:
            assert same, f"two different argument lists share the key {ka!r}: {args!r} {other!r}"
        else:
            assert not same, f"equal arguments got two keys: {ka!r} {kb!r}"

"""Cache keys for decorated calls: a canonical, injective text encoding of arguments.

A decorated call's key is ``name(enc(a1),enc(a2),...)``: the function's qualified name,
then each bound argument (defaults applied, excluded ones left out) in signature order.
The encoding is:

==========================  ===============================================================
``None``, ``True``          ``None``, ``True``, ``False``
``int``                     its decimal digits (``-12``)
``float``                   ``repr``: ``1.5``, ``1e+20``, ``inf``, ``nan``
``str``, ``bytes``          ``repr``: ``'a'``, ``"it's"``, ``b'\\x00'``
``tuple``, ``list``         ``(a,b)``, ``[a,b]``
``dict``                    ``{k:v,...}``, pairs sorted by their encoding
``set``, ``frozenset``      ``set{a,b}``, ``frozenset{a,b}``, elements sorted
``Enum`` members            ``module.Class.NAME``
``Decimal``, ``UUID``,      ``repr``: ``Decimal('1.10')``, ``datetime.date(2024, 1, 2)``
date/time types
dataclasses, pydantic,      ``module.Class(field=enc,...)``
NamedTuple
``__cache_key__()``         ``module.Class<enc(obj.__cache_key__())>``
other subclasses of the     ``module.Class<enc(as the base type)>``
types above
==========================  ===============================================================

Every encoding is self-delimiting (strings are quoted and escaped, brackets balance), so
the concatenation is injective: two calls share a key only if their arguments encode the
same, i.e. are equal values of the same types. Nothing depends on ``id()``, ``hash()``
randomisation or an object's address, so keys are stable across processes and restarts.
Anything else raises ``TypeError`` naming the argument. Keys longer than
``MAX_KEY_TEXT`` characters keep the name and replace the arguments by their SHA-256.

The C fast path (``_core.CachedCall``) produces the same text for exact ``str``, ``int``,
``float``, ``bool`` and ``None`` arguments; tests check that both agree.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import hashlib
import string
import uuid
from typing import Any

MAX_KEY_TEXT = 250
MAX_DEPTH = 32

_REPR_TYPES = (decimal.Decimal, uuid.UUID, datetime.date, datetime.time, datetime.timedelta, datetime.timezone)


class KeyError_(TypeError):  # noqa: N801
    """Internal: carries the path of the offending value inside an argument."""


def _tname(t: type) -> str:
    return f"{t.__module__}.{t.__qualname__}"


def _enc(v: Any, out: list[str], depth: int) -> None:
    t = type(v)
    if t is str:
        out.append(repr(v))
    elif t is int:
        out.append(int.__repr__(v))
    elif v is None or t is bool:
        out.append("True" if v is True else "False" if v is False else "None")
    elif t is float:
        out.append(repr(v))
    elif t is bytes:
        out.append(repr(v))
    elif depth >= MAX_DEPTH:
        raise KeyError_(f"is nested more than {MAX_DEPTH} levels deep")
    elif t is tuple or t is list:
        out.append("(" if t is tuple else "[")
        for i, x in enumerate(v):
            if i:
                out.append(",")
            _enc(x, out, depth + 1)
        out.append(")" if t is tuple else "]")
    elif t is dict:
        pairs = []
        for k, x in v.items():
            part: list[str] = []
            _enc(k, part, depth + 1)
            part.append(":")
            _enc(x, part, depth + 1)
            pairs.append("".join(part))
        pairs.sort()
        out.append("{" + ",".join(pairs) + "}")
    elif t is set or t is frozenset:
        items = []
        for x in v:
            part = []
            _enc(x, part, depth + 1)
            items.append("".join(part))
        items.sort()
        out.append(("set{" if t is set else "frozenset{") + ",".join(items) + "}")
    else:
        _enc_other(v, t, out, depth)


class Omitted:
    """Stands for an argument left out at call time (a request object): encodes as ``~``."""

    __slots__ = ()


OMITTED = Omitted()


def _enc_other(v: Any, t: type, out: list[str], depth: int) -> None:
    hook = getattr(t, "__cache_key__", None)
    if t is Omitted:
        out.append("~")
    elif hook is not None:
        out.append(_tname(t) + "<")
        _enc(hook(v), out, depth + 1)
        out.append(">")
    elif isinstance(v, enum.Enum):
        out.append(f"{_tname(t)}.{v.name}")
    elif isinstance(v, _REPR_TYPES) and t.__module__ in ("decimal", "uuid", "datetime", "_pydecimal"):
        out.append(repr(v))
    elif dataclasses.is_dataclass(v):
        out.append(_tname(t) + "(")
        for i, f in enumerate(dataclasses.fields(v)):
            out.append(("," if i else "") + f.name + "=")
            _enc(getattr(v, f.name), out, depth + 1)
        out.append(")")
    elif isinstance(v, tuple) and hasattr(t, "_fields"):  # NamedTuple
        out.append(_tname(t) + "(")
        for i, name in enumerate(t._fields):
            out.append(("," if i else "") + name + "=")
            _enc(v[i], out, depth + 1)
        out.append(")")
    elif hasattr(t, "model_fields") and hasattr(v, "model_dump"):  # pydantic v2 model
        out.append(_tname(t) + "(")
        for i, (name, x) in enumerate(sorted(v.model_dump().items())):
            out.append(("," if i else "") + name + "=")
            _enc(x, out, depth + 1)
        out.append(")")
    else:
        for base in (str, int, float, bytes, tuple, list, dict, set, frozenset):
            if isinstance(v, base):
                out.append(_tname(t) + "<")
                _enc(base(v), out, depth + 1)
                out.append(">")
                return
        raise KeyError_(f"of type {t.__qualname__} has no stable cache key")


def encode_args(values: list[tuple[str, Any]]) -> str:
    """The argument part of a key: ``enc(v1),enc(v2),...``; TypeError names the argument."""
    out: list[str] = []
    for i, (name, v) in enumerate(values):
        if i:
            out.append(",")
        try:
            _enc(v, out, 0)
        except KeyError_ as exc:
            raise TypeError(
                f"cannot build a cache key: argument {name!r} {exc}; leave it out with "
                f"exclude=({name!r},), give its type a __cache_key__() method, or use a key template"
            ) from None
        except RecursionError:
            raise TypeError(f"cannot build a cache key: argument {name!r} is nested too deeply") from None
    return "".join(out)


def call_key(name: str, argtext: str) -> str:
    if len(argtext) > MAX_KEY_TEXT:
        return f"{name}(#{hashlib.sha256(argtext.encode('utf-8', 'surrogatepass')).hexdigest()[:32]})"
    return f"{name}({argtext})"


# ---- templates ------------------------------------------------------------------------

class Template:
    """A key or tag template such as ``"slots:{shop_id}:{date}"`` over argument names.

    Fields are ``{name}``, ``{name:spec}``, ``{name!s}``/``{name!r}`` and attribute or
    index access (``{user.id}``, ``{ids[0]}``), rendered as ``str.format`` would. A value
    whose text would be its address (an object with the default ``repr``) is refused.
    """

    __slots__ = ("text", "parts", "fields", "simple")

    def __init__(self, text: str, params: tuple[str, ...], what: str) -> None:
        if not isinstance(text, str) or not text:
            raise TypeError(f"{what} must be a non-empty str, got {text!r}")
        self.text = text
        parts: list[tuple[str, str | None, str, str | None]] = []
        fields = []
        try:
            parsed = list(string.Formatter().parse(text))
        except ValueError as exc:
            raise ValueError(f"{what} {text!r} is not a valid template: {exc}") from None
        for literal, field, spec, conv in parsed:
            if field is not None:
                root = field.split(".", 1)[0].split("[", 1)[0]
                if root == "" or root.isdigit():
                    raise ValueError(f"{what} {text!r}: fields must name arguments, got {{{field}}}")
                if root not in params:
                    raise ValueError(f"{what} {text!r} names {root!r}, which is not an argument of the function "
                                     f"(arguments: {', '.join(params) or 'none'})")
                if spec and "{" in spec:
                    raise ValueError(f"{what} {text!r}: nested fields are not supported")
                fields.append(root)
            parts.append((literal, field, spec or "", conv))
        self.parts = parts
        self.fields = tuple(fields)
        # simple: every field is a bare name with no spec/conversion (the C fast path)
        self.simple = all(f is None or (f.isidentifier() and not s and c is None) for _, f, s, c in parts)

    def render(self, args: dict[str, Any]) -> str:
        out = []
        for literal, field, spec, conv in self.parts:
            out.append(literal)
            if field is None:
                continue
            value = args[field] if field in args else _resolve(field, args)
            if conv == "r":
                value = repr(value)
            elif conv == "s":
                value = str(value)
            elif conv == "a":
                value = ascii(value)
            _check_stable(value, field, self.text)
            out.append(format(value, spec))
        return "".join(out)


def _resolve(field: str, args: dict[str, Any]) -> Any:
    return string.Formatter().get_field(field, (), args)[0]


def _check_stable(value: Any, field: str, text: str) -> None:
    t = type(value)
    if t in (str, int) or value is None:
        return
    if (t.__format__ is object.__format__ and t.__str__ is object.__str__ and t.__repr__ is object.__repr__):
        raise TypeError(f"template {text!r}: {{{field}}} is a {t.__qualname__}, whose text is its address; "
                        f"use one of its attributes, e.g. {{{field}.id}}")

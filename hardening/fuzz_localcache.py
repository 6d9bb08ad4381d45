"""Fuzz target (a): ``LocalCache`` driven by a byte stream against the reference model.

The input picks the cache's bounds, then up to ``MAX_STEPS`` operations: get, set (with
ttl, tags and size), delete, get_many, set_many, ttl, touch, invalidate_tags,
invalidate_prefix, clear, expire, keys, stats, ``in``/``[]``, moving the clock, and the
same operations with one badly typed or out-of-range argument (a non-str key, a str
subclass, NaN/negative/huge/bool TTLs, a lone str as tags, a negative or huge size, a
non-mapping...). Each operation runs on the C core and on ``tests/refmodel.py``'s
``ModelCache`` (which follows the C core's evictions, as in
``tests/test_local_stateful.py``), and:

- both return the same result (the very same value object for reads), or both raise
  the same exception type (``TypeError``/``ValueError``/``KeyError``/``OverflowError``);
- every key the C core holds is live in the model with the same value; the model's
  extra keys were evicted (only after an insert, and counted in ``stats()["evictions"]``);
- counts that may include expired entries (clear, invalidations, expire) lie between the
  live and the stored count of the model; ``entries``, ``bytes`` and ``rejected`` agree;
- the C core's ``_selfcheck()`` passes every few steps and at the end, and the bounds hold.

TTLs end on a quarter second and the clock moves in half seconds (as in the stateful
test), so no read falls near a deadline. Pass: no assertion, no other exception, no
sanitizer report.
"""

from __future__ import annotations

import math

from fuzz_common import Bytes
from refmodel import ModelCache
from tieredcache import LocalCache
from tieredcache.testing import advance_clock, reset_clock

MAX_STEPS = 64
MISSING = object()


class Thing:
    """A value with identity and a fixed shallow size."""

    __slots__ = ("n",)

    def __init__(self, n: int) -> None:
        self.n = n

    def __repr__(self) -> str:
        return f"Thing({self.n})"


class StrKey(str):
    """A str subclass: both implementations store it as a plain str."""


class BytesKey(bytes):
    pass


class FollowerModel(ModelCache):
    """The reference model, minus its own eviction: it drops what the C core evicted."""

    def _enforce_bounds(self) -> None:
        pass

    def forget(self, key: object) -> None:
        self._remove(key)


KEYS = ["a", "ab", "b", "b:1", "b:2", "", "é", b"a", b"ab", b"b:1", b""]
PREFIXES = ["", "a", "ab", "b:", "zz", b"", b"a", b"b:"]
TAGS = ["t1", "t2", "t3", "t4", ""]
TTLS = [None, None, 0.75, 2.25, 10.25, 1, 3]
STEPS = [0.5, 1.0, 2.0, 20.0]
SIZES = [None, None, 0, 1, 40, 80, 150, 250]

BAD_KEYS = [1, None, 1.5, ("a",), ["a"], bytearray(b"a"), memoryview(b"a"), object()]
BAD_TTLS = [True, False, "1", b"1", -1, 0, 0.0, -0.25, math.nan, math.inf, -math.inf,
            10**30, 4e9, 2**63, [1], 1e-320]
BAD_TAGS = ["t1", b"t1", [1], [b"t1"], 5, [None], {"t1": 1}, ("t1", 2)]
BAD_SIZES = [-1, True, 1.5, "3", 2**31, 2**32 - 1, 2**32, 2**40, 2**63, 2**64, 2**70, -2**70]
BAD_BOUNDS = [0, -1, True, 1.5, "3", None, 2**31, 2**63, 2**64]


def _value(src: Bytes) -> object:
    kind = src.below(4)
    n = src.below(91)
    if kind == 0:
        return b"v" * n
    if kind == 1:
        return "s" * n
    return Thing(n)


def _key(src: Bytes) -> object:
    choice = src.below(16)
    if choice < len(KEYS):
        return KEYS[choice]
    if choice == 11:
        return StrKey(src.pick(["a", "b:1", "zz"]))
    if choice == 12:
        return BytesKey(src.pick([b"a", b"b:1"]))
    return src.text(6)


def _tags(src: Bytes) -> list[str]:
    return [src.pick(TAGS) for _ in range(src.below(4))]


def _outcome(call):
    try:
        return ("ok", call())
    except (TypeError, ValueError, KeyError, OverflowError) as exc:
        return ("raise", type(exc))


class Run:
    def __init__(self, src: Bytes) -> None:
        self.src = src
        max_entries = src.pick([1, 2, 3, 5, 8, 64])
        max_bytes = src.pick([None, 100, 150, 400])
        default_ttl = src.pick([None, 5.25])
        self.bounds = (max_entries, max_bytes)
        self.c = LocalCache(max_entries=max_entries, max_bytes=max_bytes, default_ttl=default_ttl)
        self.m = FollowerModel(max_entries=max_entries, max_bytes=max_bytes, default_ttl=default_ttl)
        self.inserted = False
        self.evictions_seen = 0

    # -- helpers ----------------------------------------------------------------------

    def stored_matching(self, predicate) -> tuple[int, int]:
        now = self.m._now()
        stored = [(k, e) for k, e in self.m._data.items() if predicate(k, e)]
        return sum(1 for _, e in stored if not e.expired(now)), len(stored)

    def same(self, name: str, c_call, m_call, identical: bool = False):
        expected = _outcome(m_call)
        got = _outcome(c_call)
        if expected[0] == "raise" or got[0] == "raise":
            assert got == expected, f"{name}: C {got} != model {expected}"
            return None
        if identical:
            assert got[1] is expected[1], f"{name}: C {got[1]!r} is not model {expected[1]!r}"
        else:
            assert got[1] == expected[1], f"{name}: C {got[1]!r} != model {expected[1]!r}"
        return got[1]

    # -- one step ---------------------------------------------------------------------

    def step(self) -> None:
        src, c, m = self.src, self.c, self.m
        op = src.below(24)
        if op == 0 or op == 1:  # set
            key, value = _key(src), _value(src)
            ttl, tags, size = src.pick(TTLS), _tags(src), src.pick(SIZES)
            self.inserted = True
            self.same("set", lambda: c.set(key, value, ttl=ttl, tags=tags, size=size),
                      lambda: m.set(key, value, ttl=ttl, tags=tags, size=size))
        elif op == 2:  # set with one bad argument
            key, value, ttl, tags, size = _key(src), _value(src), None, [], None
            which = src.below(4)
            if which == 0:
                key = src.pick(BAD_KEYS)
            elif which == 1:
                ttl = src.pick(BAD_TTLS)
            elif which == 2:
                tags = src.pick(BAD_TAGS)
            else:
                size = src.pick(BAD_SIZES)
            self.inserted = True
            self.same(f"set(bad {['key', 'ttl', 'tags', 'size'][which]})",
                      lambda: c.set(key, value, ttl=ttl, tags=tags, size=size),
                      lambda: m.set(key, value, ttl=ttl, tags=tags, size=size))
        elif op == 3:  # set_many
            items = {_key(src): _value(src) for _ in range(src.below(5))}
            ttl, tags = src.pick(TTLS), _tags(src)
            if src.below(4) == 0:
                bad = src.below(3)
                if bad == 0:
                    ttl = src.pick(BAD_TTLS)
                elif bad == 1:
                    tags = src.pick(BAD_TAGS)
                else:
                    items = src.pick([[("a", 1)], "ab", 5, None, {1: 2}, {b"a": 1, None: 2}])
            self.inserted = True
            self.same("set_many", lambda: c.set_many(items, ttl=ttl, tags=tags),
                      lambda: m.set_many(items, ttl=ttl, tags=tags))
        elif op in (4, 5, 6):  # get
            key = _key(src) if src.below(8) else src.pick(BAD_KEYS)
            hits = c.stats()["hits"]
            got = self.same("get", lambda: c.get(key, MISSING), lambda: m.get(key, MISSING), identical=True)
            if got is not None:
                assert c.stats()["hits"] == hits + (got is not MISSING)
        elif op == 7:  # get_many
            if src.below(6):
                keys: object = [_key(src) for _ in range(src.below(5))]
            else:
                keys = src.pick([5, None, ["a", 1], "ab", b"ab", ("a", "b")])
            if src.flag():  # a one-shot iterator, made afresh for each implementation
                self.same("get_many", lambda: c.get_many(iter(keys)), lambda: m.get_many(iter(keys)))
            else:
                self.same("get_many", lambda: c.get_many(keys), lambda: m.get_many(keys))
        elif op == 8:  # delete
            key = _key(src) if src.below(8) else src.pick(BAD_KEYS)
            try:
                plain = key if type(key) in (str, bytes) else str(key) if isinstance(key, str) else \
                    bytes(key) if isinstance(key, bytes) else None
            except Exception:
                plain = None
            entry = m._data.get(plain) if plain is not None else None
            expired = entry is not None and entry.expired(m._now())
            expected, got = _outcome(lambda: m.delete(key)), _outcome(lambda: c.delete(key))
            if not expired:  # deleting an expired entry may or may not count as removing it
                assert got == expected, f"delete: C {got} != model {expected}"
        elif op == 9:  # ttl
            key = _key(src) if src.below(8) else src.pick(BAD_KEYS)
            expected, got = _outcome(lambda: m.ttl(key)), _outcome(lambda: c.ttl(key))
            if expected[0] == "raise" or expected[1] is None:
                assert got == expected, f"ttl: C {got} != model {expected}"
            else:
                assert got[0] == "ok" and got[1] is not None and abs(got[1] - expected[1]) < 0.2, \
                    f"ttl: C {got} != model {expected}"
        elif op == 10:  # touch
            key = _key(src) if src.below(8) else src.pick(BAD_KEYS)
            ttl = src.pick(TTLS) if src.below(6) else src.pick(BAD_TTLS)
            self.same("touch", lambda: c.touch(key, ttl), lambda: m.touch(key, ttl))
        elif op == 11:  # invalidate_tags
            if src.below(6):
                tags = [src.pick(TAGS) for _ in range(src.below(3))]
            else:
                tags = [src.pick([1, b"t1", None, "t1"])]
            live, stored = self.stored_matching(lambda k, e: not e.tags.isdisjoint(
                t for t in tags if isinstance(t, str)))
            expected, got = _outcome(lambda: m.invalidate_tags(*tags)), _outcome(lambda: c.invalidate_tags(*tags))
            if expected[0] == "raise" or got[0] == "raise":
                assert got == expected, f"invalidate_tags: C {got} != model {expected}"
            else:
                assert live <= got[1] <= stored, (live, got, stored)
        elif op == 12:  # invalidate_prefix
            prefix = src.pick(PREFIXES) if src.below(6) else src.pick(
                [1, None, bytearray(b"a"), StrKey("b:"), BytesKey(b"a"), ["a"]])
            live, stored = self.stored_matching(
                lambda k, e: isinstance(prefix, (str, bytes)) and
                type(k) is (str if isinstance(prefix, str) else bytes) and k.startswith(prefix))
            expected = _outcome(lambda: m.invalidate_prefix(prefix))
            got = _outcome(lambda: c.invalidate_prefix(prefix))
            if expected[0] == "raise" or got[0] == "raise":
                assert got == expected, f"invalidate_prefix: C {got} != model {expected}"
            else:
                assert live <= got[1] <= stored, (live, got, stored)
        elif op == 13:  # clear
            live, stored = self.stored_matching(lambda k, e: True)
            removed = c.clear()
            m.clear()
            assert live <= removed <= stored, (live, removed, stored)
            assert c.stats()["entries"] == 0
        elif op == 14:  # expire
            _, expired = self.stored_matching(lambda k, e: e.expired(m._now()))
            removed = c.expire()
            m.expire()
            assert 0 <= removed <= expired
            stats, model = c.stats(), m.stats()
            for name in ("entries", "bytes", "tags"):
                assert stats[name] == model[name], (name, stats[name], model[name])
        elif op in (15, 16):  # move the clock
            advance_clock(src.pick(STEPS))
        elif op == 17:  # mapping protocol
            key = _key(src)
            kind = src.below(4)
            if kind == 0:
                self.same("in", lambda: key in c, lambda: key in m)
            elif kind == 1:
                self.same("[]", lambda: c[key], lambda: m[key], identical=True)
            elif kind == 2:
                value = _value(src)
                self.inserted = True
                self.same("[]=", lambda: c.__setitem__(key, value), lambda: m.__setitem__(key, value))
            else:
                entry = m._data.get(key if type(key) in (str, bytes) else None)
                if entry is None or not entry.expired(m._now()):
                    self.same("del", lambda: c.__delitem__(key), lambda: m.__delitem__(key))
        elif op == 18:  # stats and len
            stats = c.stats()
            assert stats["rejected"] == m.stats()["rejected"]
            assert len(c) <= stats["entries"]
        elif op == 19:  # bad constructor arguments: the same exception type
            field = src.pick(["max_entries", "max_bytes", "default_ttl"])
            bad = src.pick(BAD_BOUNDS if field != "default_ttl" else BAD_TTLS)
            self.same(f"LocalCache({field}={bad!r})",
                      lambda: (LocalCache(**{field: bad}), "made")[1],
                      lambda: (ModelCache(**{field: bad}), "made")[1])
        else:  # 20..23: a read of something just written, the commonest sequence
            key = _key(src)
            self.same("get", lambda: c.get(key, MISSING), lambda: m.get(key, MISSING), identical=True)

    # -- invariants -------------------------------------------------------------------

    def check(self, deep: bool) -> None:
        c, m = self.c, self.m
        if deep:
            c._selfcheck()
        max_entries, max_bytes = self.bounds
        stats = c.stats()
        assert len(c) <= max_entries and stats["entries"] <= max_entries
        if max_bytes is not None:
            assert stats["bytes"] <= max_bytes
        assert stats["rejected"] == m.stats()["rejected"], (stats["rejected"], m.stats()["rejected"])
        c_keys = c.keys()
        assert len(c_keys) == len(set(c_keys)) == len(c)
        live = set(m.keys())
        assert set(c_keys) <= live, f"the C cache has keys the model does not: {set(c_keys) - live}"
        for key in c_keys:
            assert c.get(key, MISSING) is m.get(key, MISSING), key
        evicted = live - set(c_keys)
        evictions = stats["evictions"]
        if evicted:
            assert self.inserted, f"{evicted} vanished without an insert"
            assert evictions - self.evictions_seen >= len(evicted)
            for key in evicted:
                m.forget(key)
        self.evictions_seen = evictions
        self.inserted = False


def one_input(data: bytes) -> None:
    reset_clock()
    try:
        src = Bytes(data)
        run = Run(src)
        for i in range(MAX_STEPS):
            if not src.remaining():
                break
            run.step()
            run.check(deep=i % 4 == 3)
        run.check(deep=True)
    finally:
        reset_clock()

"""A small pure-Python reference model of ``tieredcache.LocalCache``.

``ModelCache`` implements the behaviour documented in ``docs/local-cache.md`` as plainly
as possible, so the conformance suite can run the same tests against it and against the
C core (the way CPython tests its C ``lru_cache`` against the pure-Python one), and the
stateful tests can drive both side by side.

What the model keeps simple on purpose:

- Eviction is plain LRU. Which entry the C core evicts is decided by its W-TinyLFU
  policy; tests about eviction check bounds, counts and consistency, never which key.
- Expired entries stay stored until something reclaims them: ``expire()``, or an
  operation that replaces or removes that very entry (``set``, ``delete``, ``clear``,
  invalidation). Reads never return them. The C core may reclaim them earlier (its
  timing wheel runs during every call), so the model's stored-but-expired entries are
  an upper bound of what the C core may still hold.
- The clock is the C core's clock (``tieredcache._core.monotonic``), so
  ``tieredcache.testing.advance_clock`` moves both.
"""

from __future__ import annotations

import math
import sys
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any

from tieredcache._core import monotonic

__all__ = ["MAX_CHARGE", "MAX_ENTRIES", "MAX_TTL", "ModelCache"]

MAX_ENTRIES = 2**31 - 1
MAX_CHARGE = 2**32 - 1  # the largest charge accepted when max_bytes is None
MAX_TTL = 100 * 365.25 * 86400.0  # 100 years, in seconds

_MISSING = object()


# -- argument checking (the same rules, and the same exception types, as the C core) --


def _plain_key(key: object) -> str | bytes:
    """Return ``key`` as an exact ``str``/``bytes`` without running any user code."""
    if type(key) is str or type(key) is bytes:
        return key
    if isinstance(key, str):
        return str.__getitem__(key, slice(None))
    if isinstance(key, bytes):
        return bytes.__getitem__(key, slice(None))
    raise TypeError(f"key must be str or bytes, not {type(key).__name__}")


def _check_ttl(ttl: object, name: str = "ttl") -> float:
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)):
        raise TypeError(f"{name} must be an int or a float, not {type(ttl).__name__}")
    if isinstance(ttl, int) and ttl > MAX_TTL:
        raise ValueError(f"{name} must be at most 100 years, got {ttl!r}")
    seconds = float(ttl)
    if math.isnan(seconds) or math.isinf(seconds) or seconds <= 0 or seconds > MAX_TTL:
        raise ValueError(f"{name} must be a positive, finite number of seconds up to 100 years, got {ttl!r}")
    return seconds


def _check_int(value: object, name: str, low: int, high: int | None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < low or (high is not None and value > high):
        raise ValueError(f"{name} must be in [{low}, {high}], got {value!r}")
    return int(value)


def _check_tags(tags: object) -> frozenset[str]:
    if isinstance(tags, (str, bytes)):
        raise TypeError(f"tags must be an iterable of str, not a lone {type(tags).__name__}")
    try:
        items = list(tags)  # type: ignore[call-overload]
    except TypeError:
        raise TypeError(f"tags must be an iterable of str, not {type(tags).__name__}") from None
    plain = []
    for tag in items:
        if not isinstance(tag, str):
            raise TypeError(f"tag must be str, not {type(tag).__name__}")
        plain.append(str.__getitem__(tag, slice(None)))
    return frozenset(plain)


class _Entry:
    __slots__ = ("value", "deadline", "tags", "charge")

    def __init__(self, value: Any, deadline: float | None, tags: frozenset[str], charge: int):
        self.value = value
        self.deadline = deadline
        self.tags = tags
        self.charge = charge

    def expired(self, now: float) -> bool:
        return self.deadline is not None and now >= self.deadline


class ModelCache:
    """Reference model of ``LocalCache``: same API, same observable semantics, LRU eviction."""

    def __init__(self, max_entries: int = 100_000, max_bytes: int | None = None, default_ttl: float | None = None):
        self._max_entries = _check_int(max_entries, "max_entries", 1, MAX_ENTRIES)
        self._max_bytes = None if max_bytes is None else _check_int(max_bytes, "max_bytes", 1, None)
        self._default_ttl = None if default_ttl is None else _check_ttl(default_ttl, "default_ttl")
        self._data: OrderedDict[str | bytes, _Entry] = OrderedDict()  # least recently used first
        self._bytes = 0
        self._peak_bytes = 0
        self._counters = dict.fromkeys(
            ["hits", "misses", "sets", "deletes", "evictions", "evictions_bytes",
             "expirations", "invalidations", "rejected"], 0)

    # -- internals --------------------------------------------------------------------

    @staticmethod
    def _now() -> float:
        return monotonic()

    def _deadline(self, ttl: object, *, none_means_default: bool = True) -> float | None:
        if ttl is None:
            seconds = self._default_ttl if none_means_default else None
        else:
            seconds = _check_ttl(ttl)
        return None if seconds is None else self._now() + seconds

    @staticmethod
    def _charge(value: Any, size: object) -> int:
        if size is not None:
            return _check_int(size, "size", 0, None)
        if isinstance(value, str):
            return str.__len__(value)
        if isinstance(value, bytes):
            return bytes.__len__(value)
        return sys.getsizeof(value)

    def _limit(self) -> int:
        return MAX_CHARGE if self._max_bytes is None else self._max_bytes

    def _live_entry(self, key: str | bytes) -> _Entry | None:
        entry = self._data.get(key)
        if entry is None or entry.expired(self._now()):
            return None
        return entry

    def _remove(self, key: str | bytes) -> _Entry:
        entry = self._data.pop(key)
        self._bytes -= entry.charge
        return entry

    def _store(self, key: str | bytes, value: Any, deadline: float | None,
               tags: frozenset[str], charge: int) -> bool:
        if key in self._data:
            self._remove(key)
        if charge > self._limit():
            self._counters["rejected"] += 1
            return False
        self._data[key] = _Entry(value, deadline, tags, charge)
        self._bytes += charge
        self._counters["sets"] += 1
        self._enforce_bounds()
        self._peak_bytes = max(self._peak_bytes, self._bytes)
        return True

    def _enforce_bounds(self) -> None:
        """Evict least recently used entries until both bounds hold."""
        while self._data and (
            len(self._data) > self._max_entries
            or (self._max_bytes is not None and self._bytes > self._max_bytes)
        ):
            for_entries = len(self._data) > self._max_entries
            self._remove(next(iter(self._data)))
            self._counters["evictions"] += 1
            if not for_entries:
                self._counters["evictions_bytes"] += 1

    def _remove_where(self, matches: Any) -> int:
        doomed = [key for key, entry in self._data.items() if matches(key, entry)]
        for key in doomed:
            self._remove(key)
        return len(doomed)

    # -- reading ----------------------------------------------------------------------

    def get(self, key: object, default: Any = None) -> Any:
        plain = _plain_key(key)
        entry = self._live_entry(plain)
        if entry is None:
            self._counters["misses"] += 1
            return default
        self._counters["hits"] += 1
        self._data.move_to_end(plain)
        return entry.value

    def get_many(self, keys: Iterable[object]) -> dict[str | bytes, Any]:
        found = {}
        for key in keys:
            value = self.get(key, _MISSING)
            if value is not _MISSING:
                found[_plain_key(key)] = value
        return found

    def ttl(self, key: object) -> float | None:
        plain = _plain_key(key)
        entry = self._live_entry(plain)
        if entry is None:
            raise KeyError(key)
        return None if entry.deadline is None else entry.deadline - self._now()

    def keys(self) -> list[str | bytes]:
        now = self._now()
        return [key for key, entry in self._data.items() if not entry.expired(now)]

    def __len__(self) -> int:
        now = self._now()
        return sum(1 for entry in self._data.values() if not entry.expired(now))

    def __contains__(self, key: object) -> bool:
        return self._live_entry(_plain_key(key)) is not None

    def __getitem__(self, key: object) -> Any:
        value = self.get(key, _MISSING)
        if value is _MISSING:
            raise KeyError(key)
        return value

    # -- writing ----------------------------------------------------------------------

    def set(self, key: object, value: Any, ttl: float | None = None, tags: Iterable[str] = (),
            size: int | None = None) -> bool:
        plain = _plain_key(key)
        deadline = self._deadline(ttl)
        tag_set = _check_tags(tags)
        charge = self._charge(value, size)
        return self._store(plain, value, deadline, tag_set, charge)

    def set_many(self, mapping: Mapping[object, Any], ttl: float | None = None,
                 tags: Iterable[str] = ()) -> int:
        if not isinstance(mapping, Mapping):
            raise TypeError(f"mapping must be a mapping, not {type(mapping).__name__}")
        deadline = self._deadline(ttl)
        tag_set = _check_tags(tags)
        items = [(_plain_key(key), value) for key, value in mapping.items()]
        return sum(self._store(key, value, deadline, tag_set, self._charge(value, None))
                   for key, value in items)

    def __setitem__(self, key: object, value: Any) -> None:
        self.set(key, value)

    def touch(self, key: object, ttl: float | None) -> bool:
        plain = _plain_key(key)
        deadline = self._deadline(ttl, none_means_default=False)
        entry = self._live_entry(plain)
        if entry is None:
            return False
        entry.deadline = deadline
        return True

    # -- removing ---------------------------------------------------------------------

    def delete(self, key: object) -> bool:
        plain = _plain_key(key)
        entry = self._data.get(plain)
        if entry is None:
            return False
        self._remove(plain)
        if entry.expired(self._now()):
            self._counters["expirations"] += 1
            return False
        self._counters["deletes"] += 1
        return True

    def __delitem__(self, key: object) -> None:
        if not self.delete(key):
            raise KeyError(key)

    def invalidate_tags(self, *tags: str) -> int:
        wanted = _check_tags(tags)
        removed = self._remove_where(lambda key, entry: not wanted.isdisjoint(entry.tags))
        self._counters["invalidations"] += removed
        return removed

    def invalidate_prefix(self, prefix: str | bytes) -> int:
        if not isinstance(prefix, (str, bytes)):
            raise TypeError(f"prefix must be str or bytes, not {type(prefix).__name__}")
        plain = _plain_key(prefix)
        removed = self._remove_where(
            lambda key, entry: type(key) is type(plain) and key.startswith(plain))
        self._counters["invalidations"] += removed
        return removed

    def clear(self) -> int:
        removed = len(self._data)
        self._data.clear()
        self._bytes = 0
        return removed

    def expire(self) -> int:
        now = self._now()
        removed = self._remove_where(lambda key, entry: entry.expired(now))
        self._counters["expirations"] += removed
        return removed

    # -- introspection ----------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        tags: set[str] = set()
        for entry in self._data.values():
            tags |= entry.tags
        return {
            **self._counters,
            "entries": len(self._data),
            "bytes": self._bytes,
            "peak_bytes": self._peak_bytes,
            "max_entries": self._max_entries,
            "max_bytes": self._max_bytes,
            "tags": len(tags),
            "overhead_bytes": 0,  # the model has no C structures of its own
        }

    def _selfcheck(self) -> None:
        """Check the model's own bookkeeping, like the C core's structural check."""
        if self._bytes != sum(entry.charge for entry in self._data.values()):
            raise AssertionError("byte count does not match the entries' charges")
        if len(self._data) > self._max_entries:
            raise AssertionError("more entries than max_entries")
        if self._max_bytes is not None and self._bytes > self._max_bytes:
            raise AssertionError("more bytes than max_bytes")
        for key in self._data:
            if type(key) is not str and type(key) is not bytes:
                raise AssertionError(f"stored key of type {type(key).__name__}")

"""Testing hooks: move the caches' clock without sleeping.

Every ``LocalCache`` in the process reads one monotonic clock. ``advance_clock`` adds an
offset to it, so a test can make entries expire instantly::

    cache.set("k", 1, ttl=30)
    advance_clock(31)
    assert cache.get("k") is None

The offset only ever moves time forward; ``reset_clock`` removes it (entries set while the
clock was advanced then live longer than their TTL, which is safe but worth knowing).
"""

from __future__ import annotations

from typing import Any

from ._core import advance_clock, monotonic as cache_time, reset_clock

__all__ = ["advance_clock", "cache_time", "reset_clock"]


def __getattr__(name: str) -> Any:
    # RedisServer (a private redis-server for tests; the pytest plugin's redis_server
    # fixture yields one) loads on first use
    if name == "RedisServer":
        from ._redis_server import RedisServer

        return RedisServer
    raise AttributeError(f"module 'tieredcache.testing' has no attribute {name!r}")

"""pytest fixtures for test suites of applications that use tieredcache.

Installing tieredcache registers this module through the ``pytest11`` entry point: the
fixtures are available in every test, with nothing to import. Nothing starts until a
test asks for a fixture. See docs/testing.md.

==================  ========  =====================================================
fixture             scope     what
==================  ========  =====================================================
``redis_server``    session   a private redis-server on a free loopback port
                              (skips the test when ``redis-server`` is not on PATH)
``redis_url``       function  its URL, every database emptied first
``tiered_cache``    function  a fresh ``TieredCache`` in a namespace of its own,
                              installed as the default cache for the test; with
                              Redis when the test uses ``redis_url``, is marked
                              ``@pytest.mark.tieredcache(redis=True)``, or the run
                              has ``--tieredcache-redis``
``cache_clock``     function  ``cache_clock.advance(301)``: cache time moves forward
                              without sleeping (L1, and the test's Redis entries)
``cache_events``    function  hits, misses and invalidations since the test began
==================  ========  =====================================================

``@pytest.mark.tieredcache(**kwargs)`` passes ``kwargs`` to the ``TieredCache``
constructor (``default_ttl=60``, ``max_entries=100``, ...), plus ``redis=True|False``.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from ._redis_server import RedisServer
    from ._tiered import TieredCache

__all__ = ["CacheClock", "CacheEvents"]

NO_REDIS_SERVER = (
    "redis-server is not on PATH: install Redis (e.g. 'apt install redis-server' or "
    "'brew install redis') to run the tests that use the redis_server fixture"
)

_COUNTERS = ("calls", "hits", "l1_hits", "l2_hits", "misses", "errors")
_INVALIDATIONS = ("delete", "invalidate_tags", "invalidate_prefix", "clear")

# The Redis-backed caches tiered_cache made for the current test, as (cache, redis_url):
# cache_clock ages their entries in Redis.
_REDIS_CACHES = pytest.StashKey[list[tuple["TieredCache", str]]]()


# --------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("tieredcache")
    group.addoption(
        "--tieredcache-redis",
        action="store_true",
        default=False,
        help="tiered_cache uses a private redis-server (L1 + Redis) in every test, not L1 only",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "tieredcache(redis=None, **kwargs): options of the tiered_cache fixture: redis=True "
        "backs it with the private redis-server, other keyword arguments go to TieredCache()",
    )


# --------------------------------------------------------------------------------------
# Redis
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A private redis-server for the session: 127.0.0.1, a free port, no persistence,
    a temporary directory; stopped at the end of the session. Skips the test when
    ``redis-server`` is not on PATH."""
    if shutil.which("redis-server") is None:
        pytest.skip(NO_REDIS_SERVER)
    from ._redis_server import RedisServer

    server = RedisServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The URL of ``redis_server``, every database emptied before the test."""
    if not redis_server.running:  # a test killed it: bring it back for the next ones
        redis_server.restart()
    redis_server.flushall()
    return redis_server.url


# --------------------------------------------------------------------------------------
# tiered_cache
# --------------------------------------------------------------------------------------


def _namespace_for(request: pytest.FixtureRequest, prefix: str) -> str:
    # Readable in redis-cli, unique per test, and free of glob metacharacters.
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)[:48].strip("_") or "test"
    return f"{prefix}-{name}-{os.urandom(4).hex()}"


@pytest.fixture
def tiered_cache(request: pytest.FixtureRequest) -> Iterator[TieredCache]:
    """A fresh ``TieredCache`` of this test's own, installed as the default cache (so
    functions decorated with ``tieredcache.cached`` and the presets use it), closed
    afterwards and the previous default restored.

    L1 only, unless the test uses ``redis_url``, is marked
    ``@pytest.mark.tieredcache(redis=True)`` or the run has ``--tieredcache-redis``;
    then L1 + the private redis-server. The namespace is unique to the test, so tests
    sharing a Redis never see each other's entries. Other keyword arguments of the
    marker go to ``TieredCache()``."""
    import tieredcache
    from . import _decorators

    marker = request.node.get_closest_marker("tieredcache")
    kwargs: dict[str, Any] = {}
    if marker is not None:
        if marker.args:
            raise TypeError("@pytest.mark.tieredcache takes keyword arguments only")
        kwargs.update(marker.kwargs)
    use_redis = kwargs.pop("redis", None)
    if use_redis is None:
        use_redis = "redis_url" in request.fixturenames or request.config.getoption("tieredcache_redis")
    if "redis_url" not in kwargs:
        kwargs["redis_url"] = request.getfixturevalue("redis_url") if use_redis else None
    kwargs["namespace"] = _namespace_for(request, kwargs.get("namespace", "test"))

    cache = tieredcache.TieredCache(**kwargs)
    try:
        if kwargs["redis_url"] is not None:
            request.node.stash.setdefault(_REDIS_CACHES, []).append((cache, kwargs["redis_url"]))
        with _decorators.installed_default(cache):
            yield cache
    finally:
        cache.close()


# --------------------------------------------------------------------------------------
# cache_clock
# --------------------------------------------------------------------------------------

# Redis has no clock to move: moving time forward by d ms takes d ms off the TTL of
# every key of the namespace, and removes the keys with less than that left.
_AGE_LUA = """
local d = tonumber(ARGV[1])
local n = 0
for _, k in ipairs(KEYS) do
  local t = redis.call('PTTL', k)
  if t > 0 then
    if t <= d then redis.call('DEL', k); n = n + 1 else redis.call('PEXPIRE', k, t - d) end
  end
end
return n
"""

_GLOB_SPECIAL = str.maketrans({c: "\\" + c for c in "*?[]\\"})


def _age_redis(cache: TieredCache, url: str, ms: int) -> None:
    """Take ``ms`` off the TTL of every Redis key of ``cache``'s namespace and its
    sub-namespaces."""
    from ._errors import BackendUnavailable
    from ._redis import RedisClient

    base = cache.redis_key("x")[: -len(":k:x")]  # "tc:{escaped namespace}"
    patterns = [base.translate(_GLOB_SPECIAL) + suffix for suffix in (":*", "/*")]
    client = RedisClient(url, socket_timeout=5.0, connect_timeout=1.0)
    try:
        for pattern in patterns:
            cursor = b"0"
            while True:
                cursor, keys = client.execute("SCAN", cursor, "MATCH", pattern, "COUNT", 1000)
                if keys:
                    client.execute("EVAL", _AGE_LUA, len(keys), *keys, ms)
                if cursor == b"0":
                    break
    except BackendUnavailable:
        pass  # the test stopped or killed the server: its entries are gone with it
    finally:
        client.close()


class CacheClock:
    """Moves cache time forward without sleeping.

    ``advance(seconds)`` moves the clock of every in-process cache (L1) and, for the
    test's Redis-backed ``tiered_cache``, takes ``seconds`` off the TTL of its entries
    in Redis. Time only moves forward; the ``cache_clock`` fixture puts the real clock
    back after the test.
    """

    def __init__(self, request: pytest.FixtureRequest) -> None:
        self._node = request.node
        self._advanced = 0.0

    @property
    def advanced(self) -> float:
        """Seconds the clock was moved forward in this test."""
        return self._advanced

    def now(self) -> float:
        """The caches' monotonic clock, in seconds (advances included)."""
        from .testing import cache_time

        return cache_time()

    def advance(self, seconds: float) -> None:
        """Move cache time ``seconds`` forward: entries whose TTL ends within it expire."""
        from .testing import advance_clock

        advance_clock(seconds)  # validates: a finite number, 0 <= seconds <= 1e9
        self._advanced += seconds
        ms = math.ceil(seconds * 1000)
        if ms > 0:
            for cache, url in self._node.stash.get(_REDIS_CACHES, []):
                _age_redis(cache, url, ms)

    def __repr__(self) -> str:
        return f"<CacheClock advanced {self._advanced:g} s>"


@pytest.fixture
def cache_clock(request: pytest.FixtureRequest) -> Iterator[CacheClock]:
    """Move cache time forward without sleeping: ``cache_clock.advance(301)``. The
    real clock is back after the test."""
    from .testing import reset_clock

    reset_clock()
    try:
        yield CacheClock(request)
    finally:
        reset_clock()


# --------------------------------------------------------------------------------------
# cache_events
# --------------------------------------------------------------------------------------


class CacheEvents:
    """What the watched caches did since the fixture started (or ``reset()``).

    Counters per cached function (the deltas of ``fn.stats()``): ``calls``, ``hits``
    (``l1_hits`` + ``l2_hits``), ``misses``. A function is named by its full
    ``"module.qualname"``, its qualname (``"Service.get"``) or its ``__name__``
    (``"get"``), or given as the decorated function itself; a name matching several
    functions sums them; a function not called counts 0.

    Invalidations, from ``cache.add_listener``: ``invalidations(tag=None)``,
    ``invalidated_tags()``, ``invalidated_prefixes()``, ``deleted_keys()``, ``clears()``,
    and ``events``, every ``(event, detail)`` in order.
    """

    def __init__(self, *caches: TieredCache) -> None:
        self._caches: list[TieredCache] = []
        self._lock = threading.Lock()
        self.events: list[tuple[str, dict[str, Any]]] = []
        self._baseline: dict[Any, dict[str, int]] = self._snapshot(self._every_function())
        for cache in caches:
            self.watch(cache)

    # -- watching ----------------------------------------------------------------------

    def watch(self, cache: TieredCache) -> None:
        """Record ``cache`` too (a cache of your application's own, say), from now on."""
        if any(c is cache for c in self._caches):
            return
        cache.add_listener(self._on_event)
        self._caches.append(cache)
        for fn, counts in self._snapshot(_functions_of(cache)).items():
            self._baseline.setdefault(fn, counts)

    def close(self) -> None:
        """Stop listening (the fixture does it after the test)."""
        for cache in self._caches:
            cache.remove_listener(self._on_event)
        self._caches.clear()

    def reset(self) -> None:
        """Count from now on: counters back to 0, events forgotten."""
        with self._lock:
            self.events.clear()
        self._baseline = self._snapshot(self._every_function())

    def _on_event(self, event: str, detail: dict[str, Any]) -> None:
        with self._lock:
            self.events.append((event, dict(detail)))

    # -- per-function counters ----------------------------------------------------------

    # A function's counters live on the function, whatever cache it is bound to: the
    # baseline holds every cached function that may be counted later (those bound to the
    # watched caches, and every function of the default cache, which binds to the test's
    # cache on its next call), so that calls made before the test never count.

    def _every_function(self) -> list[Any]:
        from . import _decorators

        fns = list(_decorators._default_bound)
        for cache in self._caches:
            fns += _functions_of(cache)
        return fns

    @staticmethod
    def _snapshot(fns: list[Any]) -> dict[Any, dict[str, int]]:
        out = {}
        for fn in fns:
            row = fn.stats()
            out[fn] = {c: int(row[c]) for c in _COUNTERS}
        return out

    def _current(self) -> dict[Any, dict[str, int]]:
        fns: dict[int, Any] = {}
        for cache in self._caches:
            for fn in _functions_of(cache):
                fns[id(fn)] = fn
        return self._snapshot(list(fns.values()))

    @staticmethod
    def _matcher(function: str | Callable[..., Any]) -> Callable[[str], bool]:
        if not isinstance(function, str):
            qualname = getattr(function, "qualname", None)
            if not isinstance(qualname, str):
                raise TypeError(f"expected a function name or a cached function, got {function!r}")
            return qualname.__eq__
        if not function:
            raise ValueError("the function name is empty")
        suffix = "." + function
        return lambda full: full == function or full.endswith(suffix)

    def _deltas(self) -> dict[str, dict[str, int]]:
        """{"module.qualname": {counter: delta}} of the functions bound to the watched caches."""
        out: dict[str, dict[str, int]] = {}
        zero = dict.fromkeys(_COUNTERS, 0)
        for fn, counts in self._current().items():
            base = self._baseline.get(fn, zero)
            total = out.setdefault(fn.name, dict(zero))
            for c in _COUNTERS:
                total[c] += counts[c] - base[c]
        return out

    def _count(self, function: str | Callable[..., Any], counter: str) -> int:
        match = self._matcher(function)
        return sum(counts[counter] for name, counts in self._deltas().items() if match(name))

    def calls(self, function: str | Callable[..., Any]) -> int:
        """Calls of the cached function (hits + misses + calls that raised)."""
        return self._count(function, "calls")

    def hits(self, function: str | Callable[..., Any]) -> int:
        """Calls answered from the cache (L1 or Redis)."""
        return self._count(function, "hits")

    def l1_hits(self, function: str | Callable[..., Any]) -> int:
        """Calls answered from L1 (in process)."""
        return self._count(function, "l1_hits")

    def l2_hits(self, function: str | Callable[..., Any]) -> int:
        """Calls answered from Redis."""
        return self._count(function, "l2_hits")

    def misses(self, function: str | Callable[..., Any]) -> int:
        """Calls that ran the function."""
        return self._count(function, "misses")

    def functions(self) -> list[str]:
        """The full names of the cached functions bound to the watched caches."""
        return sorted({fn.name for fn in self._current()})

    # -- invalidations -------------------------------------------------------------------

    def _events(self, *kinds: str) -> list[dict[str, Any]]:
        with self._lock:
            return [detail for event, detail in self.events if event in kinds]

    def invalidations(self, tag: str | None = None) -> int:
        """How many invalidations ran (deletes, tag and prefix invalidations, clears);
        with ``tag``, how many tag invalidations included that tag."""
        if tag is None:
            return len(self._events(*_INVALIDATIONS))
        return sum(1 for detail in self._events("invalidate_tags") if tag in detail["tags"])

    def invalidated_tags(self) -> list[str]:
        """Every tag invalidated, in order."""
        return [tag for detail in self._events("invalidate_tags") for tag in detail["tags"]]

    def invalidated_prefixes(self) -> list[str]:
        """Every prefix invalidated, in order."""
        return [detail["prefix"] for detail in self._events("invalidate_prefix")]

    def deleted_keys(self) -> list[str]:
        """Every key deleted (``cache.delete``, ``fn.invalidate(...)``, ``keys=`` of
        ``invalidates``), in order."""
        return [detail["key"] for detail in self._events("delete")]

    def clears(self) -> int:
        """How many times a namespace was cleared."""
        return len(self._events("clear"))

    def __repr__(self) -> str:
        parts = [f"{name}: calls={c['calls']} hits={c['hits']} misses={c['misses']}"
                 for name, c in sorted(self._deltas().items())]
        with self._lock:
            parts.append(f"events={[event for event, _ in self.events]}")
        return "<CacheEvents " + "; ".join(parts) + ">"


def _functions_of(cache: TieredCache) -> list[Any]:
    """The cached functions bound to ``cache``'s L1 (its namespace views' included)."""
    return list(cache._core.functions.values())


@pytest.fixture
def cache_events(tiered_cache: TieredCache) -> Iterator[CacheEvents]:
    """A recorder of the test's ``tiered_cache``: ``cache_events.hits("get_profile")``,
    ``.misses(...)``, ``.calls(...)``, ``.invalidations(tag=...)``,
    ``.invalidated_tags()``, ``.deleted_keys()``, ``.reset()``; ``.watch(cache)`` adds
    a cache of your own."""
    events = CacheEvents(tiered_cache)
    try:
        yield events
    finally:
        events.close()

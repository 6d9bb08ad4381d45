"""The restaurant reference app as bench_e2e.py serves it: one variant per server.

    E2E_VARIANT=tiered-redis MONGODB_URL=mongodb://127.0.0.1:PORT MONGODB_DB=billing \\
    REDIS_URL=redis://127.0.0.1:PORT/1 PYTHONPATH=src:docs/examples:benchmarks \\
      uvicorn --factory _e2e_restaurant:app_from_env --workers 2 --port 8000

``app_from_env`` builds docs/examples/restaurant/app.py's ``create_app`` (routes, queries,
cache policy and invalidation cascades all its own) with the cache of ``E2E_VARIANT``:

  uncached        ``cache=None``: the app's uncached baseline
  tiered-l1       ``make_cache(None)``: tieredcache, L1 only (each worker its own L1)
  tiered-redis    ``make_cache(REDIS_URL)``: tieredcache, L1 + Redis
  fastapi-cache2  fastapi-cache2 0.2 (``RedisBackend``) on the same functions (below)
  cashews         cashews (``redis://``) on the same functions (below)

The peers go on exactly the data-access functions the app caches, with the app's own
policy: ``create_app`` asks its cache for ``cache.cached(ttl=, tags=, exclude=, name=)``
and ``cache.invalidates(tags=)``; for a peer it gets ``_PeerCache``, a disabled
``TieredCache`` whose ``cached``/``invalidates`` return the peer's decorators built from
those same arguments, so the TTLs, the keys (the arguments minus ``exclude``) and what
each write invalidates are the app's, and every other line of the app is unchanged:

  fastapi-cache2  ``@cache(expire=ttl, key_builder=...)``; the key starts with the entry's
                  most specific tag (``org:{org_id}:orders``...), and a write calls
                  ``FastAPICache.clear(namespace=tag)`` for each tag it invalidates (the
                  library's documented invalidation: a Lua ``KEYS prefix:*`` + ``DEL``).
  cashews         ``@cache(ttl=ttl, key=..., tags=[the app's tag templates])``; a write
                  calls ``await cache.delete_tags(*tags)`` (cashews' tag invalidation).

A function that returns ``NoStore(None)`` ("not found") is not cached by any variant.
The peers have no hit counter of their own: ``/_e2e/stats`` counts their calls and their
loads (a load is a miss) in this module's wrapper, and tieredcache's from ``cache.stats()``.

``GET /_e2e/stats``: this worker's pid, its HTTP requests, the database commands it sent (the app's
``QueryCounter``) and its cached calls / hits; the same figures are written to
``$E2E_STATS_DIR/<pid>.json`` (benchmarks/_e2e_stats.py), which bench_e2e.py sums over
the workers.
"""

from __future__ import annotations

import inspect
import os
import sys
from collections.abc import Callable, Iterable
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for _p in (os.path.join(ROOT, "docs", "examples"), os.path.join(ROOT, "src")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from tieredcache import NoStore, TieredCache  # noqa: E402

sys.path.insert(0, HERE)
from _e2e_stats import start_dumper  # noqa: E402

VARIANTS = ("uncached", "tiered-l1", "tiered-redis", "fastapi-cache2", "cashews")
TIERS = {"real_time": 60, "user_data": 300, "business_intelligence": 900, "analytics": 1800, "static": 3600}


class _Missing(Exception):
    """A loader returned NoStore(value): pass the value to the caller, cache nothing."""

    def __init__(self, value: Any) -> None:
        super().__init__()
        self.value = value


def _ttl_seconds(ttl: float | str | None) -> int:
    if ttl is None:
        return 300
    if isinstance(ttl, str):
        try:
            from tieredcache._decorators import TIERS as tiers
        except ImportError:
            tiers = TIERS
        return int(tiers[ttl])
    return max(1, int(ttl))


def _as_list(x: Iterable[str] | str) -> list[str]:
    return [x] if isinstance(x, str) else list(x)


def _specific(tags: list[str]) -> str:
    """The entry's most specific tenant tag (the longest ``org:...`` template)."""
    scoped = [t for t in tags if t.startswith("org:")]
    return max(scoped or tags or ["all"], key=len)


class Counts:
    """Calls and loads of the peer-wrapped functions in this worker."""

    calls = 0
    loads = 0


class _PeerCache(TieredCache):
    """A disabled TieredCache (nothing stored, warmers and admin routes inert) whose
    ``cached``/``invalidates`` hand the app's policy to a peer library."""

    def __init__(self, peer: str, redis_url: str) -> None:
        super().__init__(namespace=f"e2e-{peer}", enabled=False, monitoring=False)
        self.peer = peer
        if peer == "fastapi-cache2":
            from fastapi_cache import FastAPICache
            from fastapi_cache.backends.redis import RedisBackend
            from redis.asyncio import Redis

            FastAPICache.reset()
            FastAPICache.init(RedisBackend(Redis.from_url(redis_url)), prefix="fc")
            self.fc = FastAPICache
        elif peer == "cashews":
            from cashews import Cache

            self.cw = Cache()
            self.cw.setup(redis_url)
        else:
            raise ValueError(peer)

    # -- reads ------------------------------------------------------------------------------

    def cached(self, ttl: float | str | None = None, tags: Iterable[str] | str = (), key: str | None = None,
               exclude: Iterable[str] | str = (), name: str | None = None) -> Callable[[Callable], Any]:
        seconds = _ttl_seconds(ttl)
        tag_list = _as_list(tags)
        skip = set(_as_list(exclude))

        def deco(fn: Callable) -> Callable:
            sig = inspect.signature(fn)
            params = [p for p in sig.parameters if p not in skip]
            label = name or f"{fn.__module__}.{fn.__qualname__}"

            async def loader(*args: Any, **kwargs: Any) -> Any:
                Counts.loads += 1
                value = await fn(*args, **kwargs)
                if isinstance(value, NoStore):
                    raise _Missing(value.value)
                return value

            loader.__name__ = fn.__name__
            loader.__qualname__ = fn.__qualname__
            loader.__module__ = fn.__module__
            loader.__signature__ = sig.replace(return_annotation=inspect.Signature.empty)  # type: ignore[attr-defined]

            if self.peer == "fastapi-cache2":
                from fastapi_cache.decorator import cache as fc_cache

                spec = _specific(tag_list)
                prefix = self.fc.get_prefix()

                def key_builder(func: Any, namespace: str = "", *, request: Any = None, response: Any = None,
                                args: tuple = (), kwargs: dict | None = None) -> str:
                    bound = sig.bind(*args, **(kwargs or {}))
                    bound.apply_defaults()
                    a = bound.arguments
                    parts = ":".join(str(a[p]) for p in params)
                    return f"{prefix}:{spec.format(**a)}:{label}:{parts}"

                peer_fn = fc_cache(expire=seconds, key_builder=key_builder)(loader)
            else:
                template = key or (f"{label}:" + ":".join("{%s}" % p for p in params))
                peer_fn = self.cw(ttl=seconds, key=template, tags=tag_list)(loader)

            async def call(*args: Any, **kwargs: Any) -> Any:
                Counts.calls += 1
                try:
                    return await peer_fn(*args, **kwargs)
                except _Missing as missing:  # what tieredcache gives the caller of a NoStore
                    return missing.value

            call.__name__ = fn.__name__
            call.__qualname__ = fn.__qualname__
            call.__module__ = fn.__module__
            call.__signature__ = sig  # type: ignore[attr-defined]
            return call

        return deco

    # -- writes -----------------------------------------------------------------------------

    def invalidates(self, tags: Iterable[str] | str = (), keys: Iterable[str] | str = ()) -> Callable[[Callable], Any]:
        tag_list = _as_list(tags)
        if _as_list(keys):
            raise NotImplementedError("invalidates(keys=...) is not used by the restaurant app")

        def deco(fn: Callable) -> Callable:
            sig = inspect.signature(fn)

            async def call(*args: Any, **kwargs: Any) -> Any:
                result = await fn(*args, **kwargs)  # raised: nothing to invalidate
                bound = sig.bind(*args, **kwargs)
                bound.apply_defaults()
                concrete = [t.format(**bound.arguments) for t in tag_list]
                if self.peer == "fastapi-cache2":
                    for t in concrete:
                        await self.fc.clear(namespace=t)
                else:
                    await self.cw.delete_tags(*concrete)
                return result

            call.__name__ = fn.__name__
            call.__qualname__ = fn.__qualname__
            call.__signature__ = sig  # type: ignore[attr-defined]
            return call

        return deco


def _tiered_counts(cache: TieredCache) -> dict[str, int]:
    st = cache.stats()
    fns = st.get("functions", [])
    return {"calls": sum(f["calls"] for f in fns), "hits": sum(f["hits"] for f in fns),
            "l1_hits": sum(f.get("l1_hits", 0) for f in fns), "l2_hits": sum(f.get("l2_hits", 0) for f in fns),
            "stale_writes_refused": st.get("stale_writes_refused", 0),
            "invalidations_received": st.get("invalidations_received", 0)}


def build(variant: str, mongo_url: str, db_name: str, redis_url: str | None) -> Any:
    from restaurant.app import create_app, make_cache

    if variant not in VARIANTS:
        raise ValueError(f"E2E_VARIANT must be one of {', '.join(VARIANTS)}, not {variant!r}")
    cache: TieredCache | None
    if variant == "uncached":
        cache = None
    elif variant == "tiered-l1":
        cache = make_cache(None)
    elif variant == "tiered-redis":
        if not redis_url:
            raise RuntimeError("tiered-redis needs REDIS_URL")
        cache = make_cache(redis_url)
    else:
        if not redis_url:
            raise RuntimeError(f"{variant} needs REDIS_URL")
        cache = _PeerCache(variant, redis_url)
    app = create_app(mongo_url=mongo_url, cache=cache, db_name=db_name, warm=False)
    counter = app.state.queries
    pid = os.getpid()
    requests = [0]

    def collect() -> dict:
        if isinstance(cache, _PeerCache):
            hits = {"calls": Counts.calls, "hits": Counts.calls - Counts.loads, "source": "bench wrapper"}
        elif cache is not None:
            hits = {**_tiered_counts(cache), "source": "cache.stats()"}
        else:
            hits = {"calls": 0, "hits": 0, "source": "uncached"}
        return {"pid": pid, "variant": variant, "requests": requests[0], "queries": counter.snapshot()["total"],
                **hits}

    async def e2e_stats() -> dict:
        return collect()

    app.add_api_route("/_e2e/stats", e2e_stats, methods=["GET"], include_in_schema=False)
    start_dumper(collect)

    async def counted(scope: dict, receive: Any, send: Any) -> None:
        """The app, counting this worker's HTTP requests (a plain ASGI wrapper)."""
        if scope["type"] == "http":
            requests[0] += 1
        await app(scope, receive, send)

    counted.state = app.state  # type: ignore[attr-defined]
    return counted


def app_from_env() -> Any:
    """``uvicorn --factory _e2e_restaurant:app_from_env``: E2E_VARIANT, MONGODB_URL,
    MONGODB_DB (default "billing"), REDIS_URL (the Redis variants)."""
    return build(os.environ.get("E2E_VARIANT", "uncached"), os.environ["MONGODB_URL"],
                 os.environ.get("MONGODB_DB", "billing"), os.environ.get("REDIS_URL") or None)

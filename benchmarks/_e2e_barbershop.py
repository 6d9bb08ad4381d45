"""The barbershop reference app as bench_e2e.py serves it (gunicorn, one variant per server).

    E2E_VARIANT=tiered-redis E2E_DB=/tmp/barbershop.db REDIS_URL=redis://127.0.0.1:PORT/4 \\
    PYTHONPATH=src:docs/examples:benchmarks \\
      gunicorn -w 2 -k gthread --threads 4 -b 127.0.0.1:8000 '_e2e_barbershop:app_from_env()'

``app_from_env`` builds docs/examples/barbershop/app.py's ``create_app`` (views, queries,
presets and invalidations all its own) for ``E2E_VARIANT``:

  uncached               ``cache=None``: the app's uncached baseline (a disabled cache)
  tiered-l1              ``TieredCache(namespace="barbershop")``: L1 only, per worker
  tiered-redis           ``TieredCache(redis_url=REDIS_URL, namespace="barbershop")``
  flask-caching          Flask-Caching ``RedisCache`` on REDIS_URL (shared by the workers)
  flask-caching-simple   Flask-Caching ``SimpleCache`` (per worker, like tiered-l1)

Flask-Caching goes on the same service functions the app caches, with the app's TTLs: the
app is built uncached, and each cached function of ``app.extensions["barbershop"].services``
(the views call them through that namespace) is replaced by
``cache.memoize(timeout=<the preset's TTL>)`` of it; each write is wrapped to call
``cache.delete_memoized(f)`` afterwards (never when it raised) for every function whose
tags it invalidates in the app: Flask-Caching's documented invalidation of memoized
functions (with RedisCache the per-function version key lives in Redis, so both workers
see it).

``GET /_e2e/stats`` and ``$E2E_STATS_DIR/<pid>.json``: this worker's pid, requests, SQL
statements (the app's ``Database`` counters) and cached calls / hits.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
from collections.abc import Callable
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for _p in (os.path.join(ROOT, "docs", "examples"), os.path.join(ROOT, "src"), HERE):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from _e2e_stats import start_dumper  # noqa: E402

VARIANTS = ("uncached", "tiered-l1", "tiered-redis", "flask-caching", "flask-caching-simple")

# The app's cached service functions and their preset TTLs (docs/examples/barbershop/app.py).
CACHED = {
    "service_catalog": 3600,       # @cache_static_reference_data
    "booking_settings": 3600,      # @cache_static_reference_data
    "available_slots": 300,        # @cache_appointment_slots
    "weekly_availability": 300,    # @cache_appointment_slots
    "revenue_dashboard": 1800,     # @cache_analytics_data
    "client_analytics": 1800,      # @cache_analytics_data
    "business_dashboard": 900,     # @cache_business_intelligence
}
# What each write invalidates there, as functions.
_SLOTS = ("available_slots", "weekly_availability")
INVALIDATES = {
    "create_booking": (*_SLOTS, "business_dashboard"),
    "cancel_booking": (*_SLOTS, "business_dashboard"),
    "record_payment": ("revenue_dashboard", "client_analytics", "business_dashboard"),
    "save_service": ("service_catalog",),
    "update_settings": ("booking_settings", *_SLOTS, "business_dashboard"),
}


class _Count:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests = 0
        self.calls = 0
        self.loads = 0


def _flask_caching(app: Any, svc: Any, kind: str, redis_url: str | None, count: _Count) -> str:
    from flask_caching import Cache

    if kind == "flask-caching":
        if not redis_url:
            raise RuntimeError("flask-caching needs REDIS_URL")
        config = {"CACHE_TYPE": "RedisCache", "CACHE_REDIS_URL": redis_url, "CACHE_KEY_PREFIX": "fc_",
                  "CACHE_DEFAULT_TIMEOUT": 300}
    else:
        config = {"CACHE_TYPE": "SimpleCache", "CACHE_THRESHOLD": 10_000, "CACHE_DEFAULT_TIMEOUT": 300}
    fc = Cache(app, config=config)
    memo: dict[str, Callable] = {}

    def memoized(name: str, ttl: int, original: Callable) -> Callable:
        @functools.wraps(original)          # memoize keys on the original's parameters
        def loader(*args: Any, **kwargs: Any) -> Any:
            with count.lock:
                count.loads += 1
            return original(*args, **kwargs)

        loader.__module__, loader.__qualname__ = __name__, f"barbershop.{name}"
        cached = fc.memoize(timeout=ttl)(loader)
        memo[name] = cached

        @functools.wraps(original)
        def call(*args: Any, **kwargs: Any) -> Any:
            with count.lock:
                count.calls += 1
            return cached(*args, **kwargs)

        return call

    def invalidating(original: Callable, names: tuple[str, ...]) -> Callable:
        @functools.wraps(original)
        def write(*args: Any, **kwargs: Any) -> Any:
            result = original(*args, **kwargs)   # raised: nothing to invalidate
            for n in names:
                fc.delete_memoized(memo[n])
            return result

        return write

    for name, ttl in CACHED.items():
        setattr(svc, name, memoized(name, ttl, getattr(svc, name)))
    for name, names in INVALIDATES.items():
        setattr(svc, name, invalidating(getattr(svc, name), names))
    return config["CACHE_TYPE"]


def build(variant: str, db_path: str, redis_url: str | None) -> Any:
    from barbershop.app import create_app

    from tieredcache import TieredCache

    if variant not in VARIANTS:
        raise ValueError(f"E2E_VARIANT must be one of {', '.join(VARIANTS)}, not {variant!r}")
    count = _Count()
    cache = None
    if variant == "tiered-l1":
        cache = TieredCache(namespace="barbershop")
    elif variant == "tiered-redis":
        if not redis_url:
            raise RuntimeError("tiered-redis needs REDIS_URL")
        cache = TieredCache(redis_url=redis_url, namespace="barbershop")
    app = create_app(db_path=db_path, cache=cache, admin_token=None)
    shop = app.extensions["barbershop"]
    if variant.startswith("flask-caching"):
        _flask_caching(app, shop.services, variant, redis_url, count)
    pid = os.getpid()

    def collect() -> dict:
        if cache is not None:
            fns = cache.stats().get("functions", [])
            hits = {"calls": sum(f["calls"] for f in fns), "hits": sum(f["hits"] for f in fns),
                    "l1_hits": sum(f.get("l1_hits", 0) for f in fns),
                    "l2_hits": sum(f.get("l2_hits", 0) for f in fns), "source": "cache.stats()"}
        elif variant.startswith("flask-caching"):
            hits = {"calls": count.calls, "hits": count.calls - count.loads, "source": "bench wrapper"}
        else:
            hits = {"calls": 0, "hits": 0, "source": "uncached"}
        return {"pid": pid, "variant": variant, "requests": count.requests,
                "queries": shop.db.reads + shop.db.writes, **hits}

    @app.get("/_e2e/stats")
    def e2e_stats() -> Any:
        return collect()

    start_dumper(collect)
    flask_wsgi = app.wsgi_app

    def counted(environ: dict, start_response: Any) -> Any:
        with count.lock:
            count.requests += 1
        return flask_wsgi(environ, start_response)

    app.wsgi_app = counted  # type: ignore[method-assign]
    return app


def app_from_env() -> Any:
    """``gunicorn '_e2e_barbershop:app_from_env()'``: E2E_VARIANT, E2E_DB, REDIS_URL."""
    return build(os.environ.get("E2E_VARIANT", "uncached"), os.environ["E2E_DB"],
                 os.environ.get("REDIS_URL") or None)

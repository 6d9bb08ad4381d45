"""Preset decorators with the seeds' names and TTLs, on the default cache.

=============================================  =====  =====================================
decorator                                      TTL    tags on every entry
=============================================  =====  =====================================
``@cache_appointment_slots(ttl=300)``           300   ``availability``, ``slots``
``@cache_analytics_data(name, ttl=1800)``      1800   ``analytics``, ``analytics:{name}``
``@cache_business_intelligence(ttl=900)``       900   ``business_intelligence``
``@cache_static_reference_data(ttl=3600)``     3600   ``static``
``@invalidate_appointment_cache``                     invalidates ``availability``, ``slots``
=============================================  =====  =====================================

Each preset takes the keyword arguments of ``tieredcache.cached`` too (``tags`` are added
to the preset's, ``exclude`` names arguments such as a DB session). ``TTL`` holds the
named tiers; ``cached(ttl="analytics")`` accepts their lower-case names.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from ._decorators import TIERS, make_cached, make_invalidates

__all__ = [
    "TTL",
    "cache_analytics_data",
    "cache_appointment_slots",
    "cache_business_intelligence",
    "cache_static_reference_data",
    "invalidate_appointment_cache",
]


class TTL:
    """The seeds' TTL tiers, in seconds."""

    REAL_TIME = TIERS["real_time"]                          # appointments, availability
    USER_DATA = TIERS["user_data"]                          # profiles, preferences
    BUSINESS_INTELLIGENCE = TIERS["business_intelligence"]  # dashboards, KPIs
    ANALYTICS = TIERS["analytics"]                          # reports, metrics
    STATIC = TIERS["static"]                                # services, pricing


APPOINTMENT_TAGS = ("availability", "slots")


def _preset(ttl: Any, tags: tuple[str, ...], extra_tags: Iterable[str] | str, **kw: Any) -> Callable[[Callable], Any]:
    if isinstance(extra_tags, str):
        extra_tags = (extra_tags,)
    return make_cached(kw.pop("cache", None), ttl, tags + tuple(extra_tags), **kw)


def cache_appointment_slots(ttl: float = TTL.USER_DATA, *, tags: Iterable[str] | str = (),
                            key: str | None = None, exclude: Iterable[str] | str = (), name: str | None = None,
                            cache: Any = None) -> Callable[[Callable], Any]:
    """Available slots and availability views: 5 minutes, dropped by
    ``@invalidate_appointment_cache``."""
    if callable(ttl):
        raise TypeError("cache_appointment_slots needs parentheses: @cache_appointment_slots()")
    return _preset(ttl, APPOINTMENT_TAGS, tags, key=key, exclude=exclude, name=name, cache=cache)


def cache_analytics_data(name: str, ttl: float = TTL.ANALYTICS, *, tags: Iterable[str] | str = (),
                         key: str | None = None, exclude: Iterable[str] | str = (), cache: Any = None
                         ) -> Callable[[Callable], Any]:
    """Analytics (``name`` is the report, e.g. "revenue_dashboard"): 30 minutes. Keys start
    with ``analytics:{name}``; ``invalidate_tags("analytics")`` or ``"analytics:{name}"``
    drops them."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"cache_analytics_data needs a report name (str), got {name!r}")
    return _preset(ttl, ("analytics", f"analytics:{name}"), tags, key=key, exclude=exclude,
                   name=f"analytics:{name}", cache=cache)


def cache_business_intelligence(ttl: float = TTL.BUSINESS_INTELLIGENCE, *, tags: Iterable[str] | str = (),
                                key: str | None = None, exclude: Iterable[str] | str = (),
                                name: str | None = None, cache: Any = None) -> Callable[[Callable], Any]:
    """Business-intelligence dashboards: 15 minutes."""
    if callable(ttl):
        raise TypeError("cache_business_intelligence needs parentheses: @cache_business_intelligence()")
    return _preset(ttl, ("business_intelligence",), tags, key=key, exclude=exclude, name=name, cache=cache)


def cache_static_reference_data(ttl: float = TTL.STATIC, *, tags: Iterable[str] | str = (),
                                key: str | None = None, exclude: Iterable[str] | str = (),
                                name: str | None = None, cache: Any = None) -> Callable[[Callable], Any]:
    """Service catalogs, pricing, settings: 1 hour."""
    if callable(ttl):
        raise TypeError("cache_static_reference_data needs parentheses: @cache_static_reference_data()")
    return _preset(ttl, ("static",), tags, key=key, exclude=exclude, name=name, cache=cache)


def invalidate_appointment_cache(func: Callable | None = None, *, cache: Any = None) -> Any:
    """On a booking write: after it succeeds, drop availability and slot entries.

    Use bare (``@invalidate_appointment_cache``) or called
    (``@invalidate_appointment_cache(cache=shop_cache)``)."""
    deco = make_invalidates(cache, tags=APPOINTMENT_TAGS)
    if func is None:
        return deco
    return deco(func)

"""The cache admin actions, independent of any web framework.

``AdminActions(cache).handle(action, body, query)`` validates a request and runs it against
a ``TieredCache``; it returns ``(status, payload, content_type)`` where ``payload`` is a
``dict``/``list`` to send as JSON, or a ``str`` to send as is (``metrics``). The FastAPI
router (``tieredcache.contrib.fastapi.cache_admin_router``) and the Flask blueprint only
authenticate, parse the body and translate the tuple into a response.

=================  ======  ==========================================================
action             method  body / result
=================  ======  ==========================================================
``stats``          GET     ``cache.stats()``
``health``         GET     ``cache.health()``: 200 when ``status`` is ``"ok"``, else 503
``metrics``        GET     Prometheus text exposition format 0.0.4
``report``         GET     ``cache.report()`` (query ``function=``, ``namespace=`` filter it)
``recommendations`` GET    ``cache.recommendations()``
``clear``          POST    ``{}`` this namespace; ``{"tags": [...]}``; ``{"prefix": "..."}``;
                           ``{"namespace": "..."}`` the sub-namespace ``cache.namespace(ns)``
``invalidate``     POST    ``{"tags": [...]}`` and/or ``{"keys": [...]}``
``warm``           POST    ``{"groups": [...]}`` (absent or empty: every group)
=================  ======  ==========================================================

A bad body is answered 400 with ``{"error": "..."}`` naming the field, before anything
changes; an unknown action 404; a Redis failure (only with ``on_error="raise"``) 503.
No response carries a cached value or a secret: results are counts, names and statistics.

Authentication is the framework's job, with ``check_bearer`` / ``bearer_status``: no
bearer token is 401 (send ``WWW-Authenticate: Bearer``), a wrong one 403.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import math
from collections.abc import Mapping
from typing import Any

from .._errors import BackendError
from .._tiered import TieredCache

__all__ = [
    "ACTIONS",
    "JSON_CONTENT_TYPE",
    "METRICS_CONTENT_TYPE",
    "AdminActions",
    "bearer_status",
    "check_bearer",
    "render_metrics",
]

#: Every admin action and the HTTP method it is served on.
ACTIONS: dict[str, str] = {
    "stats": "GET",
    "health": "GET",
    "metrics": "GET",
    "clear": "POST",
    "invalidate": "POST",
    "warm": "POST",
    "report": "GET",
    "recommendations": "GET",
}

JSON_CONTENT_TYPE = "application/json"
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Result = tuple[int, object, str]


class _BadRequest(Exception):
    """A request refused before it ran: (status, message)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


# ---- authentication ---------------------------------------------------------------------


def check_bearer(authorization_header: str | None, token: str) -> bool:
    """Whether ``authorization_header`` is ``"Bearer <token>"`` (constant-time comparison).

    The scheme is case-insensitive. An empty ``token`` never matches.
    """
    if not isinstance(token, str) or not token or not authorization_header:
        return False
    scheme, _, credentials = authorization_header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(credentials.strip().encode("utf-8"), token.encode("utf-8"))


def bearer_status(authorization_header: str | None, token: str) -> int:
    """200 when the header carries the right bearer token, 401 when it carries no bearer
    token at all (answer with ``WWW-Authenticate: Bearer``), 403 when the token is wrong."""
    if check_bearer(authorization_header, token):
        return 200
    scheme, _, credentials = (authorization_header or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        return 401
    return 403


# ---- body validation --------------------------------------------------------------------


def _object(body: Any) -> dict[str, Any]:
    """The request body as a dict: None and b"" are {}, bytes/str are parsed as JSON."""
    if body is None:
        return {}
    if isinstance(body, (bytes, bytearray, str)):
        if not body.strip():
            return {}
        try:
            body = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise _BadRequest("body: not valid JSON") from None
    if not isinstance(body, dict):
        raise _BadRequest(f"body: must be a JSON object, got {type(body).__name__}")
    return body


def _only(body: dict[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise _BadRequest(f"{unknown[0]}: unknown field (expected {', '.join(allowed)})")


def _strings(body: dict[str, Any], field: str, *, empty_ok: bool = False) -> list[str]:
    """body[field] as a list of non-empty strings."""
    value = body[field]
    if not isinstance(value, list):
        raise _BadRequest(f"{field}: must be a list of strings, got {type(value).__name__}")
    if not value and not empty_ok:
        raise _BadRequest(f"{field}: must not be empty")
    for item in value:
        if not isinstance(item, str) or not item:
            raise _BadRequest(f"{field}: every item must be a non-empty string, got {item!r:.60}")
    return value


def _string(body: dict[str, Any], field: str) -> str:
    value = body[field]
    if not isinstance(value, str) or not value:
        raise _BadRequest(f"{field}: must be a non-empty string, got {value!r:.60}")
    return value


# ---- metrics ----------------------------------------------------------------------------

# (metric name, TYPE, HELP, path into stats())
_STAT_METRICS: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("tieredcache_l1_hits_total", "counter", "L1 (in-process) lookups that found the key.", ("l1", "hits")),
    ("tieredcache_l1_misses_total", "counter", "L1 lookups that did not find the key.", ("l1", "misses")),
    ("tieredcache_l1_sets_total", "counter", "Entries stored in L1.", ("l1", "sets")),
    ("tieredcache_l1_evictions_total", "counter", "L1 entries evicted by the entry or byte bound.",
     ("l1", "evictions")),
    ("tieredcache_l1_expirations_total", "counter", "L1 entries removed because their TTL ran out.",
     ("l1", "expirations")),
    ("tieredcache_l1_invalidations_total", "counter", "L1 entries removed by tag or prefix invalidation.",
     ("l1", "invalidations")),
    ("tieredcache_l1_rejected_total", "counter", "Values L1 refused to store (larger than its bound).",
     ("l1", "rejected")),
    ("tieredcache_l1_entries", "gauge", "Entries held in L1.", ("l1", "entries")),
    ("tieredcache_l1_bytes", "gauge", "Bytes held in L1 (as L1 accounts them).", ("l1", "bytes")),
    ("tieredcache_l1_peak_bytes", "gauge", "Highest number of bytes L1 has held.", ("l1", "peak_bytes")),
    ("tieredcache_l1_max_entries", "gauge", "The entry bound of L1.", ("l1", "max_entries")),
    ("tieredcache_l1_max_bytes", "gauge", "The byte bound of L1.", ("l1", "max_bytes")),
    ("tieredcache_l2_enabled", "gauge", "1 when a Redis tier is configured.", ("l2", "enabled")),
    ("tieredcache_l2_connected", "gauge", "1 while the invalidation subscriber is connected to Redis.",
     ("l2", "connected")),
    ("tieredcache_l2_hits_total", "counter", "Redis lookups that found the key.", ("l2", "hits")),
    ("tieredcache_l2_misses_total", "counter", "Redis lookups that did not find the key.", ("l2", "misses")),
    ("tieredcache_l2_errors_total", "counter", "Redis calls that failed.", ("l2", "errors")),
    ("tieredcache_l2_timeouts_total", "counter", "Redis calls that timed out.", ("l2", "timeouts")),
    ("tieredcache_l2_sets_total", "counter", "Entries written to Redis.", ("l2", "sets")),
    ("tieredcache_l2_deletes_total", "counter", "Entries deleted from Redis.", ("l2", "deletes")),
    ("tieredcache_l2_breaker_transitions_total", "counter", "State changes of the Redis circuit breaker.",
     ("l2", "breaker_transitions")),
    ("tieredcache_loads_total", "counter", "Loader calls (misses in every tier).", ("loads",)),
    ("tieredcache_load_errors_total", "counter", "Loader calls that raised.", ("load_errors",)),
    ("tieredcache_invalidations_sent_total", "counter", "Invalidation messages published.",
     ("invalidations_sent",)),
    ("tieredcache_invalidations_received_total", "counter", "Invalidation messages received from other processes.",
     ("invalidations_received",)),
    ("tieredcache_l1_flushes_total", "counter", "Times L1 was emptied because invalidations may have been lost.",
     ("l1_flushes",)),
    ("tieredcache_stale_writes_refused_total", "counter", "Fills refused because an invalidation overtook them.",
     ("stale_writes_refused",)),
)

_BREAKER_STATES = ("closed", "open", "half-open")

# (metric name, TYPE, HELP, report field, scale)
_FUNCTION_METRICS: tuple[tuple[str, str, str, str, float], ...] = (
    ("tieredcache_function_calls_total", "counter", "Calls of a cached function.", "calls", 1),
    ("tieredcache_function_hits_total", "counter", "Calls served from the cache.", "hits", 1),
    ("tieredcache_function_l1_hits_total", "counter", "Calls served from L1.", "l1_hits", 1),
    ("tieredcache_function_l2_hits_total", "counter", "Calls served from Redis.", "l2_hits", 1),
    ("tieredcache_function_misses_total", "counter", "Calls that ran the function.", "misses", 1),
    ("tieredcache_function_errors_total", "counter", "Calls whose function raised.", "errors", 1),
    ("tieredcache_function_hit_ratio", "gauge", "hits / calls.", "hit_rate", 1),
    ("tieredcache_function_avg_hit_seconds", "gauge", "Average duration of a call served from the cache.",
     "avg_hit_ms", 1e-3),
    ("tieredcache_function_avg_miss_seconds", "gauge", "Average duration of a call that ran the function.",
     "avg_miss_ms", 1e-3),
)


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: Any) -> str | None:
    """A sample value as the text format writes it; None for a value that is not a number."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "+Inf" if value > 0 else "-Inf"
        return repr(value)
    return None


def _dig(stats: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = stats
    for part in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def render_metrics(stats: Mapping[str, Any], report: list[Mapping[str, Any]] | None = None) -> str:
    """``cache.stats()`` and ``cache.report()`` in the Prometheus text format 0.0.4.

    Every family has its HELP and TYPE lines; per-function families carry the labels
    ``function`` and ``namespace``. Values that are absent or None are left out.
    """
    out: list[str] = []

    def family(name: str, kind: str, help_text: str, samples: list[tuple[str, str]]) -> None:
        if not samples:
            return
        out.append(f"# HELP {name} {_escape_help(help_text)}")
        out.append(f"# TYPE {name} {kind}")
        out.extend(f"{name}{labels} {value}" for labels, value in samples)

    for name, kind, help_text, path in _STAT_METRICS:
        value = _number(_dig(stats, path))
        family(name, kind, help_text, [("", value)] if value is not None else [])
    state = _dig(stats, ("l2", "breaker"))
    if isinstance(state, str):
        states = _BREAKER_STATES if state in _BREAKER_STATES else (*_BREAKER_STATES, state)
        family("tieredcache_l2_breaker_state", "gauge",
               "1 for the current state of the Redis circuit breaker.",
               [(f'{{state="{_escape_label(s)}"}}', "1" if s == state else "0") for s in states])
    rows = [row for row in report or () if isinstance(row, Mapping)]
    for name, kind, help_text, field, scale in _FUNCTION_METRICS:
        samples = []
        for row in rows:
            raw = row.get(field)
            if isinstance(raw, (int, float)) and not isinstance(raw, bool) and scale != 1:
                raw = raw * scale
            value = _number(raw)
            if value is None:
                continue
            labels = (f'{{function="{_escape_label(str(row.get("function") or ""))}",'
                      f'namespace="{_escape_label(str(row.get("namespace") or ""))}"}}')
            samples.append((labels, value))
        family(name, kind, help_text, samples)
    return "\n".join(out) + "\n"


# ---- the actions ------------------------------------------------------------------------


class AdminActions:
    """The admin actions on one cache (see the module docstring for the table).

    ``handle`` runs them synchronously (Flask, scripts); ``ahandle`` on an event loop:
    async warmers through ``cache.awarm``, invalidations through the async twins and
    anything else that may wait on Redis in a worker thread.
    """

    __slots__ = ("cache",)

    def __init__(self, cache: TieredCache) -> None:
        if not isinstance(cache, TieredCache):
            raise TypeError(f"cache must be a TieredCache, not {type(cache).__name__}")
        self.cache = cache

    def __repr__(self) -> str:
        return f"<AdminActions {self.cache!r}>"

    # -- entry points --

    def handle(self, action: str, body: dict[str, Any] | None = None,
               query: Mapping[str, str] | None = None) -> Result:
        """Run ``action``: ``(HTTP status, payload, content type)``.

        ``body`` is the parsed JSON body (a dict; None is ``{}``), or its raw bytes/str,
        parsed here. ``query`` holds the query parameters (``report`` reads them).
        """
        try:
            name, params = self._prepare(action, body, query)
            return self._run(name, params)
        except _BadRequest as exc:
            return exc.status, {"error": str(exc)}, JSON_CONTENT_TYPE
        except BackendError as exc:
            return 503, {"error": f"Redis: {type(exc).__name__}: {exc}"}, JSON_CONTENT_TYPE

    async def ahandle(self, action: str, body: dict[str, Any] | None = None,
                      query: Mapping[str, str] | None = None) -> Result:
        """``handle`` for an event loop: never blocks it on Redis."""
        try:
            name, params = self._prepare(action, body, query)
            return await self._arun(name, params)
        except _BadRequest as exc:
            return exc.status, {"error": str(exc)}, JSON_CONTENT_TYPE
        except BackendError as exc:
            return 503, {"error": f"Redis: {type(exc).__name__}: {exc}"}, JSON_CONTENT_TYPE

    # -- validation: everything is checked before anything runs --

    def _prepare(self, action: Any, body: Any, query: Mapping[str, str] | None) -> tuple[str, dict[str, Any]]:
        if action not in ACTIONS:
            raise _BadRequest(f"unknown admin action {action!r:.60} (expected one of {', '.join(ACTIONS)})", 404)
        query = query or {}
        if ACTIONS[action] == "GET":
            if action == "report":
                return action, {"function": query.get("function"), "namespace": query.get("namespace")}
            return action, {}
        data = _object(body)
        if action == "clear":
            _only(data, ("tags", "prefix", "namespace"))
            if len(data) > 1:
                raise _BadRequest(f"{sorted(data)[1]}: give only one of tags, prefix or namespace")
            if "tags" in data:
                return action, {"tags": _strings(data, "tags")}
            if "prefix" in data:
                return action, {"prefix": _string(data, "prefix")}
            if "namespace" in data:
                return action, {"namespace": _string(data, "namespace")}
            return action, {}
        if action == "invalidate":
            _only(data, ("tags", "keys"))
            if not data:
                raise _BadRequest("tags: give tags and/or keys to invalidate")
            tags = _strings(data, "tags") if "tags" in data else []
            keys = _strings(data, "keys") if "keys" in data else []
            return action, {"tags": tags, "keys": keys}
        # warm
        _only(data, ("groups",))
        groups = _strings(data, "groups", empty_ok=True) if "groups" in data else []
        if "all" in groups:
            groups = []
        known = self.cache.warmer_groups()
        unknown = [g for g in groups if g not in known]
        if unknown:
            raise _BadRequest(f"groups: unknown warm group {unknown[0]!r:.60} "
                              f"(registered: {', '.join(known) or 'none'})")
        return action, {"groups": groups}

    # -- running --

    def _run(self, name: str, p: dict[str, Any]) -> Result:
        cache = self.cache
        if name == "stats":
            return 200, cache.stats(), JSON_CONTENT_TYPE
        if name == "health":
            return self._health(cache.health())
        if name == "metrics":
            return 200, render_metrics(cache.stats(), cache.report()), METRICS_CONTENT_TYPE
        if name == "report":
            return 200, self._report(cache.report(), p), JSON_CONTENT_TYPE
        if name == "recommendations":
            return 200, cache.recommendations(), JSON_CONTENT_TYPE
        if name == "clear":
            if "tags" in p:
                return self._cleared(cache.invalidate_tags(*p["tags"]), p)
            if "prefix" in p:
                return self._cleared(cache.invalidate_prefix(p["prefix"]), p)
            target = cache.namespace(p["namespace"]) if "namespace" in p else cache
            return self._cleared(target.clear(), {"namespace": target.name})
        if name == "invalidate":
            invalidated = cache.invalidate_tags(*p["tags"]) if p["tags"] else 0
            deleted = sum(1 for key in p["keys"] if cache.delete(key))
            return self._invalidated(invalidated, deleted, p)
        try:
            counts = cache.warm(*p["groups"])
        except ValueError as exc:  # a group unregistered meanwhile
            return 400, {"error": f"groups: {exc}"}, JSON_CONTENT_TYPE
        return 200, {"warmed": counts}, JSON_CONTENT_TYPE

    async def _arun(self, name: str, p: dict[str, Any]) -> Result:
        cache = self.cache
        if name == "stats":
            return 200, cache.stats(), JSON_CONTENT_TYPE
        if name == "health":  # pings Redis
            return self._health(await asyncio.to_thread(cache.health))
        if name == "metrics":
            return 200, render_metrics(cache.stats(), cache.report()), METRICS_CONTENT_TYPE
        if name == "report":
            return 200, self._report(cache.report(), p), JSON_CONTENT_TYPE
        if name == "recommendations":  # may look at Redis
            return 200, await asyncio.to_thread(cache.recommendations), JSON_CONTENT_TYPE
        if name == "clear":
            if "tags" in p:
                return self._cleared(await cache.ainvalidate_tags(*p["tags"]), p)
            if "prefix" in p:
                return self._cleared(await cache.ainvalidate_prefix(p["prefix"]), p)
            target = cache.namespace(p["namespace"]) if "namespace" in p else cache
            return self._cleared(await target.aclear(), {"namespace": target.name})
        if name == "invalidate":
            invalidated = await cache.ainvalidate_tags(*p["tags"]) if p["tags"] else 0
            deleted = 0
            for key in p["keys"]:
                deleted += bool(await cache.adelete(key))
            return self._invalidated(invalidated, deleted, p)
        try:
            counts = await cache.awarm(*p["groups"])
        except ValueError as exc:
            return 400, {"error": f"groups: {exc}"}, JSON_CONTENT_TYPE
        return 200, {"warmed": counts}, JSON_CONTENT_TYPE

    # -- payloads --

    @staticmethod
    def _health(health: dict[str, Any]) -> Result:
        return (200 if health.get("status") == "ok" else 503), health, JSON_CONTENT_TYPE

    @staticmethod
    def _report(rows: list[dict[str, Any]], p: dict[str, Any]) -> list[dict[str, Any]]:
        if p.get("function"):
            rows = [r for r in rows if r.get("function") == p["function"]]
        if p.get("namespace"):
            rows = [r for r in rows if r.get("namespace") == p["namespace"]]
        return rows

    @staticmethod
    def _cleared(count: int, scope: dict[str, Any]) -> Result:
        return 200, {"cleared": count, **scope}, JSON_CONTENT_TYPE

    @staticmethod
    def _invalidated(invalidated: int, deleted: int, p: dict[str, Any]) -> Result:
        return 200, {"invalidated": invalidated, "deleted": deleted,
                     "tags": p["tags"], "keys": p["keys"]}, JSON_CONTENT_TYPE

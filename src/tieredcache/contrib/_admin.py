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
``metrics``        GET     ``tieredcache.prometheus.render_metrics(cache)`` (text format 0.0.4)
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
On a namespace view (one tenant's), ``stats``, ``report`` and ``metrics`` list only the cached functions
of that namespace and its sub-namespaces, never another tenant's.

Authentication is the framework's job, with ``check_bearer`` / ``bearer_status``: no
bearer token is 401 (send ``WWW-Authenticate: Bearer``), a wrong one 403.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
from collections.abc import Mapping
from typing import Any

from .._errors import BackendError
from .._tiered import TieredCache
from ..prometheus import CONTENT_TYPE as METRICS_CONTENT_TYPE
from ..prometheus import render_metrics

__all__ = [
    "ACTIONS",
    "JSON_CONTENT_TYPE",
    "METRICS_CONTENT_TYPE",
    "AdminActions",
    "BASIC_CHALLENGE",
    "bearer_status",
    "check_bearer",
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

Result = tuple[int, object, str]


class _BadRequest(Exception):
    """A request refused before it ran: (status, message)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


# ---- authentication ---------------------------------------------------------------------


#: The challenge a 401 of the dashboard page sends, so that a browser shows its own login
#: prompt: any user name, the admin token as the password.
BASIC_CHALLENGE = 'Basic realm="tieredcache admin", charset="UTF-8"'


def _secret(authorization_header: str | None) -> tuple[str, str]:
    """(scheme in lower case, secret): the bearer token, or the password of HTTP Basic
    ("" when the header is malformed)."""
    scheme, _, credentials = (authorization_header or "").strip().partition(" ")
    scheme, credentials = scheme.lower(), credentials.strip()
    if scheme == "basic" and credentials:
        try:
            credentials = base64.b64decode(credentials, validate=True).decode("utf-8").partition(":")[2]
        except (ValueError, UnicodeDecodeError):
            credentials = ""
    return scheme, credentials


def check_bearer(authorization_header: str | None, token: str) -> bool:
    """Whether ``authorization_header`` is ``"Bearer <token>"``, or HTTP Basic with
    ``token`` as the password and any user name (what a browser's own login prompt sends);
    constant-time comparison. The scheme is case-insensitive. An empty ``token`` never
    matches.
    """
    if not isinstance(token, str) or not token:
        return False
    scheme, secret = _secret(authorization_header)
    if scheme not in ("bearer", "basic") or not secret:
        return False
    return hmac.compare_digest(secret.encode("utf-8"), token.encode("utf-8"))


def bearer_status(authorization_header: str | None, token: str) -> int:
    """200 when the header carries the right token, 401 when it carries no token at all
    (answer with ``WWW-Authenticate: Bearer``, or ``BASIC_CHALLENGE`` for the dashboard)
    or a wrong Basic password (so that a browser asks again), 403 when a bearer token is
    wrong."""
    if check_bearer(authorization_header, token):
        return 200
    scheme, secret = _secret(authorization_header)
    return 403 if scheme == "bearer" and secret else 401


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
            return 200, self._stats(), JSON_CONTENT_TYPE
        if name == "health":
            return self._health(cache.health())
        if name == "metrics":
            return 200, render_metrics(cache), METRICS_CONTENT_TYPE
        if name == "report":
            return 200, self._report(self._scoped(cache.report()), p), JSON_CONTENT_TYPE
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
            return 200, self._stats(), JSON_CONTENT_TYPE
        if name == "health":  # pings Redis
            return self._health(await asyncio.to_thread(cache.health))
        if name == "metrics":
            return 200, render_metrics(cache), METRICS_CONTENT_TYPE
        if name == "report":
            return 200, self._report(self._scoped(cache.report()), p), JSON_CONTENT_TYPE
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

    def _scoped(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The report rows this cache's admin may see: all of them on a root cache; on a
        namespace view (a tenant's), those of its namespace and its sub-namespaces."""
        cache = self.cache
        if cache._is_root:
            return rows
        name = cache.name
        return [r for r in rows if r.get("namespace") == name or str(r.get("namespace")).startswith(name + "/")]

    def _stats(self) -> dict[str, Any]:
        stats = self.cache.stats()
        stats["functions"] = self._scoped(stats["functions"])
        return stats

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

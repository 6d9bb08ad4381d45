"""Flask integration: an extension, whole-response view caching and the admin blueprint.

::

    from flask import Flask
    from tieredcache.contrib.flask import TieredCacheFlask

    ext = TieredCacheFlask()

    def create_app() -> Flask:
        app = Flask(__name__)
        app.config["CACHE_REDIS_URL"] = "redis://127.0.0.1:6379/0"
        ext.init_app(app)                       # app.extensions["tieredcache"] is ext
        app.register_blueprint(ext.admin_blueprint())   # /cache/stats ... (CACHE_ADMIN_TOKEN)
        return app

    @app.get("/shops/<int:shop_id>")
    @ext.cached_view(ttl=60, tags=["shop:{shop_id}"])
    def shop(shop_id: int): ...

See docs/flask.md for the guide.

HOW A CACHED VIEW ANSWERS
-------------------------
Only ``GET`` and ``HEAD`` (which shares the ``GET`` entry) are looked up; other methods run
the view (``X-Cache: BYPASS``). A request carrying ``Authorization`` or ``Cookie`` runs
the view uncached (``BYPASS``) with ``private="skip"``, the default; with
``private="per_user"`` its key carries an HMAC-SHA256 (keyed by the app's ``SECRET_KEY``
when it has one, so no password is guessable from a key in Redis) of those two headers.

The key is ``view:GET <host><script root + path>?<query fields, sorted>`` (`` u:<hash>``
appended per user), every part escaped so that two different requests never share a
key. The host is part of it so that a forged ``Host`` header cannot plant a page for the
real host (web cache poisoning).

A miss runs the view through ``cache.get_or_set``: concurrent misses on one key in this
process run it once. The response is stored only if it is a 2xx other than 206, not
streamed, carries no ``Set-Cookie``, no ``Cache-Control: no-store`` (nor ``private``
unless per user), no ``Vary`` on a header other than ``Authorization``, ``Cookie`` and
``Accept-Encoding``, and the view did not modify the session. The stored value is a ``dict``:
``{"status": int, "headers": ((name, value), ...), "body": bytes, "etag": str}`` (both
built-in serializers store ``bytes`` and tuples; JSON writes the body in base64), the
headers final, so that a hit copies them as they are. Every cached response gets a strong
``ETag`` (the view's own if it set one, else a SHA-256 of the body), ``Cache-Control``
(the view's own if it set one, else ``public``/``private, max-age=<ttl>``), ``Vary:
Authorization, Cookie`` and ``X-Cache: HIT`` or ``MISS``; a matching ``If-None-Match``
is answered ``304 Not Modified`` with no body.

A hit replaces only the call of the view: ``before_request`` and ``after_request``
handlers still run on every request.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import logging
import math
import os
import re
import string
from collections.abc import Callable, Iterable, Mapping
from inspect import Parameter, signature
from typing import Any, Literal, TypeVar
from urllib.parse import quote

import flask
from flask import Blueprint, Flask, Response, current_app, has_app_context
from flask.globals import request_ctx
from werkzeug.http import parse_etags, unquote_etag

from .._decorators import check_ttl
from .._errors import ConfigurationError
from .._tiered import NoStore, TieredCache
from . import _dashboard
from ._admin import ACTIONS, BASIC_CHALLENGE, AdminActions, bearer_status

__all__ = ["TieredCacheFlask", "cache_admin_blueprint"]

logger = logging.getLogger("tieredcache")

F = TypeVar("F", bound=Callable[..., Any])

#: ``auth`` of the admin blueprint: a bearer token, or ``auth(request)`` returning True
#: (allowed), False (403 Forbidden) or None (no credentials: 401 Unauthorized).
AdminAuth = str | Callable[[flask.Request], "bool | None"]

_PRIVATE_MODES = ("skip", "per_user")
# Headers never stored with a cached response: recomputed, per request, or per hop.
_UNSTORED_HEADERS = frozenset({
    "content-length", "date", "set-cookie", "x-cache", "connection", "keep-alive",
    "transfer-encoding", "age",
})
_VARY = ("Authorization", "Cookie")
# A response may vary on these and still be cached (the key accounts for them, or the
# body is stored before any encoding); a Vary on any other request header: not cached.
_VARY_KEYED = frozenset({"authorization", "cookie", "accept-encoding"})
_HIT = ("X-Cache", "HIT")
# What a 304 repeats of the full response (RFC 9110 15.4.5).
_304_HEADERS = frozenset({"cache-control", "content-location", "etag", "expires", "vary"})
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
# A POST body a cross-site <form> can send without a CORS preflight: refused (415).
_FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data", "text/plain"})


# =========================================================================================
# Configuration
# =========================================================================================


def _flag(name: str, raw: Any) -> bool:
    """A boolean setting from app.config (bool, 0/1, or a "true"/"false" string)."""
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, int) and raw in (0, 1):
        return bool(raw)
    if isinstance(raw, str):
        value = raw.strip().lower()
        if value in _TRUE:
            return True
        if value in _FALSE or value == "":
            return False
    raise ConfigurationError(f"{name} must be true or false, got {raw!r}")


def _positive_number(name: str, raw: Any) -> float:
    if isinstance(raw, bool):
        raise ConfigurationError(f"{name} must be a positive number of seconds, got {raw!r}")
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{name} must be a positive number of seconds, got {raw!r}") from None
    if not value > 0 or math.isinf(value):
        raise ConfigurationError(f"{name} must be a positive number of seconds, got {raw!r}")
    return value


def _positive_int(name: str, raw: Any) -> int:
    if isinstance(raw, bool):
        raise ConfigurationError(f"{name} must be a positive integer, got {raw!r}")
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{name} must be a positive integer, got {raw!r}") from None
    if value < 1 or (isinstance(raw, float) and raw != value):
        raise ConfigurationError(f"{name} must be a positive integer, got {raw!r}")
    return value


def _cache_kwargs(config: Mapping[str, Any]) -> dict[str, Any]:
    """``TieredCache.from_env`` overrides from the app's config keys that are set."""
    kw: dict[str, Any] = {}
    for name in ("CACHE_REDIS_URL", "REDIS_URL"):
        if name in config:
            url = config[name]
            if url is not None and not isinstance(url, str):
                raise ConfigurationError(f"{name} must be a redis:// URL string or None, got {url!r}")
            kw["redis_url"] = url or None  # None or "": L1 only
            break
    if config.get("CACHE_DEFAULT_TTL") is not None:
        kw["default_ttl"] = _positive_number("CACHE_DEFAULT_TTL", config["CACHE_DEFAULT_TTL"])
    if config.get("CACHE_ENABLED") is not None:
        kw["enabled"] = _flag("CACHE_ENABLED", config["CACHE_ENABLED"])
    if config.get("CACHE_NAMESPACE") is not None:
        namespace = config["CACHE_NAMESPACE"]
        if not isinstance(namespace, str) or not namespace:
            raise ConfigurationError(f"CACHE_NAMESPACE must be a non-empty string, got {namespace!r}")
        kw["namespace"] = namespace
    if config.get("CACHE_MAX_ENTRIES") is not None:
        kw["max_entries"] = _positive_int("CACHE_MAX_ENTRIES", config["CACHE_MAX_ENTRIES"])
    return kw


def _warming_enabled(config: Mapping[str, Any]) -> bool:
    """CACHE_WARMING_ENABLED from app.config, else from the environment."""
    if config.get("CACHE_WARMING_ENABLED") is not None:
        return _flag("CACHE_WARMING_ENABLED", config["CACHE_WARMING_ENABLED"])
    raw = os.environ.get("CACHE_WARMING_ENABLED")
    return False if raw is None else _flag("CACHE_WARMING_ENABLED", raw)


def _default_ttl(cache: TieredCache) -> float | None:
    """The TTL an entry gets when the call gives none (TieredCache has no public
    accessor for it yet)."""
    public = getattr(cache, "default_ttl", None)
    if isinstance(public, (int, float)):
        return float(public)
    return cache.default_ttl


# =========================================================================================
# The extension
# =========================================================================================


class TieredCacheFlask:
    """The Flask extension: one ``TieredCache`` per app, view caching, the admin blueprint.

    ``TieredCacheFlask(app)`` or ``ext = TieredCacheFlask(); ext.init_app(app)`` (app
    factories). With ``cache=`` every app uses that cache; otherwise ``init_app`` builds one
    from ``app.config``:

    ==========================  ========================================================
    ``CACHE_REDIS_URL``         Redis URL (else ``REDIS_URL``; ``None``/``""``: L1 only)
    ``CACHE_DEFAULT_TTL``       seconds
    ``CACHE_ENABLED``           ``False``: every read misses, nothing is stored
    ``CACHE_NAMESPACE``         the cache's namespace
    ``CACHE_MAX_ENTRIES``       L1 bound
    ``CACHE_WARMING_ENABLED``   run ``cache.warm()`` in ``init_app`` (also read from the
                                environment variable of that name)
    ``CACHE_ADMIN_TOKEN``       the bearer token of ``admin_blueprint()``
    ==========================  ========================================================

    Keys that are absent fall back to the environment, as ``TieredCache.from_env()`` reads
    it. Flask has no application shutdown hook: call ``ext.close()`` when the process is
    done with the cache (it closes the caches this extension built, never one you passed).
    """

    def __init__(self, app: Flask | None = None, cache: TieredCache | None = None) -> None:
        if cache is not None and not isinstance(cache, TieredCache):
            raise TypeError(f"cache must be a TieredCache or None, not {type(cache).__name__}")
        self._given = cache
        # app -> its cache and its CACHE_ADMIN_TOKEN (close() forgets the apps)
        self._caches: dict[Flask, TieredCache] = {}
        self._tokens: dict[Flask, str | None] = {}
        self._owned: list[TieredCache] = []
        # the cache every app uses, when they all use one (the hot path's shortcut)
        self._single: TieredCache | None = cache
        if app is not None:
            self.init_app(app)

    def __repr__(self) -> str:
        return f"<TieredCacheFlask apps={len(self._caches)} cache={self._given!r}>"

    # ---- setup -------------------------------------------------------------------------

    def init_app(self, app: Flask) -> None:
        """Attach to ``app``: build (or take) its cache, register ``app.extensions
        ["tieredcache"]`` and, when ``CACHE_WARMING_ENABLED`` is true, run every warmer.

        Raises ``ConfigurationError`` naming the config key that is invalid. An exception
        raised by a warmer propagates (the app does not start half-warmed in silence).
        """
        if not isinstance(app, Flask):
            raise TypeError(f"app must be a Flask application, not {type(app).__name__}")
        config = app.config
        token = config.get("CACHE_ADMIN_TOKEN")
        if token is not None and not isinstance(token, str):
            raise ConfigurationError(f"CACHE_ADMIN_TOKEN must be a string, got {type(token).__name__}")
        warm = _warming_enabled(config)
        if self._given is not None:
            cache = self._given
        else:
            cache = TieredCache.from_env(**_cache_kwargs(config))
            self._owned.append(cache)
        self._caches[app] = cache
        self._tokens[app] = token or None
        self._single = cache if len(set(map(id, self._caches.values()))) == 1 else None
        app.extensions["tieredcache"] = self
        if warm:
            counts = cache.warm()
            logger.info("tieredcache: warmed %s at startup of %s", counts, app.name)

    @property
    def cache(self) -> TieredCache:
        """The cache of the current app (or the only one, outside an app context)."""
        single = self._single
        if single is not None:
            return single
        if has_app_context():
            cache = self._caches.get(current_app._get_current_object())  # type: ignore[attr-defined]
            if cache is not None:
                return cache
        if self._given is not None:
            return self._given
        caches = list(self._caches.values())
        if len(caches) == 1:
            return caches[0]
        if not caches:
            raise RuntimeError("TieredCacheFlask has no cache yet: call init_app(app) first, "
                               "or pass cache= to TieredCacheFlask()")
        raise RuntimeError("TieredCacheFlask is attached to several apps: use ext.cache inside "
                           "an application context")

    def close(self) -> None:
        """Close the caches this extension built (a cache passed as ``cache=`` is yours to
        close) and forget the apps. Flask has no shutdown hook: call this from your own
        shutdown path, and in tests that build an app per test with ``init_app``."""
        owned, self._owned = self._owned, []
        self._caches.clear()
        self._tokens.clear()
        self._single = self._given
        for cache in owned:
            cache.close()

    # ---- view caching --------------------------------------------------------------------

    def cached_view(
        self,
        ttl: float | str | None = None,
        tags: Iterable[str] = (),
        private: Literal["skip", "per_user"] = "skip",
        query_string: bool = True,
    ) -> Callable[[F], F]:
        """Cache a Flask view's whole response (status, headers, body) in the app's cache.

        Put it *below* the route decorator::

            @app.get("/shops/<int:shop_id>/products")
            @ext.cached_view(ttl=300, tags=["shop:{shop_id}"])
            def products(shop_id): ...

        ``ttl``: seconds or a tier name ("real_time", "user_data", "business_intelligence",
        "analytics", "static"); None: the cache's default TTL. ``tags``: templates filled
        from the view's URL parameters; ``cache.invalidate_tags("shop:42")`` drops every
        cached page of shop 42. ``private``: what to do with a request that carries
        ``Authorization`` or ``Cookie`` - ``"skip"`` runs the view uncached
        (``X-Cache: BYPASS``), ``"per_user"`` caches it under a key of its own; every
        response of a per-user view is ``Cache-Control: private``. ``query_string=False``
        ignores the query string (every query string shares the entry).

        Raises ``TypeError``/``ValueError`` naming the argument that is invalid, including
        a tag template that uses a name that is not a parameter of the view.
        """
        seconds = check_ttl(ttl)
        if isinstance(tags, str):
            raise TypeError(f"tags: must be a list of tag templates, not a str (write tags=[{tags!r}])")
        templates = tuple(tags)
        for template in templates:
            if not isinstance(template, str) or not template:
                raise TypeError(f"tags: every tag template must be a non-empty str, got {template!r}")
        if private not in _PRIVATE_MODES:
            raise ValueError(f"private: must be 'skip' or 'per_user', got {private!r}")
        if not isinstance(query_string, bool):
            raise TypeError(f"query_string: must be a bool, got {query_string!r}")

        def decorate(view: F) -> F:
            if not callable(view):
                raise TypeError(f"cached_view() decorates a view function, not {type(view).__name__}")
            _check_templates(view, templates)
            spec = _CachedView(self, view, seconds, templates, private == "per_user", query_string)

            @functools.wraps(view)
            def cached(*args: Any, **kwargs: Any) -> Response:
                return spec.serve(args, kwargs)

            return cached  # type: ignore[return-value]

        return decorate

    # ---- admin -----------------------------------------------------------------------------

    def admin_blueprint(self, auth: AdminAuth | None = None, *, url_prefix: str = "/cache",
                        name: str = "tieredcache_admin") -> Blueprint:
        """``cache_admin_blueprint`` on this extension's cache (the current app's, looked up
        on each request). Without ``auth`` it uses the app's ``CACHE_ADMIN_TOKEN``; with
        neither it raises ``ConfigurationError``."""
        if auth is None:
            auth = self._admin_token()
        return _admin_blueprint(lambda: AdminActions(self.cache), auth, url_prefix, name)

    def _admin_token(self) -> str:
        token: str | None = None
        if has_app_context() and current_app._get_current_object() in self._tokens:  # type: ignore[attr-defined]
            token = self._tokens[current_app._get_current_object()]  # type: ignore[attr-defined]
        else:
            tokens = set(self._tokens.values())
            if len(tokens) > 1:
                raise ConfigurationError("auth: the apps of this extension have different "
                                         "CACHE_ADMIN_TOKEN values; pass auth= or call inside an app context")
            token = tokens.pop() if tokens else None
        if not token:
            raise ConfigurationError("auth: the admin endpoints require authentication; set "
                                     "app.config['CACHE_ADMIN_TOKEN'] (then call init_app) or pass auth=")
        return token


# =========================================================================================
# View caching helpers
# =========================================================================================


class _CachedView:
    """One view decorated with ``cached_view``: its options, and how a request is served.

    ``serve`` is on the path of every request to the view; on an L1 hit it reads the
    WSGI environ directly (not ``request.headers``), builds the key with no URL parsing
    unless the request has a query string, and copies the stored, final header list into
    the response.
    """

    __slots__ = ("ext", "view", "ttl", "templates", "per_user", "query_string")

    def __init__(self, ext: TieredCacheFlask, view: Callable[..., Any], ttl: float | None,
                 templates: tuple[str, ...], per_user: bool, query_string: bool) -> None:
        self.ext = ext
        self.view = view
        self.ttl = ttl
        self.templates = templates
        self.per_user = per_user
        self.query_string = query_string

    def serve(self, args: tuple, kwargs: dict[str, Any]) -> Response:
        req = flask.request._get_current_object()  # type: ignore[attr-defined]
        if req.method != "GET" and req.method != "HEAD":
            return self._bypass(args, kwargs)
        environ = req.environ
        authorization = environ.get("HTTP_AUTHORIZATION")
        cookie = environ.get("HTTP_COOKIE")
        user = None
        if authorization or cookie:
            if not self.per_user:
                return self._bypass(args, kwargs)
            user = _user_hash(authorization or "", cookie or "")
        cache = self.ext.cache
        key = _view_key(environ, self.query_string, user)
        tags = tuple(t.format_map(kwargs) for t in self.templates) if self.templates else ()
        ran: list[Response] = []

        def load() -> Any:
            response = self._call(args, kwargs)
            ran.append(response)
            entry = self._entry(response, cache)
            return NoStore(None) if entry is None else entry

        entry = cache.get_or_set(key, load, ttl=self.ttl, tags=tags)
        if entry is None:
            # not storable: ours, answer with what the view returned; another request's
            # (this one waited on it): run the view
            response = ran[0] if ran else self._call(args, kwargs)
            response.headers["X-Cache"] = "MISS"
            return response
        if type(entry) is not dict or "body" not in entry:  # not a view's entry: ignore it
            return self._bypass(args, kwargs)
        outcome = "MISS" if ran else "HIT"
        if_none_match = environ.get("HTTP_IF_NONE_MATCH")
        if if_none_match is not None and parse_etags(if_none_match).contains_weak(
                unquote_etag(entry["etag"])[0] or ""):
            return _not_modified(entry, outcome)
        if ran:
            response = ran[0]
            response.headers["X-Cache"] = "MISS"
            return response
        headers = entry["headers"]
        if type(headers) is not tuple:  # a serializer that gave lists back
            headers = tuple(tuple(h) for h in headers)
        return current_app.response_class(entry["body"], entry["status"], (*headers, _HIT))

    def _call(self, args: tuple, kwargs: dict[str, Any]) -> Response:
        app = current_app
        return app.make_response(app.ensure_sync(self.view)(*args, **kwargs))

    def _bypass(self, args: tuple, kwargs: dict[str, Any]) -> Response:
        response = self._call(args, kwargs)
        response.headers["X-Cache"] = "BYPASS"
        return response

    def _entry(self, response: Response, cache: TieredCache) -> dict[str, Any] | None:
        """What is stored for ``response`` (whose headers get the cache's ETag,
        Cache-Control and Vary), or None when it must not be cached."""
        if not 200 <= response.status_code < 300 or response.status_code == 206:
            return None
        if response.is_streamed or response.direct_passthrough:
            return None
        headers = response.headers
        if "Set-Cookie" in headers:
            return None
        cache_control = response.cache_control
        if cache_control.no_store or (cache_control.private and not self.per_user):
            return None
        if any(name.lower() not in _VARY_KEYED for name in response.vary):
            return None  # Vary: * or Accept-Language...: the key does not hold that header
        if _session_modified():
            return None
        body = response.get_data()
        etag = headers.get("ETag")
        if not etag:
            etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
            headers["ETag"] = etag
        if "Cache-Control" not in headers:
            ttl = _default_ttl(cache) if self.ttl is None else self.ttl
            scope = "private" if self.per_user else "public"
            headers["Cache-Control"] = f"{scope}, no-cache" if ttl is None else f"{scope}, max-age={int(ttl)}"
        response.vary.update(_VARY)
        stored = tuple((name, value) for name, value in headers.items()
                       if name.lower() not in _UNSTORED_HEADERS)
        return {"status": response.status_code, "headers": stored, "body": body, "etag": etag}


def _check_templates(view: Callable[..., Any], templates: tuple[str, ...]) -> None:
    """Every ``{name}`` of a tag template must be a parameter (a URL variable) of the view."""
    if not templates:
        return
    try:
        params = signature(view).parameters
    except (TypeError, ValueError):
        return
    if any(p.kind is Parameter.VAR_KEYWORD for p in params.values()):
        return
    formatter = string.Formatter()
    for template in templates:
        try:
            fields = [f for _, f, _, _ in formatter.parse(template) if f is not None]
        except ValueError as exc:
            raise ValueError(f"tags: bad template {template!r}: {exc}") from None
        for field in fields:
            name = field.split(".", 1)[0].split("[", 1)[0]
            if name not in params:
                raise ValueError(f"tags: template {template!r} uses {{{name}}}, which is not a "
                                 f"parameter of {getattr(view, '__qualname__', view)!r}")


def _user_hash(authorization: str, cookie: str) -> str:
    """HMAC-SHA256 (SHA-256 without a SECRET_KEY) of the request's credentials."""
    data = f"{len(authorization)}:{authorization}{cookie}".encode("utf-8", "surrogateescape")
    secret = current_app.secret_key
    if secret:
        key = secret if isinstance(secret, bytes) else str(secret).encode("utf-8")
        return hmac.new(key, data, hashlib.sha256).hexdigest()
    return hashlib.sha256(data).hexdigest()


def _escape(text: str, safe: str, plain: re.Pattern[str]) -> str:
    """``quote(text, safe)``, skipped when ``text`` has nothing to escape (same result)."""
    return text if plain.fullmatch(text) else quote(text, safe=safe)


_PATH_SAFE = "/"
_PLAIN_PATH = re.compile(r"[A-Za-z0-9_.~/-]*")
_HOST_SAFE = ":[]"
_PLAIN_HOST = re.compile(r"[A-Za-z0-9_.~:\[\]-]*")
_QUERY_SAFE = "&=+%;,/:@!$'()*?"
_PLAIN_QUERY = re.compile(r"[A-Za-z0-9_.~&=+%;,/:@!$'()*?-]*")


def _view_key(environ: Mapping[str, Any], query_string: bool, user: str | None) -> str:
    """``view:GET <host><path>[?<query>][ u:<hash>]``.

    Injective: the host is escaped (no ``/``), the path escaped (no ``?`` or space), the
    query's ``&``-separated fields sorted and escaped (no space), so each part ends where
    the next begins. Two query strings that differ only in field order (or empty fields)
    share the entry; any other difference is another entry.
    """
    host = environ.get("HTTP_HOST") or environ.get("SERVER_NAME", "")
    path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
    key = "view:GET " + _escape(host, _HOST_SAFE, _PLAIN_HOST) + _escape(path, _PATH_SAFE, _PLAIN_PATH)
    if query_string:
        query = environ.get("QUERY_STRING")
        if query:
            fields = sorted(f for f in query.split("&") if f)
            if fields:
                key += "?" + _escape("&".join(fields), _QUERY_SAFE, _PLAIN_QUERY)
    if user is not None:
        key += " u:" + user
    return key


def _session_modified() -> bool:
    """Whether the view wrote to the session, without marking the session accessed."""
    ctx = request_ctx._get_current_object()  # type: ignore[attr-defined]
    # Flask >= 3.1 opens the session lazily into ``_session``; reading ``ctx.session``
    # would set ``accessed`` (and Flask would then add ``Vary: Cookie``).
    state = vars(ctx)
    sess = state["_session"] if "_session" in state else state.get("session")
    return bool(getattr(sess, "modified", False))


def _not_modified(entry: dict[str, Any], outcome: str) -> Response:
    """``304 Not Modified`` for a cached entry: no body, the validators and caching headers."""
    headers = [(name, value) for name, value in entry["headers"] if name.lower() in _304_HEADERS]
    headers.append(("X-Cache", outcome))
    return current_app.response_class(status=304, headers=headers)


# =========================================================================================
# Admin blueprint
# =========================================================================================


def cache_admin_blueprint(cache: TieredCache, *, auth: AdminAuth | None, url_prefix: str = "/cache",
                          name: str = "tieredcache_admin") -> Blueprint:
    """A blueprint serving the admin actions on ``cache``.

    ``GET {url_prefix}/stats``, ``/health``, ``/metrics`` (Prometheus text), ``/report``,
    ``/recommendations``, ``/dashboard`` (an HTML page that draws ``/stats``; see
    docs/observability.md); ``POST /clear``, ``/invalidate``, ``/warm`` (JSON bodies, see
    ``tieredcache.contrib._admin``). ``auth`` is required: a bearer token (clients send
    ``Authorization: Bearer <token>``) or ``auth(request)`` returning True (allowed),
    False (403) or None (401). A request without credentials is answered 401 with
    ``WWW-Authenticate: Bearer``, a wrong token 403; neither changes anything. ``name`` is
    the blueprint's name (two admin blueprints on one app need different names).

    Raises ``ConfigurationError`` when ``auth`` is None or empty.
    """
    if not isinstance(cache, TieredCache):
        raise TypeError(f"cache must be a TieredCache, not {type(cache).__name__}")
    actions = AdminActions(cache)
    return _admin_blueprint(lambda: actions, auth, url_prefix, name)


def _admin_blueprint(get_actions: Callable[[], AdminActions], auth: AdminAuth | None,
                     url_prefix: str, name: str) -> Blueprint:
    if auth is None or (isinstance(auth, str) and not auth.strip()):
        raise ConfigurationError(
            "auth: the admin endpoints require authentication; pass a bearer token (str) or "
            "a callable auth(request) -> bool | None")
    if not isinstance(auth, str) and not callable(auth):
        raise ConfigurationError(f"auth: must be a token (str) or a callable, not {type(auth).__name__}")
    blueprint = Blueprint(name, __name__, url_prefix=url_prefix)

    def authorize() -> int:
        if isinstance(auth, str):
            return bearer_status(flask.request.headers.get("Authorization"), auth)
        verdict = auth(flask.request._get_current_object())  # type: ignore[attr-defined]
        return 401 if verdict is None else 200 if verdict else 403

    def endpoint(action: str, method: str) -> Callable[[], Response]:
        def view() -> Response:
            status = authorize()
            if status != 200:
                return _admin_error(status, "authentication required" if status == 401 else "forbidden")
            body: Any = None
            if method == "POST":
                req = flask.request
                mimetype = req.mimetype
                if mimetype in _FORM_TYPES or (not isinstance(auth, str) and mimetype != "application/json"):
                    return _admin_error(415, "body: send JSON with Content-Type: application/json")
                data = req.get_data(cache=True)
                if data.strip():
                    if not req.is_json:
                        return _admin_error(415, "body: send JSON with Content-Type: application/json")
                    try:
                        body = json.loads(data)
                    except (ValueError, UnicodeDecodeError):
                        return _admin_error(400, "body: not valid JSON")
                    if not isinstance(body, dict):
                        return _admin_error(400, f"body: must be a JSON object, got {type(body).__name__}")
            code, payload, content_type = get_actions().handle(action, body, flask.request.args)
            text = payload if isinstance(payload, str) else current_app.json.dumps(payload)
            response = current_app.response_class(text, status=code, content_type=content_type)
            response.headers["Cache-Control"] = "no-store"
            return response

        view.__name__ = action
        return view

    for action, method in ACTIONS.items():
        blueprint.add_url_rule(f"/{action}", endpoint=action, view_func=endpoint(action, method),
                               methods=[method])

    def dashboard() -> Response:
        status = authorize()
        if status != 200:
            refused = _admin_error(status, "authentication required" if status == 401 else "forbidden")
            if status == 401 and isinstance(auth, str):  # the browser's own login prompt
                refused.headers["WWW-Authenticate"] = BASIC_CHALLENGE
            return refused
        return current_app.response_class(_dashboard.page(), headers=_dashboard.headers())

    _dashboard.page()  # a wheel without dashboard.html fails here, not on the first request
    blueprint.add_url_rule("/dashboard", endpoint="dashboard", view_func=dashboard, methods=["GET"])
    return blueprint


def _admin_error(status: int, message: str) -> Response:
    response = current_app.response_class(current_app.json.dumps({"error": message}), status=status,
                                          content_type="application/json")
    response.headers["Cache-Control"] = "no-store"
    if status == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    return response

"""FastAPI integration: lifespan, dependency, HTTP response caching, admin router.

See docs/fastapi.md. Everything here works with the default cache
(``tieredcache.get_cache()``) when no cache is given.

- ``tieredcache_lifespan(cache)``: ``FastAPI(lifespan=...)``; puts the cache on
  ``app.state.tieredcache``, warms it at startup when asked (or when
  ``CACHE_WARMING_ENABLED`` is true), closes what it opened at shutdown.
- ``get_cache``: ``cache: TieredCache = Depends(get_cache)``.
- ``cache_response(...)``: caches the HTTP response of a GET (and HEAD) route, with
  ``ETag``/``If-None-Match`` (304), ``Cache-Control`` and ``X-Cache: HIT|MISS|BYPASS``.
- ``cache_admin_router(cache, auth=...)``: the admin endpoints of ``_admin.AdminActions``.

HOW ``cache_response`` WORKS
    The decorator wraps the endpoint; FastAPI still resolves its dependencies (so an
    authentication dependency runs on every request, hit or miss). The wrapper receives
    the ``Request`` (a hidden parameter is added to the signature when the endpoint has
    none), looks the response up, and on a hit returns a ready ``Response`` built from
    the stored status, headers and body: no endpoint call, no serialization. On a miss
    it calls the endpoint and renders its return value as FastAPI would (the route's
    ``response_model``, ``status_code`` and ``response_class``), stores the result when
    it is cacheable, and returns it.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import inspect
import os
import typing
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

import tieredcache as _tc

from .. import _decorators
from .._decorators import check_ttl
from .._errors import ConfigurationError
from .._keys import Template
from .._tiered import NoStore, TieredCache
from . import _dashboard
from ._admin import ACTIONS, BASIC_CHALLENGE, AdminActions, bearer_status

__all__ = [
    "cache_admin_router",
    "cache_response",
    "get_cache",
    "tieredcache_lifespan",
]

Lifespan = Callable[[Any], AbstractAsyncContextManager[Any]]


# ---- lifespan and dependency --------------------------------------------------------------


def _env_flag(name: str) -> bool:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return False
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(f"{name} must be true or false, got {raw!r}")


def tieredcache_lifespan(cache: TieredCache | None = None, *, warm: bool | None = None,
                         lifespan: Lifespan | None = None, close: bool | None = None) -> Lifespan:
    """A lifespan for ``FastAPI(lifespan=tieredcache_lifespan(cache))``.

    At startup: puts ``cache`` (``None``: ``tieredcache.get_cache()``) on
    ``app.state.tieredcache``, then runs ``await cache.awarm()`` when ``warm`` is true,
    or when ``warm`` is None and the environment variable ``CACHE_WARMING_ENABLED`` is
    true; then enters ``lifespan`` (your own lifespan, if any: its state is yielded).
    At shutdown: leaves your lifespan, then closes the cache if this lifespan created it
    (the default cache, created by ``get_cache()`` at this startup), or if ``close=True``.
    """
    if cache is not None and not isinstance(cache, TieredCache):
        raise TypeError(f"cache must be a TieredCache or None, not {type(cache).__name__}")
    if warm is not None and not isinstance(warm, bool):
        raise TypeError(f"warm must be True, False or None, not {type(warm).__name__}")
    if close is not None and not isinstance(close, bool):
        raise TypeError(f"close must be True, False or None, not {type(close).__name__}")
    if lifespan is not None and not callable(lifespan):
        raise TypeError(f"lifespan must be a lifespan function (app -> async context manager), "
                        f"not {type(lifespan).__name__}")

    @asynccontextmanager
    async def _lifespan(app: Any) -> AsyncIterator[Any]:
        if cache is None:
            created = _decorators.peek_default_cache() is None
            opened = _tc.get_cache()
        else:
            created, opened = False, cache
        app.state.tieredcache = opened
        try:
            if warm or (warm is None and _env_flag("CACHE_WARMING_ENABLED")):
                await opened.awarm()
            if lifespan is None:
                yield None
            else:
                async with lifespan(app) as state:
                    yield state
        finally:
            if close or (close is None and created):
                await opened.aclose()
                if cache is None and _decorators.peek_default_cache() is opened:
                    _tc.reset_default_cache()  # the next get_cache() makes a fresh one
            else:
                await _release_loop_client(opened)

    return _lifespan


async def _release_loop_client(cache: TieredCache) -> None:
    """Close the Redis connections the cache opened for this event loop (the app's loop
    ends with the app; the cache itself stays open for other loops and threads)."""
    await cache.arelease()


def _app_cache(app: Any) -> TieredCache:
    state = getattr(app, "state", None)
    cache = getattr(state, "tieredcache", None) if state is not None else None
    return cache if cache is not None else _tc.get_cache()


def get_cache(request: Request) -> TieredCache:
    """FastAPI dependency: the app's cache (``app.state.tieredcache``, set by
    ``tieredcache_lifespan``), else the default cache."""
    return _app_cache(request.app)


# ---- response caching ---------------------------------------------------------------------

_CACHEABLE_METHODS = ("GET", "HEAD")
# Response headers stored with the body (others are per request: dates, ids, cookies).
_STORED_HEADERS = frozenset({
    b"content-type", b"content-language", b"content-disposition", b"content-encoding",
    b"content-location", b"link", b"last-modified", b"vary", b"cache-control", b"etag",
})
# A Vary on these keeps the response cacheable: the key already accounts for them
# (credentials: bypassed or keyed per user; encodings: compression happens outside).
_VARY_OK = frozenset({"accept-encoding", "authorization", "cookie"})
_X_HIT = (b"x-cache", b"HIT")
_X_MISS = (b"x-cache", b"MISS")
_X_BYPASS = (b"x-cache", b"BYPASS")
_NOT_MODIFIED_HEADERS = (b"etag", b"cache-control", b"vary", b"content-location", b"last-modified")

# (status, headers, body, etag): headers are the full raw list of a 200 response but X-Cache.
Entry = tuple[int, tuple[tuple[bytes, bytes], ...], bytes, bytes]


class _CachedResponse(Response):
    """A response served from the cache: status, raw headers and body as stored."""

    def __init__(self, status: int, raw_headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        # Response.__init__ would render and rebuild the headers: both are stored ready.
        self.status_code = status
        self.raw_headers = raw_headers
        self.body = body
        self.background = None


def _etag_matches(if_none_match: bytes, etag: bytes) -> bool:
    """If-None-Match uses the weak comparison (RFC 9110 13.1.2)."""
    if if_none_match == etag:
        return True
    weak = etag[2:] if etag.startswith(b"W/") else etag
    for candidate in if_none_match.split(b","):
        candidate = candidate.strip()
        if candidate == b"*":
            return True
        if (candidate[2:] if candidate.startswith(b"W/") else candidate) == weak:
            return True
    return False


def _serve(entry: Entry, if_none_match: bytes | None, head: bool, x_cache: tuple[bytes, bytes]) -> _CachedResponse:
    status, headers, body, etag = entry
    if if_none_match is not None and _etag_matches(if_none_match, etag):
        raw = [h for h in headers if h[0] in _NOT_MODIFIED_HEADERS]
        raw.append(x_cache)
        return _CachedResponse(304, raw, b"")
    raw = list(headers)
    raw.append(x_cache)
    return _CachedResponse(status, raw, b"" if head else body)


def _sorted_query(qs: bytes) -> str:
    """The query string with its parameters sorted by name (values of a repeated name
    keep their order: it may matter to the endpoint)."""
    if not qs:
        return ""
    if b"&" in qs:
        qs = b"&".join(sorted(qs.split(b"&"), key=lambda p: p.partition(b"=")[0]))
    return "?" + _escape(qs.decode("latin-1"))


def _escape(text: str) -> str:
    """Percent-encode the characters that delimit the parts of a response key, so that
    no path, host or query can spell another request's key (or a user's suffix)."""
    if "%" in text or "?" in text or "#" in text or " " in text:
        text = text.replace("%", "%25").replace("?", "%3F").replace("#", "%23").replace(" ", "%20")
    return text


def _response_key(scope: Mapping[str, Any]) -> str:
    """``http:GET <path>[?<sorted query>] <host>``: injective, because the (decoded) path,
    the query and the host are escaped so each part ends where the next begins and none
    can contain the ``#user=`` suffix of per-user entries. The host is part of the key so
    that a forged Host header cannot plant a page for other visitors; it comes last so
    that ``invalidate_prefix("http:GET /products/")`` reaches every host."""
    host = ""
    for name, value in scope["headers"]:
        if name == b"host":
            host = value.decode("latin-1")
            break
    return "http:GET " + _escape(scope["path"]) + _sorted_query(scope["query_string"]) + " " + _escape(host)


def _user_hash(credentials: list[tuple[bytes, bytes]], secret: bytes | None = None) -> str:
    """HMAC-SHA256 keyed by ``secret`` (plain SHA-256 without one) of the credentials."""
    digest = hmac.new(secret, digestmod=hashlib.sha256) if secret else hashlib.sha256()
    for name, value in credentials:
        digest.update(name + b"\x00" + value + b"\x00")
    return digest.hexdigest()


def _secret_key(secret_key: str | bytes | None) -> bytes | None:
    if secret_key is None:
        secret_key = os.environ.get("TIEREDCACHE_SECRET_KEY") or None
        if secret_key is None:
            return None
    if isinstance(secret_key, str):
        secret_key = secret_key.encode("utf-8")
    if not isinstance(secret_key, bytes):
        raise TypeError(f"secret_key must be str, bytes or None, not {type(secret_key).__name__}")
    if not secret_key:
        raise ValueError("secret_key must not be empty")
    return secret_key


def _type_hints(func: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(func)
    except Exception:  # unresolvable forward references: use the raw annotations
        return {}


def _param_of_type(sig: inspect.Signature, hints: dict[str, Any], cls: type) -> str | None:
    for p in sig.parameters.values():
        ann = hints.get(p.name, p.annotation)
        if isinstance(ann, type) and issubclass(ann, cls):
            return p.name
    return None


def _unique(name: str, taken: Iterable[str]) -> str:
    taken = set(taken)
    while name in taken:
        name += "_"
    return name


async def _render(raw: Any, request: Request, sub: Response) -> Response:
    """The Response FastAPI would build for an endpoint that returned ``raw``: validated
    and filtered by the route's response_model, in its response_class and status code,
    with the headers set on the injected ``Response``."""
    from fastapi.datastructures import DefaultPlaceholder
    from fastapi.routing import serialize_response

    route = request.scope.get("route")
    content = await serialize_response(
        field=getattr(route, "response_field", None),
        response_content=raw,
        include=getattr(route, "response_model_include", None),
        exclude=getattr(route, "response_model_exclude", None),
        by_alias=getattr(route, "response_model_by_alias", True),
        exclude_unset=getattr(route, "response_model_exclude_unset", False),
        exclude_defaults=getattr(route, "response_model_exclude_defaults", False),
        exclude_none=getattr(route, "response_model_exclude_none", False),
        is_coroutine=True,
    )
    response_class = getattr(route, "response_class", JSONResponse)
    if isinstance(response_class, DefaultPlaceholder):
        response_class = response_class.value
    status = sub.status_code or getattr(route, "status_code", None)
    response = response_class(content, status_code=status) if status else response_class(content)
    if response.status_code < 200 or response.status_code in (204, 304):
        response.body = b""
    response.raw_headers.extend(h for h in sub.raw_headers if h[0] != b"content-length")
    return response


class _Policy:
    """What ``cache_response`` was given, checked."""

    __slots__ = ("cache", "ttl", "tags", "per_user", "secret")

    def __init__(self, cache: TieredCache | None, ttl: Any, tags: tuple[str | Template, ...],
                 per_user: bool, secret: bytes | None = None) -> None:
        self.cache = cache
        self.ttl = ttl
        self.tags = tags
        self.per_user = per_user
        self.secret = secret

    def entry(self, response: Response, ttl: float | None) -> Entry | None:
        """What to store for ``response``, or None when it must not be cached: not 2xx
        (or 206), streamed, with Set-Cookie, ``Cache-Control: no-store`` (or ``private``
        on a shared entry), or a ``Vary`` on request headers the key does not hold."""
        status = response.status_code
        body = getattr(response, "body", None)
        if not (200 <= status < 300) or status == 206 or not isinstance(body, (bytes, memoryview)):
            return None
        kept: list[tuple[bytes, bytes]] = []
        etag = cache_control = vary = None
        for name, value in response.raw_headers:
            name = name.lower()
            if name == b"set-cookie":
                return None
            if name not in _STORED_HEADERS:
                continue
            if name == b"cache-control":
                directives = value.lower()
                if b"no-store" in directives or (b"private" in directives and not self.per_user):
                    return None
                cache_control = value
            elif name == b"etag":
                etag = value
            elif name == b"vary":
                fields = {f.strip().lower() for f in value.decode("latin-1").split(",")}
                if not fields <= _VARY_OK:
                    return None
                vary = value
            else:
                kept.append((name, value))
        body = bytes(body)
        if etag is None:
            etag = b'"' + hashlib.sha256(body).hexdigest()[:32].encode("ascii") + b'"'
        if cache_control is None:
            scope = b"private" if self.per_user else b"public"
            cache_control = scope + (b", no-cache" if ttl is None else b", max-age=%d" % int(ttl))
        if self.per_user:
            vary = b"Authorization, Cookie" if vary is None else vary + b", Authorization, Cookie"
        kept.append((b"content-length", b"%d" % len(body)))
        kept.append((b"etag", etag))
        kept.append((b"cache-control", cache_control))
        if vary is not None:
            kept.append((b"vary", vary))
        return status, tuple(kept), body, etag


def cache_response(cache: TieredCache | None = None, ttl: float | str | None = None,
                   tags: Iterable[str] | str = (), private: Literal["skip", "per_user"] = "skip",
                   secret_key: str | bytes | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Cache the HTTP response of a GET (and HEAD) endpoint; put it under ``@app.get``.

    ``cache``: a TieredCache, or None for the app's (``app.state.tieredcache``) or the
    default cache. ``ttl``: seconds or a tier name (``"real_time"``, ``"user_data"``...),
    None for the cache's default. ``tags``: templates over the endpoint's arguments
    (``"product:{product_id}"``), so ``cache.invalidate_tags("product:42")`` drops the
    responses. ``private``: what to do with requests that carry ``Authorization`` or
    ``Cookie``: ``"skip"`` (default) neither reads nor stores the cache for them
    (``X-Cache: BYPASS``); ``"per_user"`` keys them by an HMAC-SHA256 of those headers,
    keyed by ``secret_key`` (default: the ``TIEREDCACHE_SECRET_KEY`` environment variable;
    without either, a plain SHA-256, which anyone who can read Redis's key names could
    test guessed passwords against), and marks them ``Cache-Control: private``. Every
    worker must use the same ``secret_key`` to share per-user entries.

    The key is ``"http:GET " + path + "?" + query + " " + host`` (parameters sorted by
    name, every part escaped: see ``_response_key``), with ``"#user=<digest>"`` appended
    per user. Only 2xx responses with a body (not
    streamed) and no ``Set-Cookie`` are stored.
    """
    if callable(cache) and not isinstance(cache, TieredCache):
        raise TypeError("cache_response needs parentheses: write @cache_response() or @cache_response(ttl=60)")
    if cache is not None and not isinstance(cache, TieredCache):
        raise TypeError(f"cache must be a TieredCache or None, not {type(cache).__name__}")
    ttl = check_ttl(ttl)
    secret = _secret_key(secret_key)
    if private not in ("skip", "per_user"):
        raise ValueError(f"private must be 'skip' or 'per_user', got {private!r}")
    if isinstance(tags, str):
        tags = (tags,)
    tag_texts = tuple(tags)
    for t in tag_texts:
        if not isinstance(t, str) or not t:
            raise TypeError(f"tags must hold non-empty str templates, got {t!r}")

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        if not callable(func):
            raise TypeError(f"cache_response decorates endpoint functions, not {type(func).__name__}")
        if inspect.isasyncgenfunction(func) or inspect.isgeneratorfunction(func):
            raise TypeError(f"cache_response cannot cache the streamed endpoint {func.__qualname__}")
        sig = inspect.signature(func)
        names = tuple(sig.parameters)
        hints = _type_hints(func)
        policy = _Policy(cache, ttl, tuple(Template(t, names, "tag") if "{" in t else t for t in tag_texts),
                         private == "per_user", secret)
        request_name = _param_of_type(sig, hints, Request)
        response_name = _param_of_type(sig, hints, Response)
        params = list(sig.parameters.values())
        extra = []
        pop_request = request_name is None
        if pop_request:
            request_name = _unique("tieredcache_request", names)
            extra.append(inspect.Parameter(request_name, inspect.Parameter.KEYWORD_ONLY, annotation=Request))
        pop_response = response_name is None
        if pop_response:
            response_name = _unique("tieredcache_response", names)
            extra.append(inspect.Parameter(response_name, inspect.Parameter.KEYWORD_ONLY, annotation=Response))
        if params and params[-1].kind is inspect.Parameter.VAR_KEYWORD:
            params[-1:-1] = extra
        else:
            params.extend(extra)
        is_async = inspect.iscoroutinefunction(func)
        dynamic_tags = any(isinstance(t, Template) for t in policy.tags)

        async def call(args: tuple, kwargs: dict[str, Any]) -> Any:
            if is_async:
                return await func(*args, **kwargs)
            return await run_in_threadpool(func, *args, **kwargs)

        @functools.wraps(func)
        async def endpoint(*args: Any, **kwargs: Any) -> Any:
            request = kwargs.pop(request_name, None) if pop_request else kwargs.get(request_name)
            sub = kwargs.pop(response_name, None) if pop_response else kwargs.get(response_name)
            if not isinstance(request, Request) or not isinstance(sub, Response):
                return await call(args, kwargs)  # called directly, not by FastAPI: no HTTP to cache
            scope = request.scope
            method = scope["method"]
            if method not in _CACHEABLE_METHODS:
                return await call(args, kwargs)
            credentials: list[tuple[bytes, bytes]] | None = None
            if_none_match = None
            for name, value in scope["headers"]:
                if name == b"authorization" or name == b"cookie":
                    if credentials is None:
                        credentials = []
                    credentials.append((name, value))
                elif name == b"if-none-match":
                    if_none_match = value
            key = _response_key(scope)
            if credentials is not None:
                if not policy.per_user:
                    return _mark(await call(args, kwargs), sub, _X_BYPASS)
                key += "#user=" + _user_hash(credentials, policy.secret)
            view = policy.cache or _app_cache(scope.get("app"))
            item_ttl = policy.ttl if policy.ttl is not None else view.default_ttl
            if dynamic_tags:
                bound = dict(zip(names, args))
                bound.update(kwargs)
                item_tags = tuple(t.render(bound) if isinstance(t, Template) else t for t in policy.tags)
            else:
                item_tags = policy.tags  # type: ignore[assignment]
            produced: list[Response] = []

            async def load() -> Any:
                raw = await call(args, kwargs)
                response = raw if isinstance(raw, Response) else await _render(raw, request, sub)
                produced.append(response)
                entry = policy.entry(response, item_ttl)
                return NoStore(None) if entry is None else entry

            # A miss is a get_or_set: concurrent requests for one key run the endpoint
            # once; the response is stored only if nothing invalidated it meanwhile and
            # only if the read found Redis answering (one Redis timeout per request at most).
            entry = await view.aget_or_set(key, load, ttl=item_ttl, tags=item_tags)
            if not produced:  # from the cache, or from a concurrent request's run
                if entry is None:  # that run's response was not cacheable: run it here
                    return _mark(await call(args, kwargs), sub, _X_MISS)
                response = _serve(entry, if_none_match, method == "HEAD", _X_HIT)
                if sub.raw_headers:  # headers dependencies set on the injected Response
                    response.raw_headers.extend(h for h in sub.raw_headers if h[0] != b"content-length")
                return response
            response = produced[0]
            if entry is None:
                response.raw_headers.append(_X_MISS)
                return response
            if if_none_match is not None and _etag_matches(if_none_match, entry[3]):
                not_modified = _serve(entry, if_none_match, False, _X_MISS)
                not_modified.background = response.background
                return not_modified
            stored = {h[0] for h in entry[1]}
            response.raw_headers = [h for h in response.raw_headers if h[0].lower() not in stored]
            response.raw_headers.extend(entry[1])
            response.raw_headers.append(_X_MISS)
            if method == "HEAD":
                response.body = b""
            return response

        endpoint.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
        return endpoint

    return decorate


def _mark(result: Any, sub: Response, x_cache: tuple[bytes, bytes]) -> Any:
    """Add X-Cache to what an endpoint returned (a Response, or a value FastAPI renders
    with the headers of the injected Response)."""
    target = result if isinstance(result, Response) else sub
    target.raw_headers.append(x_cache)
    return result


# ---- admin router -------------------------------------------------------------------------


def _bearer_dependency(token: str) -> Callable[..., Any]:
    async def require_admin_token(request: Request) -> None:
        status = bearer_status(request.headers.get("authorization"), token)
        if status == 401:
            route = request.scope.get("route")
            challenge = BASIC_CHALLENGE if getattr(route, "name", None) == "tieredcache_dashboard" else "Bearer"
            raise HTTPException(401, "a bearer token is required", headers={"WWW-Authenticate": challenge})
        if status == 403:
            raise HTTPException(403, "invalid token")

    return require_admin_token


def _user_dependency(auth: Callable[..., Any]) -> Callable[..., Any]:
    async def require_admin(allowed: Any = Depends(auth)) -> None:
        if allowed is False:  # a dependency that answers instead of raising
            raise HTTPException(403, "not allowed")

    return require_admin


def cache_admin_router(cache: TieredCache, *, auth: str | Callable[..., Any] | None,
                       prefix: str = "/cache", tags: Iterable[str] = ("tieredcache",),
                       include_in_schema: bool = True) -> APIRouter:
    """An APIRouter with the cache admin endpoints, for ``app.include_router(...)``.

    ``GET /stats``, ``/health`` (503 when degraded), ``/metrics`` (Prometheus text),
    ``/report``, ``/recommendations``, ``/dashboard`` (an HTML page that draws ``/stats``;
    see docs/observability.md); ``POST /clear``, ``/invalidate``, ``/warm`` (JSON
    bodies: see ``tieredcache.contrib._admin``). ``auth`` is required: a token string
    (requests must send ``Authorization: Bearer <token>``: none gives 401, a wrong one
    403) or a FastAPI dependency that raises ``HTTPException`` itself (returning False
    gives 403). A refused request changes nothing.

    POST bodies must be JSON: form and ``text/plain`` bodies get 415, and with a
    dependency as ``auth`` (which may read a cookie) every POST must say
    ``Content-Type: application/json``, which a cross-site form cannot send.
    """
    if not isinstance(cache, TieredCache):
        raise TypeError(f"cache must be a TieredCache, not {type(cache).__name__}")
    if auth is None or (isinstance(auth, str) and not auth.strip()):
        raise ConfigurationError("auth: the admin endpoints require authentication; pass a bearer token (str) "
                                 "or a FastAPI dependency that raises HTTPException(401/403)")
    if isinstance(auth, str):
        guard = _bearer_dependency(auth)
    elif callable(auth):
        guard = _user_dependency(auth)
    else:
        raise TypeError(f"auth must be a token (str) or a dependency callable, not {type(auth).__name__}")
    if not isinstance(prefix, str) or (prefix and (not prefix.startswith("/") or prefix.endswith("/"))):
        raise ValueError(f"prefix must be '' or a path starting with '/' and not ending with '/', got {prefix!r}")
    if isinstance(tags, str):
        tags = (tags,)
    actions = AdminActions(cache)
    router = APIRouter(prefix=prefix, tags=list(tags), dependencies=[Depends(guard)],
                       include_in_schema=include_in_schema)
    json_only = not isinstance(auth, str)
    for action, method in ACTIONS.items():
        router.add_api_route(f"/{action}", _admin_endpoint(actions, action, method, json_only), methods=[method],
                             name=f"tieredcache_{action}", response_class=Response)
    _dashboard.page()  # a wheel without dashboard.html fails here, not on the first request
    router.add_api_route("/dashboard", _dashboard_endpoint, methods=["GET"], name="tieredcache_dashboard",
                         response_class=Response)
    return router


async def _dashboard_endpoint() -> Response:
    """Cache admin: the dashboard page (HTML; it polls ./stats with the same credentials)."""
    return Response(_dashboard.page(), headers=_dashboard.headers())


_FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data", "text/plain"})


def _admin_response(status: int, payload: object, content_type: str) -> Response:
    if isinstance(payload, str):
        response: Response = Response(payload, status_code=status, media_type=content_type)
    else:
        response = JSONResponse(payload, status_code=status)
    response.headers["cache-control"] = "no-store"
    return response


def _admin_endpoint(actions: AdminActions, action: str, method: str, json_only: bool) -> Callable[..., Any]:
    async def admin_endpoint(request: Request) -> Response:
        body = None
        if method == "POST":
            mimetype = request.headers.get("content-type", "").partition(";")[0].strip().lower()
            body = await request.body()
            is_json = mimetype == "application/json" or (mimetype.startswith("application/")
                                                           and mimetype.endswith("+json"))
            if mimetype in _FORM_TYPES or (json_only and not is_json) or (body.strip() and not is_json):
                return _admin_response(415, {"error": "body: send JSON with Content-Type: application/json"},
                                       "application/json")
        status, payload, content_type = await actions.ahandle(action, body, request.query_params)
        return _admin_response(status, payload, content_type)

    admin_endpoint.__name__ = f"tieredcache_{action}"
    admin_endpoint.__doc__ = f"Cache admin: {action} ({method})."
    return admin_endpoint

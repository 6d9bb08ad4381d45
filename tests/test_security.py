"""Security properties (REQUIREMENTS.md section 6), each written as a test.

1. Keys are injective: distinct (function, arguments), (namespace, key) and HTTP
   requests (path, query, host, user) never share a Redis key or an L1 key.
2. Tenants are isolated: a tenant holding a namespace view (and its own admin router or
   blueprint) cannot read, invalidate, clear or warm another tenant's entries through any
   public API or admin endpoint, with Redis and its invalidation channel in play.
3. Admin endpoints refuse missing, wrong and malformed credentials (401 with
   ``WWW-Authenticate``, or 403 for a wrong bearer token), change nothing and leak nothing.
4. A pickle planted in Redis is never unpickled, whatever the serializer configuration:
   the read is a miss (or the documented SerializationError with ``on_error="raise"``),
   logged without the payload.
5. Glob metacharacters in keys, prefixes, tags and namespaces are escaped in every SCAN
   pattern: ``invalidate_prefix("a*")`` spares ``"ab"``, namespace ``"x*"`` spares ``"xy"``.
6. Logs (every logger at DEBUG, ``log_keys`` on and off), ``repr``, ``health()``,
   ``stats()``, ``report()`` and admin responses never show a planted secret: the Redis
   password, the admin token, the signing key, a cached value.
7. A flood of unique keys, tags and oversized values keeps L1 within ``max_entries`` and
   ``max_bytes`` at every checkpoint, and the process's RSS within a bound derived from
   them; a value above ``max_bytes`` is not stored in L1 (``docs/local-cache.md``).

Pass criterion: every test passes. The property tests run ``_EXAMPLES`` examples each;
``HYPOTHESIS_PROFILE=hardening`` (``hardening/security.sh full``) runs many more, and
``TIEREDCACHE_FLOOD`` sets the size of the flood (default 50,000 keys).
"""

from __future__ import annotations

import asyncio
import base64
import gc
import json
import logging
import os
import pickle
import struct
import warnings
import zlib

import pytest
from fastapi import FastAPI, Request
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

import tieredcache
from tieredcache import SerializationError, TieredCache
from tieredcache._decorators import installed_default
from tieredcache._redis_server import RedisServer
from tiered_helpers import RawRedis, wait_until

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*httpx2", category=Warning)
    from fastapi.testclient import TestClient

# ---- Hypothesis profile ---------------------------------------------------------------------
# "hardening": many more examples. Registered here unless another module did it first; loaded
# only when HYPOTHESIS_PROFILE asks for it, so the normal suite keeps its defaults.
try:
    settings.get_profile("hardening")
except InvalidArgument:
    settings.register_profile("hardening", max_examples=2_000, deadline=None)
HARDENING = os.environ.get("HYPOTHESIS_PROFILE") == "hardening"
if HARDENING:
    settings.load_profile("hardening")
_EXAMPLES = settings.get_profile("hardening").max_examples if HARDENING else 100
_REDIS_EXAMPLES = _EXAMPLES // 4 if HARDENING else 40
FLOOD = int(os.environ.get("TIEREDCACHE_FLOOD", "50000"))
_SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# Characters that delimit parts of keys, patterns and URLs, and a few hard ones.
ADVERSARIAL = ":#?/ %*[]\\^-!{}()'\",=&+@\n\r\t\x00é日\U0001f600"
adversarial_text = st.text(alphabet=st.sampled_from(ADVERSARIAL) | st.characters(codec="utf-8"), max_size=12)


def _l1_holds(view: TieredCache, key: str) -> bool:
    """Whether this process's L1 holds ``key`` of ``view`` (without filling it)."""
    sentinel = object()
    return view._core.l1.get(view._ns.l1prefix + key, sentinel) is not sentinel


# =============================================================================================
# 1. Keys are injective
# =============================================================================================

# Argument values of many types, including the types whose encodings look alike.
scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | adversarial_text
           | st.binary(max_size=8) | st.decimals(allow_nan=False, places=2) | st.uuids() | st.dates())
values = st.recursive(
    scalars,
    lambda inner: (st.lists(inner, max_size=3) | st.lists(inner, max_size=3).map(tuple)
                   | st.dictionaries(st.text(max_size=3) | st.integers(), inner, max_size=3)
                   | st.frozensets(st.integers() | st.text(max_size=3), max_size=3)),
    max_leaves=8,
)


def _canon(v: object) -> object:
    """What makes two argument values "the same" for a key: equal values of the same types
    (floats by repr, so -0.0 is not 0.0 and nan is nan)."""
    t = type(v)
    if t is float:
        return ("float", repr(v))
    if t in (list, tuple):
        return (t.__name__, tuple(_canon(x) for x in v))
    if t is dict:
        return ("dict", tuple(sorted((repr(_canon(k)), repr(_canon(x))) for k, x in v.items())))
    if t is frozenset:
        return ("frozenset", tuple(sorted(repr(_canon(x)) for x in v)))
    return (t.__name__, repr(v))


function_names = st.sampled_from(["f", "g", "mod.f", "mod.f.<locals>.g", "f(", "f(1", "f(1)", "f(1,", "f'", "(", ")"])


@settings(max_examples=_EXAMPLES, **_SETTINGS)
@given(calls=st.lists(st.tuples(function_names, st.lists(values, max_size=3)), min_size=2, max_size=6))
def test_function_keys_are_injective_across_name_and_arguments(calls):
    """Two calls share a key only if the function name and every argument (value and type)
    are the same, whatever the name and argument text contain."""
    cache = TieredCache()
    try:
        seen: dict[str, object] = {}
        for name, args in calls:
            fn = cache.cached(name=name)(lambda *a: None)
            key = fn.cache_key(*args)
            identity = (name, tuple(_canon(a) for a in args))
            assert seen.setdefault(key, identity) == identity, f"{key!r} is shared by two calls"
    finally:
        cache.close()


namespace_names = st.text(alphabet=st.sampled_from(ADVERSARIAL + "ab"), min_size=1, max_size=6)


@settings(max_examples=_EXAMPLES, **_SETTINGS)
@given(entries=st.lists(st.tuples(st.lists(namespace_names, min_size=1, max_size=3), adversarial_text),
                        min_size=2, max_size=8, unique_by=lambda e: (tuple(e[0]), e[1])))
def test_namespace_and_key_never_spell_another_entry(entries):
    """(namespace path, key) -> Redis key and L1 key is injective: a ``:`` or ``/`` or
    ``%`` in a namespace or a key never lets one tenant's entry land on another's. Checked
    on the key text and by behaviour (each entry reads back its own value from L1)."""
    cache = TieredCache(namespace="root")
    try:
        redis_keys: dict[str, object] = {}
        views = []
        for i, (path, key) in enumerate(entries):
            view = cache
            for part in path:
                view = view.namespace(part)
            identity = (tuple(path), key)
            assert redis_keys.setdefault(view.redis_key(key), identity) == identity
            view.set(key, i)
            views.append((view, key, i))
        for view, key, i in views:
            assert view.get(key) == i
    finally:
        cache.close()


def test_a_tenant_named_like_a_sub_namespace_is_not_that_sub_namespace():
    """Regression: ``namespace("a/b")`` was the same namespace as
    ``namespace("a").namespace("b")``, so tenant "acme/sessions" shared tenant "acme"'s
    "sessions" entries. A ``/`` (and ``%``) in a name is now percent-encoded."""
    cache = TieredCache(namespace="pos")
    try:
        nested, flat = cache.namespace("acme").namespace("sessions"), cache.namespace("acme/sessions")
        assert nested.name == "pos/acme/sessions"
        assert flat.name == "pos/acme%2Fsessions"
        assert cache.namespace("100%").name != cache.namespace("100%25").name
        nested.set("s", "acme's session")
        assert flat.get("s") is None
        assert flat.redis_key("s") != nested.redis_key("s")
        assert cache.namespace("shop:north").redis_key("p") == "tc:pos/shop%3Anorth:k:p"  # docs/concepts.md
    finally:
        cache.close()


# ---- HTTP response keys -------------------------------------------------------------------

http_text = st.text(alphabet=st.sampled_from("ab/?#% =&:@[]é\x7f+") , max_size=8)
query_fields = st.lists(st.text(alphabet=st.sampled_from("ab=%#? +&"), max_size=4).filter(lambda f: "&" not in f),
                        max_size=3)
credentials = st.none() | st.lists(st.tuples(st.sampled_from([b"authorization", b"cookie"]),
                                             st.binary(max_size=6)), min_size=1, max_size=2)


def _fastapi_key(path: str, fields: list[str], host: str, creds: list | None) -> str:
    from tieredcache.contrib.fastapi import _response_key, _user_hash

    scope = {"path": path, "query_string": "&".join(fields).encode("latin-1"),
             "headers": [(b"host", host.encode("latin-1"))]}
    key = _response_key(scope)
    if creds is not None:
        key += "#user=" + _user_hash(creds)
    return key


@settings(max_examples=_EXAMPLES, **_SETTINGS)
@given(requests=st.lists(st.tuples(http_text.map(lambda p: "/" + p), query_fields, http_text, credentials),
                         min_size=2, max_size=6))
def test_fastapi_response_keys_are_injective_across_path_query_host_and_user(requests):
    """``cache_response`` keys: two requests share an entry only if path, host, user
    credentials and the query (its fields, order of distinct names aside) are the same."""
    seen: dict[str, object] = {}
    for path, fields, host, creds in requests:
        qs = "&".join(fields)
        canon_query = tuple(sorted(qs.split("&"), key=lambda p: p.partition("=")[0])) if qs else ()
        identity = (path, canon_query, host, None if creds is None else tuple(creds))
        key = _fastapi_key(path, fields, host, creds)
        assert seen.setdefault(key, identity) == identity, f"{key!r} is shared by two requests"


@settings(max_examples=_EXAMPLES, **_SETTINGS)
@given(requests=st.lists(st.tuples(http_text.map(lambda p: "/" + p), query_fields, http_text,
                                   st.none() | st.tuples(http_text, http_text)), min_size=2, max_size=6))
def test_flask_view_keys_are_injective_across_path_query_host_and_user(requests):
    """``cached_view`` keys: the same property for the Flask key
    ``view:GET <host><path>[?<query>][ u:<hash>]``, with and without ``SECRET_KEY``."""
    from flask import Flask

    from tieredcache.contrib.flask import _user_hash, _view_key

    for secret in (None, "flask-secret"):
        app = Flask("keys")
        app.secret_key = secret
        seen: dict[str, object] = {}
        with app.app_context():
            for path, fields, host, user in requests:
                environ = {"HTTP_HOST": host, "PATH_INFO": path, "QUERY_STRING": "&".join(fields)}
                key = _view_key(environ, True, None if user is None else _user_hash(*user))
                identity = (host, path, tuple(sorted(f for f in fields if f)), user)
                assert seen.setdefault(key, identity) == identity, f"{key!r} is shared by two requests"


def test_a_path_cannot_spell_another_users_entry_through_the_app(redis_url):
    """End to end: a path that spells ``#user=<hash>`` or a host suffix gets its own entry,
    never the page cached for a signed-in user."""
    from tieredcache.contrib.fastapi import _user_hash, cache_response

    cache = TieredCache(redis_url, namespace="http-inj")
    app = FastAPI()
    calls = []

    @app.get("/{path:path}")
    @cache_response(cache, private="per_user")
    async def page(path: str, request: Request):
        calls.append(path)
        return {"for": request.headers.get("authorization", "anonymous"), "path": path}

    try:
        with TestClient(app) as client:
            secret = client.get("/me", headers={"Authorization": "Bearer alice"}).json()
            assert secret["for"] == "Bearer alice"
            forged = "/me#user=" + _user_hash([(b"authorization", b"Bearer alice")])
            for attempt in (forged, "/me testserver", "/me%20testserver", "/me?", "/me%3F"):
                got = client.get(attempt.replace("#", "%23").replace(" ", "%20"))
                assert got.json()["for"] == "anonymous", attempt
    finally:
        cache.close()


# =============================================================================================
# 2. Two tenants
# =============================================================================================

A_VALUES = {"user:1": "A-SECRET-VALUE-1", "user:2": "A-SECRET-VALUE-2", "u*": "A-STAR", "report": "A-REPORT"}
A_TAGS = ["users", "org", "t*"]
TOKEN_A, TOKEN_B = "token-of-tenant-a-0123456789", "token-of-tenant-b-0123456789"


def _raw_snapshot(raw: RawRedis, view: TieredCache) -> dict:
    """Every Redis key of ``view``'s namespace (and sub-namespaces) with its content."""
    base = view.redis_key("x")[: -len("k:x")]  # "tc:{escaped namespace}:"
    glob = base.translate(str.maketrans({c: "\\" + c for c in "*?[]\\"}))
    out = {}
    for key in raw.keys(glob + "*"):
        kind = raw.execute("TYPE", key)
        if kind == b"string":
            out[key] = raw.execute("GET", key)
        elif kind == b"set":
            out[key] = sorted(raw.execute("SMEMBERS", key))
        else:
            out[key] = kind
    return out


class TenantA:
    """Tenant A's entries, and what it takes to check they are untouched."""

    def __init__(self, cache: TieredCache, redis_url: str) -> None:
        self.view = cache.namespace("org-a")
        self.raw = RawRedis(redis_url)
        for key, value in A_VALUES.items():
            self.view.set(key, value, tags=A_TAGS)

        @self.view.cached(name="profile", tags=["users"])
        def profile(user_id: int) -> str:
            return f"A-PROFILE-{user_id}"

        self.profile = profile
        assert profile(1) == "A-PROFILE-1"
        self.fn_key = profile.cache_key(1)
        self.snapshot = _raw_snapshot(self.raw, self.view)
        assert len(self.snapshot) > len(A_VALUES)
        self.peer = TieredCache(redis_url, namespace="iso")  # another process: L2 only

    def assert_untouched(self, what: str) -> None:
        for key, value in A_VALUES.items():
            assert _l1_holds(self.view, key), f"{what}: A's L1 entry {key!r} was dropped"
            assert self.view.get(key) == value, what
        assert _l1_holds(self.view, self.fn_key), f"{what}: A's decorated entry was dropped"
        assert _raw_snapshot(self.raw, self.view) == self.snapshot, f"{what}: A's Redis entries changed"
        peer = self.peer.namespace("org-a")
        for key, value in A_VALUES.items():
            assert peer.get(key) == value, what
        self.peer._core.l1.clear()

    def close(self) -> None:
        self.peer.close()
        self.raw.close()


def _no_leak(text: str, tenant: TenantA, keys: bool = False) -> None:
    """No value of A (nor A's token; with ``keys``, no key of A) in ``text``."""
    for secret in ("A-SECRET-VALUE", "A-STAR", "A-REPORT", "A-PROFILE", TOKEN_A,
                   *(["user:1", "user:2", tenant.fn_key] if keys else [])):
        assert secret not in text, f"{secret!r} leaked: {text[:300]}"


# The names tenant B tries: A's key, tag and prefix names, A's full Redis keys, glob forms.
def _attack_keys(a: TenantA) -> list[str]:
    return [*A_VALUES, a.fn_key, a.view.redis_key("user:1"), "*", "user:*", "u*", "?ser:1", "[u]ser:1",
            "../org-a/user:1", "tc:iso/org-a:k:user:1"]


ATTACK_TAGS = [*A_TAGS, "*", "iso/org-a:users", "org-a:users", "../org-a/users"]
ATTACK_PREFIXES = ["", "u", "user:", "u*", "*", "?", "[", "\\", "../", "tc:iso/org-a:k:", "iso/org-a:"]


@pytest.mark.parametrize("b_name", ["org-b", "org-*", "org-?", "org-[a]", "org-a*", "org-a/x", "org", "org-a\\"])
def test_tenant_b_cannot_touch_tenant_a_through_the_python_api(redis_url, b_name):
    """Every public method of a view, sync and async, decorators and module-level
    functions, called by tenant B with A's key, tag and prefix names (and glob or
    path-looking variants): A's entries stay in L1, in Redis and in another process,
    and nothing B reads contains A's data."""
    cache = TieredCache(redis_url, namespace="iso")
    a = TenantA(cache, redis_url)
    b = cache.namespace(b_name)
    try:
        seen = []
        keys = _attack_keys(a)
        for k in keys:
            seen += [b.get(k), b.get_or_set(k, lambda: "B-LOADED"), b.get_many([k]), b.delete(k)]
            b.set(k, "B-VALUE", tags=A_TAGS)
        b.set_many({k: "B-VALUE" for k in keys}, tags=ATTACK_TAGS)
        seen.append(b.get_many(keys))
        for t in ATTACK_TAGS:
            b.invalidate_tags(t)
        for p in ATTACK_PREFIXES:
            b.invalidate_prefix(p)
        b.clear()
        a.assert_untouched("sync API")

        async def async_attacks():
            out = []
            for k in keys:
                out += [await b.aget(k), await b.aget_or_set(k, lambda: "B-LOADED"), await b.aget_many([k]),
                        await b.adelete(k)]
                await b.aset(k, "B-VALUE", tags=A_TAGS)
            await b.aset_many({k: "B-VALUE" for k in keys}, tags=ATTACK_TAGS)
            await b.ainvalidate_tags(*ATTACK_TAGS)
            for p in ATTACK_PREFIXES:
                await b.ainvalidate_prefix(p)
            await b.aclear()
            out.append(await b.awarm())
            await b.arelease()
            return out

        seen += asyncio.run(async_attacks())
        a.assert_untouched("async API")

        # decorators: B's function of the same name and arguments, and B's invalidates
        @b.cached(name="profile", tags=["users"])
        def b_profile(user_id: int) -> str:
            return f"B-PROFILE-{user_id}"

        assert b_profile(1) == "B-PROFILE-1"

        @b.invalidates(tags=["users", "{t}"], keys=["user:1", "{k}"])
        def b_write(t: str, k: str) -> None:
            pass

        for t, k in zip(ATTACK_TAGS, keys):
            b_write(t, k)

        # warmers: shared by the views, each runs against the view that warms
        @cache.warmer("users")
        def warm_users(view: TieredCache) -> dict:
            return {"user:1": f"warmed by {view.name}"}

        seen.append(b.warm())
        assert b.get("user:1") == f"warmed by {b.name}"

        # module-level functions on the default cache, installed as B
        with installed_default(b):
            @tieredcache.cached(name="profile")
            def m_profile(user_id: int) -> str:
                return "B-MODULE"

            assert m_profile(1) == "B-MODULE"

            @tieredcache.invalidates(tags=A_TAGS, keys=list(A_VALUES))
            def m_write() -> None:
                pass

            m_write()
            seen.append(tieredcache.warm())
        a.assert_untouched("decorators and module-level functions")

        _no_leak(json.dumps(seen, default=repr), a)
        _no_leak(json.dumps([b.stats(), b.health(), b.recommendations(), repr(b)], default=repr), a, keys=True)
        for row in b.report():
            if row["namespace"] == a.view.name:
                assert set(row) >= {"function", "calls"} and "A-PROFILE" not in json.dumps(row, default=repr)
    finally:
        a.close()
        cache.close()


def _fastapi_app(view: TieredCache, token: str):
    from tieredcache.contrib.fastapi import cache_admin_router

    app = FastAPI()
    app.include_router(cache_admin_router(view, auth=token))
    return app


def _flask_apps(view: TieredCache, token: str):
    from flask import Flask

    from tieredcache.contrib.flask import TieredCacheFlask, cache_admin_blueprint

    plain = Flask("tenant-admin")
    plain.register_blueprint(cache_admin_blueprint(view, auth=token))
    ext_app = Flask("tenant-ext")
    ext_app.config["CACHE_ADMIN_TOKEN"] = token
    ext = TieredCacheFlask(ext_app, cache=view)
    ext_app.register_blueprint(ext.admin_blueprint())
    return [plain, ext_app]


def _admin_requests(a: TenantA) -> list[tuple[str, str, object]]:
    """Every admin action, with bodies that name A's keys, tags, prefixes and namespace."""
    out: list[tuple[str, str, object]] = [
        ("GET", "/cache/stats", None), ("GET", "/cache/health", None), ("GET", "/cache/metrics", None),
        ("GET", "/cache/report", None), ("GET", f"/cache/report?namespace={a.view.name}", None),
        ("GET", "/cache/report?function=profile", None), ("GET", "/cache/recommendations", None),
        ("GET", "/cache/dashboard", None), ("POST", "/cache/clear", {}), ("POST", "/cache/warm", {}),
    ]
    out += [("POST", "/cache/clear", {"tags": [t]}) for t in ATTACK_TAGS]
    out += [("POST", "/cache/clear", {"prefix": p}) for p in ATTACK_PREFIXES if p]
    out += [("POST", "/cache/clear", {"namespace": n}) for n in ("org-a", "../org-a", "*", "/", "..", a.view.name)]
    out += [("POST", "/cache/invalidate", {"keys": _attack_keys(a), "tags": ATTACK_TAGS})]
    return out


def test_tenant_b_cannot_touch_tenant_a_through_admin_endpoints(redis_url):
    """Tenant B's admin router (FastAPI), admin blueprint and extension blueprint (Flask),
    bound to B's view and called with B's valid token: every action, with bodies naming
    A's keys, tags, prefixes and namespace, leaves A's entries as they were, and no
    response shows A's values, keys or token. A's token does not open B's endpoints."""
    cache = TieredCache(redis_url, namespace="iso")
    a = TenantA(cache, redis_url)
    b = cache.namespace("org-b")
    try:
        auth_b = {"Authorization": f"Bearer {TOKEN_B}"}
        with TestClient(_fastapi_app(b, TOKEN_B)) as client:
            for method, path, body in _admin_requests(a):
                r = client.request(method, path, json=body, headers=auth_b)
                assert r.status_code in (200, 503), (path, body, r.text)
                _no_leak(r.text, a, keys=method == "GET")
                a.assert_untouched(f"FastAPI {method} {path} {body}")
                assert client.post("/cache/clear", json={}, headers={"Authorization": f"Bearer {TOKEN_A}"}
                                   ).status_code == 403
        for app in _flask_apps(b, TOKEN_B):
            client = app.test_client()
            for method, path, body in _admin_requests(a):
                r = client.open(path, method=method, json=body, headers=auth_b)
                assert r.status_code in (200, 503), (path, body, r.text)
                _no_leak(r.get_data(as_text=True), a, keys=method == "GET")
                a.assert_untouched(f"Flask {method} {path} {body}")
            assert client.post("/cache/clear", json={}, headers={"Authorization": f"Bearer {TOKEN_A}"}
                               ).status_code == 403
        a.assert_untouched("admin endpoints")
    finally:
        a.close()
        cache.close()


def test_a_tenants_admin_reports_only_its_own_functions(redis_url):
    """Regression: the admin ``report``, ``stats`` and ``metrics`` of tenant B's view listed
    tenant A's cached functions with their call counts (``?namespace=`` even picked A's
    out). A view's admin now sees its own namespace and sub-namespaces; the root's sees
    all."""
    cache = TieredCache(redis_url, namespace="iso")
    a = TenantA(cache, redis_url)
    b = cache.namespace("org-b")
    try:
        @b.namespace("sub").cached(name="b_sub_fn")
        def b_sub_fn() -> int:
            return 1

        b_sub_fn()
        auth = {"Authorization": f"Bearer {TOKEN_B}"}
        with TestClient(_fastapi_app(b, TOKEN_B)) as client:
            for path in ("/cache/report", f"/cache/report?namespace={a.view.name}", "/cache/report?function=profile"):
                rows = client.get(path, headers=auth).json()
                assert all(r["namespace"].startswith(b.name + "/") for r in rows), rows
            assert [r["function"] for r in client.get("/cache/report", headers=auth).json()] == ["b_sub_fn"]
            functions = client.get("/cache/stats", headers=auth).json()["functions"]
            assert [r["function"] for r in functions] == ["b_sub_fn"]
            metrics = client.get("/cache/metrics", headers=auth).text
            assert 'function="b_sub_fn"' in metrics and 'function="profile"' not in metrics
        for app in _flask_apps(b, TOKEN_B):
            rows = app.test_client().get(f"/cache/report?namespace={a.view.name}", headers=auth).get_json()
            assert rows == []
        with TestClient(_fastapi_app(cache, TOKEN_A)) as client:  # the root's admin sees every tenant
            rows = client.get("/cache/report", headers={"Authorization": f"Bearer {TOKEN_A}"}).json()
            assert {r["function"] for r in rows} == {"profile", "b_sub_fn"}
            metrics = client.get("/cache/metrics", headers={"Authorization": f"Bearer {TOKEN_A}"}).text
            assert 'function="b_sub_fn"' in metrics and 'function="profile"' in metrics
    finally:
        a.close()
        cache.close()


def test_a_tenants_recommendations_name_only_its_own_functions():
    """Regression: ``recommendations()`` of tenant B's view (and its admin endpoint) gave
    advice on tenant A's cached functions, naming them with their call counts."""
    cache = TieredCache(namespace="advice")
    a, b = cache.namespace("org-a"), cache.namespace("org-b")
    try:
        @a.cached(name="a_quarterly_revenue")
        def a_quarterly_revenue(request_id: int) -> int:  # a new key per call: hit rate 0
            return request_id

        for i in range(30):
            a_quarterly_revenue(i)
        named = {r["function"] for r in a.recommendations()}
        assert "a_quarterly_revenue" in named
        assert "a_quarterly_revenue" in {r["function"] for r in cache.recommendations()}  # the root's: all
        assert "a_quarterly_revenue" not in json.dumps(b.recommendations())
        with TestClient(_fastapi_app(b, TOKEN_B)) as client:
            answer = client.get("/cache/recommendations", headers={"Authorization": f"Bearer {TOKEN_B}"})
        assert answer.status_code == 200 and "a_quarterly_revenue" not in answer.text
    finally:
        cache.close()


def test_a_warmer_registered_on_a_tenants_view_never_runs_for_another_tenant():
    """Regression: warmers were shared by every view of a cache, so tenant B's warm (its
    admin's ``POST /cache/warm`` included) ran tenant A's warmer against B's namespace,
    putting A's data under B's keys. A warmer registered on a view is now that view's;
    one registered on the root is shared, each view running it against itself."""
    cache = TieredCache(namespace="warmiso")
    a, b = cache.namespace("org-a"), cache.namespace("org-b")
    ran: list[str] = []
    try:
        @a.warmer("profiles")
        def warm_a_profile() -> dict:  # takes no view: it knows whose data it loads
            ran.append("a")
            return {"profile": "A-PRIVATE-PROFILE"}

        @cache.warmer("catalog")
        def warm_catalog(view: TieredCache) -> dict:  # shared: each view warms its own
            return {"catalog": f"catalog of {view.name}"}

        assert b.warmer_groups() == ["catalog"] and a.warmer_groups() == ["catalog", "profiles"]
        with pytest.raises(ValueError, match="profiles"):
            b.warm("profiles")
        assert b.warm() == {"catalog": 1}
        auth = {"Authorization": f"Bearer {TOKEN_B}"}
        with TestClient(_fastapi_app(b, TOKEN_B)) as client:
            assert client.post("/cache/warm", json={}, headers=auth).status_code == 200
            assert client.post("/cache/warm", json={"groups": ["profiles"]}, headers=auth).status_code == 400
        assert ran == [] and b.get("profile") is None and b.get("catalog") == f"catalog of {b.name}"

        assert a.warm() == {"catalog": 1, "profiles": 1}
        assert ran == ["a"] and a.get("profile") == "A-PRIVATE-PROFILE"
        assert cache.warm("profiles") == {"profiles": 1}  # the root runs A's against A's view
        assert ran == ["a", "a"] and cache.get("profile") is None and b.get("profile") is None
    finally:
        cache.close()


def test_two_tenant_apps_never_serve_each_others_pages(redis_url):
    """Two FastAPI apps and two Flask apps, one per tenant view, with the same route: a
    page cached by A's app is never served by B's (same path, host and query), and B's
    admin clear leaves A's pages cached."""
    from flask import Flask

    from tieredcache.contrib.fastapi import cache_admin_router, cache_response
    from tieredcache.contrib.flask import TieredCacheFlask

    cache = TieredCache(redis_url, namespace="apps")

    def fastapi_app(view: TieredCache, owner: str, token: str) -> FastAPI:
        app = FastAPI()

        @app.get("/page")
        @cache_response(view, tags=["pages"])
        async def page(q: str = ""):
            return {"owner": owner, "q": q}

        app.include_router(cache_admin_router(view, auth=token))
        return app

    def flask_app(view: TieredCache, owner: str) -> Flask:
        app = Flask(f"tenant-{owner}")
        ext = TieredCacheFlask(app, cache=view)

        @app.get("/page")
        @ext.cached_view(tags=["pages"])
        def page():
            return {"owner": owner}

        return app

    try:
        a_view, b_view = cache.namespace("org-a"), cache.namespace("org-b")
        with TestClient(fastapi_app(a_view, "A", TOKEN_A)) as a, TestClient(fastapi_app(b_view, "B", TOKEN_B)) as b:
            assert a.get("/page?q=1").json()["owner"] == "A"
            assert a.get("/page?q=1").headers["x-cache"] == "HIT"
            assert b.get("/page?q=1").json()["owner"] == "B"
            b.post("/cache/clear", json={}, headers={"Authorization": f"Bearer {TOKEN_B}"})
            b.post("/cache/clear", json={"tags": ["pages"]}, headers={"Authorization": f"Bearer {TOKEN_B}"})
            again = a.get("/page?q=1")
            assert again.json()["owner"] == "A" and again.headers["x-cache"] == "HIT"
        fa, fb = flask_app(a_view, "A").test_client(), flask_app(b_view, "B").test_client()
        assert fa.get("/page").get_json()["owner"] == "A"
        assert fb.get("/page").get_json()["owner"] == "B"
        assert fa.get("/page").headers["X-Cache"] == "HIT"
    finally:
        cache.close()


def test_same_tag_names_in_two_tenants_are_two_tags(redis_url):
    """A tag name used by both tenants: invalidating it in B drops B's entries only, in
    this process and in another one (through the invalidation channel)."""
    cache = TieredCache(redis_url, namespace="tags")
    other = TieredCache(redis_url, namespace="tags")  # another process
    try:
        for c in (cache, other):
            for tenant in ("a", "b"):
                assert c.namespace(tenant).get_or_set("k", lambda: tenant, tags=["shared"]) == tenant
        assert cache.namespace("b").invalidate_tags("shared") == 1
        assert wait_until(lambda: not _l1_holds(other.namespace("b"), "k"))
        for c in (cache, other):
            assert _l1_holds(c.namespace("a"), "k")
            assert c.namespace("a").get("k") == "a"
    finally:
        other.close()
        cache.close()


# =============================================================================================
# 3. Admin authentication
# =============================================================================================

ADMIN_TOKEN = "Adm1n-t0ken-SECRET-4f9c2e"


def _basic(user_pass: str) -> str:
    return "Basic " + base64.b64encode(user_pass.encode("utf-8")).decode()


# (Authorization header or None, expected status): 401 means "no usable credentials",
# 403 "a bearer token, but the wrong one".
REFUSED = [
    (None, 401), ("", 401), ("Bearer", 401), ("Bearer ", 401), ("Bearer    ", 401),
    ("Bearer wrong", 403), (f"Bearer {ADMIN_TOKEN[:-1]}", 403), (f"Bearer {ADMIN_TOKEN}x", 403),
    (f"Bearer {ADMIN_TOKEN} {ADMIN_TOKEN}", 403), (f"Bearer {ADMIN_TOKEN.lower()}", 403),
    (f"Bearer x{ADMIN_TOKEN}", 403), ("Bearer é-not-ascii", 403), ("Bearer \x7f\x01", 403),
    (ADMIN_TOKEN, 401), (f"Token {ADMIN_TOKEN}", 401), (f"Digest {ADMIN_TOKEN}", 401),
    (f"Bearer{ADMIN_TOKEN}", 401), (f"{ADMIN_TOKEN} Bearer", 401),
    (_basic("admin:wrong"), 401), (_basic(ADMIN_TOKEN), 401), (_basic(f"{ADMIN_TOKEN}:"), 401),
    (_basic(f":{ADMIN_TOKEN[:-1]}"), 401), ("Basic !!!not-base64!!!", 401), ("Basic ", 401),
    ("Basic " + base64.b64encode(b"\xff\xfe:\xff").decode(), 401), ("Basic Og==", 401),
]
ACCEPTED = [f"Bearer {ADMIN_TOKEN}", f"bearer {ADMIN_TOKEN}", f"BEARER  {ADMIN_TOKEN} ",
            _basic(f"anyone:{ADMIN_TOKEN}"), _basic(f":{ADMIN_TOKEN}")]


class Guarded:
    """A cache with entries, a warmer and counters, to check a refused request changed
    nothing."""

    def __init__(self, redis_url: str | None) -> None:
        self.cache = TieredCache(redis_url, namespace="guarded")
        self.warmed = []

        @self.cache.warmer("w")
        def w() -> dict:
            self.warmed.append(1)
            return {"w": 1}

        for i in range(5):
            self.cache.set(f"k{i}", f"GUARDED-VALUE-{i}", tags=["t"])
        self.before = self.state()

    def state(self) -> tuple:
        s = self.cache.stats()
        return ({k: _l1_holds(self.cache, k) for k in ("k0", "k1", "k2", "k3", "k4")},
                s["invalidations_sent"], s["warmed"], s["l1"]["entries"], s["l1"]["invalidations"], len(self.warmed))

    def assert_unchanged(self, what: str) -> None:
        assert self.state() == self.before, what


def _check_refusal(status: int, expected: int, headers, text: str, header, path: str,
                   token_auth: bool = True) -> None:
    """The refusal is ``expected``; a 401 names the scheme to use (the dashboard of a
    token-guarded router asks for Basic, so that a browser shows its login prompt); the
    body shows no token, value, key, counter or configuration."""
    assert status == expected, (header, path, status, text)
    if expected == 401:
        challenge = headers.get("www-authenticate", "")
        wanted = "Basic" if token_auth and path.endswith("/dashboard") else "Bearer"
        assert challenge.startswith(wanted), (header, path, challenge)
    for secret in (ADMIN_TOKEN, "GUARDED-VALUE", "k0", "invalidations", "redis://", "namespace"):
        assert secret not in text, (header, path, text)


ADMIN_PATHS = [("GET", "/cache/stats"), ("GET", "/cache/health"), ("GET", "/cache/metrics"),
               ("GET", "/cache/report"), ("GET", "/cache/recommendations"), ("GET", "/cache/dashboard"),
               ("POST", "/cache/clear"), ("POST", "/cache/invalidate"), ("POST", "/cache/warm")]
BODIES = {"/cache/clear": {}, "/cache/invalidate": {"tags": ["t"], "keys": ["k0"]}, "/cache/warm": {}}


def test_fastapi_admin_refuses_missing_wrong_and_malformed_credentials(redis_url):
    g = Guarded(redis_url)
    try:
        with TestClient(_fastapi_app(g.cache, ADMIN_TOKEN)) as client:
            for header, expected in REFUSED:
                for method, path in ADMIN_PATHS:
                    headers = {} if header is None else {"Authorization": header}
                    try:
                        r = client.request(method, path, json=BODIES.get(path), headers=headers)
                    except UnicodeEncodeError:  # httpx refuses a non-latin-1 header: nothing sent
                        continue
                    _check_refusal(r.status_code, expected, r.headers, r.text, header, path)
                    g.assert_unchanged(f"{header!r} {path}")
            for header in ACCEPTED:  # and the right token works, in each form the docs allow
                assert client.get("/cache/stats", headers={"Authorization": header}).status_code == 200, header
            g.assert_unchanged("reads")
            assert client.post("/cache/clear", json={}, headers={"Authorization": ACCEPTED[0]}).json()["cleared"] == 5
    finally:
        g.cache.close()


def test_flask_admin_refuses_missing_wrong_and_malformed_credentials(redis_url):
    from flask import Flask

    from tieredcache.contrib.flask import cache_admin_blueprint

    g = Guarded(redis_url)
    app = Flask("guarded")
    app.register_blueprint(cache_admin_blueprint(g.cache, auth=ADMIN_TOKEN))
    try:
        client = app.test_client()
        for header, expected in REFUSED:
            for method, path in ADMIN_PATHS:
                headers = {} if header is None else {"Authorization": header}
                r = client.open(path, method=method, json=BODIES.get(path), headers=headers)
                _check_refusal(r.status_code, expected, r.headers, r.get_data(as_text=True), header, path)
                g.assert_unchanged(f"{header!r} {path}")
        for header in ACCEPTED:
            assert client.get("/cache/stats", headers={"Authorization": header}).status_code == 200, header
        g.assert_unchanged("reads")
    finally:
        g.cache.close()


def test_admin_auth_callables_answer_401_and_403_and_change_nothing(redis_url):
    """A dependency (FastAPI) or ``auth(request)`` (Flask) that refuses: nothing runs."""
    from fastapi import HTTPException
    from flask import Flask

    from tieredcache.contrib.fastapi import cache_admin_router
    from tieredcache.contrib.flask import cache_admin_blueprint

    g = Guarded(redis_url)
    try:
        def deny(request: Request) -> bool:
            if "x-user" not in request.headers:
                raise HTTPException(401, "who are you", headers={"WWW-Authenticate": "Bearer"})
            return False

        app = FastAPI()
        app.include_router(cache_admin_router(g.cache, auth=deny))
        with TestClient(app) as client:
            for method, path in ADMIN_PATHS:
                r = client.request(method, path, json=BODIES.get(path))
                _check_refusal(r.status_code, 401, r.headers, r.text, None, path, token_auth=False)
                r = client.request(method, path, json=BODIES.get(path), headers={"x-user": "reader"})
                _check_refusal(r.status_code, 403, r.headers, r.text, None, path, token_auth=False)
        fapp = Flask("callable")
        fapp.register_blueprint(cache_admin_blueprint(
            g.cache, auth=lambda req: None if "X-User" not in req.headers else False))
        client = fapp.test_client()
        for method, path in ADMIN_PATHS:
            r = client.open(path, method=method, json=BODIES.get(path))
            _check_refusal(r.status_code, 401, r.headers, r.get_data(as_text=True), None, path, token_auth=False)
            r = client.open(path, method=method, json=BODIES.get(path), headers={"X-User": "reader"})
            _check_refusal(r.status_code, 403, r.headers, r.get_data(as_text=True), None, path, token_auth=False)
        g.assert_unchanged("callable auth")
    finally:
        g.cache.close()


@settings(max_examples=_EXAMPLES, **_SETTINGS)
@given(header=st.text(max_size=40) | st.sampled_from(["Bearer ", "Basic ", "bearer\t"]).flatmap(
    lambda s: st.text(max_size=40).map(lambda t: s + t)))
def test_only_the_exact_token_is_accepted(header):
    """``check_bearer`` on arbitrary headers: accepted exactly when the header's secret is
    the token; never raises (non-ASCII, control characters, bad base64)."""
    from tieredcache.contrib._admin import _secret, bearer_status, check_bearer

    token = "t0k"
    ok = check_bearer(header, token)
    scheme, secret = _secret(header)
    assert ok == (scheme in ("bearer", "basic") and secret == token)
    assert bearer_status(header, token) in ((200,) if ok else (401, 403))
    assert check_bearer(header, "") is False


# =============================================================================================
# 4. Planted pickles never run
# =============================================================================================


class Exploit:
    """Unpickling this creates a directory: the sign that code ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


SIGNING_KEY = b"signing-key-SECRET-0123456789abcdef"
OTHER_KEY = b"another-key-entirely-0123456789abc"


def _payloads(marker: str) -> dict[str, bytes]:
    """Serializer payloads an attacker with write access to Redis could plant."""
    import hashlib
    import hmac

    body = pickle.dumps(Exploit(marker), protocol=5)
    head = b"TCPK\x01"
    forged = hmac.digest(OTHER_KEY, head + body, "sha256")
    return {
        "raw pickle": body,
        "raw pickle protocol 0": pickle.dumps(Exploit(marker), protocol=0),
        "no MAC": head + body,
        "MAC of another key": head + forged + body,
        "truncated MAC": head + forged[:16] + body,
        "MAC of the body only": head + hmac.digest(SIGNING_KEY, body, "sha256") + body,
        "SHA-256 instead of a MAC": head + hashlib.sha256(head + body).digest() + body,
        "other version": b"TCPK\x02" + hmac.digest(SIGNING_KEY, b"TCPK\x02" + body, "sha256") + body,
        "zlib raw pickle": b"\x01" + zlib.compress(body),
        "zlib forged": b"\x01" + zlib.compress(head + forged + body),
        "stored-flag raw pickle": b"\x00" + body,
        "json-looking prefix": b' {"__t":"pickle"}' + body,
    }


def _framed(body: bytes) -> bytes:
    """A cache payload around ``body``: the header of _tiered.py (version 2, no expiry)."""
    return struct.pack(">BQIQH", 2, 0, 0, 42, 0) + body


SERIALIZER_CONFIGS = {
    "json": dict(),
    "json+zlib": dict(compress_threshold=0),
    "pickle": dict(serializer="pickle", secret_key=SIGNING_KEY),
    "pickle+zlib": dict(serializer="pickle", secret_key=SIGNING_KEY, compress_threshold=0),
}


@pytest.mark.parametrize("config", list(SERIALIZER_CONFIGS))
def test_a_planted_pickle_is_never_unpickled(redis_url, tmp_path, caplog, config):
    """Every planted payload, read through every read path, is a miss: the loader runs
    (or the default is returned), the exploit's side effect never happens, and a WARNING
    names the key's hash and the error type, never the payload."""
    caplog.set_level(logging.DEBUG)
    marker = tmp_path / "pwned"
    cache = TieredCache(redis_url, namespace=f"pickle-{config}", **SERIALIZER_CONFIGS[config])
    raw = RawRedis(redis_url)
    try:
        @cache.cached(name="fn")
        def fn(x: int) -> str:
            return f"loaded {x}"

        misses = cache.stats()["l2"]["misses"]
        for name, body in _payloads(str(marker)).items():
            keys = ["get", "get_or_set", "many", "aget", "aget_or_set", fn.cache_key(1)]
            for k in keys:
                raw.execute("SET", cache.redis_key(k), _framed(body))
            cache._core.l1.clear()
            assert cache.get("get", "default") == "default", name
            assert cache.get_or_set("get_or_set", lambda: "loaded") == "loaded", name
            assert cache.get_many(["many"]) == {}, name

            async def reads():
                return await cache.aget("aget", "default"), await cache.aget_or_set("aget_or_set", lambda: "loaded")

            assert asyncio.run(reads()) == ("default", "loaded"), name
            assert fn(1) == "loaded 1", name
            assert not marker.exists(), f"{config}: the {name} payload was unpickled"
        assert cache.stats()["l2"]["misses"] >= misses + 6 * len(_payloads(str(marker)))  # counted as misses
        warnings_logged = [r for r in caplog.records if "undecodable payload" in r.getMessage()]
        assert warnings_logged and warnings_logged[0].levelno == logging.WARNING
        for record in caplog.records:
            text = record.getMessage()
            assert "Exploit" not in text and str(marker) not in text and "mkdir" not in text, text
    finally:
        raw.close()
        cache.close()


@pytest.mark.parametrize("config", ["json", "pickle"])
def test_a_planted_pickle_raises_the_documented_error_with_on_error_raise(redis_url, tmp_path, config):
    marker = tmp_path / "pwned"
    cache = TieredCache(redis_url, namespace="pickle-raise", on_error="raise", **SERIALIZER_CONFIGS[config])
    raw = RawRedis(redis_url)
    try:
        for name, body in _payloads(str(marker)).items():
            raw.execute("SET", cache.redis_key("k"), _framed(body))
            cache._core.l1.clear()
            with pytest.raises(SerializationError):
                cache.get("k")
            assert not marker.exists(), name
    finally:
        raw.close()
        cache.close()


def test_pickle_without_a_signing_key_is_refused():
    with pytest.raises(tieredcache.ConfigurationError):
        TieredCache(serializer="pickle")
    with pytest.raises(tieredcache.ConfigurationError):
        TieredCache(serializer="pickle", secret_key=b"short")


# =============================================================================================
# 5. Glob metacharacters
# =============================================================================================

GLOB = "*?[]\\^-!"
glob_keys = st.text(alphabet=st.sampled_from(GLOB + "ab:"), min_size=1, max_size=4)


@settings(max_examples=_REDIS_EXAMPLES, **_SETTINGS)
@given(keys=st.sets(glob_keys, min_size=1, max_size=10), prefix=st.text(alphabet=st.sampled_from(GLOB + "ab"),
                                                                        min_size=1, max_size=3))
def test_invalidate_prefix_takes_the_prefix_literally(redis_url, keys, prefix):
    """``invalidate_prefix(p)`` removes exactly the keys that start with ``p`` as text,
    from L1 and from Redis, whatever glob characters ``p`` and the keys contain."""
    cache = TieredCache(redis_url, namespace="glob" + GLOB)
    raw = RawRedis(redis_url)
    try:
        cache.clear()
        for k in keys:
            cache.set(k, k)
        expected = {k for k in keys if not k.startswith(prefix)}
        assert cache.invalidate_prefix(prefix) == len(keys) - len(expected)
        left = {k for k in keys if raw.exists(cache.redis_key(k))}
        assert left == expected
        assert {k for k in keys if _l1_holds(cache, k)} == expected
    finally:
        raw.close()
        cache.close()


@pytest.mark.parametrize("meta", ["*", "?", "[xy]", "[^x]", "[a-z]", "\\", "\\*", "]", "[", "-", "^"])
def test_a_namespace_with_glob_characters_clears_only_itself(redis_url, meta):
    """Regression: ``clear()`` and ``invalidate_prefix()`` matched the namespace part of the
    SCAN pattern as a glob, so namespace ``"x*"`` cleared ``"xy"`` in Redis."""
    cache = TieredCache(redis_url, namespace="g")
    peer = TieredCache(redis_url, namespace="g")  # reads Redis, not this process's L1
    names = ["x" + meta, "xy", "x", "xa", "x" + meta + "y", "x\\" + meta, "xx"]
    try:
        for n in names:
            cache.namespace(n).set("k", n)
        target = cache.namespace("x" + meta)
        assert target.invalidate_prefix("") == 1
        assert target.clear() == 0
        assert asyncio.run(target.aclear()) == 0
        assert asyncio.run(target.ainvalidate_prefix("k")) == 0
        for n in names[1:]:
            assert peer.namespace(n).get("k") == n, f"namespace {n!r} lost its entry"
            assert cache.namespace(n).get("k") == n
        assert peer.namespace("x" + meta).get("k") is None
    finally:
        peer.close()
        cache.close()


def test_tags_with_glob_characters_are_literal(redis_url):
    cache = TieredCache(redis_url, namespace="globtags")
    try:
        for t in ("t*", "tx", "t?", "t[x]", "t\\"):
            cache.set(t, t, tags=[t])
        assert cache.invalidate_tags("t*") == 1
        assert cache.invalidate_tags("t[x]") == 1
        assert [cache.get(t) for t in ("t*", "tx", "t?", "t[x]", "t\\")] == [None, "tx", "t?", None, "t\\"]
    finally:
        cache.close()


# =============================================================================================
# 6. No secret in logs or outputs
# =============================================================================================

PASSWORD = "pw-SECRET-7d1f"
VALUE_SECRET = "value-SECRET-93ab"
KEY_SECRET = "key-SECRET-51c0"
LOADER_SECRET = "loader-SECRET-e2a8"
SECRETS = (PASSWORD, VALUE_SECRET, ADMIN_TOKEN, SIGNING_KEY.decode(), "SECRET-0123456789")


def _everything_logged(caplog) -> str:
    parts = []
    for r in caplog.records:
        parts.append(r.getMessage())
        if r.exc_info:
            parts.append(logging.Formatter().formatException(r.exc_info))
        if r.exc_text:
            parts.append(r.exc_text)
    return "\n".join(parts)


@pytest.mark.parametrize("log_keys", [False, True])
def test_logs_and_outputs_never_show_a_secret(tmp_path, caplog, log_keys):
    """Drive the error paths (a password Redis refuses, Redis down, undecodable payloads,
    failing loaders, refused admin requests) with every logger at DEBUG: no log line,
    traceback, repr, stats, health, report or admin response shows the Redis password,
    the admin token, the signing key or a cached value. With ``log_keys=False`` keys do
    not show either."""
    from tieredcache.contrib.fastapi import cache_admin_router

    caplog.set_level(logging.DEBUG)
    server = RedisServer(password=PASSWORD).start()
    outputs: list[str] = []
    try:
        good = TieredCache(server.url, namespace="logs", log_keys=log_keys, serializer="pickle",
                           secret_key=SIGNING_KEY)
        wrong_url = server.url.replace(PASSWORD, PASSWORD + "-wrong")
        refused = TieredCache(wrong_url, namespace="logs", log_keys=log_keys, connect_timeout=0.2)
        down = TieredCache(f"redis://:{PASSWORD}@127.0.0.1:1/0", namespace="logs", log_keys=log_keys,
                           connect_timeout=0.2, breaker_threshold=1)
        raw = RawRedis(server.url)
        try:
            for c in (good, refused, down):
                c.set(KEY_SECRET, {"v": VALUE_SECRET})
                c.get(KEY_SECRET)
                with pytest.raises(RuntimeError):
                    c.get_or_set("boom", lambda: (_ for _ in ()).throw(RuntimeError(LOADER_SECRET)))
                c.delete(KEY_SECRET)
                c.invalidate_prefix(KEY_SECRET)
                outputs += [repr(c), json.dumps(c.stats(), default=repr), json.dumps(c.health(), default=repr),
                            json.dumps(c.report(), default=repr), json.dumps(c.recommendations(), default=repr)]
            for body in (b"\x00" + VALUE_SECRET.encode(), b"TCPK\x01" + VALUE_SECRET.encode() * 3,
                         pickle.dumps({"v": VALUE_SECRET})):
                raw.execute("SET", good.redis_key(KEY_SECRET), _framed(body))
                good._core.l1.clear()
                good.get(KEY_SECRET)
            with pytest.raises(tieredcache.ConfigurationError) as bad_url:
                TieredCache(f"redis://:{PASSWORD}@127.0.0.1:notaport/0")
            outputs.append(str(bad_url.value))
            app = FastAPI()
            app.include_router(cache_admin_router(good, auth=ADMIN_TOKEN))
            with TestClient(app) as client:
                for header in (None, "Bearer wrong-" + ADMIN_TOKEN[:4], _basic("u:" + ADMIN_TOKEN + "x")):
                    r = client.get("/cache/stats", headers={} if header is None else {"Authorization": header})
                    outputs.append(r.text + json.dumps(dict(r.headers)))
                admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
                for path in ("stats", "health", "metrics", "report", "recommendations"):
                    outputs.append(client.get(f"/cache/{path}", headers=admin).text)
            server.stop()  # Redis goes away under a live cache: the listener's error path
            good.get("after-stop")
            wait_until(lambda: not good._core.listener_connected)
            outputs += [repr(good), json.dumps(good.health(), default=repr)]
        finally:
            raw.close()
            for c in (good, refused, down):
                c.close()
    finally:
        server.stop()
    logged = _everything_logged(caplog)
    assert "undecodable payload" in logged and logged.count("\n") > 3  # the error paths did log
    for text in (logged, *outputs):
        for secret in SECRETS:
            assert secret not in text, f"{secret!r} in {text[:500]!r}"
        if not log_keys:
            assert KEY_SECRET not in text and LOADER_SECRET not in text, text[:500]


# =============================================================================================
# 7. Floods stay within bounds
# =============================================================================================


def _rss() -> int:
    gc.collect()
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _check_bounds(cache: TieredCache, max_entries: int, max_bytes: int, seen: dict | None = None) -> dict:
    l1 = cache.stats()["l1"]
    assert l1["entries"] <= max_entries and l1["bytes"] <= max_bytes, l1
    if seen is not None:
        seen["max_entries_seen"] = max(seen.get("max_entries_seen", 0), l1["entries"])
        seen["max_bytes_seen"] = max(seen.get("max_bytes_seen", 0), l1["bytes"])
    return l1


def _record(name: str, **figures: object) -> None:
    """hardening/security.sh reads these figures for its summary line."""
    path = os.environ.get("TIEREDCACHE_SECURITY_FIGURES")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"name": name, **figures}) + "\n")


def test_a_flood_of_unique_keys_tags_and_oversized_values_stays_within_bounds():
    """``FLOOD`` unique keys (each with a unique tag), with every 50th value larger than
    ``max_bytes``: L1 never holds more than ``max_entries`` entries or ``max_bytes``
    bytes, its tag index shrinks with it, oversized values are counted as rejected and
    replace nothing, and RSS grows by less than 64 MiB + 4 x max_bytes after the flood."""
    max_entries, max_bytes = 2_000, 2 * 1024 * 1024
    cache = TieredCache(max_entries=max_entries, max_bytes=max_bytes, monitoring=False)
    try:
        @cache.cached(name="flooded")
        def flooded(i: int) -> str:
            return "v" * (i % 300)

        seen: dict = {}
        before = _rss()
        big = "B" * (max_bytes + 1)
        for i in range(FLOOD):
            if i % 50 == 0:
                cache.set(f"big{i}", "old")
                cache.set(f"big{i}", big)
                assert cache.get(f"big{i}") is None  # not stored, and the old value is gone
            else:
                cache.set(f"key{i}", "x" * (i % 1000), tags=[f"tag{i}", "all"])
            flooded(i)
            if i % 5_000 == 0:
                l1 = _check_bounds(cache, max_entries, max_bytes, seen)
                assert l1["tags"] <= 2 * max_entries + 1, l1
        l1 = _check_bounds(cache, max_entries, max_bytes, seen)
        assert l1["rejected"] >= FLOOD // 50
        assert l1["evictions"] > 0
        grown = _rss() - before
        _record("l1", keys=FLOOD, rss_growth_mb=round(grown / 2**20, 1), **seen)
        assert grown < 64 * 1024 * 1024 + 4 * max_bytes, f"RSS grew by {grown / 1e6:.1f} MB"
    finally:
        cache.close()


def test_a_flood_through_redis_stays_within_bounds(redis_url):
    """The same through L2 and another process's invalidation messages: L1 bounds hold in
    both processes; a value above max_bytes (but within max_value_bytes) is stored in
    Redis and served from it, but never held in L1; the table of announced writes stays
    bounded."""
    max_entries, max_bytes = 500, 512 * 1024
    n = max(FLOOD // 10, 2_000)
    cache = TieredCache(redis_url, namespace="flood", max_entries=max_entries, max_bytes=max_bytes)
    writer = TieredCache(redis_url, namespace="flood", max_entries=max_entries, max_bytes=max_bytes)
    try:
        seen: dict = {}
        before = _rss()
        big = "B" * (max_bytes * 2)
        writer.set("big", big)
        assert cache.get("big") == big and not _l1_holds(cache, "big")
        for i in range(n):
            writer.set(f"k{i}", i)
            cache.get(f"k{i}")
            if i % 1_000 == 0:
                for c in (cache, writer):
                    _check_bounds(c, max_entries, max_bytes, seen)
        wait_until(lambda: cache.stats()["invalidations_received"] >= n)
        for c in (cache, writer):
            _check_bounds(c, max_entries, max_bytes, seen)
        grown = _rss() - before
        _record("redis", keys=n, rss_growth_mb=round(grown / 2**20, 1), **seen)
        assert grown < 64 * 1024 * 1024 + 8 * max_bytes, f"RSS grew by {grown / 1e6:.1f} MB"
        from tieredcache._tiered import _RECENT_FILLS

        assert len(cache._core.announced) <= _RECENT_FILLS and len(cache._core.recent) <= _RECENT_FILLS
    finally:
        writer.close()
        cache.close()


def test_a_value_over_max_value_bytes_is_not_stored_in_redis_and_replaces_nothing(redis_url, caplog):
    """Redis holds no payload over ``max_value_bytes``: a set of a bigger value deletes the
    key's old value everywhere instead (no process may go on serving it), the writer's
    own L1 may keep the new one (within its own bounds), and the rejection is counted and
    logged as a WARNING at most once a minute."""
    cap = 4096
    writer = TieredCache(redis_url, namespace="oversize", max_value_bytes=cap)
    reader = TieredCache(redis_url, namespace="oversize", max_value_bytes=cap)
    raw = RawRedis(redis_url)
    try:
        writer.set("report", "small")
        assert reader.get("report") == "small"  # now in the reader's L1 too
        big = "B" * (2 * cap)
        with caplog.at_level(logging.DEBUG, logger="tieredcache"):
            writer.set("report", big)
            writer.set_many({"other": big, "fine": "ok"})
        assert raw.execute("EXISTS", writer.redis_key("report"), writer.redis_key("other")) == 0
        assert reader.get("fine") == "ok"
        assert wait_until(lambda: not _l1_holds(reader, "report"))
        assert reader.get("report") is None  # not "small": the old value is gone
        assert writer.get("report") == big  # the writer's L1 holds what it was given
        stats = writer.stats()["l2"]
        assert stats["rejected"] == 2 and stats["sets"] == 2  # "small" and "fine"
        warnings_ = [r for r in caplog.records if "max_value_bytes" in r.getMessage()]
        assert [r.levelno for r in warnings_] == [logging.WARNING, logging.DEBUG]
        assert big not in caplog.text
    finally:
        raw.close()
        reader.close()
        writer.close()


def test_a_loaded_value_over_max_value_bytes_is_answered_but_not_stored_in_redis(redis_url):
    cap = 4096
    here = TieredCache(redis_url, namespace="oversize-load", max_value_bytes=cap)
    there = TieredCache(redis_url, namespace="oversize-load", max_value_bytes=cap)
    raw = RawRedis(redis_url)
    loads = []

    def build():
        loads.append(1)
        return "D" * (2 * cap)

    try:
        assert here.get_or_set("dashboard", build) == "D" * (2 * cap)
        assert raw.execute("EXISTS", here.redis_key("dashboard")) == 0
        assert there.get_or_set("dashboard", build) == "D" * (2 * cap)  # loaded again there
        assert len(loads) == 2 and here.get_or_set("dashboard", build) and len(loads) == 2  # L1
        assert here.stats()["l2"]["rejected"] == 1 and here.stats()["l2"]["sets"] == 0
    finally:
        raw.close()
        there.close()
        here.close()


@pytest.mark.parametrize("bad, error", [(0, "at least 1"), (-5, "at least 1"), ("16MB", "int or None"),
                                        (True, "int or None"), (1.5, "int or None")])
def test_a_bad_max_value_bytes_is_refused_naming_it(bad, error):
    with pytest.raises(ValueError, match=f"max_value_bytes must be.*{error}"):
        TieredCache(max_value_bytes=bad)


def test_a_flood_of_tenant_namespaces_keeps_memory_bounded_and_subscribes_nothing_new(redis_url):
    """Regression: every ``cache.namespace(name)`` was kept for the life of the cache and
    subscribed its own Redis channel (and the call waited for the subscription), so tenant
    names taken from requests grew memory, and Redis's channel table, without bound. A
    tenant's view now shares its top-level namespace's channel, and namespaces no view
    holds are forgotten beyond the most recent ``_NS_KEPT``."""
    from tieredcache._tiered import _NS_KEPT

    n = max(FLOOD // 4, _NS_KEPT + 2_000)
    cache = TieredCache(redis_url, namespace="tenants", max_entries=1_000)
    raw = RawRedis(redis_url)
    try:
        before = _rss()
        for i in range(n):
            view = cache.namespace(f"tenant-{i}")
            view.set("profile", i)
            assert view.get("profile") == i
        del view
        channels = raw.execute("PUBSUB", "CHANNELS", "tc:tenants*")
        assert channels == [b"tc:tenants:inv"], channels
        assert len(cache._core.namespaces) <= _NS_KEPT + 1  # + the root's
        assert len(cache._core.ns_kept) <= _NS_KEPT
        grown = _rss() - before
        _record("namespaces", namespaces=n, kept=len(cache._core.namespaces), rss_growth_mb=round(grown / 2**20, 1))
        assert grown < 64 * 1024 * 1024, f"RSS grew by {grown / 1e6:.1f} MB"
    finally:
        raw.close()
        cache.close()


def test_a_forgotten_tenant_namespace_never_serves_what_it_missed(redis_url, monkeypatch):
    """A namespace no view holds stops hearing its invalidations; when it is asked for
    again, what its L1 held is gone, so nothing written meanwhile is served stale."""
    import tieredcache._tiered as tiered

    monkeypatch.setattr(tiered, "_NS_KEPT", 2)
    here = TieredCache(redis_url, namespace="forget")
    there = TieredCache(redis_url, namespace="forget")
    try:
        view = here.namespace("acme")
        view.set("price", "old")
        assert view.get("price") == "old" and _l1_holds(view, "price")
        there.namespace("acme").set("price", "live")  # heard while the view lives
        assert wait_until(lambda: not _l1_holds(view, "price"))
        assert view.get("price") == "live" and _l1_holds(view, "price")
        del view
        for other in ("x", "y", "z"):  # acme is pushed out of the kept ones, and dies
            here.namespace(other)
        assert "forget/acme" not in here._core.namespaces
        there.namespace("acme").set("price", "new")  # no one here hears it
        assert wait_until(lambda: here._core.stats["invalidations_received"] >= 2)
        again = here.namespace("acme")
        assert not _l1_holds(again, "price")
        assert again.get("price") == "new"
    finally:
        there.close()
        here.close()


def test_invalidations_queued_while_redis_is_down_stay_bounded(fresh_redis_server):
    """With Redis down, a flood of deletes queues at most ``_OUTBOX_MAX`` invalidations
    (then the namespace is cleared once Redis is back, instead)."""
    from tieredcache._tiered import _OUTBOX_MAX

    cache = TieredCache(fresh_redis_server.url, namespace="outbox", connect_timeout=0.2, breaker_threshold=1)
    try:
        fresh_redis_server.stop()
        for i in range(_OUTBOX_MAX + 5_000):
            cache.delete(f"k{i}")
        assert len(cache._core.outbox) <= _OUTBOX_MAX + 1
    finally:
        cache.close()

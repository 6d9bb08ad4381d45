"""What the FastAPI integration does (docs/fastapi.md): the lifespan and the dependency,
``@cache.cached`` and the presets on route handlers, ``cache_response`` (ETag, 304,
Cache-Control, X-Cache, per-user keys), and the admin router with its authentication.

Every app is a real FastAPI app driven through ``TestClient`` (as a context manager, so
the lifespan runs). Most tests run twice through the ``cache`` fixture: against
``TieredCache()`` (L1 only) and against ``TieredCache(redis_url=...)`` (a flushed private
Redis). Nothing sleeps: TTLs are moved with ``travel``.
"""

import asyncio
import re
import warnings
from contextlib import asynccontextmanager
from typing import Annotated, Any

import pytest
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import PlainTextResponse, StreamingResponse
from pydantic import BaseModel

import tieredcache
from tieredcache import ConfigurationError, TieredCache
from tieredcache.contrib._admin import ACTIONS, AdminActions, bearer_status, check_bearer
from tieredcache.contrib.fastapi import cache_admin_router, cache_response, get_cache, tieredcache_lifespan
from tiered_helpers import Caches, RawRedis, travel

with warnings.catch_warnings():
    # starlette asks for the httpx2 package and warns when it finds httpx instead
    warnings.filterwarnings("ignore", message=".*httpx2", category=Warning)
    from fastapi.testclient import TestClient

NS = "fastapitest"
TOKEN = "s3cret-admin-token-of-some-length"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


# ---- fixtures -----------------------------------------------------------------------------


@pytest.fixture(params=["l1", "redis"])
def tier(request: pytest.FixtureRequest) -> str:
    """"l1": no Redis; "redis": a flushed private Redis."""
    return request.param


@pytest.fixture
def url(tier: str, request: pytest.FixtureRequest) -> str | None:
    """The Redis URL of the tier under test (None: L1 only)."""
    return request.getfixturevalue("redis_url") if tier == "redis" else None


@pytest.fixture
def caches(url: str | None):
    """``caches(**kwargs)``: TieredCaches on the tier under test, closed after the test."""
    made = Caches(redis_url=url, namespace=NS)
    yield made
    made.close()


@pytest.fixture
def cache(caches: Caches) -> TieredCache:
    return caches()


@pytest.fixture
def raw(url: str | None):
    """A raw client on the test's Redis, or None on the L1-only tier (for ``travel``)."""
    if url is None:
        yield None
        return
    with RawRedis(url) as client:
        yield client


@pytest.fixture
def default_cache(cache: TieredCache):
    """``cache`` installed as tieredcache's default cache (the presets use it)."""
    tieredcache.configure(cache)
    yield cache
    tieredcache.reset_default_cache()


@pytest.fixture(autouse=True)
def _no_default_cache_left():
    """A test that makes the default cache does not hand it to the next test."""
    yield
    tieredcache.reset_default_cache()


class Calls:
    """Counts the calls of each handler (how a test sees whether the cache answered)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def __call__(self, name: str) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1

    def __getitem__(self, name: str) -> int:
        return self.counts.get(name, 0)


@pytest.fixture
def calls() -> Calls:
    return Calls()


def app_with(cache: TieredCache, **kwargs: Any) -> FastAPI:
    return FastAPI(lifespan=tieredcache_lifespan(cache, **kwargs))


# ---- @cache.cached on route handlers --------------------------------------------------------


class Database:
    """A stand-in for a DB session: a new one per request, never part of a cache key."""

    profiles = {1: {"org_id": 1, "name": "Chez Nous"}, 2: {"org_id": 2, "name": "Le Zinc"}}

    def __init__(self, calls: Calls) -> None:
        self.calls = calls

    def profile(self, org_id: int) -> dict[str, Any]:
        self.calls("db")
        return dict(self.profiles[org_id])


def profile_app(cache: TieredCache, calls: Calls) -> FastAPI:
    """The seeds' get_profile(org_id, db) pattern, with a write that invalidates it."""
    app = app_with(cache)

    def get_db():
        yield Database(calls)

    @app.get("/orgs/{org_id}/profile")
    @cache.cached(ttl="user_data", tags=["org:{org_id}"])
    async def get_profile(org_id: int, db: Database = Depends(get_db)) -> dict[str, Any]:
        return db.profile(org_id)

    @app.get("/orgs/{org_id}/profile-lite")
    @cache.cached(ttl=300, tags=["org:{org_id}"])
    def get_profile_lite(org_id: int, db: Annotated[Database, Depends(get_db)]) -> dict[str, Any]:
        return {"name": db.profile(org_id)["name"]}

    @app.put("/orgs/{org_id}/profile")
    @cache.invalidates(tags=["org:{org_id}"])
    async def update_profile(org_id: int, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("name") == "":
            raise HTTPException(422, "name must not be empty")
        Database.profiles[org_id] = {**Database.profiles[org_id], **body}
        return Database.profiles[org_id]

    return app


@pytest.fixture
def profiles():
    """The Database's rows, restored after the test."""
    saved = {k: dict(v) for k, v in Database.profiles.items()}
    yield Database.profiles
    Database.profiles.clear()
    Database.profiles.update(saved)


def test_a_cached_async_handler_reads_the_database_once_per_org(cache, calls, profiles):
    with TestClient(profile_app(cache, calls)) as client:
        first = client.get("/orgs/1/profile").json()
        again = client.get("/orgs/1/profile").json()
        other = client.get("/orgs/2/profile").json()

    assert first == again == {"org_id": 1, "name": "Chez Nous"}
    assert other["name"] == "Le Zinc"
    assert calls["db"] == 2


def test_a_cached_sync_handler_reads_the_database_once_per_org(cache, calls, profiles):
    with TestClient(profile_app(cache, calls)) as client:
        bodies = [client.get("/orgs/1/profile-lite").json() for _ in range(3)]

    assert bodies == [{"name": "Chez Nous"}] * 3
    assert calls["db"] == 1


def test_the_depends_session_is_left_out_of_the_key(cache, calls, profiles):
    app = profile_app(cache, calls)
    route = next(r for r in app.routes if getattr(r, "name", "") == "get_profile")

    assert route.endpoint.cache_key(1, db=Database(calls)) == route.endpoint.cache_key(1, db=Database(calls))
    assert "Database" not in route.endpoint.cache_key(1, db=Database(calls))


def test_a_put_that_succeeds_invalidates_the_profile_and_the_next_get_reloads_it(cache, calls, profiles):
    with TestClient(profile_app(cache, calls)) as client:
        client.get("/orgs/1/profile")
        client.get("/orgs/2/profile")
        assert client.put("/orgs/1/profile", json={"name": "Chez Vous"}).status_code == 200
        after = client.get("/orgs/1/profile").json()
        client.get("/orgs/2/profile")

    assert after["name"] == "Chez Vous"
    assert calls["db"] == 3  # org 1 twice, org 2 once: only org 1's entries were dropped


def test_a_put_that_fails_invalidates_nothing(cache, calls, profiles):
    with TestClient(profile_app(cache, calls)) as client:
        client.get("/orgs/1/profile")
        assert client.put("/orgs/1/profile", json={"name": ""}).status_code == 422
        client.get("/orgs/1/profile")

    assert calls["db"] == 1


def test_a_request_parameter_is_left_out_of_the_key(cache, calls):
    app = app_with(cache)

    @app.get("/hello/{name}")
    @cache.cached(ttl=60)
    async def hello(name: str, request: Request) -> dict[str, str]:
        calls("hello")
        return {"hello": name}

    with TestClient(app) as client:
        for _ in range(3):
            assert client.get("/hello/ana", headers={"X-Request-Id": "differs"}).json() == {"hello": "ana"}

    assert calls["hello"] == 1


def test_presets_on_routes_cache_slots_until_an_appointment_is_booked(default_cache, calls):
    app = FastAPI(lifespan=tieredcache_lifespan())

    @app.get("/shops/{shop_id}/slots")
    @tieredcache.cache_appointment_slots()
    async def slots(shop_id: int, day: str) -> list[str]:
        calls("slots")
        return [f"{day}T09:00", f"{day}T09:30"]

    @app.get("/reference/services")
    @tieredcache.cache_static_reference_data()
    def services() -> list[str]:
        calls("services")
        return ["cut", "shave"]

    @app.post("/shops/{shop_id}/appointments")
    @tieredcache.invalidate_appointment_cache
    async def book(shop_id: int) -> dict[str, bool]:
        return {"booked": True}

    with TestClient(app) as client:
        assert client.get("/shops/1/slots", params={"day": "2024-05-01"}).json()[0] == "2024-05-01T09:00"
        client.get("/shops/1/slots", params={"day": "2024-05-01"})
        client.get("/reference/services")
        client.get("/reference/services")
        assert calls["slots"] == 1 and calls["services"] == 1
        client.post("/shops/1/appointments")
        client.get("/shops/1/slots", params={"day": "2024-05-01"})
        client.get("/reference/services")

    assert calls["slots"] == 2     # the booking dropped availability and slots
    assert calls["services"] == 1  # but not the static reference data
    assert {row["function"] for row in default_cache.report()} >= {f"{__name__}.{n}" for n in (
        "test_presets_on_routes_cache_slots_until_an_appointment_is_booked.<locals>.slots",
        "test_presets_on_routes_cache_slots_until_an_appointment_is_booked.<locals>.services")}


# ---- cache_response ---------------------------------------------------------------------


def items_app(cache: TieredCache, calls: Calls, **policy: Any) -> FastAPI:
    app = app_with(cache)
    policy.setdefault("ttl", 60)

    @app.get("/items/{item_id}")
    @cache_response(tags=["item:{item_id}"], **policy)
    async def read_item(item_id: int, q: str = "", tag: Annotated[list[str] | None, Query()] = None) -> dict[str, Any]:
        calls(f"item:{item_id}")
        return {"id": item_id, "q": q, "tags": tag or []}

    @app.put("/items/{item_id}")
    @cache.invalidates(tags=["item:{item_id}"])
    async def write_item(item_id: int) -> dict[str, Any]:
        return {"id": item_id}

    return app


def test_the_first_get_is_a_miss_then_the_stored_response_is_served(cache, calls):
    with TestClient(items_app(cache, calls)) as client:
        miss = client.get("/items/1?q=x")
        hit = client.get("/items/1?q=x")

    assert miss.headers["x-cache"] == "MISS" and hit.headers["x-cache"] == "HIT"
    assert hit.json() == miss.json() == {"id": 1, "q": "x", "tags": []}
    assert hit.content == miss.content
    assert hit.headers["content-type"] == miss.headers["content-type"] == "application/json"
    assert hit.headers["etag"] == miss.headers["etag"]
    assert re.fullmatch(r'"[0-9a-f]{32}"', hit.headers["etag"])
    assert hit.headers["cache-control"] == "public, max-age=60"
    assert calls["item:1"] == 1


def test_the_response_is_cached_in_the_app_cache_under_the_path_and_query(cache, calls):
    with TestClient(items_app(cache, calls)) as client:
        client.get("/items/1?q=x")

    status, headers, body, etag = cache.get("http:GET /items/1?q=x testserver")
    assert status == 200 and body == b'{"id":1,"q":"x","tags":[]}'
    assert (b"etag", etag) in headers


def test_if_none_match_with_the_etag_gets_304_and_no_body(cache, calls):
    with TestClient(items_app(cache, calls)) as client:
        etag = client.get("/items/1").headers["etag"]
        exact = client.get("/items/1", headers={"If-None-Match": etag})
        listed = client.get("/items/1", headers={"If-None-Match": f'"other", W/{etag}'})
        star = client.get("/items/1", headers={"If-None-Match": "*"})
        stale = client.get("/items/1", headers={"If-None-Match": '"not-it"'})

    for response in (exact, listed, star):
        assert response.status_code == 304
        assert response.content == b""
        assert response.headers["etag"] == etag
        assert response.headers["cache-control"] == "public, max-age=60"
        assert response.headers["x-cache"] == "HIT"
    assert stale.status_code == 200 and stale.json()["id"] == 1


def test_a_miss_answers_304_too_when_the_client_already_holds_the_body(cache, calls):
    with TestClient(items_app(cache, calls)) as client:
        etag = client.get("/items/1").headers["etag"]
        cache.invalidate_tags("item:1")
        response = client.get("/items/1", headers={"If-None-Match": etag})

    assert response.status_code == 304 and response.headers["x-cache"] == "MISS"
    assert calls["item:1"] == 2


def test_query_parameter_order_does_not_matter_but_their_values_do(cache, calls):
    with TestClient(items_app(cache, calls)) as client:
        first = client.get("/items/1?q=x&tag=a&tag=b")
        reordered = client.get("/items/1?tag=a&q=x&tag=b")
        other_order_of_a_list = client.get("/items/1?tag=b&tag=a&q=x")
        other_value = client.get("/items/1?q=y&tag=a&tag=b")

    assert reordered.headers["x-cache"] == "HIT" and reordered.json() == first.json()
    assert other_order_of_a_list.headers["x-cache"] == "MISS"
    assert other_order_of_a_list.json()["tags"] == ["b", "a"]
    assert other_value.headers["x-cache"] == "MISS" and other_value.json()["q"] == "y"


def test_tags_from_path_parameters_let_invalidate_tags_drop_one_item(cache, calls):
    with TestClient(items_app(cache, calls)) as client:
        client.get("/items/1")
        client.get("/items/2")
        cache.invalidate_tags("item:1")
        one = client.get("/items/1")
        two = client.get("/items/2")

    assert one.headers["x-cache"] == "MISS" and two.headers["x-cache"] == "HIT"


def test_a_put_with_invalidates_drops_the_cached_response(cache, calls):
    with TestClient(items_app(cache, calls)) as client:
        client.get("/items/1")
        client.put("/items/1")
        again = client.get("/items/1")

    assert again.headers["x-cache"] == "MISS"
    assert calls["item:1"] == 2


def test_a_response_expires_with_its_ttl(cache, calls, raw):
    with TestClient(items_app(cache, calls, ttl=60)) as client:
        client.get("/items/1")
        travel(59, raw)
        before = client.get("/items/1")
        travel(2, raw)
        after = client.get("/items/1")

    assert before.headers["x-cache"] == "HIT" and after.headers["x-cache"] == "MISS"


def test_requests_with_credentials_bypass_the_cache_by_default(cache, calls):
    with TestClient(items_app(cache, calls)) as client:
        client.get("/items/1")  # a public entry exists
        with_token = client.get("/items/1", headers={"Authorization": "Bearer abc"})
        with_cookie = client.get("/items/1", headers={"Cookie": "session=abc"})
        again = client.get("/items/1", headers={"Cookie": "session=abc"})

    for response in (with_token, with_cookie, again):
        assert response.headers["x-cache"] == "BYPASS"
        assert "etag" not in response.headers and "cache-control" not in response.headers
    assert calls["item:1"] == 4  # the public one, then every credentialed request


def test_per_user_responses_are_keyed_by_the_credentials(cache, calls):
    app = app_with(cache)

    @app.get("/me")
    @cache_response(ttl=30, private="per_user")
    async def me(request: Request) -> dict[str, str]:
        calls("me")
        return {"user": request.headers.get("authorization", "anonymous")}

    with TestClient(app) as client:
        ana = client.get("/me", headers={"Authorization": "Bearer ana"})
        bob = client.get("/me", headers={"Authorization": "Bearer bob"})
        ana_again = client.get("/me", headers={"Authorization": "Bearer ana"})
        bob_again = client.get("/me", headers={"Authorization": "Bearer bob"})
        anonymous = client.get("/me")

    assert [r.headers["x-cache"] for r in (ana, bob, ana_again, bob_again, anonymous)] == [
        "MISS", "MISS", "HIT", "HIT", "MISS"]
    assert ana_again.json() == {"user": "Bearer ana"} and bob_again.json() == {"user": "Bearer bob"}
    assert ana.headers["cache-control"] == "private, max-age=30"
    assert ana.headers["vary"] == "Authorization, Cookie"
    assert anonymous.json() == {"user": "anonymous"}
    assert not any("ana" in key or "bob" in key for key in _keys_seen(cache))  # keyed by a hash


def _keys_seen(cache: TieredCache) -> list[str]:
    """The response keys of the test's paths that are in the cache (by exact lookup)."""
    import hashlib

    keys = []
    for who in ("ana", "bob"):
        digest = hashlib.sha256(b"authorization\x00Bearer " + who.encode() + b"\x00").hexdigest()
        key = f"http:GET /me testserver#user={digest}"
        assert cache.get(key) is not None
        keys.append(key)
    return keys


def test_per_user_keys_are_an_hmac_under_a_secret_key(cache, calls, monkeypatch):
    """With a secret key, the per-user part of the key is an HMAC: a reader of Redis's key
    names cannot test guessed credentials against it. The environment variable is the
    default; an argument wins over it."""
    import hashlib
    import hmac

    app = app_with(cache)
    monkeypatch.setenv("TIEREDCACHE_SECRET_KEY", "from-env")

    @app.get("/me")
    @cache_response(ttl=30, private="per_user", secret_key=b"k1")
    async def me(request: Request) -> dict[str, str]:
        calls("me")
        return {"user": request.headers["authorization"]}

    @app.get("/env")
    @cache_response(ttl=30, private="per_user")
    async def env(request: Request) -> dict[str, str]:
        return {"user": request.headers["authorization"]}

    with TestClient(app) as client:
        assert client.get("/me", headers={"Authorization": "Basic YW5hOjEyMzQ="}).headers["x-cache"] == "MISS"
        assert client.get("/me", headers={"Authorization": "Basic YW5hOjEyMzQ="}).headers["x-cache"] == "HIT"
        client.get("/env", headers={"Authorization": "Basic YW5hOjEyMzQ="})

    creds = b"authorization\x00Basic YW5hOjEyMzQ=\x00"
    for path, key in (("/me", b"k1"), ("/env", b"from-env")):
        digest = hmac.new(key, creds, hashlib.sha256).hexdigest()
        assert cache.get(f"http:GET {path} testserver#user={digest}") is not None
        plain = hashlib.sha256(creds).hexdigest()
        assert cache.get(f"http:GET {path} testserver#user={plain}") is None
    assert calls["me"] == 1


@pytest.mark.parametrize("bad, error", [(b"", ValueError), ("", ValueError), (42, TypeError)])
def test_a_bad_secret_key_is_refused_when_decorating(bad, error):
    with pytest.raises(error, match="secret_key"):
        cache_response(private="per_user", secret_key=bad)


def test_error_responses_set_cookie_and_streams_are_never_stored(cache, calls):
    app = app_with(cache)

    @app.get("/missing")
    @cache_response(ttl=60)
    async def missing() -> None:
        calls("missing")
        raise HTTPException(404, "no such thing")

    @app.get("/cookie")
    @cache_response(ttl=60)
    async def cookie(response: Response) -> dict[str, bool]:
        calls("cookie")
        response.set_cookie("seen", "1")
        return {"ok": True}

    @app.get("/no-store")
    @cache_response(ttl=60)
    async def no_store() -> Response:
        calls("no-store")
        return PlainTextResponse("fresh", headers={"Cache-Control": "no-store"})

    @app.get("/stream")
    @cache_response(ttl=60)
    async def stream() -> StreamingResponse:
        calls("stream")
        return StreamingResponse(iter([b"a", b"b"]), media_type="text/plain")

    with TestClient(app) as client:
        for path in ("/missing", "/cookie", "/no-store", "/stream"):
            first = client.get(path)
            client.cookies.clear()  # the client would send the cookie back: a bypass
            second = client.get(path)
            assert first.content == second.content
            assert second.headers.get("x-cache") in (None, "MISS")  # an HTTPException skips the wrapper's headers
            assert "etag" not in second.headers

    assert calls.counts == {"missing": 2, "cookie": 2, "no-store": 2, "stream": 2}


class Account(BaseModel):
    id: int
    email: str


class AccountInDB(Account):
    password_hash: str


def test_the_stored_body_is_what_fastapi_renders_response_model_included(cache, calls):
    app = app_with(cache)

    @app.get("/accounts/{account_id}", response_model=Account, status_code=203)
    @cache_response(ttl=60)
    async def account(account_id: int) -> Any:
        calls("account")
        return AccountInDB(id=account_id, email="a@example.com", password_hash="secret-hash")

    @app.get("/motd", response_class=PlainTextResponse)
    @cache_response(ttl=60)
    def motd() -> str:
        calls("motd")
        return "hello"

    with TestClient(app) as client:
        miss, hit = client.get("/accounts/7"), client.get("/accounts/7")
        text_miss, text_hit = client.get("/motd"), client.get("/motd")

    for response in (miss, hit):
        assert response.status_code == 203
        assert response.json() == {"id": 7, "email": "a@example.com"}
        assert "secret-hash" not in response.text
    assert hit.headers["x-cache"] == "HIT"
    assert text_hit.text == text_miss.text == "hello" and text_hit.headers["x-cache"] == "HIT"
    assert text_hit.headers["content-type"].startswith("text/plain")
    assert calls.counts == {"account": 1, "motd": 1}


def test_head_is_answered_from_the_get_entry_without_a_body(cache, calls):
    app = app_with(cache)

    @app.api_route("/page", methods=["GET", "HEAD", "POST"])
    @cache_response(ttl=60)
    async def page(request: Request) -> dict[str, str]:
        calls(request.method)
        return {"page": "home"}

    with TestClient(app) as client:
        get = client.get("/page")
        head = client.head("/page")
        posted = [client.post("/page"), client.post("/page")]

    assert head.status_code == 200 and head.content == b"" and head.headers["x-cache"] == "HIT"
    assert head.headers["content-length"] == str(len(get.content))
    assert all("x-cache" not in r.headers for r in posted)  # other methods are not cached
    assert calls.counts == {"GET": 1, "POST": 2}


def test_dependencies_still_run_on_a_hit(cache, calls):
    app = app_with(cache)

    def api_key(request: Request) -> None:
        calls("checked")
        if request.headers.get("X-Api-Key") != "k":
            raise HTTPException(401, "api key required")

    @app.get("/report", dependencies=[Depends(api_key)])
    @cache_response(ttl=60)
    async def report() -> dict[str, int]:
        calls("report")
        return {"total": 3}

    with TestClient(app) as client:
        client.get("/report", headers={"X-Api-Key": "k"})
        hit = client.get("/report", headers={"X-Api-Key": "k"})
        refused = client.get("/report")

    assert hit.headers["x-cache"] == "HIT"
    assert refused.status_code == 401  # the cached body is not served without the key
    assert calls.counts == {"checked": 3, "report": 1}


def test_cache_response_without_a_cache_uses_the_app_cache_and_tier_names(cache, calls):
    app = app_with(cache)

    @app.get("/dashboard")
    @cache_response(ttl="business_intelligence")
    def dashboard() -> dict[str, int]:
        calls("dashboard")
        return {"revenue": 10}

    with TestClient(app) as client:
        miss, hit = client.get("/dashboard"), client.get("/dashboard")

    assert miss.headers["cache-control"] == "public, max-age=900" and hit.headers["x-cache"] == "HIT"
    assert cache.get("http:GET /dashboard testserver") is not None


def test_another_process_serves_the_response_from_redis(redis_url, calls):
    caches = Caches(redis_url=redis_url, namespace=NS)
    try:
        here, there = caches(), caches()  # two processes of one app, as far as L1 goes
        with TestClient(items_app(here, calls)) as a, TestClient(items_app(there, calls)) as b:
            first = a.get("/items/5")
            second = b.get("/items/5")
    finally:
        caches.close()

    assert second.headers["x-cache"] == "HIT"
    assert second.content == first.content and second.headers["etag"] == first.headers["etag"]
    assert calls["item:5"] == 1


def test_concurrent_misses_on_one_response_run_the_endpoint_once(cache, calls):
    """A miss is a get_or_set: requests arriving while the first one runs the endpoint wait
    for its response instead of running the endpoint too (the seeds' stampede)."""
    import httpx

    app = FastAPI()
    release = asyncio.Event()

    @app.get("/report")
    @cache_response(cache, ttl=60)
    async def report() -> dict[str, int]:
        calls("report")
        await release.wait()
        return {"total": 42}

    async def five_at_once() -> list:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            pending = [asyncio.create_task(client.get("/report")) for _ in range(5)]
            while calls["report"] == 0:
                await asyncio.sleep(0.001)
            for _ in range(200):  # the other four reach the cache meanwhile (no I/O on their way)
                await asyncio.sleep(0)
            release.set()
            return await asyncio.gather(*pending)

    answers = asyncio.run(five_at_once())
    assert calls["report"] == 1
    assert [a.status_code for a in answers] == [200] * 5
    assert {a.content for a in answers} == {b'{"total":42}'}
    assert sorted(a.headers["x-cache"] for a in answers) == ["HIT"] * 4 + ["MISS"]


def test_a_response_invalidated_while_the_endpoint_ran_is_answered_but_not_stored(cache, calls):
    """A write that lands while the endpoint computes its response (here: the endpoint
    itself, standing for a concurrent request) makes that response outdated: the client
    gets it, the cache does not keep it."""
    app = FastAPI()

    @app.get("/items/{item_id}")
    @cache_response(cache, ttl=60, tags="item:{item_id}")
    async def read_item(item_id: int) -> dict[str, int]:
        calls("item")
        if calls["item"] == 1:
            await cache.ainvalidate_tags(f"item:{item_id}")  # the concurrent write
        return {"id": item_id, "version": calls["item"]}

    with TestClient(app) as client:
        first = client.get("/items/7")
        second = client.get("/items/7")
        third = client.get("/items/7")

    assert first.json() == {"id": 7, "version": 1} and first.headers["x-cache"] == "MISS"
    assert second.json() == {"id": 7, "version": 2} and second.headers["x-cache"] == "MISS"
    assert third.json() == {"id": 7, "version": 2} and third.headers["x-cache"] == "HIT"
    assert calls["item"] == 2


def test_a_miss_waits_for_a_redis_that_does_not_answer_once_not_twice(fresh_redis_server, calls):
    """With Redis paused, a cache_response miss meets one timeout (the read); it does not
    then wait again to store the response (the chaos campaign's latency bound)."""
    cache = TieredCache(fresh_redis_server.url, namespace=NS, socket_timeout=0.1, connect_timeout=0.1,
                        pool_timeout=0.1, breaker_threshold=1_000)
    try:
        with TestClient(items_app(cache, calls)) as client:
            assert client.get("/items/1").headers["x-cache"] == "MISS"  # connected and warm
            fresh_redis_server.pause()
            before = cache.stats()["l2"]["timeouts"]
            answer = client.get("/items/2")
            spent = cache.stats()["l2"]["timeouts"] - before
    finally:
        fresh_redis_server.resume()
        cache.close()

    assert answer.status_code == 200 and answer.json()["id"] == 2
    assert answer.headers["x-cache"] == "MISS"
    assert spent == 1


def test_an_endpoint_called_directly_just_runs(cache, calls):
    @cache_response(cache, ttl=60)
    def totals(day: str) -> dict[str, str]:
        calls("totals")
        return {"day": day}

    assert asyncio.run(totals("2024-05-01")) == {"day": "2024-05-01"}
    assert asyncio.run(totals(day="2024-05-01")) == {"day": "2024-05-01"}
    assert calls["totals"] == 2


def test_cache_response_refuses_bad_arguments_by_name(cache):
    with pytest.raises(ValueError, match="ttl"):
        cache_response(ttl=-1)
    with pytest.raises(ValueError, match="ttl"):
        cache_response(ttl="forever")
    with pytest.raises(ValueError, match="private"):
        cache_response(private="public")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="cache"):
        cache_response(cache="redis://")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="tags"):
        cache_response(tags=[1])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="item_id"):
        cache_response(tags=["item:{item_id}"])(lambda other: other)
    with pytest.raises(TypeError, match="parentheses"):
        cache_response(lambda: None)  # type: ignore[arg-type]


# ---- lifespan and dependency -----------------------------------------------------------------


def test_the_lifespan_puts_the_cache_on_the_app_and_the_dependency_yields_it(cache):
    app = app_with(cache)
    seen = []

    @app.get("/which")
    async def which(c: TieredCache = Depends(get_cache)) -> dict[str, str]:
        seen.append(c)
        return {"namespace": c.name}

    with TestClient(app) as client:
        assert client.get("/which").json() == {"namespace": NS}

    assert app.state.tieredcache is cache and seen == [cache]


def test_without_a_lifespan_the_dependency_yields_the_default_cache(default_cache):
    app = FastAPI()

    @app.get("/which")
    async def which(c: TieredCache = Depends(get_cache)) -> dict[str, bool]:
        return {"default": c is default_cache}

    with TestClient(app) as client:
        assert client.get("/which").json() == {"default": True}


def warmed_app(cache: TieredCache, calls: Calls, **lifespan: Any) -> FastAPI:
    @cache.warmer("products")
    async def products(view: TieredCache) -> dict[str, Any]:
        calls("warm products")
        return {"product:1": {"name": "espresso"}, "product:2": {"name": "ristretto"}}

    app = app_with(cache, **lifespan)

    @app.get("/products/{pid}")
    async def product(pid: int, c: TieredCache = Depends(get_cache)) -> Any:
        return c.get(f"product:{pid}")

    return app


@pytest.mark.parametrize("flag", ["true", "1", "yes"])
def test_cache_warming_enabled_warms_at_startup(cache, calls, monkeypatch, flag):
    monkeypatch.setenv("CACHE_WARMING_ENABLED", flag)

    with TestClient(warmed_app(cache, calls)) as client:
        assert client.get("/products/2").json() == {"name": "ristretto"}

    assert calls["warm products"] == 1


def test_no_warming_unless_asked(cache, calls, monkeypatch):
    monkeypatch.delenv("CACHE_WARMING_ENABLED", raising=False)
    with TestClient(warmed_app(cache, calls)) as client:
        assert client.get("/products/2").json() is None

    monkeypatch.setenv("CACHE_WARMING_ENABLED", "false")
    with TestClient(warmed_app(cache, calls)):
        pass

    monkeypatch.setenv("CACHE_WARMING_ENABLED", "true")
    with TestClient(warmed_app(cache, calls, warm=False)):
        pass

    assert calls["warm products"] == 0


def test_warm_true_warms_whatever_the_environment_says(cache, calls, monkeypatch):
    monkeypatch.setenv("CACHE_WARMING_ENABLED", "false")
    with TestClient(warmed_app(cache, calls, warm=True)):
        pass

    assert calls["warm products"] == 1


def test_a_bad_cache_warming_enabled_fails_the_startup_naming_it(cache, calls, monkeypatch):
    monkeypatch.setenv("CACHE_WARMING_ENABLED", "sometimes")

    with pytest.raises(ConfigurationError, match="CACHE_WARMING_ENABLED"):
        with TestClient(warmed_app(cache, calls)):
            pass


def test_the_lifespan_wraps_the_users_lifespan_after_warming(cache, calls):
    @cache.warmer("products")
    def products() -> dict[str, str]:
        return {"product:1": "espresso"}

    events = []

    @asynccontextmanager
    async def my_lifespan(app: FastAPI):
        events.append(("startup sees", app.state.tieredcache.get("product:1")))
        yield {"greeting": "hi"}
        events.append(("shutdown", None))

    app = app_with(cache, warm=True, lifespan=my_lifespan)

    @app.get("/greeting")
    async def greeting(request: Request) -> dict[str, str]:
        return {"greeting": request.state.greeting}

    with TestClient(app) as client:
        assert client.get("/greeting").json() == {"greeting": "hi"}

    assert events == [("startup sees", "espresso"), ("shutdown", None)]


def test_a_given_cache_stays_open_after_shutdown_unless_close_is_true(cache):
    with TestClient(app_with(cache)):
        cache.set("k", "v")
    assert cache.get("k") == "v"


def test_an_app_on_a_given_cache_can_start_again(cache, calls):
    app = items_app(cache, calls)
    with TestClient(app) as client:  # its own event loop: its Redis connections end with it
        client.get("/items/1")
    with TestClient(app) as client:
        assert client.get("/items/1").headers["x-cache"] == "HIT"


def test_close_true_closes_the_given_cache_at_shutdown(caches):
    cache = caches()
    with TestClient(app_with(cache, close=True)):
        pass

    assert cache._core.closed


def test_the_default_cache_made_at_startup_is_closed_and_forgotten_at_shutdown(monkeypatch):
    monkeypatch.delenv("REDIS_URL", raising=False)
    app = FastAPI(lifespan=tieredcache_lifespan())
    with TestClient(app):
        made = app.state.tieredcache
        assert tieredcache.get_cache() is made

    assert tieredcache.get_cache() is not made


def test_the_lifespan_refuses_bad_arguments_by_name():
    with pytest.raises(TypeError, match="cache"):
        tieredcache_lifespan("redis://localhost")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="warm"):
        tieredcache_lifespan(warm="yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="lifespan"):
        tieredcache_lifespan(lifespan=42)  # type: ignore[arg-type]


# ---- the admin router ---------------------------------------------------------------------


SECRET_VALUE = "value-that-must-never-leave-the-cache"


def admin_app(cache: TieredCache, calls: Calls, auth: Any = TOKEN) -> FastAPI:
    @cache.warmer("products")
    def products() -> dict[str, str]:
        calls("warm products")
        return {"product:1": SECRET_VALUE}

    @cache.warmer("dashboard")
    async def dashboard() -> int:
        calls("warm dashboard")
        return 0

    @cache.cached(ttl=60, name='report "fn"\\1')
    def report_fn(x: int) -> str:
        return SECRET_VALUE

    report_fn(1)
    report_fn(1)

    app = app_with(cache)
    app.state.report_fn = report_fn  # the cache's report lists the functions still alive
    app.include_router(cache_admin_router(cache, auth=auth))
    return app


def seed(cache: TieredCache) -> None:
    cache.set("user:1", SECRET_VALUE, tags=["users"])
    cache.set("user:2", SECRET_VALUE, tags=["users"])
    cache.set("order:1", SECRET_VALUE, tags=["orders"])
    cache.namespace("shop:42").set("product:9", SECRET_VALUE)


def entries(cache: TieredCache) -> dict[str, bool]:
    keys = ("user:1", "user:2", "order:1")
    found = {k: cache.get(k) is not None for k in keys}
    found["shop:42/product:9"] = cache.namespace("shop:42").get("product:9") is not None
    return found


ALL_THERE = {"user:1": True, "user:2": True, "order:1": True, "shop:42/product:9": True}


def call(client: TestClient, action: str, headers: dict[str, str] | None = None,
         body: dict[str, Any] | None = None) -> Any:
    if ACTIONS[action] == "GET":
        return client.get(f"/cache/{action}", headers=headers)
    return client.post(f"/cache/{action}", headers=headers, json=body if body is not None else {})


def test_the_router_is_not_created_without_auth(cache):
    for auth in (None, "", "   "):
        with pytest.raises(ConfigurationError, match="auth"):
            cache_admin_router(cache, auth=auth)
    with pytest.raises(TypeError, match="auth"):
        cache_admin_router(cache, auth=42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="cache"):
        cache_admin_router("cache", auth=TOKEN)  # type: ignore[arg-type]


@pytest.mark.parametrize("action", sorted(ACTIONS))
def test_without_a_token_every_action_is_401_and_changes_nothing(cache, calls, action):
    seed(cache)
    with TestClient(admin_app(cache, calls)) as client:
        response = call(client, action)
        basic = call(client, action, headers={"Authorization": "Basic dXNlcjpwYXNz"})

    for r in (response, basic):
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == "Bearer"
        assert SECRET_VALUE not in r.text
    assert entries(cache) == ALL_THERE
    assert calls.counts == {}


@pytest.mark.parametrize("action", sorted(ACTIONS))
def test_with_a_wrong_token_every_action_is_403_and_changes_nothing(cache, calls, action):
    seed(cache)
    with TestClient(admin_app(cache, calls)) as client:
        response = call(client, action, headers={"Authorization": f"Bearer {TOKEN}x"})

    assert response.status_code == 403
    assert entries(cache) == ALL_THERE
    assert calls.counts == {}


@pytest.mark.parametrize("action", [a for a, m in ACTIONS.items() if m == "GET"])
def test_the_read_actions_never_show_values_or_the_redis_password(cache, calls, action):
    seed(cache)
    with TestClient(admin_app(cache, calls)) as client:
        response = call(client, action, headers=AUTH)

    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert SECRET_VALUE not in response.text
    assert "redis://" not in response.text and "password" not in response.text.lower()


def test_stats_health_report_and_recommendations(cache, calls):
    with TestClient(admin_app(cache, calls)) as client:
        stats = call(client, "stats", AUTH).json()
        health = call(client, "health", AUTH).json()
        report = call(client, "report", AUTH).json()
        recommendations = call(client, "recommendations", AUTH).json()

    assert stats["namespace"] == NS and "l1" in stats and "l2" in stats
    assert health["status"] == "ok" and health["l2"]["enabled"] == (cache.stats()["l2"]["enabled"])
    row = next(r for r in report if r["function"] == 'report "fn"\\1')
    assert (row["calls"], row["hits"], row["misses"]) == (2, 1, 1)
    assert isinstance(recommendations, list)


def test_health_is_503_when_redis_cannot_be_reached():
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    caches = Caches(namespace=NS)
    try:
        cache = caches(redis_url=f"redis://:hunter2@127.0.0.1:{port}/0", connect_timeout=0.05,
                       socket_timeout=0.05)
        app = app_with(cache)
        app.include_router(cache_admin_router(cache, auth=TOKEN))
        with TestClient(app) as client:
            response = call(client, "health", AUTH)
            stats = call(client, "stats", AUTH)
    finally:
        caches.close()

    assert response.status_code == 503 and response.json()["status"] == "degraded"
    assert "hunter2" not in response.text and "hunter2" not in stats.text


def test_clear_everything_by_tags_by_prefix_or_a_namespace(cache, calls):
    with TestClient(admin_app(cache, calls)) as client:
        seed(cache)
        by_tags = call(client, "clear", AUTH, {"tags": ["users"]})
        assert entries(cache) == {**ALL_THERE, "user:1": False, "user:2": False}

        seed(cache)
        by_prefix = call(client, "clear", AUTH, {"prefix": "order:"})
        assert entries(cache) == {**ALL_THERE, "order:1": False}

        seed(cache)
        by_namespace = call(client, "clear", AUTH, {"namespace": "shop:42"})
        assert entries(cache) == {**ALL_THERE, "shop:42/product:9": False}

        seed(cache)
        everything = call(client, "clear", AUTH, {})
        assert entries(cache) == {**{k: False for k in ALL_THERE}, "shop:42/product:9": True}

    assert by_tags.json()["tags"] == ["users"] and by_tags.json()["cleared"] >= 1
    assert by_prefix.json()["prefix"] == "order:"
    assert by_namespace.json()["namespace"] == f"{NS}/shop:42"
    assert everything.json()["namespace"] == NS


def test_invalidate_tags_and_keys(cache, calls):
    seed(cache)
    with TestClient(admin_app(cache, calls)) as client:
        response = call(client, "invalidate", AUTH, {"tags": ["orders"], "keys": ["user:2", "nobody"]})

    assert response.status_code == 200
    assert response.json()["deleted"] == 1
    assert entries(cache) == {**ALL_THERE, "order:1": False, "user:2": False}


def test_warm_runs_the_named_groups_or_all_of_them(cache, calls):
    with TestClient(admin_app(cache, calls)) as client:
        some = call(client, "warm", AUTH, {"groups": ["products"]})
        assert calls.counts == {"warm products": 1}
        every = call(client, "warm", AUTH, {})

    assert some.json() == {"warmed": {"products": 1}}
    assert every.json() == {"warmed": {"dashboard": 0, "products": 1}}
    assert calls.counts == {"warm products": 2, "warm dashboard": 1}


@pytest.mark.parametrize(("action", "body", "field"), [
    ("clear", {"tags": "users"}, "tags"),
    ("clear", {"tags": []}, "tags"),
    ("clear", {"tags": ["users"], "prefix": "x"}, "tags"),
    ("clear", {"prefix": ""}, "prefix"),
    ("clear", {"namespace": 3}, "namespace"),
    ("clear", {"everything": True}, "everything"),
    ("invalidate", {}, "tags"),
    ("invalidate", {"keys": [None]}, "keys"),
    ("warm", {"groups": ["nope"]}, "groups"),
    ("warm", {"groups": "products"}, "groups"),
])
def test_a_bad_body_is_400_naming_the_field_and_changes_nothing(cache, calls, action, body, field):
    seed(cache)
    with TestClient(admin_app(cache, calls)) as client:
        response = call(client, action, AUTH, body)

    assert response.status_code == 400
    assert response.json()["error"].startswith(f"{field}:") or f"{field}:" in response.json()["error"]
    assert entries(cache) == ALL_THERE and calls.counts == {}


def test_bodies_must_be_json(cache, calls):
    seed(cache)
    with TestClient(admin_app(cache, calls)) as client:
        form = client.post("/cache/clear", headers=AUTH, data={"tags": "users"})
        text = client.post("/cache/clear", headers={**AUTH, "Content-Type": "text/plain"}, content=b"{}")
        broken = client.post("/cache/clear", headers={**AUTH, "Content-Type": "application/json"}, content=b"{")
        array = client.post("/cache/clear", headers=AUTH, json=["users"])

    assert form.status_code == 415 and text.status_code == 415
    assert broken.status_code == 400 and broken.json()["error"].startswith("body:")
    assert array.status_code == 400
    assert entries(cache) == ALL_THERE


def test_auth_can_be_the_apps_own_dependency(cache, calls):
    def admin_only(request: Request) -> None:
        role = request.headers.get("X-Role")
        if role is None:
            raise HTTPException(401, "who are you?")
        if role != "admin":
            raise HTTPException(403, "admins only")

    seed(cache)
    with TestClient(admin_app(cache, calls, auth=admin_only)) as client:
        anonymous = call(client, "clear", {}, {})
        staff = call(client, "clear", {"X-Role": "staff"}, {})
        form_post = client.post("/cache/clear", headers={"X-Role": "admin"})  # no JSON content type
        assert entries(cache) == ALL_THERE
        admin = call(client, "clear", {"X-Role": "admin"}, {})

    assert (anonymous.status_code, staff.status_code, form_post.status_code, admin.status_code) == (401, 403, 415, 200)
    assert entries(cache)["user:1"] is False


def test_a_dependency_answering_false_is_403(cache, calls):
    with TestClient(admin_app(cache, calls, auth=lambda: False)) as client:
        assert call(client, "stats").status_code == 403


def test_the_router_mounts_under_its_prefix(cache):
    app = app_with(cache)
    app.include_router(cache_admin_router(cache, auth=TOKEN, prefix="/ops/cache"))
    with TestClient(app) as client:
        assert client.get("/ops/cache/stats", headers=AUTH).status_code == 200
        assert client.get("/cache/stats", headers=AUTH).status_code == 404


# ---- /metrics -----------------------------------------------------------------------------


_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_SAMPLE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\["\\n])*)"(,|$)')


def parse_prometheus(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Parse the text exposition format 0.0.4 strictly enough to catch what a scraper
    would reject: every sample's family has a TYPE line first, names and label pairs are
    well formed, label values are escaped, values are numbers, no series repeats.
    Series are keyed by name and sorted labels."""
    assert text.endswith("\n")
    types: dict[str, str] = {}
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, _, _ = line[7:].partition(" ")
            assert _NAME.fullmatch(name), line
        elif line.startswith("# TYPE "):
            name, _, kind = line[7:].partition(" ")
            assert _NAME.fullmatch(name) and kind in ("counter", "gauge", "histogram", "untyped"), line
            assert name not in types, f"TYPE given twice for {name}"
            types[name] = kind
        else:
            match = _SAMPLE.fullmatch(line)
            assert match, f"not a sample line: {line!r}"
            name, labels_text, value = match.groups()
            family = re.sub(r"_(bucket|sum|count)$", "", name)
            assert name in types or types.get(family) == "histogram", f"{name} has no TYPE line before its samples"
            labels: list[tuple[str, str]] = []
            rest = labels_text or ""
            while rest:
                label = _LABEL.match(rest)
                assert label, f"bad labels in {line!r}"
                raw_value = label.group(2)
                labels.append((label.group(1), re.sub(r"\\(.)", lambda m: {"n": "\n"}.get(m.group(1), m.group(1)),
                                                      raw_value)))
                rest = rest[label.end():]
            key = (name, tuple(sorted(labels)))
            assert key not in samples, f"series repeated: {key}"
            samples[key] = float(value)
    return samples


def test_metrics_are_prometheus_text_with_per_function_series(cache, calls):
    with TestClient(admin_app(cache, calls)) as client:
        response = call(client, "metrics", AUTH)

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    samples = parse_prometheus(response.text)
    stats = cache.stats()
    ns = ("namespace", NS)
    tiers = ("l1", "l2") if stats["l2"]["enabled"] else ("l1",)
    for tier in tiers:
        for what in ("hits", "misses"):
            assert samples[(f"tieredcache_{what}_total", (ns, ("tier", tier)))] == stats[tier][what]
    assert samples[("tieredcache_l1_evictions_total", (ns, ("reason", "size")))] == stats["l1"]["evictions"]
    assert samples[("tieredcache_l1_entries", (ns,))] == stats["l1"]["entries"]
    assert samples[("tieredcache_l1_bytes", (ns,))] == stats["l1"]["bytes"]
    fn = (("function", 'report "fn"\\1'), ns)
    assert samples[("tieredcache_function_calls_total", (*fn, ("outcome", "l1_hit")))] == 1
    assert samples[("tieredcache_function_calls_total", (*fn, ("outcome", "miss")))] == 1
    assert samples[("tieredcache_function_latency_seconds_count", (*fn, ("outcome", "miss")))] == 1
    if stats["l2"]["enabled"]:
        assert samples[("tieredcache_l2_errors_total", (ns,))] == stats["l2"]["errors"]
        assert samples[("tieredcache_l2_breaker_state", (ns, ("state", "closed")))] == 1


def test_the_metrics_parser_catches_malformed_text():
    with pytest.raises(AssertionError):
        parse_prometheus("tieredcache_x 1\n")  # no TYPE
    with pytest.raises(AssertionError):
        parse_prometheus('# TYPE t counter\nt{function="a"b"} 1\n')  # unescaped quote
    assert parse_prometheus('# TYPE t counter\nt{function="a\\"b\\\\"} 1\n') == {
        ("t", (("function", 'a"b\\'),)): 1.0}


# ---- the framework-agnostic core ------------------------------------------------------------


def test_check_bearer_and_bearer_status():
    assert check_bearer(f"Bearer {TOKEN}", TOKEN) and check_bearer(f"bearer  {TOKEN} ", TOKEN)
    assert not check_bearer(f"Bearer {TOKEN}x", TOKEN) and not check_bearer(None, TOKEN)
    assert not check_bearer("Bearer ", "")
    assert [bearer_status(h, TOKEN) for h in (f"Bearer {TOKEN}", None, "Basic abc", "Bearer", "Bearer no")] == [
        200, 401, 401, 401, 403]


def test_admin_actions_answer_unknown_actions_404_and_take_raw_json(cache):
    actions = AdminActions(cache)
    cache.set("a", 1, tags=["t"])

    assert actions.handle("drop_database")[0] == 404
    assert actions.handle("invalidate", b'{"tags": ["t"]}')[:2] == (200, {
        "invalidated": 1, "deleted": 0, "tags": ["t"], "keys": []})
    with pytest.raises(TypeError, match="cache"):
        AdminActions(None)  # type: ignore[arg-type]


def test_admin_actions_report_filters_by_function(cache, calls):
    app = admin_app(cache, calls)
    status, rows, _ = AdminActions(cache).handle("report", query={"function": 'report "fn"\\1'})

    assert status == 200 and [r["function"] for r in rows] == [app.state.report_fn.qualname]


def test_the_router_and_actions_cover_the_same_actions(cache):
    router = cache_admin_router(cache, auth=TOKEN)
    served = {(route.path, next(iter(route.methods))) for route in router.routes}

    assert served == {(f"/cache/{a}", m) for a, m in ACTIONS.items()} | {("/cache/dashboard", "GET")}


def test_an_app_router_with_cached_handlers_and_admin_router_together(cache, calls):
    api = APIRouter(prefix="/api")

    @api.get("/items/{item_id}")
    @cache_response(cache, ttl=60, tags=["item:{item_id}"])
    async def read(item_id: int) -> dict[str, int]:
        calls("read")
        return {"id": item_id}

    app = app_with(cache)
    app.include_router(api)
    app.include_router(cache_admin_router(cache, auth=TOKEN))
    with TestClient(app) as client:
        client.get("/api/items/1")
        assert client.get("/api/items/1").headers["x-cache"] == "HIT"
        client.post("/cache/invalidate", headers=AUTH, json={"tags": ["item:1"]})
        assert client.get("/api/items/1").headers["x-cache"] == "MISS"

    assert calls["read"] == 2


def test_a_path_cannot_spell_another_request_s_key_or_a_user_s_entry() -> None:
    """Paths are decoded before routing: an escaped ``?`` or ``#user=`` in a path must not
    produce the key of another request, nor of a signed-in user's private entry."""
    cache = TieredCache(namespace="keys")
    app = FastAPI()
    calls: list[str] = []

    @app.get("/{page:path}")
    @cache_response(cache, private="per_user")
    async def page(page: str) -> dict:
        calls.append(page)
        return {"page": page}

    with TestClient(app) as client:
        private = client.get("/me", headers={"Authorization": "Bearer victim"})
        assert private.json() == {"page": "me"}
        keys = [k for k in cache._core.l1.keys() if "#user=" in k]
        assert len(keys) == 1
        forged_path = keys[0].split("http:GET ", 1)[1].replace(" testserver", "").replace("#", "%23")
        forged = client.get(forged_path)  # no credentials: must not see the victim's entry
        assert forged.headers["X-Cache"] == "MISS"
        assert forged.json() != {"page": "me"}
        a = client.get("/a%3Fx=1")
        b = client.get("/a?x=1")
        assert a.json() == {"page": "a?x=1"} and b.json() == {"page": "a"}
        assert b.headers["X-Cache"] == "MISS"  # not the entry of /a%3Fx=1
    cache.close()

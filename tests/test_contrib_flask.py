"""What the Flask integration does (docs/flask.md): the extension, cached views, the lead's
decorators and presets on Flask views, warming at startup, and the admin blueprint.

Every app here is a real Flask app driven through ``app.test_client()``. Most tests run
twice through the ``cache`` fixture: against ``TieredCache()`` (L1 only) and against
``TieredCache(redis_url=...)`` (a flushed private Redis). Nothing sleeps: TTLs are moved
with ``travel`` (the L1 clock, and the remaining TTL of every key in Redis).
"""

from __future__ import annotations

import json
import threading
from typing import Any

import flask
import pytest
from flask import Flask, abort, jsonify, request, session

import tieredcache
from tieredcache import ConfigurationError, TieredCache
from tieredcache.contrib._admin import ACTIONS
from tieredcache.contrib.flask import TieredCacheFlask, cache_admin_blueprint
from tiered_helpers import Caches, RawRedis, travel, wait_until

NS = "flasktest"
TOKEN = "s3cret-admin-token-of-some-length"


# ---- fixtures -----------------------------------------------------------------------------


_ENVIRONMENT = ("REDIS_URL", "REDIS_SSL", "REDIS_MAX_CONNECTIONS", "CACHE_ENABLED", "CACHE_DEFAULT_TTL",
                "CACHE_NAMESPACE", "CACHE_WARMING_ENABLED", "CACHE_MONITORING_ENABLED")


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The caches built from app.config fall back to these variables: none leaks in."""
    for name in _ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)


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


class Calls:
    """Counts the calls of each view (how a test sees whether the cache answered)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def __call__(self, name: str) -> int:
        self.counts[name] = self.counts.get(name, 0) + 1
        return self.counts[name]

    def __getitem__(self, name: str) -> int:
        return self.counts.get(name, 0)


def shop_app(cache: TieredCache, **view_options: Any) -> tuple[Flask, TieredCacheFlask, Calls]:
    """An app with one cached view, ``GET /shops/<shop_id>/products`` (tags ``shop:<id>``),
    whose body says how many times the view ran."""
    app = Flask(__name__)
    ext = TieredCacheFlask(app, cache=cache)
    calls = Calls()
    options = {"ttl": 60, "tags": ["shop:{shop_id}"], **view_options}

    @app.route("/shops/<int:shop_id>/products", methods=["GET", "POST"])
    @ext.cached_view(**options)
    def products(shop_id: int):
        run = calls("products")
        return jsonify(shop=shop_id, run=run, q=request.args.get("q"), user=request.headers.get("Authorization"))

    return app, ext, calls


# ---- cached views ---------------------------------------------------------------------------


def test_a_repeated_get_is_served_from_the_cache(cache: TieredCache) -> None:
    app, _, calls = shop_app(cache)
    client = app.test_client()

    first = client.get("/shops/1/products")
    second = client.get("/shops/1/products")

    assert first.status_code == second.status_code == 200
    assert (first.headers["X-Cache"], second.headers["X-Cache"]) == ("MISS", "HIT")
    assert second.get_json() == first.get_json() == {"shop": 1, "run": 1, "q": None, "user": None}
    assert second.headers["Content-Type"] == "application/json"
    assert calls["products"] == 1


def test_another_process_is_served_from_redis(redis_url: str) -> None:
    made = Caches(redis_url=redis_url, namespace=NS)
    try:
        app_a, _, calls_a = shop_app(made())
        app_b, _, calls_b = shop_app(made())  # its own L1: another process of the same app

        assert app_a.test_client().get("/shops/1/products").headers["X-Cache"] == "MISS"
        served = app_b.test_client().get("/shops/1/products")

        assert served.headers["X-Cache"] == "HIT"
        assert served.get_json()["run"] == 1
        assert (calls_a["products"], calls_b["products"]) == (1, 0)
    finally:
        made.close()


def test_a_binary_body_comes_back_from_redis_byte_for_byte(redis_url: str) -> None:
    made = Caches(redis_url=redis_url, namespace=NS)
    png = bytes(range(256)) * 4
    try:
        apps = []
        for _ in range(2):  # two processes of one app
            app = Flask(__name__)
            ext = TieredCacheFlask(app, cache=made())

            @app.get("/logo.png")
            @ext.cached_view(ttl=60)
            def logo():
                return png, 200, {"Content-Type": "image/png", "Content-Disposition": "inline"}

            apps.append(app)
        stored = apps[0].test_client().get("/logo.png")
        served = apps[1].test_client().get("/logo.png")

        assert served.headers["X-Cache"] == "HIT"
        assert served.data == png
        assert (served.headers["Content-Type"], served.headers["Content-Disposition"]) == ("image/png", "inline")
        assert served.headers["ETag"] == stored.headers["ETag"]
    finally:
        made.close()


def test_the_query_string_is_part_of_the_key_whatever_its_order(cache: TieredCache) -> None:
    app, _, calls = shop_app(cache)
    client = app.test_client()

    client.get("/shops/1/products?q=shoes&page=2")
    same = client.get("/shops/1/products?page=2&q=shoes")
    other = client.get("/shops/1/products?q=hats&page=2")

    assert same.headers["X-Cache"] == "HIT"
    assert other.headers["X-Cache"] == "MISS"
    assert other.get_json()["q"] == "hats"
    assert calls["products"] == 2


def test_query_string_false_shares_one_entry_for_every_query_string(cache: TieredCache) -> None:
    app, _, calls = shop_app(cache, query_string=False)
    client = app.test_client()

    client.get("/shops/1/products?q=shoes")
    served = client.get("/shops/1/products?q=hats")

    assert served.headers["X-Cache"] == "HIT"
    assert served.get_json()["q"] == "shoes"
    assert calls["products"] == 1


def test_each_path_and_host_has_its_own_entry(cache: TieredCache) -> None:
    app, _, calls = shop_app(cache)
    client = app.test_client()

    client.get("/shops/1/products")
    other_shop = client.get("/shops/2/products")
    other_host = client.get("/shops/1/products", headers={"Host": "evil.example"})

    assert other_shop.headers["X-Cache"] == other_host.headers["X-Cache"] == "MISS"
    assert calls["products"] == 3


def test_head_is_answered_from_the_get_entry(cache: TieredCache) -> None:
    app, _, calls = shop_app(cache)
    client = app.test_client()

    got = client.get("/shops/1/products")
    head = client.head("/shops/1/products")

    assert head.headers["X-Cache"] == "HIT"
    assert head.data == b""
    assert head.headers["ETag"] == got.headers["ETag"]
    assert calls["products"] == 1


def test_a_cached_response_carries_a_strong_etag_of_its_body(cache: TieredCache) -> None:
    app, _, _ = shop_app(cache)
    client = app.test_client()

    miss = client.get("/shops/1/products")
    hit = client.get("/shops/1/products")
    other = client.get("/shops/2/products")

    etag = miss.headers["ETag"]
    assert etag.startswith('"') and etag.endswith('"')  # strong: no W/
    assert hit.headers["ETag"] == etag
    assert other.headers["ETag"] != etag


@pytest.mark.parametrize("if_none_match", ["{etag}", "W/{etag}", '"other", {etag}', "*"])
def test_if_none_match_is_answered_304_without_a_body(cache: TieredCache, if_none_match: str) -> None:
    app, _, calls = shop_app(cache)
    client = app.test_client()
    etag = client.get("/shops/1/products").headers["ETag"]

    revalidated = client.get("/shops/1/products", headers={"If-None-Match": if_none_match.format(etag=etag)})

    assert revalidated.status_code == 304
    assert revalidated.data == b""
    assert revalidated.headers["ETag"] == etag
    assert revalidated.headers["X-Cache"] == "HIT"
    assert revalidated.headers["Cache-Control"] == "public, max-age=60"
    assert calls["products"] == 1


def test_a_stale_etag_gets_the_full_response(cache: TieredCache) -> None:
    app, _, _ = shop_app(cache)
    client = app.test_client()
    client.get("/shops/1/products")

    served = client.get("/shops/1/products", headers={"If-None-Match": '"an-old-version"'})

    assert served.status_code == 200
    assert served.get_json()["shop"] == 1


def test_a_miss_whose_new_body_matches_the_clients_etag_is_a_304(cache: TieredCache) -> None:
    app = Flask(__name__)
    ext = TieredCacheFlask(app, cache=cache)

    @app.get("/terms")
    @ext.cached_view(ttl=60)
    def terms() -> str:
        return "the same terms as yesterday"

    client = app.test_client()
    etag = client.get("/terms").headers["ETag"]
    cache.clear()  # the next request runs the view again: same body, same ETag

    revalidated = client.get("/terms", headers={"If-None-Match": etag})

    assert (revalidated.status_code, revalidated.headers["X-Cache"]) == (304, "MISS")
    assert revalidated.data == b""


@pytest.mark.parametrize(("ttl", "max_age"), [(60, 60), (2.5, 2), ("real_time", 60), ("static", 3600)])
def test_cache_control_is_public_with_the_ttl_as_max_age(cache: TieredCache, ttl: Any, max_age: int) -> None:
    app, _, _ = shop_app(cache, ttl=ttl)

    served = app.test_client().get("/shops/1/products")

    assert served.headers["Cache-Control"] == f"public, max-age={max_age}"
    assert set(served.headers["Vary"].split(", ")) == {"Authorization", "Cookie"}


def test_without_a_ttl_the_caches_default_ttl_applies(caches: Caches, raw: RawRedis | None) -> None:
    app, _, calls = shop_app(caches(default_ttl=120), ttl=None)
    client = app.test_client()

    assert client.get("/shops/1/products").headers["Cache-Control"] == "public, max-age=120"
    travel(119, raw)
    assert client.get("/shops/1/products").headers["X-Cache"] == "HIT"
    travel(2, raw)
    assert client.get("/shops/1/products").headers["X-Cache"] == "MISS"
    assert calls["products"] == 2


def test_an_entry_expires_after_its_ttl(cache: TieredCache, raw: RawRedis | None) -> None:
    app, _, calls = shop_app(cache, ttl=60)
    client = app.test_client()
    client.get("/shops/1/products")

    travel(59, raw)
    assert client.get("/shops/1/products").headers["X-Cache"] == "HIT"
    travel(2, raw)
    assert client.get("/shops/1/products").headers["X-Cache"] == "MISS"
    assert calls["products"] == 2


def test_the_views_own_cache_control_and_etag_are_kept(cache: TieredCache) -> None:
    app = Flask(__name__)
    ext = TieredCacheFlask(app, cache=cache)

    @app.get("/logo")
    @ext.cached_view(ttl=60)
    def logo():
        response = flask.make_response(b"\x89PNG...", 200, {"Content-Type": "image/png"})
        response.headers["Cache-Control"] = "public, max-age=86400, immutable"
        response.set_etag("logo-v3")
        return response

    client = app.test_client()
    client.get("/logo")
    hit = client.get("/logo")

    assert hit.headers["X-Cache"] == "HIT"
    assert hit.data == b"\x89PNG..."
    assert hit.headers["Content-Type"] == "image/png"
    assert hit.headers["Cache-Control"] == "public, max-age=86400, immutable"
    assert hit.headers["ETag"] == '"logo-v3"'
    assert client.get("/logo", headers={"If-None-Match": '"logo-v3"'}).status_code == 304


def test_cache_enabled_false_runs_the_view_every_time(caches: Caches) -> None:
    app, _, calls = shop_app(caches(enabled=False))
    client = app.test_client()

    assert [client.get("/shops/1/products").headers["X-Cache"] for _ in range(2)] == ["MISS", "MISS"]
    assert calls["products"] == 2


def _concurrent_gets(app: Flask, path: str, entered: threading.Event, release: threading.Event,
                     count: int = 8) -> list[Any]:
    """``count`` GETs of ``path`` from as many threads; the view is held until the others
    have started."""
    responses: list[Any] = [None] * count

    def get(i: int) -> None:
        responses[i] = app.test_client().get(path)

    threads = [threading.Thread(target=get, args=(i,)) for i in range(count)]
    threads[0].start()
    assert entered.wait(10)
    for thread in threads[1:]:
        thread.start()
    release.set()
    for thread in threads:
        thread.join(10)
    return responses


def test_concurrent_misses_run_the_view_once(cache: TieredCache) -> None:
    app = Flask(__name__)
    ext = TieredCacheFlask(app, cache=cache)
    entered, release = threading.Event(), threading.Event()
    calls = Calls()

    @app.get("/dashboard")
    @ext.cached_view(ttl=60)
    def dashboard():
        calls("dashboard")
        entered.set()
        release.wait(10)
        return {"revenue": 1200}

    responses = _concurrent_gets(app, "/dashboard", entered, release)

    assert calls["dashboard"] == 1
    assert all(r.get_json() == {"revenue": 1200} for r in responses)
    assert sorted(r.headers["X-Cache"] for r in responses) == ["HIT"] * 7 + ["MISS"]


def test_concurrent_requests_run_the_view_themselves_when_its_answer_is_not_cacheable(cache: TieredCache) -> None:
    app = Flask(__name__)
    ext = TieredCacheFlask(app, cache=cache)
    entered, release = threading.Event(), threading.Event()
    calls = Calls()

    @app.get("/dashboard")
    @ext.cached_view(ttl=60)
    def dashboard():
        calls("dashboard")
        entered.set()
        release.wait(10)
        return {"error": "warehouse unreachable"}, 503

    responses = _concurrent_gets(app, "/dashboard", entered, release)

    assert calls["dashboard"] == 8
    assert [(r.status_code, r.headers["X-Cache"]) for r in responses] == [(503, "MISS")] * 8


# ---- what is never cached -------------------------------------------------------------------


@pytest.mark.parametrize("credentials", ["authorization", "cookie"])
def test_requests_with_credentials_bypass_the_cache_by_default(cache: TieredCache, credentials: str) -> None:
    app, _, calls = shop_app(cache)
    client = app.test_client()
    signed_in = app.test_client()
    headers = {"Authorization": "Bearer alice"} if credentials == "authorization" else {}
    if credentials == "cookie":
        signed_in.set_cookie("session", "alice")
    client.get("/shops/1/products")  # an anonymous page is cached...

    first = signed_in.get("/shops/1/products", headers=headers)
    second = signed_in.get("/shops/1/products", headers=headers)

    # ...but never served to a signed-in user, and theirs is never stored
    assert first.headers["X-Cache"] == second.headers["X-Cache"] == "BYPASS"
    assert (first.get_json()["run"], second.get_json()["run"]) == (2, 3)
    assert client.get("/shops/1/products").get_json()["run"] == 1
    assert "ETag" not in first.headers


def test_per_user_caches_each_users_page_apart(cache: TieredCache) -> None:
    app, _, calls = shop_app(cache, private="per_user")
    client = app.test_client()
    alice = {"Authorization": "Bearer alice"}
    bob = {"Authorization": "Bearer bob"}

    assert client.get("/shops/1/products", headers=alice).get_json()["user"] == "Bearer alice"
    served_bob = client.get("/shops/1/products", headers=bob)
    served_alice = client.get("/shops/1/products", headers=alice)

    assert served_bob.headers["X-Cache"] == "MISS"
    assert served_bob.get_json()["user"] == "Bearer bob"
    assert served_alice.headers["X-Cache"] == "HIT"
    assert served_alice.get_json()["user"] == "Bearer alice"
    assert served_alice.headers["Cache-Control"] == "private, max-age=60"
    assert calls["products"] == 2


def test_per_user_views_are_private_for_anonymous_visitors_too(cache: TieredCache) -> None:
    app, _, calls = shop_app(cache, private="per_user")
    client = app.test_client()

    first = client.get("/shops/1/products")
    second = client.get("/shops/1/products")

    assert (first.headers["X-Cache"], second.headers["X-Cache"]) == ("MISS", "HIT")
    assert second.headers["Cache-Control"] == "private, max-age=60"
    assert calls["products"] == 1


def test_per_user_keys_hold_no_credentials(redis_url: str) -> None:
    made = Caches(redis_url=redis_url, namespace=NS)
    try:
        app, _, _ = shop_app(made(), private="per_user")
        app.test_client().get("/shops/1/products", headers={"Authorization": "Basic YWxpY2U6cGFzc3dvcmQ="})
        with RawRedis(redis_url) as raw:
            keys = b" ".join(raw.keys("*"))
        assert b"view:GET localhost/shops/1/products u:" in keys
        assert b"YWxpY2U6cGFzc3dvcmQ" not in keys
    finally:
        made.close()


def test_other_methods_run_the_view_uncached(cache: TieredCache) -> None:
    app, _, calls = shop_app(cache)
    client = app.test_client()

    posted = [client.post("/shops/1/products") for _ in range(2)]

    assert [p.headers["X-Cache"] for p in posted] == ["BYPASS", "BYPASS"]
    assert calls["products"] == 2
    assert client.get("/shops/1/products").headers["X-Cache"] == "MISS"


def _uncacheable_app(cache: TieredCache) -> tuple[Flask, Calls]:
    app = Flask(__name__)
    app.secret_key = "a test secret"
    ext = TieredCacheFlask(app, cache=cache)
    calls = Calls()

    @app.get("/broken")
    @ext.cached_view(ttl=60)
    def broken():
        calls("broken")
        return "database down", 503

    @app.get("/redirect")
    @ext.cached_view(ttl=60)
    def redirect():
        calls("redirect")
        return flask.redirect("/elsewhere")

    @app.get("/cookie")
    @ext.cached_view(ttl=60)
    def cookie():
        calls("cookie")
        response = flask.make_response("hello")
        response.set_cookie("visitor", "42")
        return response

    @app.get("/session")
    @ext.cached_view(ttl=60)
    def writes_session():
        calls("session")
        session["csrf"] = "token-for-this-visitor"
        return "a form"

    @app.get("/no-store")
    @ext.cached_view(ttl=60)
    def no_store():
        calls("no-store")
        response = flask.make_response("secret")
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.get("/by-language")
    @ext.cached_view(ttl=60)
    def by_language():
        calls("by-language")
        response = flask.make_response("Bonjour")
        response.vary.add("Accept-Language")
        return response

    @app.get("/partial")
    @ext.cached_view(ttl=60)
    def partial():
        calls("partial")
        return "Bon", 206, {"Content-Range": "bytes 0-2/7"}

    return app, calls


@pytest.mark.parametrize("path", ["/broken", "/redirect", "/cookie", "/session", "/no-store", "/by-language",
                                  "/partial"])
def test_errors_redirects_cookies_session_writes_no_store_vary_and_206_are_never_cached(cache: TieredCache,
                                                                                  path: str) -> None:
    app, calls = _uncacheable_app(cache)
    client = app.test_client(use_cookies=False)  # each request arrives without a cookie

    first = client.get(path)
    second = client.get(path)

    assert first.headers["X-Cache"] == second.headers["X-Cache"] == "MISS"
    assert calls[path.strip("/")] == 2
    assert first.status_code == second.status_code
    assert cache.stats()["load_errors"] == 0  # not stored is not an error


def test_a_view_that_raises_is_never_cached_and_its_error_handler_answers(cache: TieredCache) -> None:
    app = Flask(__name__)
    ext = TieredCacheFlask(app, cache=cache)
    calls = Calls()

    @app.errorhandler(404)
    def not_found(error: Exception) -> tuple[str, int]:
        return "no such shop", 404

    @app.get("/shops/<int:shop_id>")
    @ext.cached_view(ttl=60)
    def shop(shop_id: int) -> str:
        calls("shop")
        abort(404)

    client = app.test_client()
    answers = [client.get("/shops/404") for _ in range(2)]

    assert [(a.status_code, a.data) for a in answers] == [(404, b"no such shop")] * 2
    assert calls["shop"] == 2


def test_a_view_with_a_set_cookie_still_sends_it(cache: TieredCache) -> None:
    app, _ = _uncacheable_app(cache)

    served = app.test_client().get("/cookie")

    assert "visitor=42" in served.headers["Set-Cookie"]


# ---- tags and invalidation -----------------------------------------------------------------------


def test_tag_templates_take_the_views_url_parameters(cache: TieredCache) -> None:
    app, _, calls = shop_app(cache)
    client = app.test_client()
    client.get("/shops/42/products")
    client.get("/shops/42/products?q=hats")
    client.get("/shops/7/products")

    cache.invalidate_tags("shop:42")

    assert client.get("/shops/42/products").headers["X-Cache"] == "MISS"
    assert client.get("/shops/42/products?q=hats").headers["X-Cache"] == "MISS"
    assert client.get("/shops/7/products").headers["X-Cache"] == "HIT"
    assert calls["products"] == 5


def test_a_write_decorated_with_invalidates_drops_the_cached_pages(cache: TieredCache) -> None:
    app, _, calls = shop_app(cache)

    @app.put("/shops/<int:shop_id>")
    @cache.invalidates(tags=["shop:{shop_id}"])
    def update_shop(shop_id: int):
        if request.get_json().get("name") == "":
            abort(400)
        return {"updated": shop_id}

    client = app.test_client()
    client.get("/shops/42/products")
    client.get("/shops/7/products")

    assert client.put("/shops/42", json={"name": ""}).status_code == 400  # failed: nothing dropped
    assert client.get("/shops/42/products").headers["X-Cache"] == "HIT"
    assert client.put("/shops/42", json={"name": "Barbers"}).status_code == 200
    assert client.get("/shops/42/products").headers["X-Cache"] == "MISS"
    assert client.get("/shops/7/products").headers["X-Cache"] == "HIT"
    assert calls["products"] == 3


def test_an_invalidation_in_one_process_reaches_the_other(redis_url: str) -> None:
    made = Caches(redis_url=redis_url, namespace=NS)
    try:
        app_a, _, _ = shop_app(made())
        app_b, _, calls_b = shop_app(made())
        app_b.test_client().get("/shops/42/products")
        assert app_b.test_client().get("/shops/42/products").headers["X-Cache"] == "HIT"

        app_a.extensions["tieredcache"].cache.invalidate_tags("shop:42")

        # Redis no longer holds it and B's L1 drops it when the message arrives
        assert wait_until(lambda: app_b.test_client().get("/shops/42/products").headers["X-Cache"] == "MISS")
        assert calls_b["products"] == 2
    finally:
        made.close()


def test_cached_view_arguments_are_checked_when_decorating(cache: TieredCache) -> None:
    ext = TieredCacheFlask(cache=cache)

    with pytest.raises(ValueError, match="tags: .*\\{shop\\}.*not a parameter"):
        ext.cached_view(tags=["shop:{shop}"])(lambda shop_id: "x")
    with pytest.raises(TypeError, match="tags: must be a list"):
        ext.cached_view(tags="shop:{shop_id}")
    with pytest.raises(ValueError, match="private: must be 'skip' or 'per_user'"):
        ext.cached_view(private="public")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ttl"):
        ext.cached_view(ttl=-1)
    with pytest.raises(ValueError, match="ttl"):
        ext.cached_view(ttl="forever")


def test_a_cached_view_keeps_the_views_name_and_docstring(cache: TieredCache) -> None:
    ext = TieredCacheFlask(cache=cache)

    def products(shop_id: int) -> str:
        """The shop's products."""
        return ""

    cached = ext.cached_view()(products)

    assert (cached.__name__, cached.__doc__, cached.__wrapped__) == ("products", "The shop's products.", products)


# ---- the extension: configuration ------------------------------------------------------------


def _configured_app(**config: Any) -> Flask:
    app = Flask(__name__)
    app.config.update(config)
    return app


def test_init_app_builds_the_cache_from_app_config(url: str | None) -> None:
    app = _configured_app(CACHE_REDIS_URL=url, CACHE_NAMESPACE="billing", CACHE_DEFAULT_TTL=45,
                          CACHE_MAX_ENTRIES=1000)
    ext = TieredCacheFlask()
    ext.init_app(app)
    try:
        assert app.extensions["tieredcache"] is ext
        cache = ext.cache
        stats = cache.stats()
        assert cache.name == "billing"
        assert stats["l1"]["max_entries"] == 1000
        assert stats["l2"]["enabled"] is (url is not None)

        @app.get("/report")
        @ext.cached_view()
        def report():
            return "ok"

        assert app.test_client().get("/report").headers["Cache-Control"] == "public, max-age=45"
    finally:
        ext.close()


def test_redis_url_is_the_fallback_of_cache_redis_url(redis_url: str) -> None:
    ext = TieredCacheFlask(_configured_app(REDIS_URL=redis_url))
    try:
        assert ext.cache.stats()["l2"]["enabled"] is True
    finally:
        ext.close()


def test_keys_absent_from_app_config_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CACHE_NAMESPACE", "from-env")
    monkeypatch.setenv("CACHE_ENABLED", "false")
    ext = TieredCacheFlask(_configured_app())
    try:
        app, _, calls = shop_app(ext.cache)
        assert ext.cache.name == "from-env"
        app.test_client().get("/shops/1/products")
        assert app.test_client().get("/shops/1/products").headers["X-Cache"] == "MISS"
    finally:
        ext.close()


def test_app_config_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CACHE_NAMESPACE", "from-env")
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    ext = TieredCacheFlask(_configured_app(CACHE_NAMESPACE="from-config", CACHE_REDIS_URL=None))
    try:
        assert ext.cache.name == "from-config"
        assert ext.cache.stats()["l2"]["enabled"] is False  # None: L1 only
    finally:
        ext.close()


@pytest.mark.parametrize(("key", "value"), [
    ("CACHE_DEFAULT_TTL", "soon"), ("CACHE_DEFAULT_TTL", -5), ("CACHE_ENABLED", "maybe"),
    ("CACHE_MAX_ENTRIES", 0), ("CACHE_NAMESPACE", ""), ("CACHE_REDIS_URL", 6379),
    ("CACHE_WARMING_ENABLED", "sometimes"), ("CACHE_ADMIN_TOKEN", 1234),
])
def test_a_bad_config_value_raises_configuration_error_naming_the_key(key: str, value: Any) -> None:
    with pytest.raises(ConfigurationError, match=key):
        TieredCacheFlask(_configured_app(**{key: value}))


def test_one_extension_serves_several_apps_each_with_its_own_cache() -> None:
    ext = TieredCacheFlask()
    first, second = _configured_app(CACHE_NAMESPACE="one"), _configured_app(CACHE_NAMESPACE="two")
    ext.init_app(first)
    ext.init_app(second)
    try:
        with first.app_context():
            assert ext.cache.name == "one"
        with second.app_context():
            assert ext.cache.name == "two"
        with pytest.raises(RuntimeError, match="several apps"):
            ext.cache
    finally:
        ext.close()


def test_ext_cache_before_init_app_says_what_to_do() -> None:
    with pytest.raises(RuntimeError, match="init_app"):
        TieredCacheFlask().cache


def test_close_closes_only_the_caches_the_extension_built(cache: TieredCache) -> None:
    built = TieredCacheFlask(_configured_app())
    given = TieredCacheFlask(_configured_app(), cache=cache)
    own = built.cache

    built.close()
    given.close()

    with pytest.raises(RuntimeError, match="init_app"):
        built.cache
    assert own is not cache
    cache.set("still", "open")
    assert cache.get("still") == "open"


def test_the_extension_refuses_what_is_not_a_cache() -> None:
    with pytest.raises(TypeError, match="cache must be a TieredCache"):
        TieredCacheFlask(cache={"not": "a cache"})  # type: ignore[arg-type]


# ---- warming at startup ---------------------------------------------------------------------


def _cache_with_warmers(cache: TieredCache) -> list[str]:
    ran: list[str] = []

    @cache.warmer("products")
    def products() -> dict[str, Any]:
        ran.append("products")
        return {"product:1": {"name": "Haircut"}, "product:2": {"name": "Shave"}}

    @cache.warmer("dashboard")
    def dashboard(view: TieredCache) -> int:
        ran.append("dashboard")
        view.set("dashboard:today", {"bookings": 12})
        return 1

    return ran


@pytest.mark.parametrize("setting", [True, "true", "1"])
def test_warming_enabled_in_config_runs_every_warmer_at_init_app(cache: TieredCache, setting: Any) -> None:
    ran = _cache_with_warmers(cache)

    TieredCacheFlask(_configured_app(CACHE_WARMING_ENABLED=setting), cache=cache)

    assert sorted(ran) == ["dashboard", "products"]
    assert cache.get("product:2") == {"name": "Shave"}
    assert cache.get("dashboard:today") == {"bookings": 12}


def test_warming_is_off_by_default(cache: TieredCache) -> None:
    ran = _cache_with_warmers(cache)

    TieredCacheFlask(_configured_app(), cache=cache)

    assert ran == []
    assert cache.get("product:1") is None


def test_the_environment_variable_enables_warming_too(cache: TieredCache, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CACHE_WARMING_ENABLED", "true")
    ran = _cache_with_warmers(cache)

    TieredCacheFlask(_configured_app(), cache=cache)
    assert sorted(ran) == ["dashboard", "products"]

    ran.clear()
    TieredCacheFlask(_configured_app(CACHE_WARMING_ENABLED=False), cache=cache)  # the config wins
    assert ran == []


def test_a_warmer_that_fails_stops_init_app(cache: TieredCache) -> None:
    @cache.warmer("products")
    def products() -> dict[str, Any]:
        raise ConnectionError("database unreachable")

    with pytest.raises(ConnectionError, match="database unreachable"):
        TieredCacheFlask(_configured_app(CACHE_WARMING_ENABLED=True), cache=cache)


# ---- the lead's decorators and presets on Flask views and services --------------------------


def test_cache_cached_on_a_view_returning_data(cache: TieredCache) -> None:
    app = Flask(__name__)
    loads: list[int] = []

    @app.get("/orgs/<int:org_id>/profile")
    @cache.cached(ttl="user_data", tags=["org:{org_id}"])
    def profile(org_id: int) -> dict[str, Any]:
        loads.append(org_id)
        return {"org": org_id, "plan": "pro"}

    @app.post("/orgs/<int:org_id>/profile")
    @cache.invalidates(tags=["org:{org_id}"])
    def update_profile(org_id: int) -> dict[str, Any]:
        return {"updated": org_id}

    client = app.test_client()
    assert client.get("/orgs/7/profile").get_json() == {"org": 7, "plan": "pro"}
    assert client.get("/orgs/7/profile").get_json() == {"org": 7, "plan": "pro"}
    assert loads == [7]

    client.post("/orgs/7/profile")
    client.get("/orgs/7/profile")
    assert loads == [7, 7]


def test_flask_request_is_left_out_of_a_service_functions_key(cache: TieredCache) -> None:
    app = Flask(__name__)
    loads: list[int] = []

    @cache.cached(ttl=300)
    def get_profile(org_id: int, req: flask.Request, db: object) -> dict[str, Any]:
        loads.append(org_id)
        return {"org": org_id}

    get_profile_excluding_db = cache.cached(ttl=300, exclude=["db"], name="get_profile_db")(
        get_profile.__wrapped__)

    @app.get("/orgs/<int:org_id>")
    def org(org_id: int) -> dict[str, Any]:
        return get_profile_excluding_db(org_id, request, db=object())  # a new session per request

    client = app.test_client()
    client.get("/orgs/1", headers={"X-Request-Id": "a"})
    client.get("/orgs/1", headers={"X-Request-Id": "b"})

    assert loads == [1]


def test_the_appointment_presets_on_flask_views(default_cache: TieredCache, raw: RawRedis | None) -> None:
    app = Flask(__name__)
    loads: list[str] = []
    bookings: list[str] = []

    @tieredcache.cache_appointment_slots()
    def free_slots(shop_id: int, day: str) -> list[str]:
        loads.append(day)
        return [s for s in ("09:00", "10:00", "11:00") if f"{day} {s}" not in bookings]

    @tieredcache.invalidate_appointment_cache
    def book(shop_id: int, day: str, slot: str) -> None:
        bookings.append(f"{day} {slot}")

    @app.get("/shops/<int:shop_id>/slots/<day>")
    def slots(shop_id: int, day: str) -> dict[str, Any]:
        return {"slots": free_slots(shop_id, day)}

    @app.post("/shops/<int:shop_id>/bookings")
    def create_booking(shop_id: int) -> tuple[dict[str, Any], int]:
        body = request.get_json()
        book(shop_id, body["day"], body["slot"])
        return {"booked": body["slot"]}, 201

    client = app.test_client()
    assert client.get("/shops/1/slots/2024-05-01").get_json() == {"slots": ["09:00", "10:00", "11:00"]}
    client.get("/shops/1/slots/2024-05-01")
    assert loads == ["2024-05-01"]

    assert client.post("/shops/1/bookings", json={"day": "2024-05-01", "slot": "10:00"}).status_code == 201
    assert client.get("/shops/1/slots/2024-05-01").get_json() == {"slots": ["09:00", "11:00"]}
    assert len(loads) == 2

    travel(299, raw)  # the preset's TTL is 300 s
    client.get("/shops/1/slots/2024-05-01")
    assert len(loads) == 2
    travel(2, raw)
    client.get("/shops/1/slots/2024-05-01")
    assert len(loads) == 3


@pytest.mark.parametrize(("preset", "ttl", "tag"), [
    (lambda: tieredcache.cache_analytics_data("revenue"), 1800, "analytics:revenue"),
    (lambda: tieredcache.cache_analytics_data("revenue"), 1800, "analytics"),
    (lambda: tieredcache.cache_business_intelligence(), 900, "business_intelligence"),
    (lambda: tieredcache.cache_static_reference_data(), 3600, "static"),
    (lambda: tieredcache.cache_appointment_slots(), 300, "availability"),
    (lambda: tieredcache.cache_appointment_slots(), 300, "slots"),
])
def test_each_preset_has_the_seeds_ttl_and_tags(default_cache: TieredCache, raw: RawRedis | None,
                                                  preset: Any, ttl: int, tag: str) -> None:
    app = Flask(__name__)
    loads: list[int] = []

    @app.get("/dashboard/<int:shop_id>")
    @preset()
    def dashboard(shop_id: int) -> dict[str, Any]:
        loads.append(shop_id)
        return {"shop": shop_id, "revenue": 1200}

    client = app.test_client()
    client.get("/dashboard/3")
    travel(ttl - 1, raw)
    assert client.get("/dashboard/3").get_json() == {"shop": 3, "revenue": 1200}
    assert loads == [3]

    default_cache.invalidate_tags(tag)
    client.get("/dashboard/3")
    assert loads == [3, 3]

    travel(ttl + 1, raw)
    client.get("/dashboard/3")
    assert loads == [3, 3, 3]


def test_the_ttl_tiers_have_the_seeds_values() -> None:
    ttl = tieredcache.TTL
    assert (ttl.REAL_TIME, ttl.USER_DATA, ttl.BUSINESS_INTELLIGENCE, ttl.ANALYTICS, ttl.STATIC) == (
        60, 300, 900, 1800, 3600)


# ---- the admin blueprint ---------------------------------------------------------------------------


def admin_app(cache: TieredCache, **options: Any) -> Flask:
    app = Flask(__name__)
    app.register_blueprint(cache_admin_blueprint(cache, **{"auth": TOKEN, **options}))
    return app


def _call(client: Any, action: str, headers: dict[str, str] | None = None, body: Any = None) -> Any:
    if ACTIONS[action] == "GET":
        return client.get(f"/cache/{action}", headers=headers)
    return client.post(f"/cache/{action}", headers=headers, json=body)


BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.mark.parametrize("action", list(ACTIONS))
def test_admin_without_credentials_is_401_and_changes_nothing(cache: TieredCache, action: str) -> None:
    cache.set("profile:7", {"email": "alice@example.com"}, tags=["org:7"])
    client = admin_app(cache).test_client()

    for headers in (None, {"Authorization": "Basic dXNlcjpwYXNz"}, {"Authorization": "Bearer"}):
        refused = _call(client, action, headers, body={"tags": ["org:7"]})
        assert refused.status_code == 401
        assert refused.headers["WWW-Authenticate"] == "Bearer"
        assert refused.get_json() == {"error": "authentication required"}

    assert cache.get("profile:7") == {"email": "alice@example.com"}


@pytest.mark.parametrize("action", list(ACTIONS))
def test_admin_with_a_wrong_token_is_403_and_changes_nothing(cache: TieredCache, action: str) -> None:
    cache.set("profile:7", {"email": "alice@example.com"}, tags=["org:7"])
    client = admin_app(cache).test_client()

    refused = _call(client, action, {"Authorization": "Bearer not-the-token"}, body={"tags": ["org:7"]})

    assert refused.status_code == 403
    assert refused.get_json() == {"error": "forbidden"}
    assert cache.get("profile:7") == {"email": "alice@example.com"}


@pytest.mark.parametrize("action", ["stats", "health", "metrics", "report", "recommendations"])
def test_admin_reads_show_statistics_but_never_values_or_secrets(cache: TieredCache, action: str) -> None:
    cache.set("profile:7", {"email": "alice@example.com"})
    cache.get("profile:7")
    client = admin_app(cache).test_client()

    served = _call(client, action, BEARER)

    assert served.status_code == 200
    assert served.headers["Cache-Control"] == "no-store"
    assert b"alice@example.com" not in served.data
    assert TOKEN.encode() not in served.data


def test_admin_stats_and_health_describe_the_cache(cache: TieredCache, tier: str) -> None:
    client = admin_app(cache).test_client()

    stats = client.get("/cache/stats", headers=BEARER).get_json()
    health = client.get("/cache/health", headers=BEARER).get_json()

    assert stats["namespace"] == NS
    assert health["status"] == "ok"
    assert health["l2"]["enabled"] is (tier == "redis")


def test_admin_metrics_are_prometheus_text(cache: TieredCache) -> None:
    served = admin_app(cache).test_client().get("/cache/metrics", headers=BEARER)

    assert served.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert "# TYPE tieredcache_hits_total counter" in served.get_data(as_text=True)


def test_admin_report_lists_the_cached_functions(cache: TieredCache) -> None:
    @cache.cached(ttl=60, name="billing.summary")
    def summary(org_id: int) -> dict[str, int]:
        return {"total": org_id}

    summary(1)
    summary(1)
    rows = admin_app(cache).test_client().get("/cache/report", headers=BEARER).get_json()

    row = next(r for r in rows if r["function"] == "billing.summary")
    assert (row["calls"], row["hits"], row["misses"]) == (2, 1, 1)


def test_admin_clear_and_invalidate_with_the_token(cache: TieredCache) -> None:
    cache.set("profile:7", "a", tags=["org:7"])
    cache.set("profile:8", "b", tags=["org:8"])
    cache.set("order:1", "c")
    client = admin_app(cache).test_client()

    invalidated = client.post("/cache/invalidate", headers=BEARER, json={"tags": ["org:7"], "keys": ["order:1"]})
    assert invalidated.status_code == 200
    assert invalidated.get_json()["deleted"] == 1
    assert (cache.get("profile:7"), cache.get("order:1"), cache.get("profile:8")) == (None, None, "b")

    cleared = client.post("/cache/clear", headers=BEARER)
    assert cleared.status_code == 200
    assert cache.get("profile:8") is None


def test_admin_warm_runs_the_groups_asked_for(cache: TieredCache) -> None:
    ran = _cache_with_warmers(cache)
    client = admin_app(cache).test_client()

    warmed = client.post("/cache/warm", headers=BEARER, json={"groups": ["products"]})

    assert warmed.status_code == 200
    assert warmed.get_json() == {"warmed": {"products": 2}}
    assert ran == ["products"]
    assert client.post("/cache/warm", headers=BEARER, json={"groups": ["nope"]}).status_code == 400


@pytest.mark.parametrize(("data", "content_type", "status"), [
    ("tags=org:7", "application/x-www-form-urlencoded", 415),
    ('{"tags": ["org:7"]}', "text/plain", 415),
    ("{not json", "application/json", 400),
    ('["org:7"]', "application/json", 400),
    ('{"tags": "org:7"}', "application/json", 400),
])
def test_admin_refuses_bodies_that_are_not_a_json_object(cache: TieredCache, data: str, content_type: str,
                                                          status: int) -> None:
    cache.set("profile:7", "a", tags=["org:7"])
    client = admin_app(cache).test_client()

    refused = client.post("/cache/invalidate", headers=BEARER, data=data, content_type=content_type)

    assert refused.status_code == status
    assert "error" in refused.get_json()
    assert cache.get("profile:7") == "a"


@pytest.mark.parametrize(("verdict", "status"), [(True, 200), (False, 403), (None, 401)])
def test_admin_with_a_callable_auth(cache: TieredCache, verdict: bool | None, status: int) -> None:
    seen: list[flask.Request] = []

    def auth(req: flask.Request) -> bool | None:
        seen.append(req)
        return verdict

    client = admin_app(cache, auth=auth).test_client()

    assert client.get("/cache/stats").status_code == status
    assert client.post("/cache/clear", json={}).status_code == status
    assert seen and seen[0].path == "/cache/stats"


def test_admin_with_a_callable_auth_requires_json_posts(cache: TieredCache) -> None:
    """A callable usually authenticates by session cookie: a POST without a JSON content
    type (which a cross-site form could send) is refused, so it cannot clear the cache."""
    cache.set("profile:7", "a")
    client = admin_app(cache, auth=lambda req: True).test_client()

    assert client.post("/cache/clear").status_code == 415
    assert cache.get("profile:7") == "a"
    assert client.post("/cache/clear", json={}).status_code == 200
    assert cache.get("profile:7") is None


@pytest.mark.parametrize("auth", [None, "", "   "])
def test_the_admin_blueprint_refuses_to_exist_without_auth(cache: TieredCache, auth: Any) -> None:
    with pytest.raises(ConfigurationError, match="auth"):
        cache_admin_blueprint(cache, auth=auth)


def test_the_admin_blueprint_has_a_configurable_prefix(cache: TieredCache) -> None:
    client = admin_app(cache, url_prefix="/ops/cache").test_client()

    assert client.get("/ops/cache/stats", headers=BEARER).status_code == 200
    assert client.get("/cache/stats", headers=BEARER).status_code == 404


def test_ext_admin_blueprint_uses_cache_admin_token(cache: TieredCache) -> None:
    app = _configured_app(CACHE_ADMIN_TOKEN=TOKEN)
    ext = TieredCacheFlask(app, cache=cache)
    app.register_blueprint(ext.admin_blueprint())
    client = app.test_client()

    assert client.get("/cache/stats").status_code == 401
    assert client.get("/cache/stats", headers={"Authorization": "Bearer nope"}).status_code == 403
    assert client.get("/cache/stats", headers=BEARER).get_json()["namespace"] == NS


def test_ext_admin_blueprint_without_a_token_refuses(cache: TieredCache) -> None:
    ext = TieredCacheFlask(_configured_app(), cache=cache)

    with pytest.raises(ConfigurationError, match="CACHE_ADMIN_TOKEN"):
        ext.admin_blueprint()


def test_admin_responses_are_json(cache: TieredCache) -> None:
    served = admin_app(cache).test_client().get("/cache/stats", headers=BEARER)

    assert served.headers["Content-Type"] == "application/json"
    assert json.loads(served.data)["namespace"] == NS

"""The point-of-sale reference app (docs/examples/pos), driven through its HTTP API.

As for the barbershop: after every write the cached app's answers are compared with an
uncached app's on the same database (``truth``), and the query counter tells what was
reloaded and what is still served from the cache. Also here: the seed's relationships (a
product change leaves customers cached), warming counts per group and per shop, tenant
isolation (shops use the same SKUs), the TTLs, admin authentication, and two apps sharing
one Redis.
"""

from __future__ import annotations

import shutil
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tieredcache import TieredCache

EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))

from pos.app import create_app  # noqa: E402
from pos.seed import SHOPS, seed  # noqa: E402

TOKEN = "pos-admin-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
CATALOG_SIZES = {shop_id: len(catalog) for shop_id, (_, catalog) in enumerate(SHOPS.values(), 1)}


def reads_of(shop: int) -> dict[str, str]:
    """The cached reads of one shop, by name."""
    base = f"/shops/{shop}"
    return {
        "products": f"{base}/products",
        "product": f"{base}/products/P001",
        "customers": f"{base}/customers",
        "customer": f"{base}/customers/{first_customer(shop)}",
        "history": f"{base}/customers/{first_customer(shop)}/bills",
        "other_history": f"{base}/customers/{first_customer(shop) + 1}/bills",
        "bills": f"{base}/bills",
        "bill": f"{base}/bills/{first_bill(shop)}",
        "employees": f"{base}/employees",
        "dashboard": f"{base}/dashboard",
    }


def first_customer(shop: int) -> int:
    return (shop - 1) * 45 + 1  # seed(): 45 customers per shop


def first_bill(shop: int) -> int:
    return (shop - 1) * 240 + 1  # seed(): 240 bills per shop


def first_employee(shop: int) -> int:
    return (shop - 1) * 4 + 1


READS = reads_of(1)


def wait_until(condition: Callable[[], Any], timeout: float = 5.0) -> bool:
    """Poll until condition() holds (an invalidation crossing Redis takes milliseconds)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return bool(condition())
        time.sleep(0.01)
    return True


class Api:
    """A TestClient of one app (its lifespan running), with the database-read counter."""

    def __init__(self, client: TestClient) -> None:
        self.client = client

    def call(self, method: str, url: str, status: int, **kw: Any) -> Any:
        response = self.client.request(method, url, **kw)
        assert response.status_code == status, (method, url, response.status_code, response.text)
        return response.json()

    def get(self, url: str, status: int = 200, **kw: Any) -> Any:
        return self.call("GET", url, status, **kw)

    def post(self, url: str, json: Any, status: int = 201, **kw: Any) -> Any:
        return self.call("POST", url, status, json=json, **kw)

    def put(self, url: str, json: Any, status: int = 200) -> Any:
        return self.call("PUT", url, status, json=json)

    @property
    def reads(self) -> int:
        return self.get("/debug/queries")["reads"]

    def reads_for(self, url: str, status: int = 200) -> int:
        """Database reads made to answer GET url: 0 when it came from the cache."""
        before = self.reads
        self.get(url, status)
        return self.reads - before

    def bill(self, shop: int, customer: int | None, items: list[tuple[str, int]], **kw: Any) -> Any:
        body = {"employee_id": first_employee(shop), "customer_id": customer,
                "items": [{"sku": sku, "qty": qty} for sku, qty in items],
                "created_at": "2024-05-15T18:30:00"}
        return self.post(f"/shops/{shop}/bills", {**body, **kw.pop("body", {})}, **kw)


# ---- fixtures ---------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _no_startup_warming(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests count queries from a cold cache: CACHE_WARMING_ENABLED must not warm it."""
    monkeypatch.delenv("CACHE_WARMING_ENABLED", raising=False)


@pytest.fixture(scope="session")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pos") / "seeded.db"
    seed(str(path))
    return path


@pytest.fixture
def db_path(tmp_path: Path, seeded: Path) -> str:
    path = tmp_path / "pos.db"
    shutil.copyfile(seeded, path)
    return str(path)


@pytest.fixture(params=["l1", "redis"])
def cache(request: pytest.FixtureRequest) -> Iterator[TieredCache]:
    """The app's cache: L1 only, then L1 + the private Redis (flushed)."""
    url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    cache = TieredCache(redis_url=url, namespace=f"pos-{uuid.uuid4().hex[:8]}")
    yield cache
    cache.close()


@pytest.fixture
def open_api() -> Iterator[Callable[..., Api]]:
    """open_api(db_path, cache, **create_app_kwargs): a running app; with close_cache=True
    the cache is closed after the app has shut down."""
    clients: list[TestClient] = []
    caches: list[TieredCache] = []

    def open_api(db_path: str, cache: TieredCache | None, *, close_cache: bool = False, **kw: Any) -> Api:
        if close_cache and cache is not None:
            caches.append(cache)
        client = TestClient(create_app(db_path=db_path, cache=cache, **{"admin_token": TOKEN, **kw}))
        client.__enter__()  # runs the lifespan (warming, if asked)
        clients.append(client)
        return Api(client)

    yield open_api
    for client in clients:
        client.__exit__(None, None, None)
    for cache in caches:
        cache.close()


@pytest.fixture
def api(open_api: Callable[..., Api], db_path: str, cache: TieredCache) -> Api:
    return open_api(db_path, cache)


@pytest.fixture
def truth(open_api: Callable[..., Api], db_path: str) -> Api:
    """The same app uncached, on the same database: what a correct cache must answer."""
    return open_api(db_path, None)


def prime(api: Api, reads: dict[str, str] = READS) -> None:
    for name, url in reads.items():
        api.get(url)
        assert api.reads_for(url) == 0, f"{name} is not cached"


def assert_after_write(api: Api, truth: Api, refreshed: set[str], reads: dict[str, str] = READS,
                       refilled: set[str] = frozenset()) -> None:  # type: ignore[assignment]
    """`refreshed` reads go back to the database; the others are still cached, except
    `refilled`: entries the write's own answer already reloaded (``PUT .../P001`` answers
    the product as it now is). All of them answer what the database holds."""
    for name, url in reads.items():
        count = api.reads_for(url)
        if name in refreshed:
            assert count > 0, f"{name} was not invalidated"
        elif name not in refilled:
            assert count == 0, f"{name} was invalidated ({count} reads) though the write did not touch it"
        assert api.get(url) == truth.get(url), f"{name} is stale"


# ---- reads ------------------------------------------------------------------------------


def test_every_read_is_served_from_the_cache_the_second_time(api: Api, truth: Api) -> None:
    for name, url in READS.items():
        assert api.reads_for(url) > 0, name
        assert api.reads_for(url) == 0, f"{name} was not cached"
        assert api.get(url) == truth.get(url)
    assert api.get("/shops")["shops"][0] == {"id": 1, "name": "Corner Cafe"}


def test_unknown_things_are_404_and_never_cached(api: Api) -> None:
    api.get("/shops/9/products", 404)  # the list of shops is cached: no query to say so
    for url in ("/shops/1/products/NOPE", "/shops/1/customers/99999", "/shops/1/customers/99999/bills",
                "/shops/1/bills/99999"):
        api.get(url, 404)
        assert api.reads_for(url, 404) > 0, f"{url}: a 404 was cached"
    api.get("/shops/1/customers?page=0", 422)


# ---- the seed's relationships -------------------------------------------------------------


def test_a_product_change_refreshes_the_catalog_and_the_dashboard_not_customers(api: Api, truth: Api) -> None:
    prime(api)
    top = api.get(READS["dashboard"])["top_products"][0]["sku"]
    assert api.put(f"/shops/1/products/{top}", {"name": "House special", "price_cents": 999})["price_cents"] == 999
    # "products" tags every product entry: P001's too (unless the PUT's answer reloaded it)
    product = {"product"}
    assert_after_write(api, truth, {"products", "dashboard"} | (product if top != "P001" else set()),
                       refilled=product if top == "P001" else set())
    assert api.get(READS["dashboard"])["top_products"][0]["name"] == "House special"
    assert api.get(f"/shops/1/products/{top}")["name"] == "House special"
    # a new product, and one taken off sale
    api.post("/shops/1/products", {"sku": "P100", "name": "Iced tea", "category": "tea", "price_cents": 300})
    assert "P100" in [p["sku"] for p in api.get(READS["products"])["products"]]
    api.put("/shops/1/products/P100", {"active": False})
    assert "P100" not in [p["sku"] for p in api.get(READS["products"])["products"]]
    assert api.get(READS["dashboard"]) == truth.get(READS["dashboard"])
    api.post("/shops/1/products", {"sku": "P100", "name": "Twice", "category": "tea", "price_cents": 1}, 409)


def test_a_bill_refreshes_the_dashboard_the_bills_and_that_customers_history_only(api: Api, truth: Api) -> None:
    prime(api)
    history = api.get(READS["history"])
    customer = first_customer(1)
    bill = api.bill(1, customer, [("P001", 2), ("P007", 1)])
    assert bill["subtotal_cents"] == 2 * 250 + 280 and bill["total_cents"] == 780 + 39  # 5 % tax
    assert_after_write(api, truth, {"bills", "dashboard", "history"})
    after = api.get(READS["history"])
    assert after["visits"] == history["visits"] + 1 and after["bills"][0]["id"] == bill["id"]
    assert api.get(READS["bills"])["bills"][0]["id"] == bill["id"]
    # a walk-in (no customer) touches no history
    prime(api)
    api.bill(1, None, [("P002", 1)])
    assert_after_write(api, truth, {"bills", "dashboard"})


def test_a_refused_bill_invalidates_nothing(api: Api, truth: Api) -> None:
    prime(api)
    api.bill(1, first_customer(1), [("NOPE", 1)], status=422)
    api.bill(1, first_customer(2), [("P001", 1)], status=422)  # shop 2's customer
    api.bill(1, None, [("P001", 1)], status=422, body={"discount_cents": 10_000})
    assert_after_write(api, truth, set())


def test_a_customer_change_refreshes_customers_and_the_dashboard_not_products(api: Api, truth: Api) -> None:
    prime(api)
    customer = first_customer(1)
    assert api.put(f"/shops/1/customers/{customer}", {"name": "Renamed"})["name"] == "Renamed"
    assert_after_write(api, truth, {"customers", "dashboard"}, refilled={"customer"})
    assert api.get(READS["customers"])["customers"][0]["name"] == "Renamed"
    prime(api)
    new = api.post("/shops/1/customers", {"name": "New Customer", "phone": "+440000"})
    assert_after_write(api, truth, {"customers", "customer", "dashboard"})
    assert api.get(f"/shops/1/customers/{new['id']}")["name"] == "New Customer"
    assert api.get(READS["customers"])["total"] == 46


def test_an_employee_change_refreshes_the_staff_and_the_dashboard(api: Api, truth: Api) -> None:
    prime(api)
    employee = first_employee(1)
    assert api.put(f"/shops/1/employees/{employee}", {"name": "New Manager"})["name"] == "New Manager"
    assert_after_write(api, truth, {"dashboard"}, refilled={"employees"})
    assert api.get(READS["dashboard"])["sales_by_employee"][0]["name"] == "New Manager"
    api.post("/shops/1/employees", {"name": "Trainee"})
    assert [e["name"] for e in api.get(READS["employees"])["employees"]][-1] == "Trainee"


# ---- warming ------------------------------------------------------------------------------


def test_warming_each_group_for_every_shop_reports_its_counts(api: Api) -> None:
    products = sum(1 + size for size in CATALOG_SIZES.values())  # each catalog and its products
    warm = "/admin/cache/warm"
    assert api.post(warm, {"groups": ["products"]}, 200, headers=ADMIN) == {"warmed": {"products": products}}
    assert api.post(warm, {"groups": ["dashboard"]}, 200, headers=ADMIN) == {"warmed": {"dashboard": 3}}
    assert api.post(warm, {"groups": ["customers"]}, 200, headers=ADMIN) == {"warmed": {"customers": 3}}
    everything = {"customers": 3, "dashboard": 3, "products": products}
    assert api.post(warm, {"groups": ["all"]}, 200, headers=ADMIN) == {"warmed": everything}
    assert api.post(warm, {}, 200, headers=ADMIN) == {"warmed": everything}
    assert "unknown warm group 'bills'" in api.post(warm, {"groups": ["bills"]}, 400, headers=ADMIN)["error"]
    for shop in (1, 2, 3):
        for name in ("products", "product", "customers", "dashboard"):
            assert api.reads_for(reads_of(shop)[name]) == 0, f"shop {shop}: {name} was not warmed"


def test_warming_one_shop_warms_that_shop_only(api: Api, cache: TieredCache) -> None:
    answer = api.post("/admin/shops/2/cache/warm", {"groups": ["all"]}, 200, headers=ADMIN)
    assert answer == {"warmed": {"customers": 1, "dashboard": 1, "products": 1 + CATALOG_SIZES[2]}}
    assert api.post("/admin/shops/2/cache/warm", {"groups": ["dashboard"]}, 200,
                    headers=ADMIN) == {"warmed": {"dashboard": 1}}
    for name in ("products", "product", "customers", "dashboard"):
        assert api.reads_for(reads_of(2)[name]) == 0, f"{name} was not warmed"
        assert api.reads_for(reads_of(1)[name]) > 0, f"shop 1's {name} was warmed with shop 2's"
    # the same from Python: a warmer receives the cache it runs against
    assert cache.namespace("shop:3").warm("products") == {"products": 1 + CATALOG_SIZES[3]}
    assert api.reads_for(reads_of(3)["products"]) == 0
    api.post("/admin/shops/9/cache/warm", {"groups": ["all"]}, 404, headers=ADMIN)
    api.post("/admin/shops/2/cache/explode", {}, 404, headers=ADMIN)


def test_startup_warming_fills_every_shop(open_api: Callable[..., Api], db_path: str, cache: TieredCache) -> None:
    api = open_api(db_path, cache, warm=True)
    for shop in (1, 2, 3):
        for name in ("products", "product", "customers", "dashboard"):
            assert api.reads_for(reads_of(shop)[name]) == 0, f"shop {shop}: {name} was not warmed"


# ---- tenants --------------------------------------------------------------------------------


def test_one_shops_entries_are_never_served_to_another(api: Api, truth: Api) -> None:
    # both shops have a P001, a "products" key, a "dashboard" key, a "products" tag
    assert api.get("/shops/1/products/P001")["name"] == "Espresso"
    assert api.get("/shops/2/products/P001")["name"] == "Shirt alteration"
    assert api.get("/shops/2/products")["products"][0]["name"] == "Shirt alteration"
    # another shop's customer, history or bill is not found, cached or not
    for url in (f"/shops/1/customers/{first_customer(1)}", f"/shops/1/bills/{first_bill(1)}"):
        api.get(url)
        api.get(url.replace("/shops/1/", "/shops/2/"), 404)
    api.get(f"/shops/2/customers/{first_customer(1)}/bills", 404)


def test_a_write_in_one_shop_leaves_the_other_shops_entries_cached(api: Api, truth: Api) -> None:
    shop1, shop2 = reads_of(1), reads_of(2)
    prime(api, shop1)
    prime(api, shop2)
    api.put("/shops/1/products/P001", {"price_cents": 111})
    api.bill(1, first_customer(1), [("P001", 1)])
    api.put(f"/shops/1/customers/{first_customer(1)}", {"name": "Only in shop 1"})
    assert_after_write(api, truth, set(), reads=shop2)
    assert api.get("/shops/2/products/P001")["price_cents"] == 1500
    assert_after_write(api, truth, {"products", "bills", "dashboard", "customers", "history"}, reads=shop1,
                       refilled={"product", "customer"})


def test_clearing_one_shop_leaves_the_other_shops_cached(api: Api, truth: Api) -> None:
    shop1, shop2 = reads_of(1), reads_of(2)
    prime(api, shop1)
    prime(api, shop2)
    cleared = api.post("/admin/cache/clear", {"namespace": "shop:1"}, 200, headers=ADMIN)
    assert cleared["cleared"] >= len(shop1)
    assert_after_write(api, truth, set(shop1), reads=shop1)
    assert_after_write(api, truth, set(), reads=shop2)
    prime(api, shop1)
    assert api.post("/admin/shops/2/cache/clear", {}, 200, headers=ADMIN)["cleared"] >= len(shop2)
    assert_after_write(api, truth, set(), reads=shop1)
    assert_after_write(api, truth, set(shop2), reads=shop2)
    assert api.post("/admin/shops/2/cache/invalidate", {"tags": ["products"]}, 200, headers=ADMIN)["invalidated"] >= 1
    assert api.reads_for(shop2["products"]) > 0 and api.reads_for(shop1["products"]) == 0


# ---- TTLs -----------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", [
    pytest.param("l1", marks=pytest.mark.tieredcache(redis=False)),
    pytest.param("redis", marks=pytest.mark.tieredcache(redis=True)),
])
def test_each_read_keeps_its_entries_for_its_ttl(backend: str, tiered_cache: TieredCache, cache_clock: Any,
                                                 open_api: Callable[..., Api], db_path: str) -> None:
    ttls = {"products": 3600, "product": 3600, "employees": 3600, "bill": 3600,
            "dashboard": 900, "customers": 300, "customer": 300, "history": 300, "bills": 60}
    api = open_api(db_path, tiered_cache)
    api.get("/shops")
    prime(api, {name: READS[name] for name in ttls})
    loaded = dict.fromkeys(ttls, 0)
    now = 0
    for later in (61, 302, 903, 1804, 3605):
        cache_clock.advance(later - now)
        now = later
        for name, ttl in ttls.items():
            expired = now - loaded[name] > ttl
            assert (api.reads_for(READS[name]) > 0) == expired, f"{name} at t={now}s"
            if expired:
                loaded[name] = now


# ---- the uncached baseline ----------------------------------------------------------------


def test_the_uncached_baseline_answers_exactly_what_the_cached_app_answers(
        open_api: Callable[..., Api], seeded: Path, tmp_path: Path, cache: TieredCache) -> None:
    apis = []
    for name, app_cache in (("cached", cache), ("baseline", None)):
        path = tmp_path / f"{name}.db"
        shutil.copyfile(seeded, path)
        apis.append(open_api(str(path), app_cache))
    cached, baseline = apis

    def both(method: str, url: str, body: Any = None) -> Any:
        answers = [a.client.request(method, url, json=body) for a in apis]
        assert answers[0].status_code == answers[1].status_code, (method, url)
        assert answers[0].json() == answers[1].json(), (method, url)
        return answers[0].json()

    def read_everything() -> None:
        for shop in (1, 2):
            for url in reads_of(shop).values():
                both("GET", url)

    read_everything()
    read_everything()
    both("PUT", "/shops/1/products/P001", {"price_cents": 260})
    read_everything()
    both("POST", "/shops/1/bills", {"employee_id": 1, "customer_id": 1, "items": [{"sku": "P001", "qty": 3}],
                                    "discount_cents": 50, "created_at": "2024-05-15T19:00:00"})
    read_everything()
    both("PUT", "/shops/1/customers/1", {"email": "new@example.com"})
    both("POST", "/shops/2/customers", {"name": "Zoe", "phone": "+449999"})
    both("PUT", "/shops/2/employees/5", {"active": False})
    both("POST", "/shops/2/bills", {"employee_id": 5, "items": [{"sku": "P001", "qty": 1}]})  # inactive: 422
    read_everything()
    assert baseline.reads_for(READS["dashboard"]) > 0
    assert cached.reads_for(READS["dashboard"]) == 0
    assert cached.reads < baseline.reads


# ---- admin endpoints ------------------------------------------------------------------------


def test_the_admin_endpoints_require_the_token(api: Api) -> None:
    for method, url in (("GET", "/admin/cache/stats"), ("POST", "/admin/cache/warm"),
                        ("POST", "/admin/cache/clear"), ("POST", "/admin/shops/1/cache/warm"),
                        ("POST", "/admin/shops/1/cache/clear")):
        none = api.client.request(method, url, json={})
        assert none.status_code == 401 and none.headers["www-authenticate"] == "Bearer", url
        wrong = api.client.request(method, url, json={}, headers={"Authorization": "Bearer guess"})
        assert wrong.status_code == 403, url
    assert api.reads_for(READS["products"]) > 0, "a refused warm warmed something"
    prime(api)
    assert api.reads_for(READS["products"]) == 0, "a refused clear cleared something"
    stats = api.get("/admin/cache/stats", headers=ADMIN)
    assert stats["namespace"].startswith("pos-")
    assert api.get("/admin/cache/health", headers=ADMIN)["status"] == "ok"


def test_no_admin_endpoints_without_a_token(open_api: Callable[..., Api], db_path: str,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CACHE_ADMIN_TOKEN", raising=False)
    api = open_api(db_path, None, admin_token=None)
    assert api.client.get("/admin/cache/stats", headers=ADMIN).status_code == 404
    assert api.client.post("/admin/shops/1/cache/warm", json={}, headers=ADMIN).status_code == 404


# ---- two servers on one Redis -----------------------------------------------------------------


def test_two_apps_sharing_redis_serve_each_others_writes(redis_url: str, db_path: str,
                                                         open_api: Callable[..., Api], truth: Api) -> None:
    a, b = (open_api(db_path, TieredCache(redis_url=redis_url, namespace="pos-shared"), close_cache=True)
            for _ in range(2))
    prime(b)
    prime(b, reads_of(2))
    price = a.get(READS["product"])["price_cents"]
    a.put("/shops/1/products/P001", {"price_cents": price + 1})  # through server A
    # server B: Redis dropped the entries at once; B's L1 drops them when A's message arrives
    for name in ("products", "product", "dashboard"):
        assert wait_until(lambda: b.get(READS[name]) == truth.get(READS[name])), f"B serves a stale {name}"
    assert b.get(READS["product"])["price_cents"] == price + 1
    assert b.reads_for(READS["customers"]) == 0  # untouched by the product change: still cached in B
    assert b.reads_for(reads_of(2)["products"]) == 0  # another shop: still cached in B

    bill = b.bill(1, first_customer(1), [("P001", 1)])  # through server B
    assert wait_until(lambda: a.get(READS["history"])["bills"][0]["id"] == bill["id"]), "A serves stale history"
    for name in ("history", "bills", "dashboard"):
        assert wait_until(lambda: a.get(READS[name]) == truth.get(READS[name])), f"A serves a stale {name}"
    # the entries themselves are shared: a value B loaded is a Redis hit for A
    assert a.reads_for(reads_of(2)["employees"]) == 0

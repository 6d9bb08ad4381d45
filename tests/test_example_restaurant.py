"""The restaurant billing reference app (docs/examples/restaurant) through its HTTP API.

A real MongoDB-wire server per module: nx-27017 on a free loopback port (or the server
named by MONGODB_URL), via docs/examples/_mongo.py; the module is skipped, with the
reason, when none can start. Each test seeds its own database.

- The behaviour tests run twice, on the cached app and on the uncached baseline
  (``cache=None``): every read is right after every write, with or without the cache.
- One test replays the same requests against both and asserts identical responses.
- The cached app's cascades, warming, tenant isolation and admin endpoints are checked
  with the app's query counter: a read served by the cache makes no database query.
- Two uvicorn processes on one private Redis: a write through either is read back through
  the other at once, never stale.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("pymongo")
pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402
from pymongo import MongoClient  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "docs" / "examples"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))

from _mongo import MongoUnavailable, start_mongo  # noqa: E402
from restaurant import app as restaurant  # noqa: E402
from restaurant import seed as seeding  # noqa: E402

TOKEN = "test-admin-token"
ORGS = ["org-tandoor", "org-trattoria", "org-sushi"]
SMALL = dict(days=2, orders_per_day=30, customers=20)   # 45 orders and 20 customers per restaurant
A, B = "org-tandoor", "org-sushi"


@pytest.fixture(scope="module")
def mongo_url():
    try:
        url, stop = start_mongo()
    except MongoUnavailable as exc:
        pytest.skip(f"no MongoDB-wire server for the restaurant app: {exc}")
    try:
        yield url
    finally:
        stop()


def seed_db(url: str) -> str:
    name = f"t_{uuid.uuid4().hex[:12]}"
    with MongoClient(url) as client:
        seeding.seed(client[name], **SMALL)
    return name


@pytest.fixture
def db_name(mongo_url):
    name = seed_db(mongo_url)
    yield name
    with MongoClient(mongo_url) as client:
        client.drop_database(name)


class Clock:
    """The app's "now": the seed's business day, one second later at every call."""

    def __init__(self) -> None:
        self.at = datetime(2026, 1, 24, 19, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        self.at += timedelta(seconds=1)
        return self.at


class Api:
    def __init__(self, client: TestClient, app: Any, cache: Any) -> None:
        self.client, self.app, self.cache = client, app, cache

    def get(self, path: str, status: int = 200) -> Any:
        r = self.client.get(path)
        assert r.status_code == status, (path, r.status_code, r.text)
        return r.json()

    def send(self, method: str, path: str, body: Any, status: int) -> Any:
        r = self.client.request(method, path, json=body)
        assert r.status_code == status, (method, path, r.status_code, r.text)
        return r.json()

    @property
    def queries(self) -> int:
        return self.app.state.queries.total

    def queries_for(self, *paths: str) -> int:
        """Database queries the reads of these paths made."""
        before = self.queries
        for path in paths:
            self.get(path)
        return self.queries - before

    def active(self, org: str) -> list[str]:
        return [o["order_id"] for o in self.get(f"/orgs/{org}/orders/active")["orders"]]


def open_api(mongo_url: str, db_name: str, cached: bool, **kwargs: Any):
    cache = restaurant.make_cache() if cached else None
    app = restaurant.create_app(mongo_url=mongo_url, cache=cache, db_name=db_name, clock=Clock(),
                                admin_token=TOKEN, **kwargs)
    return app, cache


@pytest.fixture(params=["cached", "uncached"])
def api(request, mongo_url, db_name):
    app, cache = open_api(mongo_url, db_name, request.param == "cached")
    try:
        with TestClient(app) as client:
            yield Api(client, app, cache)
    finally:
        if cache is not None:
            cache.close()


@pytest.fixture
def cached_api(mongo_url, db_name):
    app, cache = open_api(mongo_url, db_name, True)
    try:
        with TestClient(app) as client:
            yield Api(client, app, cache)
    finally:
        cache.close()


@pytest.fixture
def truth(mongo_url, db_name):
    """The test's database, read directly."""
    with MongoClient(mongo_url) as client:
        yield client[db_name]


def a_customer_with_open_order(api: Api, org: str) -> tuple[str, str]:
    """(order_id, phone) of an active order placed by a customer; creates one if needed."""
    for order in api.get(f"/orgs/{org}/orders/active")["orders"]:
        if order["customer_phone"]:
            return order["order_id"], order["customer_phone"]
    phone = seeding.phone(3)
    made = api.send("POST", f"/orgs/{org}/orders", {"items": [{"item_id": "m001", "qty": 1}],
                                                     "customer_phone": phone}, 201)
    return made["order_id"], phone


# ---- reads ------------------------------------------------------------------------------------

def test_every_read_answers_what_the_database_holds(api, truth):
    for org in ORGS:
        profile = api.get(f"/orgs/{org}/profile")
        stored = truth.profiles.find_one({"org_id": org}, {"_id": 0})
        assert {k: profile[k] for k in stored} == stored
        assert [m["item_id"] for m in profile["menu"]] == sorted(m["item_id"] for m in truth.menu.find({"org_id": org}))
        assert api.get(f"/orgs/{org}/profile/lite") == {k: stored[k] for k in restaurant.LITE if k != "_id"}

        active = api.get(f"/orgs/{org}/orders/active")
        expected = [o["order_id"] for o in truth.orders.find(
            {"org_id": org, "status": {"$in": list(restaurant.ACTIVE)}}).sort("order_no", 1)]
        assert [o["order_id"] for o in active["orders"]] == expected and active["count"] == len(expected)
        for status in restaurant.ACTIVE:
            listed = api.get(f"/orgs/{org}/orders/active?status={status}")["orders"]
            assert all(o["status"] == status for o in listed)
            assert len(listed) == truth.orders.count_documents({"org_id": org, "status": status})

        page = api.get(f"/orgs/{org}/orders?page=2&page_size=7")
        assert page["total"] == 45 and page["pages"] == 7
        assert [o["order_no"] for o in page["orders"]] == list(range(38, 31, -1))
        assert api.get(f"/orgs/{org}/orders/ord-00005") == truth.orders.find_one(
            {"org_id": org, "order_id": "ord-00005"}, {"_id": 0})

        summary = api.get(f"/orgs/{org}/billing/summary?day=2026-01-24")
        assert summary["orders_total"] == truth.orders.count_documents({"org_id": org, "business_day": "2026-01-24"})
        assert summary["revenue_cents"] == sum(
            p["amount_cents"] for p in truth.payments.find({"org_id": org, "business_day": "2026-01-24"}))
        assert api.get(f"/orgs/{org}/billing/summary") == summary     # the app's today is the seed's

        phone = seeding.phone(0)
        balance = api.get(f"/orgs/{org}/customers/{phone}/balance")
        paid = list(truth.payments.find({"org_id": org, "customer_phone": phone}))
        assert (balance["visits"], balance["spent_cents"]) == (len(paid), sum(p["amount_cents"] for p in paid))

    batch = api.send("POST", "/profiles/batch", {"org_ids": [A, "org-nowhere", A], "lite": True}, 200)
    assert batch == {"profiles": {A: api.get(f"/orgs/{A}/profile/lite"), "org-nowhere": None}}


def test_a_bill_is_computed_from_the_order_and_the_restaurants_tax_rate(api):
    order_id = api.active(B)[0]
    order = api.get(f"/orgs/{B}/orders/{order_id}")
    bill = api.get(f"/orgs/{B}/orders/{order_id}/bill")
    subtotal = sum(line["qty"] * line["price_cents"] for line in order["items"])
    discount = round(subtotal * order["discount_percent"] / 100)
    assert (bill["subtotal_cents"], bill["discount_cents"]) == (subtotal, discount)
    assert bill["tax_rate"] == 0.08 and bill["tax_cents"] == round((subtotal - discount) * 0.08)
    assert bill["total_cents"] == bill["due_cents"] == subtotal - discount + bill["tax_cents"]
    assert bill["currency"] == "USD"


def test_unknown_things_are_404_and_a_not_found_is_never_cached(api):
    api.get("/orgs/org-nowhere/profile", 404)
    api.get(f"/orgs/{A}/orders/ord-09999", 404)
    newcomer = "+1-555-7777"
    api.get(f"/orgs/{A}/customers/{newcomer}/balance", 404)
    api.send("POST", f"/orgs/{A}/orders", {"items": [{"item_id": "m002", "qty": 2}],
                                           "customer_phone": newcomer, "customer_name": "Ada"}, 201)
    assert api.get(f"/orgs/{A}/customers/{newcomer}/balance")["open_orders"] == 1


# ---- writes: no stale read after any of them --------------------------------------------------

def test_creating_an_order_shows_in_every_list_the_summary_and_the_balance(api):
    phone = seeding.phone(1)
    before = {
        "active": api.get(f"/orgs/{A}/orders/active"),
        "open": api.get(f"/orgs/{A}/orders/active?status=open"),
        "page": api.get(f"/orgs/{A}/orders?page=1&page_size=5"),
        "summary": api.get(f"/orgs/{A}/billing/summary"),
        "balance": api.get(f"/orgs/{A}/customers/{phone}/balance"),
    }
    made = api.send("POST", f"/orgs/{A}/orders", {"items": [{"item_id": "m003", "qty": 2}], "table": "T9",
                                                  "customer_phone": phone}, 201)
    assert made["order_id"] == "ord-00046" and made["status"] == "open"
    assert made["items"][0]["price_cents"] == api.get(f"/orgs/{A}/profile")["menu"][2]["price_cents"]
    assert api.get(f"/orgs/{A}/orders/active")["count"] == before["active"]["count"] + 1
    assert api.get(f"/orgs/{A}/orders/active?status=open")["orders"][-1] == made
    assert api.get(f"/orgs/{A}/orders?page=1&page_size=5")["orders"][0] == made
    summary = api.get(f"/orgs/{A}/billing/summary")
    assert summary["orders"]["open"] == before["summary"]["orders"]["open"] + 1
    assert api.get(f"/orgs/{A}/customers/{phone}/balance")["open_orders"] == before["balance"]["open_orders"] + 1
    assert api.get(f"/orgs/{A}/orders/{made['order_id']}") == made


def test_updating_an_order_shows_at_once(api):
    order_id, phone = a_customer_with_open_order(api, A)
    api.get(f"/orgs/{A}/orders/{order_id}")
    api.get(f"/orgs/{A}/orders/{order_id}/bill")
    served_before = api.get(f"/orgs/{A}/orders/active?status=served")["orders"]
    api.send("PATCH", f"/orgs/{A}/orders/{order_id}", {"status": "served"}, 200)
    assert api.get(f"/orgs/{A}/orders/{order_id}")["status"] == "served"
    assert order_id in [o["order_id"] for o in api.get(f"/orgs/{A}/orders/active?status=served")["orders"]]
    assert len(api.get(f"/orgs/{A}/orders/active?status=served")["orders"]) == len(
        [o for o in served_before if o["order_id"] != order_id]) + 1

    changed = api.send("PATCH", f"/orgs/{A}/orders/{order_id}", {"items": [{"item_id": "m001", "qty": 3}]}, 200)
    assert api.get(f"/orgs/{A}/orders/{order_id}/bill")["subtotal_cents"] == 3 * changed["items"][0]["price_cents"]

    open_before = api.get(f"/orgs/{A}/customers/{phone}/balance")["open_orders"]
    api.send("PATCH", f"/orgs/{A}/orders/{order_id}", {"status": "cancelled"}, 200)
    assert order_id not in api.active(A)
    assert api.get(f"/orgs/{A}/customers/{phone}/balance")["open_orders"] == open_before - 1
    api.send("PATCH", f"/orgs/{A}/orders/{order_id}", {"status": "open"}, 409)


def test_a_payment_updates_the_order_the_summary_and_the_balance(api):
    order_id, phone = a_customer_with_open_order(api, A)
    order = api.get(f"/orgs/{A}/orders/{order_id}")
    bill = api.get(f"/orgs/{A}/orders/{order_id}/bill")
    summary = api.get(f"/orgs/{A}/billing/summary")
    balance = api.get(f"/orgs/{A}/customers/{phone}/balance")

    paid = api.send("POST", f"/orgs/{A}/payments", {"order_id": order_id, "method": "card"}, 201)
    assert paid["amount_cents"] == bill["total_cents"]

    assert api.get(f"/orgs/{A}/orders/{order_id}")["status"] == "paid"
    after = api.get(f"/orgs/{A}/orders/{order_id}/bill")
    assert (after["status"], after["due_cents"], after["total_cents"]) == ("paid", 0, bill["total_cents"])
    assert order_id not in api.active(A)
    same_status = api.get(f"/orgs/{A}/orders/active?status={order['status']}")["orders"]
    assert order_id not in [o["order_id"] for o in same_status]
    now = api.get(f"/orgs/{A}/billing/summary")
    assert now["orders"]["paid"] == summary["orders"]["paid"] + 1
    assert now["revenue_cents"] == summary["revenue_cents"] + bill["total_cents"]
    assert now["by_method"]["card"] == summary["by_method"].get("card", 0) + bill["total_cents"]
    assert api.get(f"/orgs/{A}/customers/{phone}/balance") == {
        **balance, "visits": balance["visits"] + 1, "spent_cents": balance["spent_cents"] + bill["total_cents"],
        "open_orders": balance["open_orders"] - 1}
    api.send("POST", f"/orgs/{A}/payments", {"order_id": order_id, "method": "card"}, 409)


def test_a_refused_payment_changes_nothing(api):
    phone = seeding.phone(5)
    made = api.send("POST", f"/orgs/{A}/orders", {"items": [{"item_id": "m004", "qty": 50}],
                                                  "customer_phone": phone}, 201)
    balance = api.get(f"/orgs/{A}/customers/{phone}/balance")
    summary = api.get(f"/orgs/{A}/billing/summary")
    api.send("POST", f"/orgs/{A}/payments", {"order_id": made["order_id"], "method": "wallet"}, 409)
    assert api.get(f"/orgs/{A}/customers/{phone}/balance") == balance
    assert api.get(f"/orgs/{A}/billing/summary") == summary
    assert api.get(f"/orgs/{A}/orders/{made['order_id']}")["status"] == "open"


def test_a_wallet_payment_is_taken_from_the_wallet(api, truth):
    truth.customers.update_one({"org_id": A, "phone": seeding.phone(6)}, {"$set": {"wallet_cents": 10**7}})
    made = api.send("POST", f"/orgs/{A}/orders", {"items": [{"item_id": "m001", "qty": 1}],
                                                  "customer_phone": seeding.phone(6)}, 201)
    paid = api.send("POST", f"/orgs/{A}/payments", {"order_id": made["order_id"], "method": "wallet"}, 201)
    assert api.get(f"/orgs/{A}/customers/{seeding.phone(6)}/balance")["wallet_cents"] == 10**7 - paid["amount_cents"]


def test_a_profile_update_shows_in_the_full_and_lite_profile_and_the_bills(api):
    order_id = api.active(A)[0]
    api.get(f"/orgs/{A}/profile")
    api.get(f"/orgs/{A}/profile/lite")
    before = api.get(f"/orgs/{A}/orders/{order_id}/bill")
    updated = api.send("PUT", f"/orgs/{A}/profile", {"name": "Tandoor House & Bar", "tax_rate": 0.18}, 200)
    assert updated["name"] == "Tandoor House & Bar" and updated["menu"]
    assert api.get(f"/orgs/{A}/profile")["name"] == "Tandoor House & Bar"
    assert api.get(f"/orgs/{A}/profile/lite")["tax_rate"] == 0.18
    assert api.send("POST", "/profiles/batch", {"org_ids": [A]}, 200)["profiles"][A]["tax_rate"] == 0.18
    bill = api.get(f"/orgs/{A}/orders/{order_id}/bill")
    assert bill["tax_rate"] == 0.18 and bill["subtotal_cents"] == before["subtotal_cents"]
    assert bill["tax_cents"] == round((bill["subtotal_cents"] - bill["discount_cents"]) * 0.18)
    api.send("PUT", "/orgs/org-nowhere/profile", {"name": "x"}, 404)
    api.send("PUT", f"/orgs/{A}/profile", {}, 422)


def test_bad_requests_are_refused(api):
    api.send("POST", f"/orgs/{A}/orders", {"items": [{"item_id": "m999", "qty": 1}]}, 422)
    api.send("POST", f"/orgs/{A}/orders", {"items": []}, 422)
    api.send("POST", f"/orgs/{A}/payments", {"order_id": "ord-09999", "method": "cash"}, 404)
    api.get(f"/orgs/{A}/orders/active?status=paid", 422)
    api.get(f"/orgs/{A}/orders?page_size=1000", 422)


# ---- tenants ----------------------------------------------------------------------------------

def test_restaurants_never_see_each_others_data(api):
    """Both restaurants have an ord-00001 and a customer +1-555-1000, different ones."""
    a, b = api.get(f"/orgs/{A}/orders/ord-00001"), api.get(f"/orgs/{B}/orders/ord-00001")
    assert (a["org_id"], b["org_id"]) == (A, B) and a["items"] != b["items"]
    phone = seeding.phone(0)
    ba, bb = api.get(f"/orgs/{A}/customers/{phone}/balance"), api.get(f"/orgs/{B}/customers/{phone}/balance")
    assert (ba["org_id"], bb["org_id"]) == (A, B) and ba != bb
    assert api.get(f"/orgs/{A}/profile/lite")["name"] != api.get(f"/orgs/{B}/profile/lite")["name"]

    b_views = [f"/orgs/{B}/orders/active", f"/orgs/{B}/billing/summary", f"/orgs/{B}/profile",
               f"/orgs/{B}/customers/{phone}/balance", f"/orgs/{B}/orders/ord-00001"]
    seen = {path: api.get(path) for path in b_views}
    # A's writes: an order for the same phone, a payment, a profile change
    made = api.send("POST", f"/orgs/{A}/orders", {"items": [{"item_id": "m001", "qty": 1}],
                                                  "customer_phone": phone}, 201)
    api.send("POST", f"/orgs/{A}/payments", {"order_id": made["order_id"], "method": "cash"}, 201)
    api.send("PUT", f"/orgs/{A}/profile", {"name": "Renamed"}, 200)
    assert {path: api.get(path) for path in b_views} == seen
    api.get(f"/orgs/{B}/orders/{made['order_id']}", 404)          # A's new order id is not B's
    if api.cache is not None:                                      # and B's entries survived
        assert api.queries_for(*b_views) == 0


# ---- the cache at work (cached app only) ------------------------------------------------------

def test_cached_reads_make_no_query_and_a_payment_reloads_exactly_its_cascade(cached_api):
    api = cached_api
    order_id, phone = a_customer_with_open_order(api, A)
    other_id = next(o for o in api.active(A) if o != order_id)
    cascade = [f"/orgs/{A}/orders/{order_id}", f"/orgs/{A}/billing/summary",
               f"/orgs/{A}/customers/{phone}/balance", f"/orgs/{A}/orders/active"]
    untouched = [f"/orgs/{A}/profile", f"/orgs/{A}/profile/lite", f"/orgs/{A}/orders/{other_id}",
                 f"/orgs/{A}/customers/{seeding.phone(19)}/balance", f"/orgs/{B}/billing/summary"]
    first = api.queries_for(*cascade, *untouched)
    assert first > 0 and api.queries_for(*cascade, *untouched) == 0      # everything now cached

    api.send("POST", f"/orgs/{A}/payments", {"order_id": order_id, "method": "upi"}, 201)
    assert api.queries_for(*untouched) == 0                              # not in the cascade
    for path in cascade:                                                 # each reloaded, once
        assert api.queries_for(path) > 0, path
        assert api.queries_for(path) == 0, path


def test_an_order_change_invalidates_its_restaurants_order_lists_only(cached_api):
    api = cached_api
    lists = [f"/orgs/{A}/orders/active", f"/orgs/{A}/orders/active?status=open", f"/orgs/{A}/orders?page=3"]
    others = [f"/orgs/{B}/orders/active", f"/orgs/{B}/orders?page=3", f"/orgs/{A}/profile"]
    api.queries_for(*lists, *others)
    api.send("PATCH", f"/orgs/{A}/orders/{api.active(A)[0]}", {"table": "T20"}, 200)
    assert api.queries_for(*others) == 0
    assert all(api.queries_for(path) > 0 for path in lists)


def test_warming_loads_every_profile_at_startup(mongo_url, db_name):
    app, cache = open_api(mongo_url, db_name, True, warm=True)
    try:
        with TestClient(app) as client:
            api = Api(client, app, cache)
            assert cache.stats()["warmed"] == 2 * len(ORGS)                 # full and lite, per restaurant
            assert api.queries_for(*[f"/orgs/{o}/profile{s}" for o in ORGS for s in ("", "/lite")]) == 0
            token = {"Authorization": f"Bearer {TOKEN}"}
            assert client.post("/admin/cache/warm", headers=token, json={"groups": ["profiles"]}).json() == {
                "warmed": {"profiles": 0}}                                  # nothing left to load
            client.post("/admin/cache/clear", headers=token, json={})
            assert client.post("/admin/cache/warm", headers=token, json={}).json() == {
                "warmed": {"profiles": 2 * len(ORGS)}}
    finally:
        cache.close()


@pytest.mark.parametrize("flag, warmed", [("true", 6), ("false", 0)])
def test_cache_warming_enabled_decides_when_warm_is_not_given(mongo_url, db_name, monkeypatch, flag, warmed):
    monkeypatch.setenv("CACHE_WARMING_ENABLED", flag)
    app, cache = open_api(mongo_url, db_name, True)
    try:
        with TestClient(app):
            assert cache.stats()["warmed"] == warmed
    finally:
        cache.close()


def test_admin_endpoints_need_the_token_and_can_drop_one_restaurant(cached_api):
    api, client = cached_api, cached_api.client
    assert client.get("/admin/cache/stats").status_code == 401
    assert client.get("/admin/cache/stats", headers={"Authorization": "Bearer wrong"}).status_code == 403
    assert client.post("/admin/cache/clear", json={}).status_code == 401
    token = {"Authorization": f"Bearer {TOKEN}"}
    views = {org: [f"/orgs/{org}/profile", f"/orgs/{org}/orders/active", f"/orgs/{org}/billing/summary"]
             for org in (A, B)}
    api.queries_for(*views[A], *views[B])
    report = client.get("/admin/cache/report", headers=token).json()
    names = {row["function"] for row in (report["functions"] if isinstance(report, dict) else report)}
    assert {"restaurant.profile", "restaurant.active_orders", "restaurant.billing_summary"} <= names
    r = client.post("/admin/cache/invalidate", headers=token, json={"tags": [f"org:{B}"]})
    assert r.status_code == 200
    assert api.queries_for(*views[A]) == 0
    assert all(api.queries_for(path) > 0 for path in views[B])
    assert client.get("/admin/cache/dashboard", headers=token).status_code == 200


def test_the_uncached_baseline_has_no_admin_endpoints(mongo_url, db_name):
    app, _ = open_api(mongo_url, db_name, False)
    with TestClient(app) as client:
        assert client.get("/admin/cache/stats", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 404
        assert client.get("/").json()["cache"] == "off"
        assert client.get("/debug/queries").json()["total"] == 0


def test_the_query_counter_counts_every_command(cached_api):
    api = cached_api
    before = api.get("/debug/queries")
    api.get(f"/orgs/{B}/customers/{seeding.phone(2)}/balance")          # find_one, 2 aggregates
    after = api.get("/debug/queries")
    assert after["total"] == before["total"] + 3
    assert after["by_command"]["aggregate"] == before["by_command"].get("aggregate", 0) + 2


# ---- the baseline answers exactly like the cached app -----------------------------------------

SCRIPT = [
    ("GET", "/orgs/{A}/profile", None), ("GET", "/orgs/{A}/profile/lite", None),
    ("POST", "/profiles/batch", {"org_ids": ORGS}), ("GET", "/orgs/{A}/orders/active", None),
    ("GET", "/orgs/{A}/orders/active?status=open", None), ("GET", "/orgs/{A}/orders?page=2&page_size=4", None),
    ("GET", "/orgs/{A}/orders/ord-00044", None), ("GET", "/orgs/{A}/orders/ord-00044/bill", None),
    ("GET", "/orgs/{A}/customers/+1-555-1000/balance", None), ("GET", "/orgs/{A}/billing/summary", None),
    ("POST", "/orgs/{A}/orders", {"items": [{"item_id": "m002", "qty": 2}], "customer_phone": "+1-555-1000"}),
    ("PATCH", "/orgs/{A}/orders/ord-00046", {"status": "served", "discount_percent": 10}),
    ("GET", "/orgs/{A}/orders/ord-00046/bill", None),
    ("POST", "/orgs/{A}/payments", {"order_id": "ord-00046", "method": "cash"}),
    ("POST", "/orgs/{A}/payments", {"order_id": "ord-00046", "method": "cash"}),
    ("PUT", "/orgs/{A}/profile", {"tax_rate": 0.12, "receipt_footer": "See you soon"}),
    ("GET", "/orgs/{A}/orders/ord-00046", None), ("GET", "/orgs/{A}/orders/ord-00046/bill", None),
    ("GET", "/orgs/{A}/orders/active", None), ("GET", "/orgs/{A}/orders?page=1&page_size=4", None),
    ("GET", "/orgs/{A}/customers/+1-555-1000/balance", None), ("GET", "/orgs/{A}/billing/summary", None),
    ("GET", "/orgs/{A}/profile", None), ("GET", "/orgs/{A}/profile/lite", None),
    ("GET", "/orgs/{B}/profile/lite", None), ("GET", "/orgs/{A}/orders/ord-09999", None),
    ("GET", "/orgs/{A}/customers/+1-555-4242/balance", None),
]


def test_the_uncached_baseline_answers_exactly_like_the_cached_app(mongo_url):
    answers = {}
    for mode in ("uncached", "cached"):
        name = seed_db(mongo_url)
        app, cache = open_api(mongo_url, name, mode == "cached")
        try:
            with TestClient(app) as client:
                script = SCRIPT + SCRIPT[:10]                 # the reads again: from the cache now
                answers[mode] = [(r.status_code, r.json()) for r in (
                    client.request(method, path.format(A=A, B=B), json=body) for method, path, body in script)]
        finally:
            if cache is not None:
                cache.close()
            with MongoClient(mongo_url) as client:
                client.drop_database(name)
    assert answers["cached"] == answers["uncached"]
    assert {status for status, _ in answers["cached"]} == {200, 201, 404, 409}


# ---- two processes sharing Redis ----------------------------------------------------------------

def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One uvicorn process serving ``restaurant.app:app_from_env`` on a loopback port."""

    def __init__(self, name: str, env: dict, log: Path) -> None:
        self.name, self.port, self.log = name, free_port(), log
        self.url = f"http://127.0.0.1:{self.port}"
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "--app-dir", str(EXAMPLES), "--factory",
                 "restaurant.app:app_from_env", "--host", "127.0.0.1", "--port", str(self.port),
                 "--log-level", "warning", "--no-access-log"],
                env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        self.http = httpx.Client(base_url=self.url, timeout=10)

    def wait_ready(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                if self.http.get("/debug/queries").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"{self.name} did not start: {self.log.read_text(errors='replace')[-2000:]}")

    def get(self, path: str) -> Any:
        r = self.http.get(path)
        assert r.status_code == 200, (self.name, path, r.text)
        return r.json()

    def send(self, method: str, path: str, body: Any) -> Any:
        r = self.http.request(method, path, json=body)
        assert r.status_code in (200, 201), (self.name, method, path, r.text)
        return r.json()

    def queries(self) -> int:
        return self.get("/debug/queries")["total"]

    def stop(self) -> None:
        self.http.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def test_two_processes_sharing_redis_serve_every_write_made_through_the_other(mongo_url, redis_url, tmp_path):
    """Two uvicorn processes, one Redis: each write through one is read back through the
    other, which had every view cached in its L1 (and Redis) beforehand.

    The read is sent the moment the writer has answered, and must already be fresh: the
    invalidation message reached the reader's socket before the writer answered, and the
    reader applies it before trusting L1 even while its listener thread waits for the GIL
    (the invalidation fence, csrc/fence.c: a watcher thread raises it, and readers probe
    the socket themselves). It then keeps serving the new state.
    """
    from tiered_helpers import WAIT, RawRedis, subscribers, wait_until

    name = seed_db(mongo_url)
    namespace = f"restaurant-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "MONGODB_URL": mongo_url, "MONGODB_DB": name, "REDIS_URL": redis_url,
           "CACHE_NAMESPACE": namespace, "ADMIN_TOKEN": TOKEN,
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    env.pop("CACHE_WARMING_ENABLED", None)
    servers = [Server(n, env, tmp_path / f"{n}.log") for n in ("A", "B")]
    raw = RawRedis(redis_url)
    try:
        deadline = time.monotonic() + 60
        for server in servers:
            server.wait_ready(deadline)
        assert wait_until(lambda: subscribers(raw, namespace) >= 2, timeout=10), "the apps never subscribed"
        a, b = servers
        assert a.get("/")["cache"] == "L1 + Redis"
        checks, raced, late = 0, [], []

        def read_after(writer: Server, reader: Server, path: str, fresh) -> None:
            """``writer`` has answered: ``reader`` must serve the new state, and keep it."""
            nonlocal checks
            checks += 1
            first = reader.get(path)
            if not fresh(first):
                raced.append((writer.name, reader.name, path))
                if not wait_until(lambda: fresh(reader.get(path)), timeout=WAIT, interval=0.001):
                    late.append((writer.name, reader.name, path, reader.get(path)))
                    return
            for _ in range(2):
                assert fresh(reader.get(path)), (writer.name, reader.name, path, "went back to the old value")

        for round_ in range(6):
            writer, reader = (a, b) if round_ % 2 == 0 else (b, a)
            phone = seeding.phone(round_)
            views = [f"/orgs/{A}/orders/active", f"/orgs/{A}/billing/summary",
                     f"/orgs/{A}/customers/{phone}/balance", f"/orgs/{A}/profile/lite"]
            for server in (reader, writer, reader):                 # cached in both L1s and Redis
                for path in views:
                    server.get(path)
            q = reader.queries()
            for path in views:
                reader.get(path)
            assert reader.queries() == q, "the reader's reads were not served by its cache"

            balance = reader.get(f"/orgs/{A}/customers/{phone}/balance")
            summary = reader.get(f"/orgs/{A}/billing/summary")
            made = writer.send("POST", f"/orgs/{A}/orders", {"items": [{"item_id": "m001", "qty": 1}],
                                                              "customer_phone": phone})
            read_after(writer, reader, f"/orgs/{A}/orders/active",
                       lambda got: made["order_id"] in [o["order_id"] for o in got["orders"]])
            read_after(writer, reader, f"/orgs/{A}/customers/{phone}/balance",
                       lambda got: got["open_orders"] == balance["open_orders"] + 1)
            reader.get(f"/orgs/{A}/orders/{made['order_id']}")      # now cached by the reader

            writer.send("PATCH", f"/orgs/{A}/orders/{made['order_id']}", {"status": "served"})
            read_after(writer, reader, f"/orgs/{A}/orders/{made['order_id']}",
                       lambda got: got["status"] == "served")

            paid = writer.send("POST", f"/orgs/{A}/payments", {"order_id": made["order_id"], "method": "card"})
            read_after(writer, reader, f"/orgs/{A}/orders/{made['order_id']}", lambda got: got["status"] == "paid")
            read_after(writer, reader, f"/orgs/{A}/billing/summary",
                       lambda got: got["revenue_cents"] == summary["revenue_cents"] + paid["amount_cents"])
            read_after(writer, reader, f"/orgs/{A}/customers/{phone}/balance",
                       lambda got: got["visits"] == balance["visits"] + 1)

            writer.send("PUT", f"/orgs/{A}/profile", {"name": f"Tandoor House {round_}"})
            read_after(writer, reader, f"/orgs/{A}/profile/lite", lambda got: got["name"] == f"Tandoor House {round_}")
        assert late == [], f"never fresh within {WAIT} s: {late}"
    finally:
        raw.close()
        for server in servers:
            server.stop()
        with MongoClient(mongo_url) as client:
            client.drop_database(name)
    assert raced == [], f"{len(raced)} of {checks} reads right after a write were stale: {raced[:3]}"


def test_mongodb_url_names_the_server_to_use(mongo_url, monkeypatch):
    monkeypatch.setenv("MONGODB_URL", mongo_url)
    url, stop = start_mongo(timeout=5)
    assert url == mongo_url
    stop()                                      # does not stop a server it did not start
    with MongoClient(mongo_url, serverSelectionTimeoutMS=2000) as client:
        assert client.admin.command("ping")["ok"] == 1
    monkeypatch.setenv("MONGODB_URL", "mongodb://127.0.0.1:9")
    with pytest.raises(MongoUnavailable):
        start_mongo(timeout=0.5)

"""Restaurant billing: the seeds' backend (files 000-002) rebuilt on tieredcache.

FastAPI in front of MongoDB through pymongo (its asyncio client). The seeds' two
hand-written cache modules (``business_profile_cache.py``, ``order_fast_access_cache.py``:
about 1,250 lines) become the block of ``@cache.cached`` / ``@cache.invalidates`` lines in
``create_app``; the rest of this file is the app they were bolted onto.

    app = create_app(mongo_url="mongodb://127.0.0.1:27017", cache=make_cache())
    app = create_app(mongo_url=..., cache=None)        # the uncached baseline: same answers

What is cached, for how long, and what a write invalidates (the seeds' TTLs and cascades):

| read                      | TTL                   | tags (besides ``org:{org_id}``)   |
|---------------------------|-----------------------|-----------------------------------|
| profile (full, with menu) | 1 h (5 min in L1)     | ``org:{org_id}:profile``          |
| profile (lite)            | 1 h (5 min in L1)     | ``org:{org_id}:profile``          |
| active orders, by status  | 2 min                 | ``org:{org_id}:orders``           |
| orders, paginated         | 2 min                 | ``org:{org_id}:orders``           |
| one order                 | 2 min                 | ``org:{org_id}:order:{order_id}`` |
| daily billing summary     | 5 min                 | ``org:{org_id}:billing``          |
| customer balance          | 10 min                | ``org:{org_id}:customer:{phone}`` |

| write           | invalidates                                                     |
|-----------------|-----------------------------------------------------------------|
| create order    | orders, billing, customer                                       |
| update order    | that order, orders, billing, customer                           |
| payment         | that order, orders, billing, customer (the seeds' cascade)      |
| profile update  | profile (full and lite)                                         |

The bill (subtotal, discount, tax, total) is not cached itself: it is computed from the
cached order and the cached profile's tax rate, so it is as fresh as they are.

Tenants: every query filters on ``org_id``, and ``org_id`` is in every cache key (keys are
made of the arguments) and in every tag, so one restaurant's entries can never answer for
another's and one restaurant's writes invalidate only its own entries. We do not use
``cache.namespace(f"org:{org_id}")``: decorators are bound to one cache when the app is
built, while a per-tenant view would have to be picked per request; the tag
``org:{org_id}`` carried by every entry gives the same "drop one tenant" lever
(``POST /admin/cache/invalidate {"tags": ["org:org-sushi"]}``).

``uvicorn --app-dir docs/examples --factory restaurant.app:app_from_env`` serves it with
``MONGODB_URL`` (required), ``REDIS_URL`` (optional: L1 + Redis), ``RESTAURANT_CACHE=off``
(the uncached baseline), ``ADMIN_TOKEN``, ``CACHE_WARMING_ENABLED``.
"""

from __future__ import annotations

import functools
import os
import threading
from collections import Counter
from collections.abc import Callable
from contextlib import asynccontextmanager
from datetime import date, datetime, timezone
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from pymongo import AsyncMongoClient, ReturnDocument, monitoring

from tieredcache import NoStore, TieredCache
from tieredcache.contrib.fastapi import cache_admin_router, tieredcache_lifespan

__all__ = ["ACTIVE", "COLLECTIONS", "QueryCounter", "app_from_env", "compute_bill", "create_app",
           "create_indexes", "iso", "make_cache"]

ACTIVE = ("open", "preparing", "served")          # orders still on the floor
STATUSES = (*ACTIVE, "paid", "cancelled")
METHODS = ("cash", "card", "upi", "wallet")
COLLECTIONS = ("profiles", "menu", "customers", "orders", "payments", "counters")
NO_ID = {"_id": 0}
LITE = {"_id": 0, "org_id": 1, "name": 1, "currency": 1, "tax_rate": 1, "phone": 1, "logo_url": 1,
        "receipt_footer": 1}
DEFAULT_ADMIN_TOKEN = "demo-admin-token"


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def make_cache(redis_url: str | None = None, **options: Any) -> TieredCache:
    """The cache the seeds describe: L1 entries live at most 5 minutes (``l1_ttl``), Redis
    keeps them for their own TTL; ``redis_url=None``: L1 only."""
    return TieredCache(redis_url=redis_url, **{"namespace": "restaurant", "l1_ttl": 300, **options})


def create_indexes(db: Any) -> None:
    """The indexes the queries below use (``db``: a synchronous pymongo Database)."""
    db.profiles.create_index([("org_id", 1)], unique=True)
    db.menu.create_index([("org_id", 1), ("item_id", 1)], unique=True)
    db.customers.create_index([("org_id", 1), ("phone", 1)], unique=True)
    db.orders.create_index([("org_id", 1), ("order_id", 1)], unique=True)
    db.orders.create_index([("org_id", 1), ("order_no", 1)])
    db.orders.create_index([("org_id", 1), ("status", 1)])
    db.orders.create_index([("org_id", 1), ("business_day", 1)])
    db.orders.create_index([("org_id", 1), ("customer_phone", 1)])
    db.payments.create_index([("org_id", 1), ("business_day", 1)])
    db.payments.create_index([("org_id", 1), ("customer_phone", 1)])


# ---- money ----------------------------------------------------------------------------------

def _cents(amount: Decimal) -> int:
    return int(amount.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def compute_bill(order: dict, tax_rate: float) -> dict:
    """Subtotal, discount, tax and total of an order, in cents (integers: no float money)."""
    subtotal = sum(line["qty"] * line["price_cents"] for line in order["items"])
    discount_percent = order.get("discount_percent", 0)
    discount = _cents(Decimal(subtotal) * Decimal(str(discount_percent)) / 100)
    tax = _cents((subtotal - discount) * Decimal(str(tax_rate)))
    return {"subtotal_cents": subtotal, "discount_percent": discount_percent, "discount_cents": discount,
            "tax_rate": tax_rate, "tax_cents": tax, "total_cents": subtotal - discount + tax}


# ---- the query counter ------------------------------------------------------------------------

class QueryCounter(monitoring.CommandListener):
    """Counts every command the app's MongoClient sends (pymongo command monitoring):
    ``find``, ``aggregate``, ``insert``, ``update``, ``findAndModify``, ``count``..."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.total = 0
        self.by_command: Counter[str] = Counter()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        with self._lock:
            self.total += 1
            self.by_command[event.command_name] += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def snapshot(self) -> dict:
        with self._lock:
            return {"total": self.total, "by_command": dict(sorted(self.by_command.items()))}


# ---- the database layer: plain pymongo, no cache ----------------------------------------------
# Reads return NoStore(None) for "not found": the caller gets None and the cache keeps
# nothing, so an order or a customer created later is never hidden by a cached miss.

async def _aggregate(collection: Any, pipeline: list) -> list:
    return await (await collection.aggregate(pipeline)).to_list()


async def _count(collection: Any, query: dict) -> int:
    """``count_documents``, written as a ``$count`` pipeline: nx-27017 answers this form in
    SQL (about 0.5 ms) but runs ``count_documents`` (a ``$group`` by a constant) in Python,
    some 150x slower, which would flatter the cache with an emulator's quirk."""
    rows = await _aggregate(collection, [{"$match": query}, {"$count": "n"}])
    return rows[0]["n"] if rows else 0


async def load_profile(org_id: str, db: Any) -> dict | NoStore:
    profile = await db.profiles.find_one({"org_id": org_id}, NO_ID)
    if profile is None:
        return NoStore(None)
    profile["menu"] = await db.menu.find({"org_id": org_id}, {"_id": 0, "org_id": 0}).sort("item_id", 1).to_list()
    return profile


async def load_profile_lite(org_id: str, db: Any) -> dict | NoStore:
    profile = await db.profiles.find_one({"org_id": org_id}, LITE)
    return NoStore(None) if profile is None else profile


async def load_active_orders(org_id: str, status: str | None, db: Any) -> dict:
    query = {"org_id": org_id, "status": status or {"$in": list(ACTIVE)}}
    orders = await db.orders.find(query, NO_ID).sort("order_no", 1).to_list()
    return {"org_id": org_id, "status": status, "count": len(orders), "orders": orders}


async def load_orders_page(org_id: str, page: int, page_size: int, db: Any) -> dict:
    total = await _count(db.orders, {"org_id": org_id})
    cursor = db.orders.find({"org_id": org_id}, NO_ID).sort("order_no", -1)
    orders = await cursor.skip((page - 1) * page_size).limit(page_size).to_list()
    return {"org_id": org_id, "page": page, "page_size": page_size, "total": total,
            "pages": -(-total // page_size), "orders": orders}


async def load_order(org_id: str, order_id: str, db: Any) -> dict | NoStore:
    order = await db.orders.find_one({"org_id": org_id, "order_id": order_id}, NO_ID)
    return NoStore(None) if order is None else order


async def load_customer_balance(org_id: str, phone: str, db: Any) -> dict | NoStore:
    customer = await db.customers.find_one({"org_id": org_id, "phone": phone}, NO_ID)
    if customer is None:
        return NoStore(None)
    paid = await _aggregate(db.payments, [
        {"$match": {"org_id": org_id, "customer_phone": phone}},
        {"$group": {"_id": None, "visits": {"$sum": 1}, "spent": {"$sum": "$amount_cents"}}},
    ])
    open_orders = await _count(db.orders, {"org_id": org_id, "customer_phone": phone,
                                           "status": {"$in": list(ACTIVE)}})
    return {"org_id": org_id, "phone": phone, "name": customer["name"],
            "wallet_cents": customer["wallet_cents"], "visits": paid[0]["visits"] if paid else 0,
            "spent_cents": paid[0]["spent"] if paid else 0, "open_orders": open_orders}


async def load_billing_summary(org_id: str, day: str, db: Any) -> dict:
    statuses = await _aggregate(db.orders, [
        {"$match": {"org_id": org_id, "business_day": day}},
        {"$group": {"_id": "$status", "count": {"$sum": 1}}},
    ])
    methods = await _aggregate(db.payments, [
        {"$match": {"org_id": org_id, "business_day": day}},
        {"$group": {"_id": "$method", "count": {"$sum": 1}, "amount": {"$sum": "$amount_cents"},
                    "tax": {"$sum": "$tax_cents"}}},
    ])
    counts = {row["_id"]: row["count"] for row in statuses}
    payments = sum(row["count"] for row in methods)
    revenue = sum(row["amount"] for row in methods)
    return {
        "org_id": org_id, "business_day": day,
        "orders": {status: counts.get(status, 0) for status in STATUSES},
        "orders_total": sum(counts.values()),
        "payments": payments, "revenue_cents": revenue,
        "tax_cents": sum(row["tax"] for row in methods),
        "by_method": {row["_id"]: row["amount"] for row in sorted(methods, key=lambda r: r["_id"])},
        "average_ticket_cents": revenue // payments if payments else 0,
    }


async def _next(db: Any, org_id: str, kind: str) -> int:
    doc = await db.counters.find_one_and_update({"_id": f"{org_id}:{kind}"}, {"$inc": {"seq": 1}},
                                                upsert=True, return_document=ReturnDocument.AFTER)
    return doc["seq"]


async def insert_order(org_id: str, phone: str | None, order: dict, customer_name: str | None,
                       db: Any) -> dict:
    if phone is not None:  # a new phone number becomes a customer
        await db.customers.update_one(
            {"org_id": org_id, "phone": phone},
            {"$setOnInsert": {"org_id": org_id, "phone": phone, "name": customer_name or "Guest",
                              "wallet_cents": 0, "created_at": order["created_at"]}},
            upsert=True)
    await db.orders.insert_one(dict(order))
    return order


async def save_order(org_id: str, order_id: str, phone: str | None, changes: dict, db: Any) -> dict | None:
    """Apply ``changes`` to an active order; None if it is no longer active."""
    return await db.orders.find_one_and_update(
        {"org_id": org_id, "order_id": order_id, "status": {"$in": list(ACTIVE)}},
        {"$set": changes}, projection=NO_ID, return_document=ReturnDocument.AFTER)


async def save_payment(org_id: str, order_id: str, phone: str | None, payment: dict, paid_at: str,
                       db: Any) -> str | None:
    """Record a payment of the whole bill; returns None when done, else why it was refused
    (nothing is written then)."""
    amount = payment["amount_cents"]
    if payment["method"] == "wallet":
        debit = await db.customers.update_one(
            {"org_id": org_id, "phone": phone, "wallet_cents": {"$gte": amount}},
            {"$inc": {"wallet_cents": -amount}})
        if debit.matched_count == 0:
            return "the customer's wallet does not cover the bill"
    bill = {k: payment[k] for k in ("subtotal_cents", "discount_percent", "discount_cents", "tax_rate",
                                    "tax_cents", "total_cents")}
    paid = await db.orders.update_one(
        {"org_id": org_id, "order_id": order_id, "status": {"$in": list(ACTIVE)}},
        {"$set": {"status": "paid", "bill": bill, "paid_at": paid_at, "updated_at": paid_at}})
    if paid.matched_count == 0:  # paid or cancelled meanwhile: give the wallet back
        if payment["method"] == "wallet":
            await db.customers.update_one({"org_id": org_id, "phone": phone}, {"$inc": {"wallet_cents": amount}})
        return "the order is no longer open"
    await db.payments.insert_one(dict(payment))
    return None


async def save_profile(org_id: str, changes: dict, db: Any) -> bool:
    result = await db.profiles.update_one({"org_id": org_id}, {"$set": changes})
    return result.matched_count == 1


# ---- request bodies ---------------------------------------------------------------------------

class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LineIn(_Body):
    item_id: str
    qty: int = Field(ge=1, le=50)


class OrderIn(_Body):
    items: list[LineIn] = Field(min_length=1, max_length=50)
    table: str | None = None
    customer_phone: str | None = None
    customer_name: str | None = None
    discount_percent: float = Field(0, ge=0, le=100)


class OrderPatch(_Body):
    status: Literal["open", "preparing", "served", "cancelled"] | None = None
    items: list[LineIn] | None = Field(None, min_length=1, max_length=50)
    table: str | None = None
    discount_percent: float | None = Field(None, ge=0, le=100)


class PaymentIn(_Body):
    order_id: str
    method: Literal["cash", "card", "upi", "wallet"]


class ProfilePatch(_Body):
    name: str | None = None
    legal_name: str | None = None
    phone: str | None = None
    email: str | None = None
    logo_url: str | None = None
    receipt_footer: str | None = None
    tax_rate: float | None = Field(None, ge=0, le=0.5)
    address: dict[str, str] | None = None
    opening_hours: dict[str, str] | None = None


class BatchIn(_Body):
    org_ids: list[str] = Field(min_length=1, max_length=50)
    lite: bool = False


async def get_db(request: Request) -> Any:
    """The app's pymongo database (an ``AsyncDatabase``), opened by the app's lifespan."""
    return request.app.state.db


DB = Annotated[Any, Depends(get_db)]


def _uncached(fn: Callable) -> Callable:
    """The baseline's stand-in for ``@cache.cached``: the same function, NoStore unwrapped."""
    @functools.wraps(fn)
    async def call(*args: Any, **kwargs: Any) -> Any:
        value = await fn(*args, **kwargs)
        return value.value if isinstance(value, NoStore) else value
    return call


def _found(value: Any, what: str) -> Any:
    if value is None:
        raise HTTPException(404, f"{what} not found")
    return value


# ---- the app ----------------------------------------------------------------------------------

def create_app(*, mongo_url: str, cache: TieredCache | None, db_name: str = "billing",
               warm: bool | None = None, clock: Callable[[], datetime] | None = None,
               admin_token: str | None = None) -> FastAPI:
    """The restaurant billing API on ``mongo_url``/``db_name``.

    ``cache``: a ``TieredCache`` used by this app only (its warmer is registered on it), or
    ``None`` for the uncached baseline (same endpoints, same answers, no admin router).
    ``warm``: warm the profiles at startup (``None``: when ``CACHE_WARMING_ENABLED``).
    ``clock``: what "now" is (timestamps, today's business day); the real UTC clock by default.
    ``admin_token``: the bearer token of ``/admin/cache`` (default ``ADMIN_TOKEN``, else
    ``"demo-admin-token"``).
    """
    now = clock or (lambda: datetime.now(timezone.utc))
    counter = QueryCounter()

    # -- the cache policy: every cached read and every invalidating write, in one place --
    if cache is None:
        def cached(**policy: Any) -> Callable[[Callable], Callable]:
            return _uncached

        def invalidates(**policy: Any) -> Callable[[Callable], Callable]:
            return lambda fn: fn
    else:
        cached, invalidates = cache.cached, cache.invalidates

    org = "org:{org_id}"
    get_profile = cached(ttl="static", tags=[org, org + ":profile", "profiles"], exclude=["db"],
                         name="restaurant.profile")(load_profile)
    get_profile_lite = cached(ttl="static", tags=[org, org + ":profile", "profiles"], exclude=["db"],
                              name="restaurant.profile_lite")(load_profile_lite)
    get_active_orders = cached(ttl=120, tags=[org, org + ":orders"], exclude=["db"],
                               name="restaurant.active_orders")(load_active_orders)
    get_orders_page = cached(ttl=120, tags=[org, org + ":orders"], exclude=["db"],
                             name="restaurant.orders_page")(load_orders_page)
    get_order = cached(ttl=120, tags=[org, org + ":order:{order_id}"], exclude=["db"],
                       name="restaurant.order")(load_order)
    get_billing_summary = cached(ttl="user_data", tags=[org, org + ":billing"], exclude=["db"],
                                 name="restaurant.billing_summary")(load_billing_summary)
    get_customer_balance = cached(ttl=600, tags=[org, org + ":customer:{phone}"], exclude=["db"],
                                  name="restaurant.customer_balance")(load_customer_balance)

    create_order = invalidates(tags=[org + ":orders", org + ":billing", org + ":customer:{phone}"])(insert_order)
    update_order = invalidates(tags=[org + ":order:{order_id}", org + ":orders", org + ":billing",
                                     org + ":customer:{phone}"])(save_order)
    record_payment = invalidates(tags=[org + ":order:{order_id}", org + ":orders", org + ":billing",
                                       org + ":customer:{phone}"])(save_payment)
    update_profile = invalidates(tags=[org + ":profile"])(save_profile)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        client: AsyncMongoClient = AsyncMongoClient(mongo_url, event_listeners=[counter],
                                                    serverSelectionTimeoutMS=5000)
        app.state.db = client[db_name]
        try:
            if cache is None:
                yield
            else:  # warms (the profiles warmer below needs app.state.db) and releases the cache
                async with tieredcache_lifespan(cache, warm=warm)(app):
                    yield
        finally:
            await client.close()

    app = FastAPI(title="Restaurant billing (a tieredcache reference app)", lifespan=lifespan)
    app.state.cache = cache
    app.state.queries = counter
    app.state.cached_functions = [get_profile, get_profile_lite, get_active_orders, get_orders_page,
                                  get_order, get_billing_summary, get_customer_balance]

    if cache is not None:
        @cache.warmer("profiles")
        async def warm_profiles() -> None:
            """Load every restaurant's full and lite profile: each entry loaded counts."""
            db = app.state.db
            for doc in await db.profiles.find({}, {"_id": 0, "org_id": 1}).sort("org_id", 1).to_list():
                await get_profile(doc["org_id"], db)
                await get_profile_lite(doc["org_id"], db)

        token = admin_token or os.environ.get("ADMIN_TOKEN") or DEFAULT_ADMIN_TOKEN
        app.include_router(cache_admin_router(cache, auth=token, prefix="/admin/cache"))

    async def priced_lines(org_id: str, lines: list[LineIn], db: Any) -> list[dict]:
        profile = _found(await get_profile(org_id, db), "organisation")   # the cached menu
        menu = {item["item_id"]: item for item in profile["menu"]}
        out = []
        for line in lines:
            item = menu.get(line.item_id)
            if item is None or not item["available"]:
                raise HTTPException(422, f"item {line.item_id!r} is not on the menu")
            out.append({"item_id": item["item_id"], "name": item["name"], "qty": line.qty,
                        "price_cents": item["price_cents"]})
        return out

    async def fresh_order(org_id: str, order_id: str, db: Any) -> dict:
        """The order as the database has it now: writes check against the source of truth."""
        order = await load_order(org_id, order_id, db)
        if isinstance(order, NoStore):
            raise HTTPException(404, "order not found")
        if order["status"] not in ACTIVE:
            raise HTTPException(409, f"order {order_id} is {order['status']}")
        return order

    # -- business profile --
    @app.get("/orgs/{org_id}/profile")
    async def profile(org_id: str, db: DB):
        return _found(await get_profile(org_id, db), "organisation")

    @app.get("/orgs/{org_id}/profile/lite")
    async def profile_lite(org_id: str, db: DB):
        return _found(await get_profile_lite(org_id, db), "organisation")

    @app.post("/profiles/batch")
    async def profiles_batch(body: BatchIn, db: DB):
        load = get_profile_lite if body.lite else get_profile
        return {"profiles": {org_id: await load(org_id, db) for org_id in dict.fromkeys(body.org_ids)}}

    @app.put("/orgs/{org_id}/profile")
    async def put_profile(org_id: str, body: ProfilePatch, db: DB):
        changes = body.model_dump(exclude_none=True)
        if not changes:
            raise HTTPException(422, "nothing to update")
        changes["updated_at"] = iso(now())
        _found(await update_profile(org_id, changes, db) or None, "organisation")
        return await get_profile(org_id, db)

    # -- orders --
    @app.get("/orgs/{org_id}/orders/active")
    async def active_orders(org_id: str, db: DB, status: Literal["open", "preparing", "served"] | None = None):
        return await get_active_orders(org_id, status, db)

    @app.get("/orgs/{org_id}/orders")
    async def orders_page(org_id: str, db: DB, page: Annotated[int, Query(ge=1)] = 1,
                          page_size: Annotated[int, Query(ge=1, le=100)] = 20):
        return await get_orders_page(org_id, page, page_size, db)

    @app.get("/orgs/{org_id}/orders/{order_id}")
    async def order(org_id: str, order_id: str, db: DB):
        return _found(await get_order(org_id, order_id, db), "order")

    @app.get("/orgs/{org_id}/orders/{order_id}/bill")
    async def bill(org_id: str, order_id: str, db: DB):
        found = _found(await get_order(org_id, order_id, db), "order")
        lite = _found(await get_profile_lite(org_id, db), "organisation")   # the cached tax rate
        amounts = found.get("bill") or compute_bill(found, lite["tax_rate"])
        return {"org_id": org_id, "order_id": order_id, "status": found["status"],
                "currency": lite["currency"], **amounts,
                "due_cents": 0 if found["status"] in ("paid", "cancelled") else amounts["total_cents"]}

    @app.post("/orgs/{org_id}/orders", status_code=201)
    async def post_order(org_id: str, body: OrderIn, db: DB):
        lines = await priced_lines(org_id, body.items, db)
        stamp, n = now(), await _next(db, org_id, "orders")
        new = {"org_id": org_id, "order_id": f"ord-{n:05d}", "order_no": n, "table": body.table,
               "customer_phone": body.customer_phone, "items": lines,
               "discount_percent": body.discount_percent, "business_day": stamp.date().isoformat(),
               "status": "open", "created_at": iso(stamp), "updated_at": iso(stamp)}
        return await create_order(org_id, body.customer_phone, new, body.customer_name, db)

    @app.patch("/orgs/{org_id}/orders/{order_id}")
    async def patch_order(org_id: str, order_id: str, body: OrderPatch, db: DB):
        current = await fresh_order(org_id, order_id, db)
        changes = body.model_dump(exclude_none=True, exclude={"items"})
        if body.items is not None:
            changes["items"] = await priced_lines(org_id, body.items, db)
        changes["updated_at"] = iso(now())
        updated = await update_order(org_id, order_id, current["customer_phone"], changes, db)
        if updated is None:
            raise HTTPException(409, f"order {order_id} is no longer open")
        return updated

    @app.post("/orgs/{org_id}/payments", status_code=201)
    async def pay(org_id: str, body: PaymentIn, db: DB):
        current = await fresh_order(org_id, body.order_id, db)
        phone = current["customer_phone"]
        if body.method == "wallet" and phone is None:
            raise HTTPException(422, "a wallet payment needs a customer")
        lite = _found(await get_profile_lite(org_id, db), "organisation")   # the cached tax rate
        amounts = compute_bill(current, lite["tax_rate"])
        stamp = now()
        payment = {"org_id": org_id, "payment_id": f"pay-{await _next(db, org_id, 'payments'):05d}",
                   "order_id": body.order_id, "customer_phone": phone, "method": body.method,
                   "amount_cents": amounts["total_cents"], "tax_cents": amounts["tax_cents"],
                   "business_day": stamp.date().isoformat(), "created_at": iso(stamp), **amounts}
        refused = await record_payment(org_id, body.order_id, phone, payment, iso(stamp), db)
        if refused:
            raise HTTPException(409, refused)
        return payment

    # -- customers and billing --
    @app.get("/orgs/{org_id}/customers/{phone}/balance")
    async def balance(org_id: str, phone: str, db: DB):
        return _found(await get_customer_balance(org_id, phone, db), "customer")

    @app.get("/orgs/{org_id}/billing/summary")
    async def billing_summary(org_id: str, db: DB, day: date | None = None):
        return await get_billing_summary(org_id, (day or now().date()).isoformat(), db)

    # -- operations --
    @app.get("/debug/queries")
    async def queries():
        """Database commands sent by this process since it started."""
        return counter.snapshot()

    @app.get("/")
    async def index():
        mode = "off" if cache is None else ("L1 + Redis" if cache.stats()["l2"]["enabled"] else "L1 only")
        return {"app": "restaurant billing", "cache": mode,
                "dashboard": "/admin/cache/dashboard" if cache is not None else None, "docs": "/docs"}

    return app


def app_from_env() -> FastAPI:
    """``uvicorn --factory restaurant.app:app_from_env``: MONGODB_URL (required),
    MONGODB_DB (default "billing"), REDIS_URL, RESTAURANT_CACHE=off, ADMIN_TOKEN,
    CACHE_WARMING_ENABLED and the other CACHE_* variables of ``TieredCache.from_env``."""
    url = os.environ.get("MONGODB_URL")
    if not url:
        raise RuntimeError("set MONGODB_URL to the MongoDB server (e.g. mongodb://127.0.0.1:27017)")
    cache = None
    if os.environ.get("RESTAURANT_CACHE", "on").strip().lower() not in ("off", "none", "0", "false"):
        cache = TieredCache.from_env(**{"l1_ttl": 300, **({} if os.environ.get("CACHE_NAMESPACE")
                                                           else {"namespace": "restaurant"})})
    return create_app(mongo_url=url, cache=cache, db_name=os.environ.get("MONGODB_DB", "billing"))

"""Point of sale on tieredcache: FastAPI, SQLite, one cache namespace per shop.

Seed 004 (a multi-shop POS) hand-built a CacheManager: entries tagged by data type and
shop, ``invalidate_related_caches(shop_id, data_type)`` for the relationships (a product
change clears the catalog and the dashboard, not the customers), and selective warming
("products", "dashboard", "customers", "all") that reports how many items it warmed.
Here each shop's entries live in the namespace ``{namespace}/shop:{id}`` of one
``TieredCache``, the relationships are one table (``RELATED``), and warming is
``@cache.warmer`` groups run for every shop or, through ``cache.namespace(...)``, for one.

    app = create_app(db_path="pos.db", cache=TieredCache(namespace="pos"), admin_token="...")
    app = create_app(db_path="pos.db", cache=None)      # the uncached baseline

Run it (docs/examples/pos/README.md):

    PYTHONPATH=src:docs/examples uvicorn --factory pos.app:app_from_env

Why a namespace per shop: the namespace is the tenant boundary. Every key and tag of shop
1 lives under ``pos/shop:1`` (in L1 and in Redis), so both shops can cache ``"products"``
and ``"product:P001"`` and tag them ``"products"`` without one ever reading or
invalidating the other's; clearing a shop is ``cache.namespace("shop:1").clear()``.

Handlers are plain ``def`` (FastAPI runs them in its thread pool), because the standard
library's sqlite3 blocks; they use the cache's synchronous API. Money is integer cents. A
cached value is shared by every caller: handlers never modify what the cache returned.
"""

from __future__ import annotations

import argparse
import atexit
import datetime as dt
import logging
import os
import re
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Header, HTTPException, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from tieredcache import TTL, TieredCache
from tieredcache.contrib._admin import AdminActions, bearer_status
from tieredcache.contrib.fastapi import cache_admin_router, tieredcache_lifespan

import _sqlite  # docs/examples is on the path (see the README)

__all__ = ["RELATED", "Database", "Shop", "app_from_env", "create_app", "init_schema"]

log = logging.getLogger("pos")

PAGE_SIZE = 20

# What a write invalidates, in the namespace of the shop it happened in: the seed's
# invalidate_related_caches(), declared once. The entries each tag covers are in
# ``Shop`` below.
RELATED: dict[str, tuple[str, ...]] = {
    "product": ("products", "dashboard"),                         # not customers, not bills
    "customer": ("customers", "dashboard"),                       # not products
    "bill": ("bills", "dashboard", "history:{customer_id}"),      # not products, not customers
    "employee": ("employees", "dashboard"),
}

# =========================================================================================
# The database: SQLite through the standard library, counting its queries
# =========================================================================================

SCHEMA = """
CREATE TABLE IF NOT EXISTS shops (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL, tax_rate_bp INTEGER NOT NULL DEFAULT 500);
CREATE TABLE IF NOT EXISTS products (
    id INTEGER PRIMARY KEY, shop_id INTEGER NOT NULL REFERENCES shops(id), sku TEXT NOT NULL,
    name TEXT NOT NULL, category TEXT NOT NULL, price_cents INTEGER NOT NULL,
    active INTEGER NOT NULL DEFAULT 1, UNIQUE (shop_id, sku));
CREATE TABLE IF NOT EXISTS customers (
    id INTEGER PRIMARY KEY, shop_id INTEGER NOT NULL REFERENCES shops(id), name TEXT NOT NULL,
    phone TEXT NOT NULL, email TEXT);
CREATE INDEX IF NOT EXISTS customers_by_shop ON customers (shop_id);
CREATE TABLE IF NOT EXISTS employees (
    id INTEGER PRIMARY KEY, shop_id INTEGER NOT NULL REFERENCES shops(id), name TEXT NOT NULL,
    role TEXT NOT NULL, active INTEGER NOT NULL DEFAULT 1);
CREATE TABLE IF NOT EXISTS bills (
    id INTEGER PRIMARY KEY, shop_id INTEGER NOT NULL REFERENCES shops(id),
    customer_id INTEGER REFERENCES customers(id), employee_id INTEGER NOT NULL REFERENCES employees(id),
    created_at TEXT NOT NULL, subtotal_cents INTEGER NOT NULL, discount_cents INTEGER NOT NULL,
    tax_cents INTEGER NOT NULL, total_cents INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS bills_by_shop ON bills (shop_id, id);
CREATE INDEX IF NOT EXISTS bills_by_customer ON bills (customer_id);
CREATE TABLE IF NOT EXISTS bill_items (
    id INTEGER PRIMARY KEY, bill_id INTEGER NOT NULL REFERENCES bills(id), sku TEXT NOT NULL,
    name TEXT NOT NULL, qty INTEGER NOT NULL, unit_price_cents INTEGER NOT NULL, line_cents INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS bill_items_by_bill ON bill_items (bill_id);
"""


class Database(_sqlite.Database):
    """The shared SQLite handle; a write that breaks a constraint answers 409."""

    def execute(self, sql: str, *params: Any) -> int:
        try:
            return super().execute(sql, *params)
        except sqlite3.IntegrityError as exc:
            raise HTTPException(409, f"conflicts with existing data: {exc}") from None


def init_schema(db_path: str) -> None:
    """Create the tables if they are missing."""
    conn = sqlite3.connect(db_path)
    try:
        conn.execute("PRAGMA journal_mode = WAL")  # readers never wait for the writer
        conn.executescript(SCHEMA)
        conn.commit()
    finally:
        conn.close()


# =========================================================================================
# One shop's data, cached in the shop's namespace
# =========================================================================================

class Shop:
    """The reads of shop `shop_id`, each cached in `view` (the namespace ``.../shop:{id}``).

    ============================  ======================  =========================  ========
    read                          key                     tags                       TTL
    ============================  ======================  =========================  ========
    the catalog                   ``products``            ``products``               1 h
    one product                   ``product:{sku}``       ``products``               1 h
    a page of customers           ``customers:{page}``    ``customers``              5 min
    one customer                  ``customer:{id}``       ``customers``              5 min
    a customer's bills            ``history:{id}``        ``history:{id}``           5 min
    a page of bills               ``bills:{page}``        ``bills``                  1 min
    one bill (never changes)      ``bill:{id}``           (none)                     1 h
    the staff                     ``employees``           ``employees``              1 h
    the dashboard                 ``dashboard``           ``dashboard``              15 min
    ============================  ======================  =========================  ========

    A read that raises (404) caches nothing.
    """

    def __init__(self, db: Database, view: TieredCache, shop_id: int) -> None:
        self.db, self.view, self.id = db, view, shop_id

    def _cached(self, key: str, ttl: float, tags: list[str], load: Callable[[], Any]) -> Any:
        return self.view.get_or_set(key, load, ttl=ttl, tags=tags)

    def invalidate(self, change: str, **fields: Any) -> None:
        """After a write of kind `change` (a key of ``RELATED``) has committed."""
        self.view.invalidate_tags(*(tag.format(**fields) for tag in RELATED[change]))

    # ---- reads -------------------------------------------------------------------------

    def products(self) -> list[dict[str, Any]]:
        return self._cached("products", TTL.STATIC, ["products"], lambda: self.db.query(
            "SELECT sku, name, category, price_cents FROM products WHERE shop_id = ? AND active = 1 "
            "ORDER BY sku", self.id))

    def product(self, sku: str) -> dict[str, Any]:
        def load() -> dict[str, Any]:
            row = self.db.one("SELECT sku, name, category, price_cents, active FROM products "
                              "WHERE shop_id = ? AND sku = ?", self.id, sku)
            if row is None:
                raise HTTPException(404, f"no product {sku} in shop {self.id}")
            return {**row, "active": bool(row["active"])}

        return self._cached(f"product:{sku}", TTL.STATIC, ["products"], load)

    def customers(self, page: int) -> dict[str, Any]:
        return self._cached(f"customers:{page}", TTL.USER_DATA, ["customers"], lambda: {
            "page": page,
            "total": self.db.scalar("SELECT COUNT(*) FROM customers WHERE shop_id = ?", self.id),
            "customers": self.db.query("SELECT id, name, phone, email FROM customers WHERE shop_id = ? "
                                       "ORDER BY id LIMIT ? OFFSET ?", self.id, PAGE_SIZE, (page - 1) * PAGE_SIZE)})

    def customer(self, customer_id: int) -> dict[str, Any]:
        def load() -> dict[str, Any]:
            row = self.db.one("SELECT id, name, phone, email FROM customers WHERE shop_id = ? AND id = ?",
                              self.id, customer_id)
            if row is None:
                raise HTTPException(404, f"no customer {customer_id} in shop {self.id}")
            return row

        return self._cached(f"customer:{customer_id}", TTL.USER_DATA, ["customers"], load)

    def history(self, customer_id: int) -> dict[str, Any]:
        def load() -> dict[str, Any]:
            if self.db.one("SELECT id FROM customers WHERE shop_id = ? AND id = ?", self.id, customer_id) is None:
                raise HTTPException(404, f"no customer {customer_id} in shop {self.id}")
            bills = self.db.query("SELECT id, created_at, total_cents FROM bills WHERE shop_id = ? "
                                  "AND customer_id = ? ORDER BY created_at DESC, id DESC", self.id, customer_id)
            return {"customer_id": customer_id, "visits": len(bills),
                    "spent_cents": sum(b["total_cents"] for b in bills), "bills": bills}

        return self._cached(f"history:{customer_id}", TTL.USER_DATA, [f"history:{customer_id}"], load)

    def bills(self, page: int) -> dict[str, Any]:
        return self._cached(f"bills:{page}", TTL.REAL_TIME, ["bills"], lambda: {
            "page": page,
            "bills": self.db.query("SELECT id, created_at, customer_id, employee_id, total_cents FROM bills "
                                   "WHERE shop_id = ? ORDER BY id DESC LIMIT ? OFFSET ?",
                                   self.id, PAGE_SIZE, (page - 1) * PAGE_SIZE)})

    def bill(self, bill_id: int) -> dict[str, Any]:
        def load() -> dict[str, Any]:
            bill = self.db.one("SELECT id, created_at, customer_id, employee_id, subtotal_cents, discount_cents, "
                               "tax_cents, total_cents FROM bills WHERE shop_id = ? AND id = ?", self.id, bill_id)
            if bill is None:
                raise HTTPException(404, f"no bill {bill_id} in shop {self.id}")
            bill["items"] = self.db.query("SELECT sku, name, qty, unit_price_cents, line_cents FROM bill_items "
                                          "WHERE bill_id = ? ORDER BY id", bill_id)
            return bill

        return self._cached(f"bill:{bill_id}", TTL.STATIC, [], load)

    def employees(self) -> list[dict[str, Any]]:
        return self._cached("employees", TTL.STATIC, ["employees"], lambda: [
            {**row, "active": bool(row["active"])} for row in self.db.query(
                "SELECT id, name, role, active FROM employees WHERE shop_id = ? ORDER BY id", self.id)])

    def dashboard(self) -> dict[str, Any]:
        def load() -> dict[str, Any]:
            totals = self.db.query(
                "SELECT COUNT(*) AS bills, COALESCE(SUM(total_cents), 0) AS revenue_cents, "
                "(SELECT COUNT(*) FROM products WHERE shop_id = ?1 AND active = 1) AS products, "
                "(SELECT COUNT(*) FROM customers WHERE shop_id = ?1) AS customers "
                "FROM bills WHERE shop_id = ?1", self.id)[0]
            top = self.db.query(
                "SELECT i.sku, p.name, SUM(i.qty) AS qty, SUM(i.line_cents) AS revenue_cents "
                "FROM bill_items i JOIN bills b ON b.id = i.bill_id "
                "LEFT JOIN products p ON p.shop_id = b.shop_id AND p.sku = i.sku "
                "WHERE b.shop_id = ? GROUP BY i.sku ORDER BY qty DESC, i.sku LIMIT 5", self.id)
            staff = self.db.query(
                "SELECT e.id AS employee_id, e.name, COUNT(b.id) AS bills, "
                "COALESCE(SUM(b.total_cents), 0) AS revenue_cents FROM employees e "
                "LEFT JOIN bills b ON b.employee_id = e.id WHERE e.shop_id = ? GROUP BY e.id ORDER BY e.id", self.id)
            return {**totals,
                    "average_bill_cents": round(totals["revenue_cents"] / totals["bills"]) if totals["bills"] else 0,
                    "top_products": top, "sales_by_employee": staff}

        return self._cached("dashboard", TTL.BUSINESS_INTELLIGENCE, ["dashboard"], load)


# =========================================================================================
# Request bodies
# =========================================================================================

MAX_CENTS = 10**9


class ProductIn(BaseModel):
    sku: str = Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_-]+$")
    name: str = Field(min_length=1, max_length=200)
    category: str = Field(min_length=1, max_length=100)
    price_cents: int = Field(ge=0, le=MAX_CENTS)


class ProductPatch(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    category: str | None = Field(default=None, min_length=1, max_length=100)
    price_cents: int | None = Field(default=None, ge=0, le=MAX_CENTS)
    active: bool | None = None


class CustomerIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    phone: str = Field(min_length=3, max_length=32)
    email: str | None = Field(default=None, max_length=200)


class CustomerPatch(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    phone: str | None = Field(default=None, min_length=3, max_length=32)
    email: str | None = Field(default=None, max_length=200)


class EmployeeIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    role: str = Field(default="cashier", min_length=1, max_length=50)


class EmployeePatch(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    role: str | None = Field(default=None, min_length=1, max_length=50)
    active: bool | None = None


class BillLine(BaseModel):
    sku: str = Field(min_length=1, max_length=32)
    qty: int = Field(ge=1, le=10_000)


class BillIn(BaseModel):
    employee_id: int
    customer_id: int | None = None
    items: list[BillLine] = Field(min_length=1, max_length=500)
    discount_cents: int = Field(default=0, ge=0, le=MAX_CENTS)
    created_at: dt.datetime | None = None  # the terminal's clock; default: now (UTC)


PatchFields = {"product": ("name", "category", "price_cents", "active"),
               "customer": ("name", "phone", "email"),
               "employee": ("name", "role", "active")}


def _patch(patch: BaseModel, kind: str) -> dict[str, Any]:
    fields = patch.model_dump(exclude_unset=True)
    if any(fields.get(k) is None for k in fields if k != "email"):
        raise HTTPException(422, "fields may be omitted but not null")
    assert set(fields) <= set(PatchFields[kind])  # column names come from the models only
    return fields


# =========================================================================================
# The FastAPI app
# =========================================================================================

def create_app(*, db_path: str, cache: TieredCache | None, admin_token: str | None = None,
               warm: bool | None = None) -> FastAPI:
    """The POS API on the SQLite database at `db_path` (tables created if missing).

    `cache`: the app's cache, shared by every shop through ``cache.namespace("shop:{id}")``
    (yours to close); ``None`` runs the same code uncached, the baseline. `admin_token`:
    the bearer token of ``/admin/...`` (default: ``CACHE_ADMIN_TOKEN``; with neither, no
    admin endpoints). `warm`: run every warmer group for every shop at startup (``None``:
    when ``CACHE_WARMING_ENABLED`` is true). The app registers the warmer groups
    "products", "dashboard" and "customers" on `cache`: give each app a cache of its own.
    """
    init_schema(db_path)
    owns_cache = cache is None
    if cache is None:
        cache = TieredCache(namespace="pos-uncached", enabled=False, monitoring=False)
    root: TieredCache = cache
    db = Database(db_path)
    views: dict[int, TieredCache] = {}
    views_lock = threading.Lock()

    def shop_view(shop_id: int) -> TieredCache:
        view = views.get(shop_id)
        if view is None:
            with views_lock:
                view = views.setdefault(shop_id, root.namespace(f"shop:{shop_id}"))
        return view

    def shop_ids() -> list[int]:
        return [s["id"] for s in known_shops()]

    def known_shops() -> list[dict[str, Any]]:  # the tenants: cached at the root namespace
        return root.get_or_set("shops", lambda: db.query("SELECT id, name FROM shops ORDER BY id"),
                               ttl=TTL.STATIC, tags=["shops"])

    def get_shop(shop_id: int) -> Shop:  # the dependency of every /shops/{shop_id}/... route
        if shop_id not in shop_ids():
            raise HTTPException(404, f"no shop {shop_id}")
        return Shop(db, shop_view(shop_id), shop_id)

    # ---- warming: @cache.warmer groups, for every shop (root) or one (its namespace) ------

    shop_namespace = re.compile(re.escape(root.name) + r"/shop:(\d+)")

    def shops_of(view: TieredCache) -> list[Shop]:
        """The shops a warmer runs for: every shop against the root cache, one against
        ``cache.namespace("shop:{id}")``."""
        if view.name == root.name:
            return [Shop(db, shop_view(i), i) for i in shop_ids()]
        match = shop_namespace.fullmatch(view.name)
        if match is None:
            raise ValueError(f"{view.name!r} is not a shop namespace of {root.name!r}")
        return [Shop(db, view, int(match.group(1)))]

    @root.warmer("products")
    def warm_products(view: TieredCache) -> int:
        """The catalog and every product in it."""
        count = 0
        for shop in shops_of(view):
            catalog = shop.products()
            for product in catalog:
                shop.product(product["sku"])
            count += 1 + len(catalog)
        return count

    @root.warmer("dashboard")
    def warm_dashboard(view: TieredCache) -> int:
        shops = shops_of(view)
        for shop in shops:
            shop.dashboard()
        return len(shops)

    @root.warmer("customers")
    def warm_customers(view: TieredCache) -> int:
        """The first page of customers."""
        shops = shops_of(view)
        for shop in shops:
            shop.customers(1)
        return len(shops)

    # ---- the app -----------------------------------------------------------------------

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            db.close()

    app = FastAPI(title="Point of sale (tieredcache reference app)",
                  lifespan=tieredcache_lifespan(root, warm=warm, lifespan=lifespan, close=owns_cache))
    app.state.db = db

    token = admin_token or os.environ.get("CACHE_ADMIN_TOKEN")
    if token:
        # every shop at once: /admin/cache/stats, /admin/cache/warm {"groups": [...]}, ...
        # /admin/cache/clear {"namespace": "shop:1"} drops one shop
        app.include_router(cache_admin_router(root, auth=token, prefix="/admin/cache"))

        def require_admin(authorization: str | None = Header(default=None)) -> None:
            status = bearer_status(authorization, token)
            if status == 401:
                raise HTTPException(401, "a bearer token is required", headers={"WWW-Authenticate": "Bearer"})
            if status == 403:
                raise HTTPException(403, "invalid token")

        @app.post("/admin/shops/{shop_id}/cache/{action}", dependencies=[Depends(require_admin)])
        def shop_cache_admin(action: str, body: dict[str, Any] | None = None,
                             shop: Shop = Depends(get_shop)) -> Any:
            """One shop's namespace: ``warm`` ``{"groups": [...]}`` (answers ``{"warmed":
            {group: count}}``), ``clear`` ``{}``, ``invalidate`` ``{"tags": [...]}``."""
            if action not in ("warm", "clear", "invalidate"):
                raise HTTPException(404, f"no shop cache action {action!r}")
            status, payload, _ = AdminActions(shop.view).handle(action, body or {})
            return JSONResponse(payload, status_code=status, headers={"Cache-Control": "no-store"})
    else:
        log.warning("pos: no admin token (admin_token= or CACHE_ADMIN_TOKEN): /admin/* not served")

    # ---- reads -------------------------------------------------------------------------

    @app.get("/shops")
    def shops() -> dict[str, Any]:
        return {"shops": known_shops()}

    @app.get("/shops/{shop_id}/products")
    def products(shop: Shop = Depends(get_shop)) -> dict[str, Any]:
        return {"shop_id": shop.id, "products": shop.products()}

    @app.get("/shops/{shop_id}/products/{sku}")
    def product(sku: str, shop: Shop = Depends(get_shop)) -> dict[str, Any]:
        return shop.product(sku)

    @app.get("/shops/{shop_id}/customers")
    def customers(page: int = Query(1, ge=1, le=10_000), shop: Shop = Depends(get_shop)) -> dict[str, Any]:
        return shop.customers(page)

    @app.get("/shops/{shop_id}/customers/{customer_id}")
    def customer(customer_id: int, shop: Shop = Depends(get_shop)) -> dict[str, Any]:
        return shop.customer(customer_id)

    @app.get("/shops/{shop_id}/customers/{customer_id}/bills")
    def customer_bills(customer_id: int, shop: Shop = Depends(get_shop)) -> dict[str, Any]:
        return shop.history(customer_id)

    @app.get("/shops/{shop_id}/bills")
    def bills(page: int = Query(1, ge=1, le=10_000), shop: Shop = Depends(get_shop)) -> dict[str, Any]:
        return shop.bills(page)

    @app.get("/shops/{shop_id}/bills/{bill_id}")
    def bill(bill_id: int, shop: Shop = Depends(get_shop)) -> dict[str, Any]:
        return shop.bill(bill_id)

    @app.get("/shops/{shop_id}/employees")
    def employees(shop: Shop = Depends(get_shop)) -> dict[str, Any]:
        return {"shop_id": shop.id, "employees": shop.employees()}

    @app.get("/shops/{shop_id}/dashboard")
    def dashboard(shop: Shop = Depends(get_shop)) -> dict[str, Any]:
        return {"shop_id": shop.id, **shop.dashboard()}

    @app.get("/debug/queries")
    def queries() -> dict[str, int]:
        return {"queries": db.reads + db.writes, "reads": db.reads, "writes": db.writes}

    # ---- writes: commit, then invalidate what RELATED says --------------------------------

    @app.post("/shops/{shop_id}/products", status_code=201)
    def create_product(body: ProductIn, shop: Shop = Depends(get_shop)) -> dict[str, Any]:
        with db.transaction():
            db.execute("INSERT INTO products (shop_id, sku, name, category, price_cents) VALUES (?, ?, ?, ?, ?)",
                       shop.id, body.sku, body.name, body.category, body.price_cents)
        shop.invalidate("product")
        return shop.product(body.sku)

    @app.put("/shops/{shop_id}/products/{sku}")
    def update_product(sku: str, body: ProductPatch, shop: Shop = Depends(get_shop)) -> dict[str, Any]:
        fields = _patch(body, "product")
        with db.transaction():
            if db.one("SELECT id FROM products WHERE shop_id = ? AND sku = ?", shop.id, sku) is None:
                raise HTTPException(404, f"no product {sku} in shop {shop.id}")
            for column, value in fields.items():
                db.execute(f"UPDATE products SET {column} = ? WHERE shop_id = ? AND sku = ?", value, shop.id, sku)
        shop.invalidate("product")
        return shop.product(sku)

    @app.post("/shops/{shop_id}/customers", status_code=201)
    def create_customer(body: CustomerIn, shop: Shop = Depends(get_shop)) -> dict[str, Any]:
        with db.transaction():
            customer_id = db.execute("INSERT INTO customers (shop_id, name, phone, email) VALUES (?, ?, ?, ?)",
                                     shop.id, body.name, body.phone, body.email)
        shop.invalidate("customer")
        return shop.customer(customer_id)

    @app.put("/shops/{shop_id}/customers/{customer_id}")
    def update_customer(customer_id: int, body: CustomerPatch, shop: Shop = Depends(get_shop)) -> dict[str, Any]:
        fields = _patch(body, "customer")
        with db.transaction():
            if db.one("SELECT id FROM customers WHERE shop_id = ? AND id = ?", shop.id, customer_id) is None:
                raise HTTPException(404, f"no customer {customer_id} in shop {shop.id}")
            for column, value in fields.items():
                db.execute(f"UPDATE customers SET {column} = ? WHERE id = ?", value, customer_id)
        shop.invalidate("customer")
        return shop.customer(customer_id)

    @app.post("/shops/{shop_id}/employees", status_code=201)
    def create_employee(body: EmployeeIn, shop: Shop = Depends(get_shop)) -> dict[str, Any]:
        with db.transaction():
            employee_id = db.execute("INSERT INTO employees (shop_id, name, role) VALUES (?, ?, ?)",
                                     shop.id, body.name, body.role)
        shop.invalidate("employee")
        return next(e for e in shop.employees() if e["id"] == employee_id)

    @app.put("/shops/{shop_id}/employees/{employee_id}")
    def update_employee(employee_id: int, body: EmployeePatch, shop: Shop = Depends(get_shop)) -> dict[str, Any]:
        fields = _patch(body, "employee")
        with db.transaction():
            if db.one("SELECT id FROM employees WHERE shop_id = ? AND id = ?", shop.id, employee_id) is None:
                raise HTTPException(404, f"no employee {employee_id} in shop {shop.id}")
            for column, value in fields.items():
                db.execute(f"UPDATE employees SET {column} = ? WHERE id = ?", value, employee_id)
        shop.invalidate("employee")
        return next(e for e in shop.employees() if e["id"] == employee_id)

    @app.post("/shops/{shop_id}/bills", status_code=201)
    def create_bill(body: BillIn, shop: Shop = Depends(get_shop)) -> dict[str, Any]:
        created_at = (body.created_at or dt.datetime.now(dt.timezone.utc)).replace(microsecond=0).isoformat()
        with db.transaction():  # prices, staff and customer read from the database, not the cache
            tax_bp = db.scalar("SELECT tax_rate_bp FROM shops WHERE id = ?", shop.id)
            if db.one("SELECT id FROM employees WHERE shop_id = ? AND id = ? AND active = 1",
                      shop.id, body.employee_id) is None:
                raise HTTPException(422, f"no active employee {body.employee_id} in shop {shop.id}")
            if body.customer_id is not None and db.one(
                    "SELECT id FROM customers WHERE shop_id = ? AND id = ?", shop.id, body.customer_id) is None:
                raise HTTPException(422, f"no customer {body.customer_id} in shop {shop.id}")
            lines = []
            for line in body.items:
                product = db.one("SELECT name, price_cents FROM products WHERE shop_id = ? AND sku = ? AND active = 1",
                                 shop.id, line.sku)
                if product is None:
                    raise HTTPException(422, f"no product {line.sku} for sale in shop {shop.id}")
                lines.append((line.sku, product["name"], line.qty, product["price_cents"],
                              line.qty * product["price_cents"]))
            subtotal = sum(line[4] for line in lines)
            if body.discount_cents > subtotal:
                raise HTTPException(422, "discount_cents exceeds the subtotal")
            taxable = subtotal - body.discount_cents
            tax = (taxable * tax_bp + 5_000) // 10_000
            bill_id = db.execute(
                "INSERT INTO bills (shop_id, customer_id, employee_id, created_at, subtotal_cents, discount_cents, "
                "tax_cents, total_cents) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", shop.id, body.customer_id,
                body.employee_id, created_at, subtotal, body.discount_cents, tax, taxable + tax)
            for line in lines:
                db.execute("INSERT INTO bill_items (bill_id, sku, name, qty, unit_price_cents, line_cents) "
                           "VALUES (?, ?, ?, ?, ?, ?)", bill_id, *line)
        shop.invalidate("bill", customer_id=body.customer_id)
        return shop.bill(bill_id)

    return app


# =========================================================================================
# Running it
# =========================================================================================

def app_from_env() -> FastAPI:
    """The app configured from the environment, for ``uvicorn --factory``: ``POS_DB``
    (default ``pos.db``, seeded when empty), ``REDIS_URL``, ``CACHE_ENABLED``,
    ``CACHE_NAMESPACE`` (default ``pos``), ``CACHE_ADMIN_TOKEN``, ``CACHE_WARMING_ENABLED``.
    The cache is closed at shutdown."""
    db_path = os.environ.get("POS_DB", "pos.db")
    from .seed import seed

    counts = seed(db_path)  # does nothing when the database has data
    if counts:
        log.warning("pos: seeded %s with %s", db_path, counts)
    cache = TieredCache.from_env(namespace=os.environ.get("CACHE_NAMESPACE") or "pos")
    atexit.register(cache.close)
    return create_app(db_path=db_path, cache=cache)


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description="The point-of-sale reference app (uvicorn).")
    parser.add_argument("--db", default=os.environ.get("POS_DB", "pos.db"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    os.environ["POS_DB"] = args.db
    uvicorn.run(app_from_env(), host=args.host, port=args.port)


if __name__ == "__main__":
    main()

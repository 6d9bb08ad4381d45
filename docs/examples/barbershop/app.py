"""Barbershop booking on tieredcache: Flask, SQLite, and the seed's preset decorators.

Seed 003 (a booking platform) built a Redis layer by hand: ``@cache_appointment_slots``
(5 min), ``@cache_analytics_data`` (30 min), ``@cache_business_intelligence`` (15 min),
``@cache_static_reference_data`` (1 h) and ``@invalidate_appointment_cache`` on bookings;
payments dropped analytics and revenue, service changes dropped the catalog. Here those
names are tieredcache's presets, on the app's own cache, and the rest is a plain Flask app.

    app = create_app(db_path="barbershop.db", cache=TieredCache(namespace="barbershop"))
    app = create_app(db_path="barbershop.db", cache=None)      # the uncached baseline

Run it (docs/examples/barbershop/README.md):

    PYTHONPATH=src:docs/examples python -m barbershop.app --db /tmp/barbershop.db

Design: the presets take ``cache=``, and ``create_app`` passes its cache to each of them.
The app therefore keeps no process-wide state: two apps with two caches live in one
process (the tests run an app per test, and two apps on one Redis to play two servers),
and ``cache=None`` runs the very same code on a disabled cache (``enabled=False``: every
read goes to the database, nothing is stored), so the baseline answers exactly what the
cached app answers. With one app per process, ``tieredcache.configure(cache)`` and the
bare presets (``@cache_appointment_slots()``) on module-level functions work as well
(docs/flask.md, "Presets").

Times are minutes since midnight in the database and ``"HH:MM"`` in the API; money is
integer cents; dates are ISO strings. A cached value is shared by every caller: views
never modify what a cached function returned.
"""

from __future__ import annotations

import argparse
import atexit
import datetime as dt
import json
import logging
import os
import sqlite3
from types import SimpleNamespace
from typing import Any

from flask import Flask, jsonify, request
from werkzeug.exceptions import BadRequest, Conflict, HTTPException, NotFound

from tieredcache import (
    TTL,
    TieredCache,
    cache_analytics_data,
    cache_appointment_slots,
    cache_business_intelligence,
    cache_static_reference_data,
    invalidate_appointment_cache,
)
from tieredcache.contrib.flask import TieredCacheFlask

from _sqlite import Database  # docs/examples is on the path (see the README)

__all__ = ["Database", "app_from_env", "create_app", "init_schema"]

log = logging.getLogger("barbershop")

# =========================================================================================
# The database: SQLite through the standard library, counting its queries
# =========================================================================================

SCHEMA = """
CREATE TABLE IF NOT EXISTS barbers (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL, active INTEGER NOT NULL DEFAULT 1);
CREATE TABLE IF NOT EXISTS services (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL, duration_minutes INTEGER NOT NULL,
    price_cents INTEGER NOT NULL, active INTEGER NOT NULL DEFAULT 1);
CREATE TABLE IF NOT EXISTS clients (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL, phone TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS bookings (
    id INTEGER PRIMARY KEY, barber_id INTEGER NOT NULL REFERENCES barbers(id),
    client_id INTEGER NOT NULL REFERENCES clients(id),
    service_id INTEGER NOT NULL REFERENCES services(id),
    day TEXT NOT NULL, start_min INTEGER NOT NULL, end_min INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('booked', 'completed', 'cancelled')),
    price_cents INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS bookings_by_barber_day ON bookings (barber_id, day);
CREATE INDEX IF NOT EXISTS bookings_by_day ON bookings (day);
CREATE TABLE IF NOT EXISTS payments (
    id INTEGER PRIMARY KEY, booking_id INTEGER NOT NULL UNIQUE REFERENCES bookings(id),
    amount_cents INTEGER NOT NULL, tip_cents INTEGER NOT NULL,
    method TEXT NOT NULL CHECK (method IN ('card', 'cash')), paid_on TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS payments_by_day ON payments (paid_on);
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

DEFAULT_SETTINGS: dict[str, Any] = {
    "open_time": "09:00",
    "close_time": "18:00",
    "slot_minutes": 30,
    "open_weekdays": [0, 1, 2, 3, 4, 5],  # Monday..Saturday
    "currency": "USD",
    "cancellation_hours": 24,
}


def init_schema(db_path: str) -> None:
    """Create the tables (if missing) and the default booking settings."""
    conn = sqlite3.connect(db_path)
    try:
        conn.execute("PRAGMA journal_mode = WAL")  # readers never wait for the writer
        conn.executescript(SCHEMA)
        conn.executemany("INSERT OR IGNORE INTO settings (key, value) VALUES (?, ?)",
                         [(k, json.dumps(v)) for k, v in DEFAULT_SETTINGS.items()])
        conn.commit()
    finally:
        conn.close()


# =========================================================================================
# Small helpers
# =========================================================================================

def minutes(hhmm: str) -> int:
    hours, _, mins = hhmm.partition(":")
    return int(hours) * 60 + int(mins)


def hhmm(total: int) -> str:
    return f"{total // 60:02d}:{total % 60:02d}"


def parse_day(raw: Any, field: str = "date") -> dt.date:
    try:
        return dt.date.fromisoformat(str(raw))
    except ValueError:
        raise BadRequest(f"{field}: expected a date YYYY-MM-DD, got {raw!r}") from None


def free_starts(settings: dict[str, Any], day: dt.date, busy: list[tuple[int, int]], duration: int) -> list[int]:
    """Start times (minutes) of every free window of `duration` on `day`, a slot apart."""
    if day.weekday() not in settings["open_weekdays"]:
        return []
    opening, closing, step = minutes(settings["open_time"]), minutes(settings["close_time"]), settings["slot_minutes"]
    return [start for start in range(opening, closing - duration + 1, step)
            if all(start + duration <= b_start or start >= b_end for b_start, b_end in busy)]


def read_settings(db: Database) -> dict[str, Any]:
    return {row["key"]: json.loads(row["value"]) for row in db.query("SELECT key, value FROM settings")}


def int_field(body: dict[str, Any], name: str, *, low: int, high: int, default: Any = ...) -> int:
    value = body.get(name, default)
    if value is ...:
        raise BadRequest(f"{name}: required")
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise BadRequest(f"{name}: expected an integer from {low} to {high}, got {value!r}")
    return value


def str_field(body: dict[str, Any], name: str, default: Any = ...) -> str:
    value = body.get(name, default)
    if value is ...:
        raise BadRequest(f"{name}: required")
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f"{name}: expected a non-empty string, got {value!r}")
    return value.strip()


def json_body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise BadRequest("expected a JSON object")
    return body


# =========================================================================================
# The service layer: every read cached by a preset, every write declaring what it drops
# =========================================================================================

def build_services(db: Database, cache: TieredCache) -> SimpleNamespace:
    """The booking services, cached in `cache`.

    What each write invalidates (after it commits; never when it raises):

    - create / cancel a booking: ``availability``, ``slots`` (the preset), ``business_intelligence``
    - record a payment: ``analytics`` (revenue and client analytics), ``business_intelligence``
    - create / update a service: ``catalog``
    - update the settings: ``settings``, ``availability``, ``slots``, ``business_intelligence``
    """

    # ---- reads -------------------------------------------------------------------------

    @cache_static_reference_data(cache=cache, tags=["catalog"], name="service_catalog")
    def service_catalog() -> list[dict[str, Any]]:
        return db.query("SELECT id, name, duration_minutes, price_cents FROM services "
                        "WHERE active = 1 ORDER BY id")

    @cache_static_reference_data(cache=cache, tags=["settings"], name="booking_settings")
    def booking_settings() -> dict[str, Any]:
        return read_settings(db)

    @cache_appointment_slots(cache=cache, name="available_slots")
    def available_slots(barber_id: int, day: str, duration: int) -> dict[str, Any]:
        if db.one("SELECT id FROM barbers WHERE id = ? AND active = 1", barber_id) is None:
            raise NotFound(f"no barber {barber_id}")  # a function that raises caches nothing
        busy = [(r["start_min"], r["end_min"]) for r in db.query(
            "SELECT start_min, end_min FROM bookings WHERE barber_id = ? AND day = ? "
            "AND status != 'cancelled'", barber_id, day)]
        starts = free_starts(read_settings(db), dt.date.fromisoformat(day), busy, duration)
        return {"barber_id": barber_id, "date": day, "duration_minutes": duration,
                "slots": [hhmm(s) for s in starts]}

    @cache_appointment_slots(cache=cache, name="weekly_availability")
    def weekly_availability(barber_id: int, week_start: str) -> dict[str, Any]:
        if db.one("SELECT id FROM barbers WHERE id = ? AND active = 1", barber_id) is None:
            raise NotFound(f"no barber {barber_id}")
        first = dt.date.fromisoformat(week_start)
        days = [first + dt.timedelta(days=i) for i in range(7)]
        busy: dict[str, list[tuple[int, int]]] = {d.isoformat(): [] for d in days}
        for r in db.query("SELECT day, start_min, end_min FROM bookings WHERE barber_id = ? "
                          "AND day BETWEEN ? AND ? AND status != 'cancelled'",
                          barber_id, days[0].isoformat(), days[-1].isoformat()):
            busy[r["day"]].append((r["start_min"], r["end_min"]))
        settings = read_settings(db)
        return {"barber_id": barber_id, "week_start": week_start,
                "days": [{"date": d.isoformat(),
                          "free_slots": len(free_starts(settings, d, busy[d.isoformat()], settings["slot_minutes"]))}
                         for d in days]}

    @cache_analytics_data("revenue_dashboard", cache=cache)
    def revenue_dashboard(start: str, end: str) -> dict[str, Any]:
        paid = ("FROM payments p JOIN bookings b ON b.id = p.booking_id "
                "JOIN barbers r ON r.id = b.barber_id WHERE p.paid_on BETWEEN ? AND ?")
        totals = db.query(f"SELECT COUNT(*) AS payments, COALESCE(SUM(p.amount_cents), 0) AS revenue, "
                          f"COALESCE(SUM(p.tip_cents), 0) AS tips {paid}", start, end)[0]
        by_day = db.query(f"SELECT p.paid_on AS date, SUM(p.amount_cents) AS revenue_cents, COUNT(*) AS payments "
                          f"{paid} GROUP BY p.paid_on ORDER BY p.paid_on", start, end)
        by_barber = db.query(f"SELECT b.barber_id, r.name, SUM(p.amount_cents) AS revenue_cents, "
                             f"COUNT(*) AS payments {paid} GROUP BY b.barber_id ORDER BY b.barber_id", start, end)
        by_method = db.query(f"SELECT p.method, SUM(p.amount_cents) AS revenue_cents {paid} "
                             f"GROUP BY p.method ORDER BY p.method", start, end)
        count = totals["payments"]
        return {"start": start, "end": end, "payments": count, "revenue_cents": totals["revenue"],
                "tips_cents": totals["tips"],
                "average_ticket_cents": round(totals["revenue"] / count) if count else 0,
                "by_day": by_day, "by_barber": by_barber,
                "by_method": {r["method"]: r["revenue_cents"] for r in by_method}}

    @cache_analytics_data("client_analytics", cache=cache)
    def client_analytics(start: str, end: str) -> dict[str, Any]:
        rows = db.query(
            "SELECT c.id AS client_id, c.name, COUNT(*) AS visits, "
            "SUM(p.amount_cents + p.tip_cents) AS spent_cents, "
            "(SELECT MIN(p2.paid_on) FROM payments p2 JOIN bookings b2 ON b2.id = p2.booking_id "
            " WHERE b2.client_id = c.id) AS first_visit "
            "FROM payments p JOIN bookings b ON b.id = p.booking_id JOIN clients c ON c.id = b.client_id "
            "WHERE p.paid_on BETWEEN ? AND ? GROUP BY c.id", start, end)
        visits = sum(r["visits"] for r in rows)
        new = sum(1 for r in rows if r["first_visit"] >= start)
        top = sorted(rows, key=lambda r: (-r["spent_cents"], r["client_id"]))[:5]
        return {"start": start, "end": end, "clients": len(rows), "new_clients": new,
                "returning_clients": len(rows) - new, "visits": visits,
                "average_visits": round(visits / len(rows), 2) if rows else 0.0,
                "average_spend_cents": round(sum(r["spent_cents"] for r in rows) / len(rows)) if rows else 0,
                "top_clients": [{k: r[k] for k in ("client_id", "name", "visits", "spent_cents")} for r in top]}

    @cache_business_intelligence(cache=cache, name="business_dashboard")
    def business_dashboard(day: str) -> dict[str, Any]:
        today = dt.date.fromisoformat(day)
        statuses = {r["status"]: r["n"] for r in db.query(
            "SELECT status, COUNT(*) AS n FROM bookings WHERE day = ? GROUP BY status", day)}
        upcoming = db.scalar("SELECT COUNT(*) FROM bookings WHERE day > ? AND day <= ? AND status = 'booked'",
                             day, (today + dt.timedelta(days=7)).isoformat())
        month = db.scalar("SELECT COALESCE(SUM(amount_cents), 0) FROM payments WHERE paid_on BETWEEN ? AND ?",
                          today.replace(day=1).isoformat(), day)
        booked = db.scalar("SELECT COALESCE(SUM(end_min - start_min), 0) FROM bookings "
                           "WHERE day = ? AND status != 'cancelled'", day)
        barbers = db.scalar("SELECT COUNT(*) FROM barbers WHERE active = 1")
        settings = read_settings(db)
        capacity = 0
        if today.weekday() in settings["open_weekdays"]:
            capacity = (minutes(settings["close_time"]) - minutes(settings["open_time"])) * barbers
        return {"date": day,
                "bookings_today": {s: statuses.get(s, 0) for s in ("booked", "completed", "cancelled")},
                "upcoming_7_days": upcoming, "revenue_month_to_date_cents": month,
                "utilization_percent": round(100 * booked / capacity, 1) if capacity else 0.0}

    # ---- writes ------------------------------------------------------------------------

    @invalidate_appointment_cache(cache=cache)
    @cache.invalidates(tags=["business_intelligence"])
    def create_booking(barber_id: int, service_id: int, day: str, start: str,
                       client_id: int | None, client: dict[str, str] | None) -> dict[str, Any]:
        with db.transaction():  # checked and written under the write lock: no double booking
            if db.one("SELECT id FROM barbers WHERE id = ? AND active = 1", barber_id) is None:
                raise NotFound(f"no barber {barber_id}")
            service = db.one("SELECT duration_minutes, price_cents FROM services WHERE id = ? AND active = 1",
                             service_id)
            if service is None:
                raise NotFound(f"no service {service_id}")
            begin = minutes(start)
            end = begin + service["duration_minutes"]
            busy = [(r["start_min"], r["end_min"]) for r in db.query(
                "SELECT start_min, end_min FROM bookings WHERE barber_id = ? AND day = ? "
                "AND status != 'cancelled'", barber_id, day)]
            allowed = free_starts(read_settings(db), dt.date.fromisoformat(day), [], service["duration_minutes"])
            if begin not in allowed:
                raise BadRequest(f"start: {start} on {day} is outside opening hours or off the slot grid")
            if not all(end <= b0 or begin >= b1 for b0, b1 in busy):
                raise Conflict(f"{start} on {day} is no longer free")
            if client_id is None:
                assert client is not None
                found = db.one("SELECT id FROM clients WHERE phone = ?", client["phone"])
                client_id = found["id"] if found else db.execute(
                    "INSERT INTO clients (name, phone) VALUES (?, ?)", client["name"], client["phone"])
            elif db.one("SELECT id FROM clients WHERE id = ?", client_id) is None:
                raise NotFound(f"no client {client_id}")
            booking_id = db.execute(
                "INSERT INTO bookings (barber_id, client_id, service_id, day, start_min, end_min, status, "
                "price_cents) VALUES (?, ?, ?, ?, ?, ?, 'booked', ?)",
                barber_id, client_id, service_id, day, begin, end, service["price_cents"])
        return get_booking(booking_id)

    @invalidate_appointment_cache(cache=cache)
    @cache.invalidates(tags=["business_intelligence"])
    def cancel_booking(booking_id: int) -> dict[str, Any]:
        with db.transaction():
            booking = db.one("SELECT status FROM bookings WHERE id = ?", booking_id)
            if booking is None:
                raise NotFound(f"no booking {booking_id}")
            if booking["status"] != "booked":
                raise Conflict(f"booking {booking_id} is {booking['status']}")
            db.execute("UPDATE bookings SET status = 'cancelled' WHERE id = ?", booking_id)
        return get_booking(booking_id)

    @cache.invalidates(tags=["analytics", "business_intelligence"])
    def record_payment(booking_id: int, amount_cents: int, tip_cents: int, method: str) -> dict[str, Any]:
        with db.transaction():
            booking = db.one("SELECT day, status FROM bookings WHERE id = ?", booking_id)
            if booking is None:
                raise NotFound(f"no booking {booking_id}")
            if booking["status"] != "booked":
                raise Conflict(f"booking {booking_id} is {booking['status']}")
            payment_id = db.execute(
                "INSERT INTO payments (booking_id, amount_cents, tip_cents, method, paid_on) VALUES (?, ?, ?, ?, ?)",
                booking_id, amount_cents, tip_cents, method, booking["day"])
            db.execute("UPDATE bookings SET status = 'completed' WHERE id = ?", booking_id)
        return {"id": payment_id, "booking_id": booking_id, "amount_cents": amount_cents,
                "tip_cents": tip_cents, "method": method, "paid_on": booking["day"]}

    @cache.invalidates(tags=["catalog"])
    def save_service(service_id: int | None, fields: dict[str, Any]) -> dict[str, Any]:
        with db.transaction():
            if service_id is None:
                service_id = db.execute(
                    "INSERT INTO services (name, duration_minutes, price_cents, active) VALUES (?, ?, ?, ?)",
                    fields["name"], fields["duration_minutes"], fields["price_cents"], int(fields.get("active", True)))
            else:
                if db.one("SELECT id FROM services WHERE id = ?", service_id) is None:
                    raise NotFound(f"no service {service_id}")
                for column, value in fields.items():  # column names come from SERVICE_FIELDS only
                    db.execute(f"UPDATE services SET {column} = ? WHERE id = ?", value, service_id)
        row = db.one("SELECT id, name, duration_minutes, price_cents, active FROM services WHERE id = ?", service_id)
        assert row is not None
        return {**row, "active": bool(row["active"])}

    @invalidate_appointment_cache(cache=cache)  # opening hours move every slot
    @cache.invalidates(tags=["settings", "business_intelligence"])
    def update_settings(changes: dict[str, Any]) -> dict[str, Any]:
        with db.transaction():
            merged = {**read_settings(db), **changes}
            if minutes(merged["open_time"]) >= minutes(merged["close_time"]):
                raise BadRequest("open_time must be before close_time")
            for key, value in changes.items():
                db.execute("UPDATE settings SET value = ? WHERE key = ?", json.dumps(value), key)
        return merged

    def get_booking(booking_id: int) -> dict[str, Any]:  # not cached: always the database's answer
        row = db.one("SELECT id, barber_id, client_id, service_id, day, start_min, end_min, status, price_cents "
                     "FROM bookings WHERE id = ?", booking_id)
        if row is None:
            raise NotFound(f"no booking {booking_id}")
        return {"id": row["id"], "barber_id": row["barber_id"], "client_id": row["client_id"],
                "service_id": row["service_id"], "date": row["day"], "start": hhmm(row["start_min"]),
                "end": hhmm(row["end_min"]), "status": row["status"], "price_cents": row["price_cents"]}

    # ---- warming (POST /cache/warm, or CACHE_WARMING_ENABLED=true at startup) ------------

    @cache.warmer("reference")
    def warm_reference() -> int:
        service_catalog()
        booking_settings()
        return 2

    @cache.warmer("availability")
    def warm_todays_slots() -> int:
        today = dt.date.today().isoformat()
        step = booking_settings()["slot_minutes"]
        barbers = db.query("SELECT id FROM barbers WHERE active = 1 ORDER BY id")
        for barber in barbers:
            available_slots(barber["id"], today, step)
        return len(barbers)

    return SimpleNamespace(
        service_catalog=service_catalog, booking_settings=booking_settings, available_slots=available_slots,
        weekly_availability=weekly_availability, revenue_dashboard=revenue_dashboard,
        client_analytics=client_analytics, business_dashboard=business_dashboard,
        create_booking=create_booking, cancel_booking=cancel_booking, record_payment=record_payment,
        save_service=save_service, update_settings=update_settings, get_booking=get_booking)


SERVICE_FIELDS = {"name", "duration_minutes", "price_cents", "active"}
SETTING_CHECKS = {
    "open_time": lambda v: isinstance(v, str) and len(v) == 5 and v[2] == ":" and 0 <= minutes(v) < 24 * 60,
    "close_time": lambda v: isinstance(v, str) and len(v) == 5 and v[2] == ":" and 0 < minutes(v) <= 24 * 60,
    "slot_minutes": lambda v: v in (10, 15, 20, 30, 60),
    "open_weekdays": lambda v: isinstance(v, list) and all(d in range(7) for d in v) and len(set(v)) == len(v),
    "currency": lambda v: isinstance(v, str) and len(v) == 3 and v.isupper(),
    "cancellation_hours": lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 168,
}


# =========================================================================================
# The Flask app
# =========================================================================================

class Barbershop:
    """What ``create_app`` put together, at ``app.extensions["barbershop"]``."""

    def __init__(self, db: Database, cache: TieredCache, owns_cache: bool, services: SimpleNamespace) -> None:
        self.db, self.cache, self.owns_cache, self.services = db, cache, owns_cache, services

    def close(self) -> None:
        """Close the database connections, and the cache if the app made it (``cache=None``).
        Flask has no shutdown hook: call this when the process is done with the app."""
        self.db.close()
        if self.owns_cache:
            self.cache.close()


def create_app(*, db_path: str, cache: TieredCache | None, admin_token: str | None = None) -> Flask:
    """The booking API on the SQLite database at `db_path` (tables created if missing).

    `cache`: the app's cache (yours to close); ``None`` runs the same code uncached, the
    baseline. `admin_token`: the bearer token of the admin endpoints under ``/cache``
    (default: ``CACHE_ADMIN_TOKEN`` from the environment; with neither, no admin endpoints).
    The app registers warmer groups ``"reference"`` and ``"availability"`` on `cache`, so
    give each app a cache of its own.
    """
    init_schema(db_path)
    owns_cache = cache is None
    if cache is None:
        cache = TieredCache(namespace="barbershop-uncached", enabled=False, monitoring=False)
    db = Database(db_path)
    svc = build_services(db, cache)

    app = Flask(__name__)
    ext = TieredCacheFlask(app, cache=cache)
    app.extensions["barbershop"] = Barbershop(db, cache, owns_cache, svc)
    token = admin_token or os.environ.get("CACHE_ADMIN_TOKEN")
    if token:
        app.register_blueprint(ext.admin_blueprint(auth=token))  # /cache/stats, /cache/warm, ...
    else:
        log.warning("barbershop: no admin token (admin_token= or CACHE_ADMIN_TOKEN): /cache/* not served")

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:
        return jsonify(error=exc.description), exc.code

    # ---- reads -------------------------------------------------------------------------

    @app.get("/barbers")
    @ext.cached_view(ttl=TTL.STATIC, tags=["static", "barbers"])  # the whole page: ETag, 304
    def barbers() -> Any:
        return {"barbers": db.query("SELECT id, name FROM barbers WHERE active = 1 ORDER BY id")}

    @app.get("/barbers/<int:barber_id>/slots")
    def slots(barber_id: int) -> Any:
        day = parse_day(request.args.get("date"))
        service_id = request.args.get("service_id", type=int)
        if service_id is None:
            duration = svc.booking_settings()["slot_minutes"]
        else:
            service = next((s for s in svc.service_catalog() if s["id"] == service_id), None)
            if service is None:
                raise NotFound(f"no service {service_id}")
            duration = service["duration_minutes"]
        return svc.available_slots(barber_id, day.isoformat(), duration)

    @app.get("/barbers/<int:barber_id>/week")
    def week(barber_id: int) -> Any:
        return svc.weekly_availability(barber_id, parse_day(request.args.get("start"), "start").isoformat())

    @app.get("/services")
    def services() -> Any:
        return {"services": svc.service_catalog()}

    @app.get("/settings")
    def settings() -> Any:
        return svc.booking_settings()

    def date_range() -> tuple[str, str]:
        end = parse_day(request.args.get("end", dt.date.today().isoformat()), "end")
        start = parse_day(request.args.get("start", (end - dt.timedelta(days=27)).isoformat()), "start")
        if start > end:
            raise BadRequest("start must not be after end")
        return start.isoformat(), end.isoformat()

    @app.get("/analytics/revenue")
    def revenue() -> Any:
        return svc.revenue_dashboard(*date_range())

    @app.get("/analytics/clients")
    def clients() -> Any:
        return svc.client_analytics(*date_range())

    @app.get("/dashboard")
    def dashboard() -> Any:
        return svc.business_dashboard(parse_day(request.args.get("date", dt.date.today().isoformat())).isoformat())

    @app.get("/bookings/<int:booking_id>")
    def booking(booking_id: int) -> Any:
        return svc.get_booking(booking_id)

    @app.get("/debug/queries")
    def queries() -> Any:
        return {"queries": db.reads + db.writes, "reads": db.reads, "writes": db.writes}

    # ---- writes ------------------------------------------------------------------------

    @app.post("/bookings")
    def book() -> Any:
        body = json_body()
        client_id, client = body.get("client_id"), body.get("client")
        if client_id is not None:
            client_id = int_field(body, "client_id", low=1, high=2**62)
        elif isinstance(client, dict):
            client = {"name": str_field(client, "name"), "phone": str_field(client, "phone")}
        else:
            raise BadRequest("client_id or client {name, phone}: required")
        start = str_field(body, "start")
        if len(start) != 5 or start[2] != ":" or not (start[:2] + start[3:]).isdigit():
            raise BadRequest(f"start: expected HH:MM, got {start!r}")
        booking = svc.create_booking(int_field(body, "barber_id", low=1, high=2**62),
                                     int_field(body, "service_id", low=1, high=2**62),
                                     parse_day(body.get("date")).isoformat(), start, client_id, client)
        return booking, 201

    @app.post("/bookings/<int:booking_id>/cancel")
    def cancel(booking_id: int) -> Any:
        return svc.cancel_booking(booking_id)

    @app.post("/payments")
    def pay() -> Any:
        body = json_body()
        method = body.get("method", "card")
        if method not in ("card", "cash"):
            raise BadRequest(f"method: expected 'card' or 'cash', got {method!r}")
        payment = svc.record_payment(int_field(body, "booking_id", low=1, high=2**62),
                                     int_field(body, "amount_cents", low=0, high=10**7),
                                     int_field(body, "tip_cents", low=0, high=10**7, default=0), method)
        return payment, 201

    def service_fields(body: dict[str, Any], *, partial: bool) -> dict[str, Any]:
        unknown = set(body) - SERVICE_FIELDS
        if unknown:
            raise BadRequest(f"{sorted(unknown)[0]}: unknown field")
        fields: dict[str, Any] = {}
        for name in ("name", "duration_minutes", "price_cents", "active"):
            if name not in body:
                if not partial and name != "active":
                    raise BadRequest(f"{name}: required")
                continue
            if name == "name":
                fields[name] = str_field(body, name)
            elif name == "active":
                if not isinstance(body[name], bool):
                    raise BadRequest(f"active: expected true or false, got {body[name]!r}")
                fields[name] = int(body[name])
            elif name == "duration_minutes":
                fields[name] = int_field(body, name, low=5, high=480)
            else:
                fields[name] = int_field(body, name, low=0, high=10**7)
        return fields

    @app.post("/services")
    def create_service() -> Any:
        return svc.save_service(None, service_fields(json_body(), partial=False)), 201

    @app.put("/services/<int:service_id>")
    def update_service(service_id: int) -> Any:
        return svc.save_service(service_id, service_fields(json_body(), partial=True))

    @app.put("/settings")
    def put_settings() -> Any:
        body = json_body()
        for key, value in body.items():
            check = SETTING_CHECKS.get(key)
            if check is None:
                raise BadRequest(f"{key}: unknown setting")
            if not check(value):
                raise BadRequest(f"{key}: invalid value {value!r}")
        return svc.update_settings(body)

    return app


# =========================================================================================
# Running it
# =========================================================================================

def app_from_env() -> Flask:
    """The app configured from the environment, for ``flask --app`` and WSGI servers:
    ``BARBERSHOP_DB`` (default ``barbershop.db``, seeded when empty), ``REDIS_URL``,
    ``CACHE_ENABLED``, ``CACHE_NAMESPACE`` (default ``barbershop``), ``CACHE_ADMIN_TOKEN``."""
    db_path = os.environ.get("BARBERSHOP_DB", "barbershop.db")
    _seed_if_empty(db_path)
    cache = TieredCache.from_env(namespace=os.environ.get("CACHE_NAMESPACE") or "barbershop")
    app = create_app(db_path=db_path, cache=cache)
    atexit.register(cache.close)
    atexit.register(app.extensions["barbershop"].close)
    return app


def _seed_if_empty(db_path: str) -> None:
    from .seed import seed

    counts = seed(db_path)  # does nothing when the database has data
    if counts:
        log.warning("barbershop: seeded %s with %s", db_path, counts)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="The barbershop reference app (Flask development server).")
    parser.add_argument("--db", default=os.environ.get("BARBERSHOP_DB", "barbershop.db"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    os.environ["BARBERSHOP_DB"] = args.db
    app_from_env().run(host=args.host, port=args.port, threaded=True)


if __name__ == "__main__":
    main()

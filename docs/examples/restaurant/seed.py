"""Deterministic seed data for the restaurant billing app.

``seed(db)`` empties the app's collections and fills them again: three restaurants
(tenants), each with its business profile, menu, customers, five business days of orders
ending on 2026-01-24 and the payments of the paid ones. The same arguments always give
the same documents (a fixed ``random.Random``), so two databases seeded alike answer
alike: the demo compares a cached app and an uncached twin on exactly that.

Every tenant uses the same order ids (``ord-00001``, ...) and the same customer phone
numbers with different names, wallets and histories, so a cache key or a tag that forgot
the organisation would show another restaurant's data at once.

    python -m restaurant.seed mongodb://127.0.0.1:27017 billing     (from docs/examples)
"""

from __future__ import annotations

import random
import sys
from datetime import date, datetime, timedelta, timezone
from typing import Any

from .app import ACTIVE, COLLECTIONS, compute_bill, create_indexes, iso

__all__ = ["BUSINESS_DAY", "ORGS", "seed"]

BUSINESS_DAY = "2026-01-24"          # the seeds' date: the demo's "today"

# org_id, name, cuisine, currency, tax rate, city
ORGS = [
    ("org-tandoor", "Tandoor House", "indian", "INR", 0.05, "Pune"),
    ("org-trattoria", "Trattoria Roma", "italian", "EUR", 0.10, "Bologna"),
    ("org-sushi", "Sushi Bar Kai", "japanese", "USD", 0.08, "Portland"),
]

MENUS = {
    "indian": {
        "starters": [("Samosa", 6000), ("Paneer Tikka", 22000), ("Chicken 65", 24000), ("Onion Bhaji", 9000)],
        "mains": [("Butter Chicken", 32000), ("Dal Makhani", 21000), ("Palak Paneer", 24000),
                  ("Lamb Rogan Josh", 38000), ("Chana Masala", 19000), ("Chicken Biryani", 30000)],
        "breads": [("Butter Naan", 5000), ("Garlic Naan", 6000), ("Tandoori Roti", 3500), ("Laccha Paratha", 6500)],
        "desserts": [("Gulab Jamun", 9000), ("Rasmalai", 11000), ("Kulfi", 10000)],
        "drinks": [("Mango Lassi", 9000), ("Masala Chai", 4000), ("Fresh Lime Soda", 7000)],
    },
    "italian": {
        "antipasti": [("Bruschetta", 750), ("Burrata", 1250), ("Arancini", 850), ("Carpaccio", 1400)],
        "primi": [("Tagliatelle al Ragu", 1450), ("Cacio e Pepe", 1300), ("Lasagne", 1500),
                  ("Tortellini in Brodo", 1550), ("Risotto ai Funghi", 1600)],
        "pizze": [("Margherita", 950), ("Diavola", 1150), ("Quattro Formaggi", 1250), ("Capricciosa", 1300)],
        "dolci": [("Tiramisu", 700), ("Panna Cotta", 650), ("Cannoli", 600)],
        "bevande": [("Espresso", 200), ("Acqua Minerale", 300), ("Lambrusco (glass)", 550), ("Limonata", 400)],
    },
    "japanese": {
        "starters": [("Edamame", 550), ("Gyoza", 850), ("Miso Soup", 400), ("Agedashi Tofu", 750)],
        "sushi": [("Salmon Nigiri", 700), ("Tuna Nigiri", 800), ("California Roll", 1100),
                  ("Spicy Tuna Roll", 1300), ("Dragon Roll", 1600), ("Chirashi Bowl", 2400)],
        "mains": [("Chicken Katsu Curry", 1700), ("Tonkotsu Ramen", 1800), ("Beef Teriyaki", 2200)],
        "desserts": [("Mochi Ice Cream", 650), ("Matcha Cheesecake", 800)],
        "drinks": [("Green Tea", 300), ("Ramune", 450), ("Sake (carafe)", 1400)],
    },
}

FIRST = ["Asha", "Ravi", "Meera", "Arjun", "Giulia", "Marco", "Sofia", "Luca", "Yuki", "Kenji", "Hana",
         "Noah", "Emma", "Liam", "Olivia", "Maya", "Omar", "Lena", "Ivan", "Zara"]
LAST = ["Patel", "Sharma", "Iyer", "Rossi", "Bianchi", "Ricci", "Tanaka", "Sato", "Kimura", "Smith",
        "Garcia", "Nguyen", "Müller", "Silva", "Cohen", "Okafor"]
METHODS = ["cash", "card", "upi", "wallet"]
WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def phone(i: int) -> str:
    """The i-th customer phone number; every restaurant has the same ones."""
    return f"+1-555-{1000 + i:04d}"


def _profile(rng: random.Random, org_id: str, name: str, cuisine: str, currency: str, tax_rate: float,
             city: str, created: datetime) -> dict:
    slug = org_id.removeprefix("org-")
    return {
        "org_id": org_id,
        "name": name,
        "legal_name": f"{name} Hospitality Pvt. Ltd." if currency == "INR" else f"{name} LLC",
        "cuisine": cuisine,
        "currency": currency,
        "tax_rate": tax_rate,
        "tax_id": f"TAX-{rng.randrange(10**9, 10**10)}",
        "phone": f"+1-555-9{rng.randrange(100, 999)}",
        "email": f"hello@{slug}.example",
        "logo_url": f"https://{slug}.example/logo.png",
        "address": {"street": f"{rng.randrange(1, 200)} Market Street", "city": city,
                    "postcode": f"{rng.randrange(10000, 99999)}"},
        "opening_hours": {d: ("12:00-23:00" if d != "mon" else "closed") for d in WEEKDAYS},
        "tables": 20,
        "receipt_footer": f"Thank you for dining at {name}!",
        "settings": {"print_kot": True, "round_totals": False, "service_charge_percent": 0,
                     "loyalty_points_per_100": 1},
        "created_at": iso(created),
        "updated_at": iso(created),
    }


def _menu(org_id: str, cuisine: str) -> list[dict]:
    items = []
    for category, dishes in MENUS[cuisine].items():
        for name, price in dishes:
            items.append({"org_id": org_id, "item_id": f"m{len(items) + 1:03d}", "name": name,
                          "category": category, "price_cents": price, "available": True})
    return items


def seed(db: Any, *, days: int = 5, orders_per_day: int = 120, customers: int = 120,
         seed: int = 2026) -> dict:
    """Empty the app's collections in ``db`` (a pymongo ``Database``) and fill them.

    Returns what was written: ``{"orgs": [...], "business_day": ..., "phones": [...],
    "orders": n, "active_orders": n, "payments": n, "customers": n, "menu_items": n}``.
    The last business day (``BUSINESS_DAY``) runs from 12:00 to 18:00; its recent orders
    are still open, preparing or served.
    """
    rng = random.Random(seed)
    for name in COLLECTIONS:
        db[name].drop()
    create_indexes(db)

    last_day = date.fromisoformat(BUSINESS_DAY)
    first_day = last_day - timedelta(days=days - 1)
    phones = [phone(i) for i in range(customers)]
    totals = {"orders": 0, "active_orders": 0, "payments": 0, "customers": 0, "menu_items": 0}

    for org_id, name, cuisine, currency, tax_rate, city in ORGS:
        opened = datetime(first_day.year, first_day.month, first_day.day, 9, tzinfo=timezone.utc) - timedelta(days=400)
        profile = _profile(rng, org_id, name, cuisine, currency, tax_rate, city, opened)
        menu = _menu(org_id, cuisine)
        db.profiles.insert_one(profile)
        db.menu.insert_many(menu)

        people = []
        unit = 100 if currency == "INR" else 1          # wallets in rupees, or in cents
        for number in phones:
            people.append({"org_id": org_id, "phone": number,
                           "name": f"{rng.choice(FIRST)} {rng.choice(LAST)}",
                           "wallet_cents": rng.choice([0, 0, 0, 500, 1000, 2500, 5000]) * unit,
                           "created_at": iso(opened + timedelta(days=rng.randrange(300)))})
        db.customers.insert_many(people)
        # regulars: a few phones place most of the orders
        weights = [1.0 / (i + 1) ** 0.8 for i in range(customers)]

        orders, payments = [], []
        n = 0
        for d in range(days):
            day = first_day + timedelta(days=d)
            is_today = day == last_day
            close_hour = 18 if is_today else 23
            count = orders_per_day // 2 if is_today else orders_per_day
            stamps = sorted(rng.uniform(12, close_hour) for _ in range(count))
            for k, hour in enumerate(stamps):
                n += 1
                created = datetime(day.year, day.month, day.day, tzinfo=timezone.utc) + timedelta(hours=hour)
                lines = rng.sample(menu, rng.randint(1, 5))
                customer = rng.choices(phones, weights)[0] if rng.random() < 0.7 else None
                order = {
                    "org_id": org_id, "order_id": f"ord-{n:05d}", "order_no": n,
                    "table": f"T{rng.randint(1, 20)}" if rng.random() < 0.75 else None,
                    "customer_phone": customer,
                    "items": [{"item_id": m["item_id"], "name": m["name"], "qty": rng.randint(1, 3),
                               "price_cents": m["price_cents"]} for m in lines],
                    "discount_percent": rng.choice([0, 0, 0, 0, 5, 10]),
                    "business_day": day.isoformat(),
                    "created_at": iso(created), "updated_at": iso(created),
                }
                # today: the last ~20% of the orders are still on the floor
                recent = is_today and k >= count * 0.8
                if recent:
                    order["status"] = rng.choice(ACTIVE)
                elif rng.random() < 0.04:
                    order["status"] = "cancelled"
                else:
                    paid_at = created + timedelta(minutes=rng.randint(25, 90))
                    bill = compute_bill(order, tax_rate)
                    order.update(status="paid", bill=bill, paid_at=iso(paid_at))
                    payments.append({
                        "org_id": org_id, "payment_id": f"pay-{len(payments) + 1:05d}",
                        "order_id": order["order_id"], "customer_phone": customer,
                        "method": rng.choice(METHODS if customer else METHODS[:3]),
                        "amount_cents": bill["total_cents"], "tax_cents": bill["tax_cents"],
                        "business_day": day.isoformat(), "created_at": iso(paid_at),
                    })
                orders.append(order)
                totals["active_orders"] += order["status"] in ACTIVE
        db.orders.insert_many(orders)
        if payments:
            db.payments.insert_many(payments)
        db.counters.insert_one({"_id": f"{org_id}:orders", "seq": n})
        db.counters.insert_one({"_id": f"{org_id}:payments", "seq": len(payments)})
        totals["orders"] += len(orders)
        totals["payments"] += len(payments)
        totals["customers"] += len(people)
        totals["menu_items"] += len(menu)

    return {"orgs": [o[0] for o in ORGS], "business_day": BUSINESS_DAY, "phones": phones, **totals}


if __name__ == "__main__":
    from pymongo import MongoClient

    url = sys.argv[1] if len(sys.argv) > 1 else "mongodb://127.0.0.1:27017"
    db_name = sys.argv[2] if len(sys.argv) > 2 else "billing"
    with MongoClient(url) as client:
        info = seed(client[db_name])
    info.pop("phones")
    print(f"seeded {db_name} at {url}: {info}")

"""Seed data for the point-of-sale app: three shops, each with its catalog, customers,
staff and a month of bills.

Every shop numbers its products ``P001``, ``P002``, ... so the same SKU means a different
product in each shop: the case tenant isolation is about. Deterministic: the same
arguments give the same database.

    PYTHONPATH=src:docs/examples python -m pos.seed /tmp/pos.db
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import sqlite3

from .app import init_schema

__all__ = ["SHOPS", "TODAY", "seed"]

#: The day the seeded month of bills ends.
TODAY = dt.date(2024, 5, 15)

SHOPS = {  # name, tax in basis points, catalog: (name, category, price in cents)
    "Corner Cafe": (500, [
        ("Espresso", "coffee", 250), ("Cappuccino", "coffee", 350), ("Flat white", "coffee", 380),
        ("Latte", "coffee", 380), ("Black tea", "tea", 220), ("Mint tea", "tea", 240),
        ("Croissant", "bakery", 280), ("Pain au chocolat", "bakery", 310), ("Banana bread", "bakery", 340),
        ("Ham sandwich", "food", 650), ("Soup of the day", "food", 590), ("Orange juice", "drinks", 400),
    ]),
    "Tajir Tailors": (1500, [
        ("Shirt alteration", "service", 1500), ("Trouser hemming", "service", 1200), ("Suit fitting", "service", 4500),
        ("Cotton fabric (m)", "fabric", 900), ("Linen fabric (m)", "fabric", 1400), ("Silk fabric (m)", "fabric", 3200),
        ("Buttons (set)", "notions", 350), ("Zip", "notions", 250), ("Thread spool", "notions", 180),
        ("Tailored shirt", "garment", 6500), ("Tailored trousers", "garment", 7500),
    ]),
    "Page Turner Books": (0, [
        ("Paperback novel", "books", 999), ("Hardback novel", "books", 2199), ("Cookbook", "books", 2599),
        ("Children's picture book", "books", 799), ("Travel guide", "books", 1699), ("Notebook", "stationery", 499),
        ("Fountain pen", "stationery", 2499), ("Bookmark", "stationery", 150), ("Gift card", "gifts", 2500),
        ("Tote bag", "gifts", 1200),
    ]),
}
FIRST = ["Aisha", "Ben", "Chen", "Dara", "Eva", "Farid", "Gus", "Hana", "Ivan", "Jade", "Kofi", "Lina"]
LAST = ["Ahmed", "Brown", "Garcia", "Khan", "Lopez", "Mensah", "Novak", "Okafor", "Park", "Rossi"]
ROLES = ["manager", "cashier", "cashier", "cashier"]


def seed(db_path: str, *, today: dt.date = TODAY, customers: int = 45, bills: int = 240, days: int = 30,
         seed: int = 4) -> dict[str, int]:
    """Fill an empty database; returns how many rows of each kind it wrote ({} when the
    database already had data: several workers may race to seed it, one wins)."""
    rng = random.Random(seed)
    init_schema(db_path)
    conn = sqlite3.connect(db_path, timeout=30, isolation_level=None)
    counts = {"shops": 0, "products": 0, "customers": 0, "employees": 0, "bills": 0}
    try:
        conn.execute("BEGIN IMMEDIATE")  # one seeder at a time
        if conn.execute("SELECT COUNT(*) FROM shops").fetchone()[0]:
            conn.execute("ROLLBACK")
            return {}
        for shop_name, (tax_bp, catalog) in SHOPS.items():
            shop_id = conn.execute("INSERT INTO shops (name, tax_rate_bp) VALUES (?, ?)", (shop_name, tax_bp)).lastrowid
            counts["shops"] += 1
            products = [(f"P{i:03d}", name, category, price) for i, (name, category, price) in enumerate(catalog, 1)]
            conn.executemany("INSERT INTO products (shop_id, sku, name, category, price_cents) VALUES (?, ?, ?, ?, ?)",
                             [(shop_id, *p) for p in products])
            counts["products"] += len(products)
            people = [f"{rng.choice(FIRST)} {rng.choice(LAST)}" for _ in range(customers)]
            customer_ids = [conn.execute(
                "INSERT INTO customers (shop_id, name, phone, email) VALUES (?, ?, ?, ?)",
                (shop_id, name, f"+4470{shop_id}{i:05d}",
                 f"{name.lower().replace(' ', '.')}{i}@example.com" if rng.random() < 0.7 else None)).lastrowid
                for i, name in enumerate(people)]
            counts["customers"] += len(customer_ids)
            employee_ids = [conn.execute("INSERT INTO employees (shop_id, name, role) VALUES (?, ?, ?)",
                                         (shop_id, f"{rng.choice(FIRST)} {rng.choice(LAST)}", role)).lastrowid
                            for role in ROLES]
            counts["employees"] += len(employee_ids)
            regulars = customer_ids[: len(customer_ids) // 3]
            stamps = sorted(dt.datetime.combine(today - dt.timedelta(days=rng.randrange(days)), dt.time(8))
                            + dt.timedelta(minutes=rng.randrange(10 * 60)) for _ in range(bills))
            for stamp in stamps:
                lines = []
                for sku, name, _, price in rng.sample(products, rng.randint(1, 4)):
                    qty = rng.choice([1, 1, 1, 2, 2, 3])
                    lines.append((sku, name, qty, price, qty * price))
                subtotal = sum(line[4] for line in lines)
                discount = subtotal // 10 if rng.random() < 0.1 else 0
                tax = ((subtotal - discount) * tax_bp + 5_000) // 10_000
                roll = rng.random()
                customer = rng.choice(regulars) if roll < 0.45 else rng.choice(customer_ids) if roll < 0.7 else None
                bill_id = conn.execute(
                    "INSERT INTO bills (shop_id, customer_id, employee_id, created_at, subtotal_cents, discount_cents, "
                    "tax_cents, total_cents) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (shop_id, customer, rng.choice(employee_ids), stamp.isoformat(), subtotal, discount, tax,
                     subtotal - discount + tax)).lastrowid
                conn.executemany("INSERT INTO bill_items (bill_id, sku, name, qty, unit_price_cents, line_cents) "
                                 "VALUES (?, ?, ?, ?, ?, ?)", [(bill_id, *line) for line in lines])
                counts["bills"] += 1
        conn.execute("COMMIT")
    finally:
        conn.close()
    return counts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Create and fill a point-of-sale database.")
    parser.add_argument("db", help="path of the SQLite file (created)")
    parser.add_argument("--seed", type=int, default=4)
    args = parser.parse_args(argv)
    print(seed(args.db, seed=args.seed) or f"{args.db} already has data: nothing written")


if __name__ == "__main__":
    main()

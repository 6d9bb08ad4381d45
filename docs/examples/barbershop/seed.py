"""Seed data for the barbershop app: barbers, services, clients, and six weeks of bookings.

Four weeks before ``today`` (completed and paid, or cancelled) and two weeks after (booked,
or cancelled), about two thirds of each barber's day filled. Deterministic: the same
arguments give the same database.

    PYTHONPATH=src:docs/examples python -m barbershop.seed /tmp/barbershop.db
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import sqlite3

from .app import free_starts, init_schema

__all__ = ["TODAY", "seed"]

#: The "today" of the seeded data (a Wednesday); tests and the README use these dates.
TODAY = dt.date(2024, 5, 15)

BARBERS = ["Ana Lima", "Bruno Costa", "Carla Dias", "Diego Reis"]
SERVICES = [  # name, minutes, price in cents
    ("Haircut", 30, 3000),
    ("Beard trim", 30, 1800),
    ("Haircut and beard", 60, 4500),
    ("Kids cut", 30, 2000),
    ("Hot towel shave", 45, 3500),
    ("Colour", 90, 8000),
]
FIRST = ["Alex", "Sam", "Jo", "Chris", "Pat", "Max", "Lee", "Kim", "Noa", "Rui", "Ivo", "Eli"]
LAST = ["Silva", "Santos", "Ferreira", "Pereira", "Oliveira", "Costa", "Rodrigues", "Martins"]


def seed(db_path: str, *, today: dt.date = TODAY, weeks_back: int = 4, weeks_ahead: int = 2,
         barbers: int = 3, clients: int = 60, fill: float = 0.65, seed: int = 3) -> dict[str, int]:
    """Fill an empty database; returns how many rows of each kind it wrote ({} when the
    database already had data: several workers may race to seed it, one wins)."""
    rng = random.Random(seed)
    init_schema(db_path)
    conn = sqlite3.connect(db_path, timeout=30, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")  # one seeder at a time
        if conn.execute("SELECT COUNT(*) FROM barbers").fetchone()[0]:
            conn.execute("ROLLBACK")
            return {}
        settings = {k: json.loads(v) for k, v in conn.execute("SELECT key, value FROM settings")}
        conn.executemany("INSERT INTO barbers (name) VALUES (?)", [(n,) for n in BARBERS[:barbers]])
        conn.executemany("INSERT INTO services (name, duration_minutes, price_cents) VALUES (?, ?, ?)", SERVICES)
        names = sorted({f"{rng.choice(FIRST)} {rng.choice(LAST)}" for _ in range(clients * 3)})
        rng.shuffle(names)
        conn.executemany("INSERT INTO clients (name, phone) VALUES (?, ?)",
                         [(name, f"+1555{1000 + i:04d}") for i, name in enumerate(names[:clients])])
        client_ids = [r[0] for r in conn.execute("SELECT id FROM clients")]
        regulars = client_ids[: len(client_ids) // 4]  # a quarter of the clients make most visits

        bookings = payments = 0
        first = today - dt.timedelta(weeks=weeks_back)
        for offset in range(7 * (weeks_back + weeks_ahead)):
            day = first + dt.timedelta(days=offset)
            for barber_id in range(1, barbers + 1):
                busy: list[tuple[int, int]] = []
                for start in free_starts(settings, day, [], settings["slot_minutes"]):
                    service_id = rng.randrange(len(SERVICES)) + 1
                    _, duration, price = SERVICES[service_id - 1]
                    if rng.random() > fill or start not in free_starts(settings, day, busy, duration):
                        continue
                    busy.append((start, start + duration))
                    client = rng.choice(regulars) if rng.random() < 0.6 else rng.choice(client_ids)
                    past = day < today
                    status = "cancelled" if rng.random() < 0.1 else ("completed" if past else "booked")
                    cur = conn.execute(
                        "INSERT INTO bookings (barber_id, client_id, service_id, day, start_min, end_min, status, "
                        "price_cents) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (barber_id, client, service_id, day.isoformat(), start, start + duration, status, price))
                    bookings += 1
                    if status == "completed":
                        tip = rng.choice([0, 0, 200, 300, 500, 500, 1000])
                        method = "card" if rng.random() < 0.75 else "cash"
                        conn.execute("INSERT INTO payments (booking_id, amount_cents, tip_cents, method, paid_on) "
                                     "VALUES (?, ?, ?, ?, ?)", (cur.lastrowid, price, tip, method, day.isoformat()))
                        payments += 1
        conn.execute("COMMIT")
    finally:
        conn.close()
    return {"barbers": barbers, "services": len(SERVICES), "clients": len(client_ids),
            "bookings": bookings, "payments": payments}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Create and fill a barbershop database.")
    parser.add_argument("db", help="path of the SQLite file (created)")
    parser.add_argument("--today", type=dt.date.fromisoformat, default=TODAY)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args(argv)
    print(seed(args.db, today=args.today, seed=args.seed) or f"{args.db} already has data: nothing written")


if __name__ == "__main__":
    main()

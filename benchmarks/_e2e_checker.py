"""Stale reads after writes, across the workers of one server: bench_e2e.py's checker.

    python benchmarks/_e2e_checker.py restaurant --base http://127.0.0.1:PORT --workers 2 \\
        --seconds 8 --mongo-url mongodb://... --db billing
    python benchmarks/_e2e_checker.py barbershop --base http://127.0.0.1:PORT --workers 2 --seconds 8

Runs in a process of its own, while wrk loads the server or alone (bench_e2e.py runs
both phases). Each of its --lanes threads keeps one keep-alive connection to each worker
(it opens connections until ``GET /_e2e/stats`` has answered from ``--workers`` distinct
pids: the server's accept queue decides which worker gets a connection), has data of its
own (a tenant and a customer in the restaurant, 100 days of bookings in the barbershop),
and repeats cycles of:

1. prime: read, through every worker, the endpoints the write will change (so each worker
   has them cached, when it caches);
2. write through one worker (the workers take turns);
3. read the same endpoints again at once through every worker, the other workers first,
   and compare each answer with what the write made true. An answer that does not show
   the write is a **stale read**; the checker then re-reads it on the same connection
   until it shows the write (at most --settle s) and records how long that took.

Only the checker writes to what it checks (its own customer phone numbers and orders in
the restaurant, its own dates in the barbershop), so every expected value is exact, except
the restaurant's billing summary, where the load's payments land too: there a summary
counts as stale when it shows fewer payments than the database held just before the
write, plus one (a check that can miss a stale summary, never invent one).

restaurant cycles: update an order's table (order by id, active orders); create an order
for the checker's customer (active orders, balance's open orders); pay it (order status,
active orders, balance's visits, billing summary).
barbershop cycles: book a slot (slots of the day, weekly availability, dashboard); pay
it (revenue analytics, dashboard); book another and cancel it (slots, dashboard).

Prints one JSON line: reads checked, stale reads (by endpoint and by same/other worker),
the stale windows (ms from the write's answer to the first fresh re-read: an upper bound,
one request's latency coarse), up to 10 samples of stale answers, write errors.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import random
import sys
import threading
import time
from typing import Any
from urllib.parse import quote, urlsplit


class Conn:
    """A keep-alive connection that reconnects (to whichever worker) when dropped."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.c = http.client.HTTPConnection(host, port, timeout=15)
        self.pid: int | None = None

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": "application/json"} if body is not None else {}
        for attempt in (0, 1):
            try:
                self.c.request(method, path, body=data, headers=headers)
                r = self.c.getresponse()
                raw = r.read()
                try:
                    return r.status, json.loads(raw) if raw else None
                except ValueError:
                    return r.status, raw.decode(errors="replace")
            except (OSError, http.client.HTTPException):
                self.c.close()
                if attempt:
                    raise
                self.c = http.client.HTTPConnection(self.host, self.port, timeout=15)
                self.pid = None  # a new connection may reach another worker
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.c.close()


def connect_workers(base: str, workers: int, attempts: int = 120) -> tuple[list[Conn], int]:
    u = urlsplit(base)
    by_pid: dict[int, Conn] = {}
    tried = 0
    while len(by_pid) < workers and tried < attempts:
        tried += 1
        c = Conn(u.hostname or "127.0.0.1", u.port or 80)
        status, body = c.request("GET", "/_e2e/stats")
        if status == 200 and isinstance(body, dict) and body["pid"] not in by_pid:
            c.pid = body["pid"]
            by_pid[c.pid] = c
        else:
            c.close()
            time.sleep(0.005)
    return list(by_pid.values()), tried


class Tally:
    """Counts shared by the checker's lanes (threads): every update under the lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reads = 0
        self.stale = 0
        self.by_kind: dict[str, dict[str, int]] = {}
        self.same = {"reads": 0, "stale": 0}
        self.other = {"reads": 0, "stale": 0}
        self.windows_ms: list[float] = []
        self.unsettled = 0
        self.errors: list[str] = []
        self.samples: list[dict[str, Any]] = []
        self.writes = 0
        self.cycles = 0
        self.reconnects = 0

    def add(self, field: str, n: int = 1) -> None:
        with self.lock:
            setattr(self, field, getattr(self, field) + n)

    def stale_seen(self, window_ms: float | None, sample: dict[str, Any]) -> None:
        with self.lock:
            if window_ms is None:
                self.unsettled += 1
            else:
                self.windows_ms.append(window_ms)
            if len(self.samples) < 10:
                self.samples.append(sample)

    def record(self, kind: str, same: bool, stale: bool) -> None:
        with self.lock:
            self._record(kind, same, stale)

    def _record(self, kind: str, same: bool, stale: bool) -> None:
        self.reads += 1
        k = self.by_kind.setdefault(kind, {"reads": 0, "stale": 0})
        k["reads"] += 1
        side = self.same if same else self.other
        side["reads"] += 1
        if stale:
            self.stale += 1
            k["stale"] += 1
            side["stale"] += 1

    def error(self, msg: str) -> None:
        with self.lock:
            if len(self.errors) < 20:
                self.errors.append(msg)

    def result(self, **extra: Any) -> dict[str, Any]:
        w = sorted(self.windows_ms)
        return {
            "reads": self.reads, "stale": self.stale, "by_kind": self.by_kind,
            "same_worker": self.same, "other_worker": self.other, "writes": self.writes,
            "cycles": self.cycles, "stale_window_ms_max": round(w[-1], 2) if w else 0.0,
            "stale_window_ms_median": round(w[len(w) // 2], 2) if w else 0.0,
            "unsettled": self.unsettled, "errors": self.errors, "samples": self.samples, "reconnects": self.reconnects, **extra,
        }


class Checker:
    def __init__(self, conns: list[Conn], tally: Tally, settle: float) -> None:
        self.conns = conns
        self.tally = tally
        self.settle = settle

    def read_all(self, path: str) -> None:
        """Prime: read through every worker."""
        for c in self.conns:
            c.request("GET", path)

    def verify(self, writer: Conn, wrote_at: float, kind: str, path: str, fresh: Any) -> None:
        """Read `path` through every worker (the writer last); `fresh(body)` says whether
        the answer shows the write."""
        order = [c for c in self.conns if c is not writer] + [writer]
        for c in order:
            before = c.pid
            status, body = c.request("GET", path)
            if c.pid != before:
                self.tally.add("reconnects")
            if status != 200:
                self.tally.error(f"{kind}: GET {path} -> {status}: {str(body)[:120]}")
                continue
            ok = bool(fresh(body))
            self.tally.record(kind, c is writer, not ok)
            if not ok:
                seen_at = (time.perf_counter() - wrote_at) * 1e3
                deadline = time.perf_counter() + self.settle
                settled = None
                while time.perf_counter() < deadline:
                    status, body2 = c.request("GET", path)
                    if status == 200 and fresh(body2):
                        settled = (time.perf_counter() - wrote_at) * 1e3
                        break
                    time.sleep(0.001)
                self.tally.stale_seen(settled, {
                    "kind": kind, "path": path, "worker": "same" if c is writer else "other",
                    "read_ms_after_write": round(seen_at, 2),
                    "fresh_ms_after_write": None if settled is None else round(settled, 2),
                    "body": json.dumps(body)[:300]})

    def write(self, writer: Conn, method: str, path: str, body: Any, expect: int) -> tuple[Any, float] | None:
        status, resp = writer.request(method, path, body)
        wrote_at = time.perf_counter()
        self.tally.add("writes")
        if status != expect:
            self.tally.error(f"{method} {path} -> {status}: {str(resp)[:160]}")
            return None
        return resp, wrote_at


# ------------------------------------------------------------------------------------------
# restaurant
# ------------------------------------------------------------------------------------------


def run_restaurant(ck: Checker, args: argparse.Namespace, lane: int) -> None:
    """Lane `lane` checks one tenant, with a customer of its own, new to the database."""
    from pymongo import MongoClient

    mongo = MongoClient(args.mongo_url, serverSelectionTimeoutMS=5000)
    db = mongo[args.db]
    orgs = args.orgs.split(",")
    org = orgs[lane % len(orgs)]
    st: dict[str, Any] = {"phone": f"+1-999-{random.randrange(10000):04d}-{lane}", "open": [], "visits": 0,
                          "base": None}
    t = ck.tally
    deadline = time.monotonic() + args.seconds
    k = 0
    while time.monotonic() < deadline:
        writer = ck.conns[(k // 3) % len(ck.conns)]
        phone = quote(st["phone"], safe="+-")
        step = k % 3
        k += 1
        t.add("cycles")
        active = f"/orgs/{org}/orders/active"
        balance = f"/orgs/{org}/customers/{phone}/balance"
        if step == 0:
            # update: an open order of the checker's (created on the first pass)
            if st["base"] is None:
                got = ck.write(writer, "POST", f"/orgs/{org}/orders",
                               {"items": [{"item_id": "m001", "qty": 1}], "customer_phone": st["phone"],
                                "table": "C0"}, 201)
                if got is None:
                    continue
                st["base"] = got[0]["order_id"]
                st["open"].append(st["base"])
            oid = st["base"]
            order = f"/orgs/{org}/orders/{oid}"
            ck.read_all(order)
            ck.read_all(active)
            token = f"C{k}"
            got = ck.write(writer, "PATCH", order, {"table": token}, 200)
            if got is None:
                continue
            ck.verify(writer, got[1], "order", order, lambda b: b.get("table") == token)
            ck.verify(writer, got[1], "active", active,
                      lambda b: any(o["order_id"] == oid and o.get("table") == token for o in b["orders"]))
        elif step == 1:
            ck.read_all(active)
            if st["open"]:
                ck.read_all(balance)
            got = ck.write(writer, "POST", f"/orgs/{org}/orders",
                           {"items": [{"item_id": "m002", "qty": 2}], "customer_phone": st["phone"]}, 201)
            if got is None:
                continue
            oid = got[0]["order_id"]
            st["open"].append(oid)
            n_open = len(st["open"])
            ck.verify(writer, got[1], "active", active, lambda b: any(o["order_id"] == oid for o in b["orders"]))
            ck.verify(writer, got[1], "balance", balance, lambda b: b.get("open_orders") == n_open)
        else:
            # pay the newest open order (not the one the updates use)
            payable = [o for o in st["open"] if o != st["base"]]
            if not payable:
                continue
            oid = payable[-1]
            order = f"/orgs/{org}/orders/{oid}"
            summary = f"/orgs/{org}/billing/summary"
            for path in (order, active, balance, summary):
                ck.read_all(path)
            today = dt.datetime.now(dt.timezone.utc).date().isoformat()
            before = db.payments.count_documents({"org_id": org, "business_day": today})
            got = ck.write(writer, "POST", f"/orgs/{org}/payments", {"order_id": oid, "method": "card"}, 201)
            if got is None:
                continue
            st["open"].remove(oid)
            st["visits"] += 1
            visits, n_open = st["visits"], len(st["open"])
            ck.verify(writer, got[1], "order", order, lambda b: b.get("status") == "paid")
            ck.verify(writer, got[1], "active", active, lambda b: all(o["order_id"] != oid for o in b["orders"]))
            ck.verify(writer, got[1], "balance", balance,
                      lambda b: b.get("visits") == visits and b.get("open_orders") == n_open)
            ck.verify(writer, got[1], "summary", summary, lambda b: b.get("payments", 0) >= before + 1)
    mongo.close()


# ------------------------------------------------------------------------------------------
# barbershop
# ------------------------------------------------------------------------------------------


def _open_days(first: dt.date, count: int) -> list[dt.date]:
    out, d = [], first
    while len(out) < count:
        if d.weekday() <= 5:  # the seeded settings open Monday..Saturday
            out.append(d)
        d += dt.timedelta(days=1)
    return out


def run_barbershop(ck: Checker, args: argparse.Namespace, lane: int) -> None:
    """Lane `lane` books on days of its own (100 open days per lane from --first-date)."""
    t = ck.tally
    days = _open_days(dt.date.fromisoformat(args.first_date), 100 * (lane + 1))[100 * lane:]
    barbers = args.barbers
    busy: dict[tuple[int, str], int] = {}       # (barber, day) -> bookings holding a slot
    booked: dict[str, int] = {}                 # day -> bookings with status "booked"
    completed: dict[str, int] = {}              # day -> completed (paid) bookings
    paid: dict[str, int] = {}                   # day -> payments
    slot_i = 0
    deadline = time.monotonic() + args.seconds
    k = 0
    last: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        writer = ck.conns[(k // 4) % len(ck.conns)]
        step = k % 4                           # book, pay it, book, cancel it
        k += 1
        t.add("cycles")
        if step in (0, 2):
            idx = slot_i                       # every booking takes a slot never used before
            slot_i += 1
            barber = idx % barbers + 1
            slot = (idx // barbers) % 18
            day = days[idx // (barbers * 18)]
            d = day.isoformat()
            start = f"{9 + slot // 2:02d}:{(slot % 2) * 30:02d}"
            monday = (day - dt.timedelta(days=day.weekday())).isoformat()
            slots_p = f"/barbers/{barber}/slots?date={d}"
            week_p = f"/barbers/{barber}/week?start={monday}"
            dash_p = f"/dashboard?date={d}"
            for p in (slots_p, week_p, dash_p):
                ck.read_all(p)
            got = ck.write(writer, "POST", "/bookings",
                           {"barber_id": barber, "service_id": 1, "date": d, "start": start, "client_id": 1}, 201)
            if got is None:
                last = None
                continue
            key = (barber, d)
            busy[key] = busy.get(key, 0) + 1
            booked[d] = booked.get(d, 0) + 1
            n_booked, free = booked[d], 18 - busy[key]
            ck.verify(writer, got[1], "slots", slots_p, lambda b: start not in b["slots"])
            ck.verify(writer, got[1], "week", week_p,
                      lambda b: next(x["free_slots"] for x in b["days"] if x["date"] == d) == free)
            ck.verify(writer, got[1], "dashboard", dash_p, lambda b: b["bookings_today"]["booked"] == n_booked)
            last = {"id": got[0]["id"], "barber": barber, "day": d, "start": start, "slots": slots_p,
                    "dash": dash_p}
        elif last is not None and step == 1:
            d = last["day"]
            rev_p = f"/analytics/revenue?start={d}&end={d}"
            for p in (rev_p, last["dash"]):
                ck.read_all(p)
            got = ck.write(writer, "POST", "/payments",
                           {"booking_id": last["id"], "amount_cents": 3000, "tip_cents": 0, "method": "card"}, 201)
            if got is None:
                continue
            paid[d] = paid.get(d, 0) + 1
            completed[d] = completed.get(d, 0) + 1
            booked[d] -= 1
            n_paid, n_done, n_booked = paid[d], completed[d], booked[d]
            ck.verify(writer, got[1], "revenue", rev_p, lambda b: b["payments"] == n_paid)
            ck.verify(writer, got[1], "dashboard", last["dash"],
                      lambda b: b["bookings_today"]["completed"] == n_done
                      and b["bookings_today"]["booked"] == n_booked)
            last = None
        elif last is not None and step == 3:
            d, start = last["day"], last["start"]
            for p in (last["slots"], last["dash"]):
                ck.read_all(p)
            got = ck.write(writer, "POST", f"/bookings/{last['id']}/cancel", None, 200)
            if got is None:
                continue
            busy[(last["barber"], d)] -= 1
            booked[d] -= 1
            n_booked = booked[d]
            ck.verify(writer, got[1], "slots", last["slots"], lambda b: start in b["slots"])
            ck.verify(writer, got[1], "dashboard", last["dash"], lambda b: b["bookings_today"]["booked"] == n_booked)
            last = None


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("app", choices=("restaurant", "barbershop"))
    ap.add_argument("--base", required=True)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--settle", type=float, default=3.0, help="seconds a stale answer is re-read until fresh")
    ap.add_argument("--mongo-url", help="restaurant: the database, for the billing summary's truth")
    ap.add_argument("--db", default="billing")
    ap.add_argument("--orgs", default="org-tandoor,org-trattoria,org-sushi")
    ap.add_argument("--first-date", default="2026-03-02", help="barbershop: the checker's first booking day")
    ap.add_argument("--barbers", type=int, default=3)
    ap.add_argument("--lanes", type=int, default=3, help="checker threads, each with its own connections "
                                                         "and its own data (restaurant: one tenant each)")
    args = ap.parse_args(argv)
    tally = Tally()
    lanes: list[tuple[Checker, threading.Thread]] = []
    reached, opened, pids = [], 0, set()
    for lane in range(args.lanes):
        conns, tried = connect_workers(args.base, args.workers)
        opened += tried
        reached.append(len(conns))
        pids.update(c.pid for c in conns)
        if len(conns) < args.workers:
            tally.error(f"lane {lane}: reached {len(conns)} of {args.workers} workers in {tried} connections")
        if not conns:
            continue
        ck = Checker(conns, tally, args.settle)
        run = run_restaurant if args.app == "restaurant" else run_barbershop

        def body(ck: Checker = ck, lane: int = lane, run: Any = run) -> None:
            try:
                run(ck, args, lane)
            except Exception as exc:  # noqa: BLE001 - report, do not hide what was counted
                tally.error(f"lane {lane} stopped: {type(exc).__name__}: {exc}")
            finally:
                for c in ck.conns:
                    c.close()

        lanes.append((ck, threading.Thread(target=body, name=f"lane-{lane}")))
    for _, th in lanes:
        th.start()
    for _, th in lanes:
        th.join()
    print(json.dumps(tally.result(workers_reached=min(reached) if reached else 0, connections_opened=opened,
                                  pids=sorted(p for p in pids if p is not None), lanes=len(lanes))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

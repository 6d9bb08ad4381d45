"""`make demo`: the restaurant billing app, cached against uncached, on a day of traffic.

What it does, in about half a minute:

1. starts a MongoDB-wire server (nx-27017 in memory on a free loopback port, or the
   server named by ``MONGODB_URL``) and seeds two identical databases;
2. builds the app twice: with tieredcache (L1 only; L1 + Redis when ``REDIS_URL`` is
   set) and without any cache (the same code with ``cache=None``), each on its own
   database;
3. replays one evening of traffic at three restaurants (a fixed random seed; mostly
   reads: profiles and menus, kitchen screens polling active orders, bills, balance
   look-ups, manager dashboards; and writes: new orders, order updates, checkouts, a
   profile change) against both apps, request by request, through the whole HTTP stack;
4. checks that every cached response equals the uncached one (so nothing stale was
   served after a write), and prints the seeds' before/after table from the
   measurements, with the database queries each operation made;
5. writes a chart of the latencies to build/demo-latency.png.

The database's latency is its real one: nx-27017 over loopback. ``--db-rtt-ms N`` puts a
TCP proxy in front of it that holds every request to the database N ms, to show a remote
database's round trip; it is off by default and the header says so when it is on.

    python docs/examples/restaurant/demo.py [--steps 3000] [--seed 7] [--serve] [--db-rtt-ms 0]

``--serve`` then keeps the cached app up on http://127.0.0.1:8000 (its dashboard at
/admin/cache/dashboard) until Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.metadata
import logging
import os
import platform
import random
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path.insert(0, str(HERE.parent))             # docs/examples: _mongo and the restaurant package

import httpx  # noqa: E402
from pymongo import MongoClient  # noqa: E402

import tieredcache  # noqa: E402
from _mongo import MongoUnavailable, start_mongo  # noqa: E402
from restaurant import seed as seeding  # noqa: E402
from restaurant.app import ACTIVE, create_app, make_cache  # noqa: E402

DAY_START = datetime(2026, 1, 24, 18, 0, tzinfo=timezone.utc)   # the evening the traffic replays
DAY_LENGTH = timedelta(hours=5)
ADMIN_TOKEN = os.environ.get("ADMIN_TOKEN", "demo-admin-token")

# (operation, weight): one busy evening hour of one restaurant, as the server sees it.
# Five screens (the kitchen display and four terminals) poll the open orders every ten
# seconds; terminals show the restaurant's name and tax rate on every page and the menu
# when an order is taken; the manager's dashboard refreshes the day's summary every 30 s.
# Meanwhile about 40 orders are placed, changed twice each and paid: 5% of the operations
# write.
MIX = [
    ("profile (full, menu)", 200), ("profile (lite)", 600), ("profiles batch (3 orgs)", 10),
    ("active orders", 1000), ("orders by status", 800), ("order by id", 300), ("orders page", 30),
    ("bill calculation", 80), ("customer balance", 60), ("billing summary", 120),
    ("create order", 40), ("update order", 80), ("checkout (bill + pay)", 40), ("profile update", 0.3),
]
WRITES = {"create order", "update order", "checkout (bill + pay)", "profile update"}
ORG_WEIGHTS = {"org-tandoor": 0.45, "org-trattoria": 0.35, "org-sushi": 0.20}


class SimClock:
    """The app's "now": the simulated evening while the traffic runs, then real time."""

    def __init__(self, start: datetime) -> None:
        self.at = start
        self._real: tuple[datetime, float] | None = None

    def __call__(self) -> datetime:
        if self._real is not None:
            base, t0 = self._real
            return base + timedelta(seconds=time.monotonic() - t0)
        return self.at

    def follow_real_time(self) -> None:
        self._real = (self.at, time.monotonic())


class DelayProxy:
    """``--db-rtt-ms``: a TCP proxy in front of the database that holds every request the
    app sends for ``delay`` seconds (one extra round trip per command). Off by default."""

    def __init__(self, host: str, port: int, delay: float) -> None:
        self.target, self.delay = (host, port), delay
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="db-rtt-proxy", daemon=True)

    def start(self) -> int:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the --db-rtt-ms proxy did not start")
        return self.port

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            self.loop.run_forever()
        finally:
            server.close()
            tasks = asyncio.all_tasks(self.loop)
            for task in tasks:
                task.cancel()
            self.loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            self.loop.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, delay: float) -> None:
            try:
                while data := await src.read(1 << 16):
                    if delay:
                        await asyncio.sleep(delay)
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pump(reader, up_writer, self.delay), pump(up_reader, writer, 0.0))

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


# ---- measurements ------------------------------------------------------------------------------

@dataclass
class OpStats:
    uncached_ms: list[float] = field(default_factory=list)
    cached_ms: list[float] = field(default_factory=list)
    uncached_queries: int = 0
    cached_queries: int = 0
    hits: int = 0
    lookups: int = 0


def pct(values: list[float], q: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def cache_counts(cache: tieredcache.TieredCache) -> tuple[int, int]:
    rows = cache.stats()["functions"]
    return sum(r["hits"] for r in rows), sum(r["calls"] for r in rows)


@dataclass
class Side:
    name: str
    app: Any
    client: httpx.AsyncClient

    @property
    def queries(self) -> int:
        return self.app.state.queries.total


class Traffic:
    """Replays the evening against both apps, step by step, and checks they agree."""

    def __init__(self, uncached: Side, cached: Side, cache: tieredcache.TieredCache, rng: random.Random,
                 state: dict, clock: SimClock, steps: int) -> None:
        self.u, self.c, self.cache, self.rng = uncached, cached, cache, rng
        self.state, self.clock, self.steps = state, clock, steps
        self.ops: dict[str, OpStats] = {name: OpStats() for name, _ in MIX}
        self.mismatches: list[str] = []
        self.requests = 0

    async def _one(self, side: Side, method: str, path: str, body: Any) -> tuple[int, Any, float]:
        t0 = time.perf_counter()
        r = await side.client.request(method, path, json=body)
        ms = (time.perf_counter() - t0) * 1000
        return r.status_code, r.json(), ms

    async def call(self, op: str, requests: list[tuple[str, str, Any]], first_cached: bool) -> Any:
        """Send the requests of one operation to both apps (alternating which goes first);
        returns the uncached app's last answer (the twin's is checked equal to it)."""
        stats = self.ops[op]
        results = {}
        for side in ((self.c, self.u) if first_cached else (self.u, self.c)):
            q0 = side.queries
            if side is self.c:
                h0, l0 = cache_counts(self.cache)
            total, answers = 0.0, []
            for method, path, body in requests:
                status, payload, ms = await self._one(side, method, path, body)
                total += ms
                answers.append((status, payload))
            if side is self.c:
                h1, l1 = cache_counts(self.cache)
                stats.hits += h1 - h0
                stats.lookups += l1 - l0
                stats.cached_ms.append(total)
                stats.cached_queries += side.queries - q0
            else:
                stats.uncached_ms.append(total)
                stats.uncached_queries += side.queries - q0
            results[side.name] = answers
        self.requests += len(requests)
        if results["cached"] != results["uncached"]:
            self.mismatches.append(f"{op} {requests}: uncached {results['uncached']!r:.300} "
                                   f"!= cached {results['cached']!r:.300}")
        status, payload = results["uncached"][-1]
        if status >= 400:
            raise RuntimeError(f"{op} {requests[-1][:2]} answered {status}: {payload}")
        return payload

    # -- choosing what happens next --
    def org(self) -> str:
        return self.rng.choices(list(ORG_WEIGHTS), list(ORG_WEIGHTS.values()))[0]

    def phone(self, org: str) -> str:
        phones = self.state["phones"]
        return self.rng.choices(phones, self.state["phone_weights"])[0]

    def order_lines(self, org: str) -> list[dict]:
        items = self.rng.sample(self.state["menu"][org], self.rng.randint(1, 4))
        return [{"item_id": item, "qty": self.rng.randint(1, 3)} for item in items]

    async def step(self, i: int) -> None:
        rng, state = self.rng, self.state
        self.clock.at = DAY_START + DAY_LENGTH * (i / self.steps) + timedelta(milliseconds=i)
        first_cached = i % 2 == 1
        op = rng.choices([m[0] for m in MIX], [m[1] for m in MIX])[0]
        org = self.org()
        active: list[str] = state["active"][org]
        if op in ("order by id", "bill calculation", "update order", "checkout (bill + pay)") and not active:
            op = "create order"
        base = f"/orgs/{org}"

        if op == "profile (full, menu)":
            await self.call(op, [("GET", f"{base}/profile", None)], first_cached)
        elif op == "profile (lite)":
            await self.call(op, [("GET", f"{base}/profile/lite", None)], first_cached)
        elif op == "profiles batch (3 orgs)":
            body = {"org_ids": list(ORG_WEIGHTS), "lite": rng.random() < 0.5}
            await self.call(op, [("POST", "/profiles/batch", body)], first_cached)
        elif op == "active orders":
            await self.call(op, [("GET", f"{base}/orders/active", None)], first_cached)
        elif op == "orders by status":
            status = rng.choice(ACTIVE)
            await self.call(op, [("GET", f"{base}/orders/active?status={status}", None)], first_cached)
        elif op == "order by id":
            last = state["last_order"][org]
            order_id = rng.choice(active) if rng.random() < 0.7 else f"ord-{rng.randint(max(1, last - 80), last):05d}"
            await self.call(op, [("GET", f"{base}/orders/{order_id}", None)], first_cached)
        elif op == "orders page":
            page = rng.choices([1, 2, 3, 4, 5], [8, 4, 2, 1, 1])[0]
            await self.call(op, [("GET", f"{base}/orders?page={page}&page_size=20", None)], first_cached)
        elif op == "bill calculation":
            await self.call(op, [("GET", f"{base}/orders/{rng.choice(active)}/bill", None)], first_cached)
        elif op == "customer balance":
            await self.call(op, [("GET", f"{base}/customers/{self.phone(org)}/balance", None)], first_cached)
        elif op == "billing summary":
            await self.call(op, [("GET", f"{base}/billing/summary", None)], first_cached)
        elif op == "create order":
            body: dict[str, Any] = {"items": self.order_lines(org), "table": f"T{rng.randint(1, 20)}"}
            if rng.random() < 0.6:
                body["customer_phone"] = self.phone(org)
            if rng.random() < 0.1:
                body["discount_percent"] = rng.choice([5, 10, 15])
            created = await self.call(op, [("POST", f"{base}/orders", body)], first_cached)
            active.append(created["order_id"])
            state["last_order"][org] = created["order_no"]
        elif op == "update order":
            order_id = rng.choice(active)
            roll = rng.random()
            if roll < 0.6:
                body = {"status": rng.choice(["preparing", "served"])}
            elif roll < 0.95:
                body = {"items": self.order_lines(org)}
            else:
                body = {"status": "cancelled"}
            await self.call(op, [("PATCH", f"{base}/orders/{order_id}", body)], first_cached)
            if body.get("status") == "cancelled":
                active.remove(order_id)
        elif op == "checkout (bill + pay)":
            order_id = rng.choice(active)
            method = rng.choice(["cash", "card", "upi"])
            await self.call(op, [("GET", f"{base}/orders/{order_id}/bill", None),
                                 ("POST", f"{base}/payments", {"order_id": order_id, "method": method})],
                            first_cached)
            active.remove(order_id)
        elif op == "profile update":
            body = {"receipt_footer": f"Thank you! Tonight's special #{i}", "tax_rate": rng.choice([0.05, 0.08, 0.1])}
            await self.call(op, [("PUT", f"{base}/profile", body)], first_cached)

    async def sweep(self) -> int:
        """After the traffic: read back everything that changed from both apps."""
        n = 0
        for org in ORG_WEIGHTS:
            paths = [f"/orgs/{org}/profile", f"/orgs/{org}/profile/lite", f"/orgs/{org}/orders/active",
                     f"/orgs/{org}/orders?page=1&page_size=50", f"/orgs/{org}/billing/summary"]
            paths += [f"/orgs/{org}/orders/{o}" for o in self.state["active"][org]]
            paths += [f"/orgs/{org}/orders/{o}/bill" for o in self.state["active"][org]]
            paths += [f"/orgs/{org}/customers/{p}/balance" for p in self.state["phones"][:30]]
            for path in paths:
                a = await self.u.client.get(path)
                b = await self.c.client.get(path)
                n += 1
                if (a.status_code, a.json()) != (b.status_code, b.json()):
                    self.mismatches.append(f"sweep {path}: {a.json()!r:.200} != {b.json()!r:.200}")
        return n


# ---- report ------------------------------------------------------------------------------------

def fmt_ms(ms: float) -> str:
    return f"{ms:.2f}" if ms < 10 else f"{ms:.1f}"


def table(traffic: Traffic) -> tuple[list[str], list[dict]]:
    rows = []
    for name, _ in MIX:
        s = traffic.ops[name]
        if not s.uncached_ms:
            continue
        u50, u95, c50, c95 = (pct(s.uncached_ms, 50), pct(s.uncached_ms, 95),
                              pct(s.cached_ms, 50), pct(s.cached_ms, 95))
        rows.append({
            "operation": name, "n": len(s.uncached_ms), "u50": u50, "u95": u95, "c50": c50, "c95": c95,
            "speedup": u50 / c50 if c50 else float("inf"),
            "hit_rate": s.hits / s.lookups if s.lookups else None,
            "uq": s.uncached_queries, "cq": s.cached_queries, "write": name in WRITES,
        })
    head = (f"{'operation':<24} {'n':>5}  {'uncached p50':>12} {'p95':>7}  {'cached p50':>10} {'p95':>7}"
            f"  {'speed-up':>8}  {'hit rate':>8}  {'DB queries (saved)':>22}")
    lines = [head, "-" * len(head)]
    for r in rows:
        saved = r["uq"] - r["cq"]
        saved_txt = f"{r['uq']:>5} -> {r['cq']:>5} ({saved / r['uq']:>4.0%})" if r["uq"] else "-"
        hit = f"{r['hit_rate']:.0%}" if r["hit_rate"] is not None else "-"
        lines.append(f"{r['operation']:<24} {r['n']:>5}  {fmt_ms(r['u50']):>9} ms {fmt_ms(r['u95']):>7}"
                     f"  {fmt_ms(r['c50']):>7} ms {fmt_ms(r['c95']):>7}  {r['speedup']:>7.1f}x  {hit:>8}"
                     f"  {saved_txt:>22}")
    return lines, rows


def chart(rows: list[dict], path: Path, title: str, floor_ms: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(reversed(rows))
    names = [r["operation"] + (" *" if r["write"] else "") for r in rows]
    y = range(len(rows))
    fig, ax = plt.subplots(figsize=(10, 0.45 * len(rows) + 1.8), dpi=110)
    h = 0.38
    u50 = [r["u50"] for r in rows]
    c50 = [r["c50"] for r in rows]
    ax.barh([i + h / 2 for i in y], u50, h, color="#9aa5b1", label="uncached p50 (whisker: p95)",
            xerr=[[0] * len(rows), [r["u95"] - r["u50"] for r in rows]], error_kw={"ecolor": "#52606d", "capsize": 2})
    ax.barh([i - h / 2 for i in y], c50, h, color="#2f80ed", label="tieredcache p50 (whisker: p95)",
            xerr=[[0] * len(rows), [r["c95"] - r["c50"] for r in rows]], error_kw={"ecolor": "#1a4f9c", "capsize": 2})
    ax.set_yticks(list(y), names)
    ax.set_xscale("log")
    ax.set_xlabel("latency per operation, ms (log scale)")
    for i, r in zip(y, rows):
        hit = f", hit rate {r['hit_rate']:.0%}" if r["hit_rate"] is not None else ""
        ax.text(max(r["u95"], r["c95"]) * 1.15, i, f"{r['speedup']:.1f}x{hit}", va="center", fontsize=8)
    ax.axvline(floor_ms, color="#e67e22", linestyle="--", linewidth=1,
               label=f"HTTP floor: {floor_ms:.2f} ms (no cache, no database)")
    ax.set_xlim(min(floor_ms, *(r["c50"] for r in rows)) * 0.7, max(max(r["u95"], r["c95"]) for r in rows) * 4)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.09), ncol=3, fontsize=8, frameon=False)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", which="both", alpha=0.25)
    fig.text(0.01, 0.01, "* a write: never cached itself; the reads it makes (menu, tax rate, order) are",
             fontsize=7, color="#52606d")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


# ---- main --------------------------------------------------------------------------------------

def prepare(url: str, args: argparse.Namespace) -> dict:
    """Seed both databases alike; return what the traffic generator needs to know."""
    with MongoClient(url) as client:
        info = {}
        for name in ("demo_uncached", "demo_cached"):
            info = seeding.seed(client[name], seed=args.seed)
        db = client["demo_uncached"]
        state = {
            "phones": info["phones"],
            "phone_weights": [1.0 / (i + 1) ** 0.8 for i in range(len(info["phones"]))],
            "menu": {o: [m["item_id"] for m in db.menu.find({"org_id": o}).sort("item_id", 1)] for o in ORG_WEIGHTS},
            "active": {o: [d["order_id"] for d in db.orders.find({"org_id": o, "status": {"$in": list(ACTIVE)}})
                           .sort("order_no", 1)] for o in ORG_WEIGHTS},
            "last_order": {o: db.counters.find_one({"_id": f"{o}:orders"})["seq"] for o in ORG_WEIGHTS},
            "seed": {k: v for k, v in info.items() if k != "phones"},
        }
    return state


async def run(args: argparse.Namespace, url: str, db_label: str, seed_url: str) -> int:
    # The cache's alerts (a low hit rate right after a burst of writes, say) go to the
    # dashboard of --serve; they would only interleave with the table here.
    logging.getLogger("tieredcache").setLevel(logging.ERROR)
    redis_url = os.environ.get("REDIS_URL") or None
    cache = make_cache(redis_url)
    mode = "L1 + Redis" if redis_url else "L1 only (no Redis; set REDIS_URL to add it)"
    clock = SimClock(DAY_START)
    t_setup = time.perf_counter()
    state = prepare(seed_url, args)
    seeded = state["seed"]
    print(f"database     {db_label}")
    print(f"seed data    {len(seeded['orgs'])} restaurants x2 databases: {seeded['orders']} orders "
          f"({seeded['active_orders']} still open), {seeded['payments']} payments, {seeded['customers']} customers, "
          f"{seeded['menu_items']} menu items ({time.perf_counter() - t_setup:.1f} s)")

    cached_app = create_app(mongo_url=url, cache=cache, db_name="demo_cached", warm=True, clock=clock,
                            admin_token=ADMIN_TOKEN)
    uncached_app = create_app(mongo_url=url, cache=None, db_name="demo_uncached", clock=clock)
    try:
        async with cached_app.router.lifespan_context(cached_app), uncached_app.router.lifespan_context(uncached_app):
            warmed = cache.stats()["warmed"]
            print(f"cache        {mode}; {cache!r}; warmed at startup: {warmed} profile entries")
            transport = dict(base_url="http://restaurant.test")
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=cached_app), **transport) as cc, \
                    httpx.AsyncClient(transport=httpx.ASGITransport(app=uncached_app), **transport) as uc:
                u, c = Side("uncached", uncached_app, uc), Side("cached", cached_app, cc)
                floor = []
                for side in (u, c):  # the HTTP stack's first-call costs, outside the measurements
                    for _ in range(100):
                        t0 = time.perf_counter()
                        await side.client.get("/debug/queries")
                        floor.append((time.perf_counter() - t0) * 1000)
                floor_ms = pct(floor[100:], 50)            # the second app's, once the stack is warm
                print(f"HTTP floor   p50 {floor_ms:.2f} ms for a request that reads neither cache nor "
                      f"database (GET /debug/queries): no cache hit can answer faster")
                traffic = Traffic(u, c, cache, random.Random(args.seed), state, clock, args.steps)
                print(f"traffic      {args.steps} operations (seed {args.seed}), each sent to both apps, "
                      f"alternating which goes first; one evening, 18:00-23:00, at 3 restaurants\n")
                t0 = time.perf_counter()
                gc.collect()
                for i in range(args.steps):
                    await traffic.step(i)
                elapsed = time.perf_counter() - t0
                checked = await traffic.sweep()

                lines, rows = table(traffic)
                print("\n".join(lines))
                uq = sum(r["uq"] for r in rows)
                cq = sum(r["cq"] for r in rows)
                s = cache.stats()
                lookups = sum(r["calls"] for r in s["functions"])
                hits = sum(r["hits"] for r in s["functions"])
                l1_hits = sum(r["l1_hits"] for r in s["functions"])
                l2_hits = sum(r["l2_hits"] for r in s["functions"])
                u_total = sum(sum(traffic.ops[r["operation"]].uncached_ms) for r in rows) / 1000
                c_total = sum(sum(traffic.ops[r["operation"]].cached_ms) for r in rows) / 1000
                print("-" * len(lines[0]))
                print(f"{traffic.requests} requests per app in {elapsed:.1f} s. Time spent answering: uncached "
                      f"{u_total:.2f} s, cached {c_total:.2f} s ({u_total / c_total:.1f}x less).")
                print(f"Database queries: uncached {uq}, cached {cq}: {uq - cq} saved ({(uq - cq) / uq:.0%}). "
                      f"Cache hit rate {hits / lookups:.1%} over {lookups} cached reads ({l1_hits} from L1, "
                      f"{l2_hits} from Redis{'' if s['l2']['enabled'] else ': off'}).")
                print(f"Every cached response equalled the uncached one: {traffic.requests} during the traffic, "
                      f"{checked} more read back afterwards." if not traffic.mismatches else
                      f"{len(traffic.mismatches)} MISMATCHES between cached and uncached responses")
                for m in traffic.mismatches[:10]:
                    print("  MISMATCH", m)

                png = Path(args.chart).resolve()
                title = (f"Restaurant billing, one evening of traffic ({args.steps} operations): "
                         f"tieredcache {mode.split(' (')[0]} vs uncached\n{' '.join(db_label.split())}")
                chart(rows, png, title, floor_ms)
                shown = png.relative_to(Path.cwd()) if png.is_relative_to(Path.cwd()) else png
                print(f"\nChart: {shown} (latency per operation, cached against uncached)")

                # what the demo shows, it also checks (so `make demo` fails in CI when it breaks)
                assert not traffic.mismatches, "cached and uncached responses differ"
                assert lookups and hits > 0, "the cache never hit"
                assert cq < uq, "the cache saved no database query"
                assert warmed > 0, "warming loaded nothing"

                if args.serve:
                    await serve(cached_app, clock, args.port)
    finally:
        await cache.aclose()
    return 0


async def serve(app: Any, clock: SimClock, port: int) -> None:
    import uvicorn

    clock.follow_real_time()
    base = f"http://127.0.0.1:{port}"
    print(f"\nServing the cached app on {base} (the uncached twin is not served). Ctrl-C stops it.")
    print(f"  dashboard   {base}/admin/cache/dashboard   (user: anything, password: {ADMIN_TOKEN})")
    print(f"  API         {base}/docs   e.g. {base}/orgs/org-tandoor/profile/lite")
    print(f"  admin API   curl -H 'Authorization: Bearer {ADMIN_TOKEN}' {base}/admin/cache/stats")
    config = uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning")
    await uvicorn.Server(config).serve()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3000, help="operations to replay (default 3000)")
    parser.add_argument("--seed", type=int, default=7, help="random seed of the traffic (default 7)")
    parser.add_argument("--chart", default=str(ROOT / "build" / "demo-latency.png"), help="where the PNG goes")
    parser.add_argument("--serve", action="store_true", help="then keep the cached app up until Ctrl-C")
    parser.add_argument("--port", type=int, default=8000, help="port of --serve (default 8000)")
    parser.add_argument("--db-rtt-ms", type=float, default=0.0,
                        help="SIMULATE a remote database: hold every database request this many ms (default 0: off)")
    args = parser.parse_args(argv)
    if args.steps < 100:
        parser.error("--steps must be at least 100")

    print("tieredcache demo: restaurant billing (docs/examples/restaurant), cached vs uncached")
    print(f"python       {platform.python_version()} on {platform.system()} {platform.machine()}; "
          f"tieredcache {tieredcache.__version__}")
    print("measured     in-process through the whole FastAPI stack (httpx.ASGITransport: routing, validation, "
          "handler,\n             database, JSON), no sockets between client and app; latency = one "
          "operation's requests")
    try:
        url, stop = start_mongo()
    except MongoUnavailable as exc:
        print(f"cannot start the database: {exc}", file=sys.stderr)
        return 2
    proxy, seed_url = None, url
    try:
        if os.environ.get("MONGODB_URL"):
            db_label = "MongoDB at MONGODB_URL"
        else:
            db_label = (f"nx-27017 {importlib.metadata.version('nx-27017')} (MongoDB wire protocol on SQLite, "
                        f"in memory) on loopback")
        if args.db_rtt_ms > 0:
            host, port = url.removeprefix("mongodb://").split("/")[0].rsplit(":", 1)
            proxy = DelayProxy(host, int(port), args.db_rtt_ms / 1000)
            url = f"mongodb://127.0.0.1:{proxy.start()}"
            db_label += f"\n             + SIMULATED {args.db_rtt_ms:g} ms per database round trip (--db-rtt-ms)"
        else:
            db_label += ": its real latency, nothing injected"
        return asyncio.run(run(args, url, db_label, seed_url))
    except KeyboardInterrupt:
        return 130
    finally:
        if proxy is not None:
            proxy.stop()
        stop()


if __name__ == "__main__":
    sys.exit(main())

"""The barbershop reference app (docs/examples/barbershop), driven through its HTTP API.

Every test that writes compares the cached app's answers with an uncached app's on the same
database (``truth``): after a write, what was invalidated is reloaded (the query counter
moves) and equals the database's answer, and what was not invalidated is still served from
the cache (the counter stays put) and still equals it. The core tests run on L1 only and on
L1 + the private Redis; the TTL test moves the caches' clock (``cache_clock``) instead of
sleeping; one test runs two apps on one Redis, as two servers would.
"""

from __future__ import annotations

import datetime as dt
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tieredcache import TieredCache

EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))

from barbershop.app import create_app  # noqa: E402
from barbershop.seed import TODAY, seed  # noqa: E402

TOKEN = "barbershop-admin-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
DAY = (TODAY + dt.timedelta(days=1)).isoformat()  # a Thursday, two days of bookings ahead
WEEK = (TODAY - dt.timedelta(days=TODAY.weekday())).isoformat()

# The cached reads, by name.
READS = {
    "barbers": "/barbers",
    "services": "/services",
    "settings": "/settings",
    "slots": f"/barbers/1/slots?date={DAY}",
    "slots_60": f"/barbers/1/slots?date={DAY}&service_id=3",  # "Haircut and beard", 60 min
    "week": f"/barbers/1/week?start={WEEK}",
    "revenue": f"/analytics/revenue?start=2024-04-17&end={DAY}",
    "clients": f"/analytics/clients?start=2024-04-17&end={DAY}",
    "dashboard": f"/dashboard?date={DAY}",
}


def wait_until(condition: Callable[[], Any], timeout: float = 5.0) -> bool:
    """Poll until condition() holds (an invalidation crossing Redis takes milliseconds)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return bool(condition())
        time.sleep(0.01)
    return True


class Api:
    """A test client of one app, with its database-read counter."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.client = app.test_client()

    def call(self, method: str, url: str, status: int, **kw: Any) -> Any:
        response = self.client.open(url, method=method, **kw)
        assert response.status_code == status, (method, url, response.status_code, response.get_json())
        return response.get_json()

    def get(self, url: str, status: int = 200, **kw: Any) -> Any:
        return self.call("GET", url, status, **kw)

    def post(self, url: str, json: Any, status: int = 201, **kw: Any) -> Any:
        return self.call("POST", url, status, json=json, **kw)

    def put(self, url: str, json: Any, status: int = 200) -> Any:
        return self.call("PUT", url, status, json=json)

    @property
    def reads(self) -> int:
        return self.get("/debug/queries")["reads"]

    def reads_for(self, url: str) -> int:
        """Database reads made to answer GET url: 0 when it came from the cache."""
        before = self.reads
        self.get(url)
        return self.reads - before

    def close(self) -> None:
        self.app.extensions["barbershop"].close()


# ---- fixtures ---------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _no_startup_warming(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests count queries from a cold cache: CACHE_WARMING_ENABLED must not warm it."""
    monkeypatch.delenv("CACHE_WARMING_ENABLED", raising=False)


@pytest.fixture(scope="session")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("barbershop") / "seeded.db"
    seed(str(path))
    return path


@pytest.fixture
def db_path(tmp_path: Path, seeded: Path) -> str:
    path = tmp_path / "barbershop.db"
    shutil.copyfile(seeded, path)
    return str(path)


@pytest.fixture(params=["l1", "redis"])
def cache(request: pytest.FixtureRequest) -> Iterator[TieredCache]:
    """The app's cache: L1 only, then L1 + the private Redis (flushed)."""
    url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    cache = TieredCache(redis_url=url, namespace=f"barbershop-{uuid.uuid4().hex[:8]}")
    yield cache
    cache.close()


@pytest.fixture
def open_api() -> Iterator[Callable[..., Api]]:
    opened: list[Api] = []

    def open_api(db_path: str, cache: TieredCache | None, **kw: Any) -> Api:
        api = Api(create_app(db_path=db_path, cache=cache, **{"admin_token": TOKEN, **kw}))
        opened.append(api)
        return api

    yield open_api
    for api in opened:
        api.close()


@pytest.fixture
def api(open_api: Callable[..., Api], db_path: str, cache: TieredCache) -> Api:
    return open_api(db_path, cache)


@pytest.fixture
def truth(open_api: Callable[..., Api], db_path: str) -> Api:
    """The same app uncached, on the same database: what a correct cache must answer."""
    return open_api(db_path, None)


def prime(api: Api, names: Any = READS) -> None:
    for name in names:
        api.get(READS[name])
        assert api.reads_for(READS[name]) == 0, f"{name} is not cached"


def assert_after_write(api: Api, truth: Api, refreshed: set[str]) -> None:
    """`refreshed` reads go back to the database; the others are still cached. All of them
    answer what the database holds."""
    for name, url in READS.items():
        reads = api.reads_for(url)
        if name in refreshed:
            assert reads > 0, f"{name} was not invalidated"
        else:
            assert reads == 0, f"{name} was invalidated ({reads} reads) though the write did not touch it"
        assert api.get(url) == truth.get(url), f"{name} is stale"


def free_slot(api: Api) -> str:
    return api.get(READS["slots"])["slots"][0]


def book(api: Api, start: str, service_id: int = 1, **kw: Any) -> Any:
    body = {"barber_id": 1, "service_id": service_id, "date": DAY, "start": start,
            "client": {"name": "Rita Moreno", "phone": "+15550000001"}}
    return api.post("/bookings", {**body, **kw.pop("body", {})}, **kw)


# ---- reads ------------------------------------------------------------------------------


def test_every_read_is_served_from_the_cache_the_second_time(api: Api, truth: Api) -> None:
    for name, url in READS.items():
        first = api.reads_for(url)
        assert first > 0, name
        assert api.reads_for(url) == 0, f"{name} was not cached"
        assert api.get(url) == truth.get(url)
    slots = api.get(READS["slots"])
    assert slots["duration_minutes"] == 30 and slots["slots"]
    assert api.get(READS["slots_60"])["duration_minutes"] == 60


def test_the_barbers_page_is_cached_whole_with_an_etag(api: Api) -> None:
    miss = api.client.get("/barbers")
    hit = api.client.get("/barbers")
    assert (miss.headers["X-Cache"], hit.headers["X-Cache"]) == ("MISS", "HIT")
    assert hit.data == miss.data
    again = api.client.get("/barbers", headers={"If-None-Match": hit.headers["ETag"]})
    assert again.status_code == 304 and again.data == b""


def test_errors_are_answered_and_never_cached(api: Api) -> None:
    before = api.reads
    assert api.get(f"/barbers/99/slots?date={DAY}", 404)["error"] == "no barber 99"
    assert api.reads > before
    before = api.reads
    api.get(f"/barbers/99/slots?date={DAY}", 404)
    assert api.reads > before, "a 404 was cached"
    assert "date" in api.get("/barbers/1/slots?date=tomorrow", 400)["error"]
    api.get(f"/barbers/1/slots?date={DAY}&service_id=99", 404)


# ---- writes: what each one invalidates, and what it leaves cached -------------------------


def test_a_booking_refreshes_slots_availability_and_the_dashboard_only(api: Api, truth: Api) -> None:
    prime(api)
    start = free_slot(api)
    booking = book(api, start)
    assert booking["status"] == "booked" and booking["start"] == start
    assert_after_write(api, truth, {"slots", "slots_60", "week", "dashboard"})
    assert start not in api.get(READS["slots"])["slots"]


def test_the_seed_invalidation_tags_of_a_booking(api: Api, cache: TieredCache, cache_events: Any) -> None:
    cache_events.watch(cache)
    book(api, free_slot(api))
    assert sorted(cache_events.invalidated_tags()) == ["availability", "business_intelligence", "slots"]


def test_cancelling_a_booking_gives_its_slot_back(api: Api, truth: Api) -> None:
    start = free_slot(api)
    booking = book(api, start)
    prime(api)
    assert start not in api.get(READS["slots"])["slots"]
    assert api.post(f"/bookings/{booking['id']}/cancel", None, 200)["status"] == "cancelled"
    assert_after_write(api, truth, {"slots", "slots_60", "week", "dashboard"})
    assert start in api.get(READS["slots"])["slots"]


def test_a_refused_booking_invalidates_nothing(api: Api, truth: Api) -> None:
    start = free_slot(api)
    book(api, start)
    prime(api)
    assert "no longer free" in book(api, start, status=409)["error"]
    assert "slot grid" in book(api, "09:10", status=400)["error"]
    assert book(api, start, status=404, body={"barber_id": 42})["error"] == "no barber 42"
    assert_after_write(api, truth, set())


def test_a_payment_refreshes_revenue_client_analytics_and_the_dashboard_not_slots(api: Api, truth: Api) -> None:
    booking = book(api, free_slot(api))
    prime(api)
    revenue = api.get(READS["revenue"])
    payment = api.post("/payments", {"booking_id": booking["id"], "amount_cents": 3000, "tip_cents": 500,
                                     "method": "cash"})
    assert payment["paid_on"] == DAY
    assert_after_write(api, truth, {"revenue", "clients", "dashboard"})
    after = api.get(READS["revenue"])
    assert after["payments"] == revenue["payments"] + 1
    assert after["revenue_cents"] == revenue["revenue_cents"] + 3000
    assert api.get(f"/bookings/{booking['id']}")["status"] == "completed"
    assert api.post("/payments", {"booking_id": booking["id"], "amount_cents": 1}, 409)


def test_a_service_change_refreshes_the_catalog_only(api: Api, truth: Api) -> None:
    prime(api)
    service = api.put("/services/3", {"duration_minutes": 90, "price_cents": 5200})
    assert service == {"id": 3, "name": "Haircut and beard", "duration_minutes": 90, "price_cents": 5200,
                       "active": True}
    # slots_60 reads the catalog, finds 90 minutes now, and asks for the 90-minute slots:
    # a new entry, not an invalidated one
    assert_after_write(api, truth, {"services", "slots_60"})
    assert api.get(READS["slots_60"])["duration_minutes"] == 90
    new = api.post("/services", {"name": "Eyebrows", "duration_minutes": 15, "price_cents": 900})
    assert new["id"] in [s["id"] for s in api.get("/services")["services"]]
    api.put("/services/3", {"active": False})
    assert 3 not in [s["id"] for s in api.get("/services")["services"]]
    assert api.put("/services/3", {"colour": "blue"}, 400)["error"] == "colour: unknown field"


def test_a_settings_change_refreshes_settings_slots_and_the_dashboard(api: Api, truth: Api) -> None:
    prime(api)
    assert api.put("/settings", {"close_time": "17:00"})["close_time"] == "17:00"
    assert_after_write(api, truth, {"settings", "slots", "slots_60", "week", "dashboard"})
    assert all(s < "17:00" for s in api.get(READS["slots"])["slots"])
    assert api.put("/settings", {"open_time": "18:00"}, 400)["error"] == "open_time must be before close_time"
    assert api.put("/settings", {"slot_minutes": 7}, 400)


# ---- TTLs of the presets ----------------------------------------------------------------


@pytest.mark.parametrize("backend", [
    pytest.param("l1", marks=pytest.mark.tieredcache(redis=False)),
    pytest.param("redis", marks=pytest.mark.tieredcache(redis=True)),
])
def test_each_preset_keeps_its_entries_for_its_ttl(backend: str, tiered_cache: TieredCache, cache_clock: Any,
                                                   open_api: Callable[..., Api], db_path: str) -> None:
    # (the slots view reads the settings first: they come before it)
    ttls = {"services": 3600, "settings": 3600,   # @cache_static_reference_data
            "barbers": 3600,                      # @ext.cached_view(ttl=TTL.STATIC)
            "revenue": 1800, "clients": 1800,     # @cache_analytics_data
            "dashboard": 900,                     # @cache_business_intelligence
            "slots": 300, "week": 300}            # @cache_appointment_slots
    api = open_api(db_path, tiered_cache)
    prime(api, ttls)
    loaded = dict.fromkeys(ttls, 0)
    now = 0
    for later in (301, 902, 1803, 3604):
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
        answers = [a.client.open(url, method=method, json=body) for a in apis]
        assert answers[0].status_code == answers[1].status_code, (method, url)
        assert answers[0].get_json() == answers[1].get_json(), (method, url)
        return answers[0].get_json()

    def read_everything() -> None:
        for url in READS.values():
            both("GET", url)

    read_everything()
    read_everything()
    booking = both("POST", "/bookings", {"barber_id": 1, "service_id": 1, "date": DAY, "start": "17:30",
                                         "client_id": 5})
    read_everything()
    both("POST", "/bookings", {"barber_id": 1, "service_id": 1, "date": DAY, "start": "17:30", "client_id": 6})
    both("POST", "/payments", {"booking_id": booking["id"], "amount_cents": 3000, "tip_cents": 300})
    both("GET", f"/bookings/{booking['id']}")
    read_everything()
    both("PUT", "/services/1", {"price_cents": 3100})
    both("PUT", "/settings", {"slot_minutes": 15})
    read_everything()
    both("POST", f"/bookings/{booking['id']}/cancel")
    read_everything()
    # the baseline went to the database for every read; the cached app did not
    assert baseline.reads_for(READS["revenue"]) > 0
    assert cached.reads_for(READS["revenue"]) == 0
    assert cached.reads < baseline.reads


# ---- admin endpoints ------------------------------------------------------------------------


def test_the_admin_endpoints_require_the_token(api: Api) -> None:
    assert api.client.get("/cache/stats").status_code == 401
    assert api.client.get("/cache/stats", headers={"Authorization": "Bearer guess"}).status_code == 403
    assert api.client.post("/cache/warm", json={"groups": ["reference"]},
                           headers={"Authorization": "Bearer guess"}).status_code == 403
    assert api.reads_for("/services") > 0, "a refused warm must warm nothing"
    assert api.get("/cache/stats", headers=ADMIN)["namespace"].startswith("barbershop-")


def test_admin_warm_report_and_invalidate(api: Api) -> None:
    assert api.post("/cache/warm", {"groups": ["reference"]}, 200, headers=ADMIN) == {"warmed": {"reference": 2}}
    assert api.reads_for("/services") == 0 and api.reads_for("/settings") == 0
    warmed = api.post("/cache/warm", {"groups": ["availability"]}, 200, headers=ADMIN)["warmed"]
    assert warmed == {"availability": 3}  # today's slots of each of the three barbers
    prime(api)
    report = {row["function"]: row for row in api.get("/cache/report", headers=ADMIN)}
    assert {"available_slots", "weekly_availability", "service_catalog", "booking_settings",
            "analytics:revenue_dashboard", "analytics:client_analytics", "business_dashboard"} <= set(report)
    assert report["analytics:revenue_dashboard"]["hits"] >= 1
    assert api.post("/cache/invalidate", {"tags": ["slots"]}, 200, headers=ADMIN)["invalidated"] >= 1
    assert api.reads_for(READS["slots"]) > 0
    assert api.reads_for(READS["services"]) == 0


def test_no_admin_endpoints_without_a_token(open_api: Callable[..., Api], db_path: str,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CACHE_ADMIN_TOKEN", raising=False)
    api = open_api(db_path, TieredCache(), admin_token=None)
    try:
        assert api.client.get("/cache/stats", headers=ADMIN).status_code == 404
    finally:
        api.app.extensions["barbershop"].cache.close()


# ---- two servers on one Redis -----------------------------------------------------------------


def test_two_apps_sharing_redis_serve_each_others_writes(redis_url: str, db_path: str,
                                                         open_api: Callable[..., Api], truth: Api) -> None:
    caches = [TieredCache(redis_url=redis_url, namespace="barbershop-shared") for _ in range(2)]
    try:
        a, b = (open_api(db_path, c) for c in caches)
        prime(b)
        prime(a, ["slots"])
        start = free_slot(b)
        booking = book(a, start)  # through server A
        # server B: Redis dropped the entries at once; B's L1 drops them when A's message arrives
        assert wait_until(lambda: start not in b.get(READS["slots"])["slots"]), "B still serves the old slots"
        for name in ("slots", "slots_60", "week", "dashboard"):
            assert wait_until(lambda: b.get(READS[name]) == truth.get(READS[name])), f"B serves a stale {name}"
        assert b.reads_for(READS["services"]) == 0  # untouched by the booking: still cached in B

        b.post("/payments", {"booking_id": booking["id"], "amount_cents": 3000})  # through B
        assert wait_until(lambda: a.get(READS["revenue"]) == truth.get(READS["revenue"])), "A serves stale revenue"
        b.put("/services/1", {"price_cents": 3300})
        assert wait_until(lambda: a.get("/services")["services"][0]["price_cents"] == 3300)
        # the entries themselves are shared: a value B loaded is a Redis hit for A
        b.get(READS["clients"])
        assert a.reads_for(READS["clients"]) == 0
    finally:
        for c in caches:
            c.close()

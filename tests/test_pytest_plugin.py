"""The pytest plugin, as a user's test suite meets it.

Each test writes a small application (``shop.py``: cached service functions and a
FastAPI app) and a test suite for it into a temporary directory, runs pytest on it in a
subprocess, and checks the outcome. The plugin reaches that pytest through the
``pytest11`` entry point, as it reaches users' suites.
"""

from __future__ import annotations

import os
import shutil
import stat
import textwrap
from pathlib import Path

import pytest

import tieredcache

pytest_plugins = ["pytester"]

needs_redis = pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not on PATH")

SHOP = '''
"""A tiny barbershop service: cached reads, writes that invalidate them."""

from fastapi import FastAPI

import tieredcache

PROFILES = {7: {"org_id": 7, "name": "Ada's Barbers"}}
LOADS = []  # what reached the "database"


@tieredcache.cached(ttl="user_data", tags=["org:{org_id}"])
def get_profile(org_id: int) -> dict:
    LOADS.append(("profile", org_id))
    return dict(PROFILES[org_id])


@tieredcache.invalidates(tags=["org:{org_id}"])
def rename_org(org_id: int, name: str) -> None:
    PROFILES[org_id]["name"] = name


@tieredcache.cache_appointment_slots()
def get_slots(shop_id: int, date: str) -> list:
    LOADS.append(("slots", shop_id, date))
    return ["09:00", "09:30"]


@tieredcache.invalidate_appointment_cache
def book(shop_id: int, date: str, slot: str) -> None:
    pass


app = FastAPI()


@app.get("/orgs/{org_id}")
def read_org(org_id: int) -> dict:
    return get_profile(org_id)


@app.get("/orgs/{org_id}/summary")
@tieredcache.cached(ttl=60)
async def org_summary(org_id: int) -> dict:
    LOADS.append(("summary", org_id))
    return {"org_id": org_id, "name": PROFILES[org_id]["name"]}
'''

CONFTEST = '''
import pytest

import shop


@pytest.fixture(autouse=True)
def fresh_data():
    shop.PROFILES[7]["name"] = "Ada's Barbers"
    shop.LOADS.clear()
'''

# Tests of shop.py, the way a user writes them: with the plugin's fixtures.
TEST_SHOP = '''
import pytest
from fastapi.testclient import TestClient

import shop


def test_a_profile_is_loaded_once_then_served_from_the_cache(tiered_cache, cache_events):
    assert shop.get_profile(7)["name"] == "Ada's Barbers"
    assert shop.get_profile(7)["name"] == "Ada's Barbers"

    assert shop.LOADS == [("profile", 7)]
    assert cache_events.calls("get_profile") == 2
    assert cache_events.misses("get_profile") == 1
    assert cache_events.hits("get_profile") == 1
    assert cache_events.hits("shop.get_profile") == 1  # the full name
    assert cache_events.hits(shop.get_profile) == 1  # the function itself


def test_renaming_an_org_invalidates_its_profile(tiered_cache, cache_events):
    shop.get_profile(7)
    shop.rename_org(7, "Bob's Barbers")

    assert cache_events.invalidated_tags() == ["org:7"]
    assert cache_events.invalidations(tag="org:7") == 1
    assert shop.get_profile(7)["name"] == "Bob's Barbers"
    assert cache_events.misses("get_profile") == 2


def test_a_booking_invalidates_availability_and_slots(tiered_cache, cache_events):
    shop.get_slots(1, "2024-05-01")
    shop.book(1, "2024-05-01", "09:00")

    assert set(cache_events.invalidated_tags()) == {"availability", "slots"}
    shop.get_slots(1, "2024-05-01")
    assert cache_events.misses("get_slots") == 2


def test_invalidating_one_call_deletes_its_key(tiered_cache, cache_events):
    shop.get_profile(7)

    assert shop.get_profile.invalidate(7) is True
    assert cache_events.deleted_keys() == [shop.get_profile.cache_key(7)]
    assert cache_events.invalidations() == 1


def test_slots_expire_after_their_ttl(tiered_cache, cache_clock, cache_events):
    shop.get_slots(1, "2024-05-01")
    cache_clock.advance(299)
    shop.get_slots(1, "2024-05-01")
    assert cache_events.hits("get_slots") == 1

    cache_clock.advance(2)  # 301 s: past the preset's 300 s
    shop.get_slots(1, "2024-05-01")
    assert cache_events.misses("get_slots") == 2
    assert len(shop.LOADS) == 2


def test_reset_counts_from_now(tiered_cache, cache_events):
    shop.get_profile(7)
    shop.rename_org(7, "Bob's Barbers")
    cache_events.reset()

    shop.get_profile(7)
    assert cache_events.calls("get_profile") == 1
    assert cache_events.misses("get_profile") == 1
    assert cache_events.invalidated_tags() == []


def test_the_fastapi_app_uses_the_test_cache(tiered_cache, cache_events):
    client = TestClient(shop.app)
    for _ in range(3):
        assert client.get("/orgs/7").json()["name"] == "Ada's Barbers"
        assert client.get("/orgs/7/summary").json() == {"org_id": 7, "name": "Ada's Barbers"}

    assert cache_events.misses("get_profile") == 1
    assert cache_events.hits("get_profile") == 2
    assert cache_events.hits("org_summary") == 2
    assert shop.LOADS == [("profile", 7), ("summary", 7)]


@pytest.mark.tieredcache(default_ttl=60)
def test_the_marker_configures_the_cache(tiered_cache, cache_clock):
    tiered_cache.set("greeting", "hello")  # the default TTL: 60 s
    cache_clock.advance(61)
    assert tiered_cache.get("greeting") is None


def test_isolation_1_an_entry_is_set(tiered_cache):
    tiered_cache.set("greeting", "hello")
    shop.get_profile(7)
    assert tiered_cache.get("greeting") == "hello"


def test_isolation_2_and_is_gone_in_the_next_test(tiered_cache, cache_events):
    assert tiered_cache.get("greeting") is None
    shop.get_profile(7)
    assert cache_events.misses("get_profile") == 1
    assert cache_events.hits("get_profile") == 0
'''

TEST_SHOP_PASSED = 10

# What the Redis fixtures give a user.
TEST_SHOP_REDIS = '''
import os

import tieredcache
import shop


def test_the_cache_is_backed_by_redis_when_the_test_uses_redis_url(tiered_cache, redis_url, cache_events):
    assert tiered_cache.stats()["l2"]["enabled"]
    shop.get_profile(7)

    # Another process (here: another cache on the same namespace) reads it from Redis.
    other = tieredcache.TieredCache(redis_url=redis_url, namespace=tiered_cache.name)
    try:
        assert other.get(shop.get_profile.cache_key(7)) == {"org_id": 7, "name": "Ada's Barbers"}
        other.set(shop.get_slots.cache_key(1, "2024-05-01"), ["10:00"], ttl=300)
    finally:
        other.close()
    assert shop.get_slots(1, "2024-05-01") == ["10:00"]
    assert cache_events.l2_hits("get_slots") == 1
    assert shop.LOADS == [("profile", 7)]


def test_redis_entries_expire_when_the_clock_moves(tiered_cache, redis_url, cache_clock, cache_events):
    shop.get_slots(1, "2024-05-01")  # in L1 and in Redis, for 300 s
    cache_clock.advance(301)
    shop.get_slots(1, "2024-05-01")

    assert cache_events.misses("get_slots") == 2
    assert len(shop.LOADS) == 2


def test_the_clock_moves_for_namespace_views_too(tiered_cache, redis_url, cache_clock):
    shop42 = tiered_cache.namespace("shop:42")
    shop42.set("hours", "9-17", ttl=60)
    cache_clock.advance(61)
    assert shop42.get("hours") is None


def test_redis_server_runs_for_the_session(redis_server):
    assert redis_server.running
    with open(os.environ["REDIS_SERVER_FILE"], "w") as fh:
        fh.write(f"{redis_server.pid} {os.path.dirname(redis_server.log_path)}")
'''

TEST_SHOP_REDIS_PASSED = 4


def _write_app(pytester: pytest.Pytester, **tests: str) -> None:
    pytester.makepyfile(shop=SHOP, conftest=CONFTEST, **tests)


@pytest.fixture
def run(pytester: pytest.Pytester, pytestconfig: pytest.Config, monkeypatch: pytest.MonkeyPatch):
    """Run pytest on pytester's directory, in a subprocess, with this tieredcache."""
    monkeypatch.setenv("PYTHONPATH", str(Path(tieredcache.__file__).parents[1]))
    monkeypatch.delenv("REDIS_URL", raising=False)
    # As strict as our own suite: an unknown marker or any warning fails the run (but
    # starlette's TestClient asks for the httpx2 package and warns when it finds httpx).
    pytester.makeini(
        "[pytest]\n"
        "addopts = -p no:cacheprovider --strict-markers -rs\n"
        "filterwarnings =\n    error\n    ignore:.*httpx2\n"
    )
    # Through the entry point when it is installed (pip install -e .), as users get it.
    load = [] if pytestconfig.pluginmanager.has_plugin("tieredcache") else ["-p", "tieredcache.pytest_plugin"]

    def run(*args: str) -> pytest.RunResult:
        return pytester.runpytest_subprocess(*load, *args)

    return run


def _path_without_redis(pytester: pytest.Pytester, fake_redis_server: str | None = None) -> str:
    """A PATH with no redis-server on it (or a fake one)."""
    bin_dir = pytester.mkdir("bin")
    if fake_redis_server is not None:
        exe = bin_dir / "redis-server"
        exe.write_text(fake_redis_server)
        exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return str(bin_dir)


# ---------------------------------------------------------------------------------------
# The fixtures in a user's suite
# ---------------------------------------------------------------------------------------


def test_a_user_suite_passes_with_an_l1_only_cache_per_test(pytester, run):
    _write_app(pytester, test_shop=TEST_SHOP)

    result = run()

    result.assert_outcomes(passed=TEST_SHOP_PASSED)


@needs_redis
def test_a_user_suite_gets_a_private_redis_server(pytester, run, monkeypatch):
    _write_app(pytester, test_shop=TEST_SHOP, test_shop_redis=TEST_SHOP_REDIS)
    server_file = pytester.path / "redis-server.txt"
    monkeypatch.setenv("REDIS_SERVER_FILE", str(server_file))

    result = run()

    result.assert_outcomes(passed=TEST_SHOP_PASSED + TEST_SHOP_REDIS_PASSED)
    pid, data_dir = server_file.read_text().split(" ", 1)
    # Stopped at the end of the session, its temporary directory removed.
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid), 0)
    assert not os.path.exists(data_dir)


@needs_redis
def test_the_tieredcache_redis_option_backs_every_cache_with_redis(pytester, run):
    backend = '''
        def test_backend(tiered_cache, pytestconfig):
            assert tiered_cache.stats()["l2"]["enabled"] is pytestconfig.getoption("tieredcache_redis")
    '''
    _write_app(pytester, test_shop=TEST_SHOP, test_backend=textwrap.dedent(backend))

    run().assert_outcomes(passed=TEST_SHOP_PASSED + 1)
    run("--tieredcache-redis").assert_outcomes(passed=TEST_SHOP_PASSED + 1)


def test_redis_fixtures_skip_with_a_clear_reason_without_redis_server(pytester, run, monkeypatch):
    _write_app(pytester, test_shop=TEST_SHOP, test_shop_redis=TEST_SHOP_REDIS)
    monkeypatch.setenv("PATH", _path_without_redis(pytester))

    result = run()

    # The L1-only tests need no Redis; the Redis ones are skipped, saying why.
    result.assert_outcomes(passed=TEST_SHOP_PASSED, skipped=TEST_SHOP_REDIS_PASSED)
    result.stdout.fnmatch_lines(["SKIPPED *redis-server is not on PATH: install Redis*"])


def test_the_tieredcache_redis_option_skips_without_redis_server(pytester, run, monkeypatch):
    _write_app(pytester, test_shop=TEST_SHOP)
    monkeypatch.setenv("PATH", _path_without_redis(pytester))

    result = run("--tieredcache-redis")

    result.assert_outcomes(skipped=TEST_SHOP_PASSED)
    result.stdout.fnmatch_lines(["*redis-server is not on PATH*"])


@needs_redis
def test_tests_sharing_a_redis_never_see_each_others_entries(pytester, run):
    # A conftest that does not empty Redis between tests: the namespaces keep them apart.
    conftest = '''
        import pytest

        @pytest.fixture
        def redis_url(redis_server):
            return redis_server.url
    '''
    tests = '''
        import tieredcache

        NAMESPACES = []

        def test_1_sets_an_entry(tiered_cache, redis_url):
            tiered_cache.set("greeting", "hello")
            NAMESPACES.append(tiered_cache.name)

        def test_2_does_not_see_it(tiered_cache, redis_url):
            assert tiered_cache.name != NAMESPACES[0]
            assert tiered_cache.get("greeting") is None
            first = tieredcache.TieredCache(redis_url=redis_url, namespace=NAMESPACES[0])
            try:
                assert first.get("greeting") == "hello"  # still in Redis, in test 1's namespace
            finally:
                first.close()
    '''
    pytester.makepyfile(conftest=textwrap.dedent(conftest), test_shared=textwrap.dedent(tests))

    run().assert_outcomes(passed=2)


@needs_redis
def test_a_test_that_kills_the_server_does_not_break_the_next_ones(pytester, run):
    tests = '''
        def test_1_crashes_redis(redis_server, redis_url):
            redis_server.kill()

        def test_2_has_a_working_redis(tiered_cache, redis_url):
            assert tiered_cache.health()["l2"]["connected"]
            tiered_cache.set("greeting", "hello")
            assert tiered_cache.get("greeting") == "hello"
    '''
    pytester.makepyfile(test_crash=textwrap.dedent(tests))

    run().assert_outcomes(passed=2)


def test_the_default_cache_is_restored_after_each_test(pytester, run):
    tests = '''
        import tieredcache

        APP_CACHE = tieredcache.configure(tieredcache.TieredCache(namespace="app"))
        SEEN = []

        def test_1_the_fixture_is_the_default_cache(tiered_cache):
            assert tieredcache.get_cache() is tiered_cache
            SEEN.append(tiered_cache)

        def test_2_each_test_gets_a_new_one(tiered_cache):
            assert tieredcache.get_cache() is tiered_cache
            assert tiered_cache is not SEEN[0]

        def test_3_afterwards_the_application_s_cache_is_back():
            assert tieredcache.get_cache() is APP_CACHE
    '''
    pytester.makepyfile(test_default=textwrap.dedent(tests))

    run().assert_outcomes(passed=3)


def test_the_recorder_watches_a_cache_of_the_application_s_own(pytester, run):
    tests = '''
        import tieredcache

        catalog = tieredcache.TieredCache(namespace="catalog")

        @catalog.cached(ttl=60, tags=["products"])
        def price(sku: str) -> int:
            return 100

        def test_an_earlier_call():
            price("a")

        def test_watching_the_catalog(cache_events):
            cache_events.watch(catalog)
            price("a")  # cached by the earlier test: the cache is the application's
            price("b")
            catalog.invalidate_tags("products")

            assert cache_events.hits("price") == 1
            assert cache_events.misses("price") == 1
            assert cache_events.functions() == ["test_catalog.price"]
            assert cache_events.invalidated_tags() == ["products"]
    '''
    pytester.makepyfile(test_catalog=textwrap.dedent(tests))

    run().assert_outcomes(passed=2)


def test_the_clock_is_back_to_real_time_after_the_test(pytester, run):
    tests = '''
        import time

        from tieredcache.testing import cache_time

        def test_1_moves_the_clock(cache_clock):
            before = cache_clock.now()
            cache_clock.advance(3600)
            assert cache_clock.advanced == 3600
            assert cache_clock.now() - before >= 3600

        def test_2_the_clock_is_real_again():
            assert cache_time() - time.monotonic() < 3600
    '''
    pytester.makepyfile(test_clock=textwrap.dedent(tests))

    run().assert_outcomes(passed=2)


def test_nothing_starts_unless_a_fixture_asks(pytester, run, monkeypatch):
    # A redis-server that leaves a trace when anything runs it.
    trace = pytester.path / "redis-server-ran"
    monkeypatch.setenv("PATH", _path_without_redis(pytester, f"#!/bin/sh\necho ran > {trace}\nexit 1\n"))
    tests = '''
        import sys

        def test_without_fixtures():
            assert "tieredcache._redis_server" not in sys.modules

        def test_with_the_l1_fixtures(tiered_cache, cache_clock, cache_events):
            tiered_cache.set("k", 1)
            assert "tieredcache._redis_server" not in sys.modules
    '''
    pytester.makepyfile(test_quiet=textwrap.dedent(tests))

    result = run()

    assert not trace.exists()
    result.assert_outcomes(passed=2)


def test_the_marker_takes_keyword_arguments_only(pytester, run):
    tests = '''
        import pytest

        @pytest.mark.tieredcache(60)
        def test_positional(tiered_cache):
            pass
    '''
    pytester.makepyfile(test_marker=textwrap.dedent(tests))

    result = run()

    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*TypeError: @pytest.mark.tieredcache takes keyword arguments only*"])

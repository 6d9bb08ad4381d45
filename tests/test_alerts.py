"""Alerts: rules evaluated on a window of counter snapshots, raised once per state change.

Each test drives ``engine.evaluate(now=...)`` on a synthetic clock (starting at the real
time, so that the evaluations ``stats()`` and ``health()`` may make are not due) with
counters made by real cache operations: hits and misses on an L1-only cache, evictions
of a small L1, a Redis killed and restarted. The L2 latency rule reads the histogram of
L2 round trips, which the tests fill with known durations. The evaluating thread gets an
interval of an hour, so that it never evaluates on the real clock in between.
"""

from __future__ import annotations

import logging
import threading
import time

import pytest

from tieredcache._alerts import AlertEngine, Rule
from tiered_helpers import Caches, ConfigurationError, TieredCache, wait_until

HOUR = 3600.0
SPEC_KEYS = {"name", "severity", "message", "since", "value", "threshold"}


@pytest.fixture
def caches():
    """``caches(**kwargs)``: L1-only TieredCaches whose alert thread stays idle."""
    made = Caches(alert_interval=HOUR)
    yield made
    made.close()


@pytest.fixture
def t0() -> float:
    return time.time()


def engine(cache) -> AlertEngine:
    return cache._core.alerts


def lookups(cache, hits: int = 0, misses: int = 0) -> None:
    """``hits`` L1 hits and ``misses`` misses (on keys never stored)."""
    cache.set("present", 1)
    for _ in range(hits):
        assert cache.get("present") == 1
    for i in range(misses):
        assert cache.get(f"absent-{i}") is None


def alert_records(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "tieredcache" and "alert " in r.getMessage()]


def names(alerts) -> list[str]:
    return [a["name"] for a in alerts]


# ---- the hit-rate rule: a window, enough traffic ------------------------------------------


def test_low_hit_rate_fires_and_clears_as_the_window_slides(caches, t0):
    cache = caches()
    e = engine(cache)
    assert e.evaluate(now=t0) == []  # opens the window
    lookups(cache, hits=20, misses=180)
    changes = e.evaluate(now=t0 + 60)
    assert [(c["name"], c["state"], c["value"], c["threshold"]) for c in changes] == [
        ("hit_rate_low", "firing", 0.1, 0.8)]
    assert changes[0]["severity"] == "warning"
    assert changes[0]["since"] == t0 + 60
    assert "10.0%" in changes[0]["message"] and "200 lookups" in changes[0]["message"]
    assert names(e.active()) == ["hit_rate_low"]

    # 200 hits more: over the 300 s window (from t0) the rate is 220/400, still low
    lookups(cache, hits=200)
    assert e.evaluate(now=t0 + 120) == []
    assert e.active()[0]["value"] == 0.55
    assert e.active()[0]["since"] == t0 + 60

    # the window now opens at the snapshot of t0 + 60: the misses before it are out
    lookups(cache, hits=200)
    changes = e.evaluate(now=t0 + 400)
    assert [(c["name"], c["state"]) for c in changes] == [("hit_rate_low", "resolved")]
    assert changes[0]["since"] == t0 + 60 and changes[0]["resolved_at"] == t0 + 400
    assert e.active() == []


def test_not_enough_traffic_raises_no_alert(caches, t0):
    cache = caches()
    e = engine(cache)
    e.evaluate(now=t0)
    lookups(cache, misses=99)  # min_lookups is 100
    assert e.evaluate(now=t0 + 10) == []
    assert e.active() == []
    lookups(cache, misses=1)
    assert names(e.evaluate(now=t0 + 20)) == ["hit_rate_low"]


def test_a_window_without_traffic_keeps_the_state(caches, t0):
    cache = caches()
    e = engine(cache)
    e.evaluate(now=t0)
    lookups(cache, misses=100)
    assert names(e.evaluate(now=t0 + 10)) == ["hit_rate_low"]
    # no lookups at all for longer than the window: nothing shows the rate recovered
    assert e.evaluate(now=t0 + 1000) == []
    assert names(e.active()) == ["hit_rate_low"]


def test_l2_hits_count_as_hits(redis_url, t0):
    made = Caches(redis_url=redis_url, namespace="test", alert_interval=HOUR)
    try:
        writer, reader = made(), made()
        for i in range(150):
            writer.set(f"k{i}", i)
        e = engine(reader)
        e.evaluate(now=t0)
        for i in range(150):
            assert reader.get(f"k{i}") == i  # an L1 miss, an L2 hit
        assert e.evaluate(now=t0 + 10) == []
        assert reader.stats()["l2"]["hits"] == 150
    finally:
        made.close()


# ---- logging and callbacks -----------------------------------------------------------------


def test_each_state_change_is_logged_once(caches, t0, caplog):
    cache = caches()
    e = engine(cache)
    caplog.set_level(logging.DEBUG, logger="tieredcache")
    e.evaluate(now=t0)
    for step in range(1, 11):  # ten evaluations of a low hit rate
        lookups(cache, misses=200)
        e.evaluate(now=t0 + 10 * step)
    records = alert_records(caplog)
    assert [(r.levelno, r.getMessage().split(":")[1].strip()) for r in records] == [
        (logging.WARNING, "alert hit_rate_low (warning) firing")]
    for step in range(11, 80):  # then hits only, until the misses leave the window
        lookups(cache, hits=500)
        e.evaluate(now=t0 + 10 * step)
    records = alert_records(caplog)
    assert [r.levelno for r in records] == [logging.WARNING, logging.INFO]
    assert "hit_rate_low resolved" in records[1].getMessage()


def test_callbacks_get_the_alert_on_every_change(caches, t0):
    given: list[dict] = []
    added: list[dict] = []
    cache = caches(alert_callback=given.append)
    view = cache.namespace("reports")
    view.add_alert_callback(added.append)  # a view registers on the root's engine
    e = engine(cache)
    e.evaluate(now=t0)
    lookups(view, misses=100)
    e.evaluate(now=t0 + 10)
    e.evaluate(now=t0 + 20)  # no change: no call
    lookups(view, hits=10_000)
    e.evaluate(now=t0 + 400)
    assert given == added
    assert [(a["name"], a["state"]) for a in given] == [("hit_rate_low", "firing"), ("hit_rate_low", "resolved")]
    firing, resolved = given
    assert SPEC_KEYS <= set(firing)
    assert firing["namespace"] == "default"
    assert firing["value"] == 0.0 and firing["threshold"] == 0.8
    assert resolved["since"] == firing["since"] == t0 + 10 and resolved["value"] == 1.0
    given[0]["name"] = "changed"  # each callback gets its own copy
    assert added[0]["name"] == "hit_rate_low"
    cache.remove_alert_callback(added.append)
    with pytest.raises(ValueError):
        cache.remove_alert_callback(added.append)


def test_a_failing_callback_is_logged_never_raised(caches, t0, caplog):
    seen: list[str] = []
    reason = "the pager is down"

    def broken(alert):
        raise RuntimeError(reason)

    cache = caches(alert_callback=broken)
    cache.add_alert_callback(lambda alert: seen.append(alert["name"]))
    e = engine(cache)
    e.evaluate(now=t0)
    lookups(cache, misses=100)
    with caplog.at_level(logging.ERROR, logger="tieredcache"):
        assert names(e.evaluate(now=t0 + 10)) == ["hit_rate_low"]
    assert seen == ["hit_rate_low"]  # the next callback still ran
    failures = [r for r in caplog.records if "alert callback" in r.getMessage()]
    assert len(failures) == 1 and failures[0].levelno == logging.ERROR
    # frames and type only: a callback's message may quote anything
    assert "in broken" in failures[0].getMessage()
    assert "RuntimeError (message not logged)" in failures[0].getMessage()
    assert "pager" not in failures[0].getMessage() and failures[0].exc_info is None
    assert cache.get("present") == 1  # the cache goes on
    with pytest.raises(TypeError):
        cache.add_alert_callback("not callable")


def test_with_log_keys_a_failing_callback_is_logged_with_its_exception(caches, t0, caplog):
    def broken(alert):
        raise RuntimeError("the pager is down")

    cache = caches(alert_callback=broken, log_keys=True)
    e = engine(cache)
    e.evaluate(now=t0)
    lookups(cache, misses=100)
    with caplog.at_level(logging.ERROR, logger="tieredcache"):
        e.evaluate(now=t0 + 10)
    failures = [r for r in caplog.records if "alert callback" in r.getMessage()]
    assert len(failures) == 1 and failures[0].exc_info[0] is RuntimeError


# ---- the other default rules -----------------------------------------------------------------


def test_evictions_per_second_over_the_window(caches, t0):
    cache = caches(max_entries=10)
    e = engine(cache)
    e.evaluate(now=t0)
    for i in range(1010):
        cache.set(f"k{i}", i)  # 1000 evictions for size
    changes = e.evaluate(now=t0 + 5)
    assert [(c["name"], c["value"]) for c in changes] == [("evictions_high", 200.0)]
    assert "200.0 entries/s" in changes[0]["message"]
    changes = e.evaluate(now=t0 + 400)  # none since: 0/s over the window
    assert [(c["name"], c["state"], c["value"]) for c in changes] == [("evictions_high", "resolved", 0.0)]


def test_l2_p99_is_read_from_the_histogram_deltas(caches, t0):
    cache = caches()
    e = engine(cache)
    latency = cache._core.l2_latency
    for _ in range(1000):  # slow calls before the window: never counted
        latency.observe(900_000_000)
    e.evaluate(now=t0)
    for _ in range(99):
        latency.observe(80_000_000)  # 80 ms, in the (50 ms, 100 ms] bucket
    assert e.evaluate(now=t0 + 10) == []  # 99 calls: under min_l2_calls
    latency.observe(80_000_000)
    changes = e.evaluate(now=t0 + 20)
    assert names(changes) == ["l2_latency_high"]
    assert 50 < changes[0]["value"] < 1000 and changes[0]["threshold"] == 50
    for _ in range(10_000):
        latency.observe(1_000_000)  # 1 ms
    changes = e.evaluate(now=t0 + 400)
    assert [(c["name"], c["state"]) for c in changes] == [("l2_latency_high", "resolved")]
    assert changes[0]["value"] <= 1.0


def test_l2_unreachable_is_critical_and_clears_when_redis_is_back(fresh_redis_server, t0):
    made = Caches(redis_url=fresh_redis_server.url, socket_timeout=0.1, connect_timeout=0.1,
                  breaker_threshold=2, breaker_cooldown=0.1, alert_interval=HOUR)
    try:
        cache = made()
        e = engine(cache)
        assert e.evaluate(now=t0) == []
        fresh_redis_server.kill()
        assert wait_until(lambda: not cache.stats()["l2"]["connected"])
        for i in range(5):
            cache.get(f"k{i}")  # failures open the breaker
        assert e.evaluate(now=t0 + 1) == []  # unreachable for less than 5 s: pending
        changes = e.evaluate(now=t0 + 10)
        assert [(c["name"], c["severity"]) for c in changes] == [("l2_unreachable", "critical")]
        assert changes[0]["message"].startswith("Redis unreachable: ")
        health = cache.health()
        assert health["status"] == "degraded"
        assert names(health["alerts"]) == ["l2_unreachable"]
        assert names(cache.stats()["alerts"]) == ["l2_unreachable"]

        fresh_redis_server.start()
        assert wait_until(lambda: cache.get("probe") is None and cache.stats()["l2"]["connected"]
                          and cache.stats()["l2"]["breaker"] == "closed", timeout=20)
        changes = e.evaluate(now=t0 + 20)
        assert [(c["name"], c["state"]) for c in changes] == [("l2_unreachable", "resolved")]
        assert cache.health()["status"] == "ok"
    finally:
        made.close()


def test_a_blip_shorter_than_for_seconds_raises_nothing(fresh_redis_server, t0):
    made = Caches(redis_url=fresh_redis_server.url, socket_timeout=0.1, connect_timeout=0.1, alert_interval=HOUR)
    try:
        cache = made()
        e = engine(cache)
        fresh_redis_server.kill()
        assert wait_until(lambda: not cache.stats()["l2"]["connected"])
        assert e.evaluate(now=t0) == []  # seen down once
        fresh_redis_server.start()
        assert wait_until(lambda: cache.stats()["l2"]["connected"], timeout=20)
        assert e.evaluate(now=t0 + 10) == []  # back before the second look
        assert e.active() == []
    finally:
        made.close()


def test_health_is_degraded_while_a_critical_alert_fires(caches, t0):
    rules = [Rule("hit_rate_critical", "hit_rate", 0.9, below=True, min_count=1, severity="critical")]
    cache = caches(alert_rules=rules)
    assert cache.health()["status"] == "ok"  # (an evaluation on the real clock)
    e = engine(cache)
    now = time.time()
    lookups(cache, misses=10)
    assert names(e.evaluate(now=now + 1)) == ["hit_rate_critical"]
    health = cache.health()
    assert health["status"] == "degraded"
    assert [(a["name"], a["severity"]) for a in health["alerts"]] == [("hit_rate_critical", "critical")]


def test_a_warning_leaves_health_ok(caches, t0):
    cache = caches()
    e = engine(cache)
    e.evaluate(now=t0)
    lookups(cache, misses=100)
    assert names(e.evaluate(now=t0 + 10)) == ["hit_rate_low"]
    health = cache.health()
    assert health["status"] == "ok" and names(health["alerts"]) == ["hit_rate_low"]


# ---- configuration -----------------------------------------------------------------------


def test_thresholds_are_configurable(caches, t0):
    relaxed = caches(alert_rules=AlertEngine.default_rules(hit_rate=0.05))
    strict = caches(alert_rules={"hit_rate": 0.5, "min_lookups": 10, "window": 60})
    for cache in (relaxed, strict):
        engine(cache).evaluate(now=t0)
        lookups(cache, hits=2, misses=18)  # 10 %
    assert engine(relaxed).evaluate(now=t0 + 10) == []  # 20 lookups < 100 anyway
    lookups(relaxed, hits=20, misses=180)
    assert engine(relaxed).evaluate(now=t0 + 20) == []  # 10 % is above 5 %
    changes = engine(strict).evaluate(now=t0 + 10)
    assert [(c["name"], c["threshold"]) for c in changes] == [("hit_rate_low", 0.5)]


def test_default_rules_can_be_left_out_or_replaced(caches):
    assert [r.name for r in AlertEngine.default_rules()] == [
        "hit_rate_low", "l2_unreachable", "l2_latency_high", "evictions_high"]
    assert [r.name for r in AlertEngine.default_rules(hit_rate=None, l2_unreachable=False,
                                                      evictions_per_second=None)] == ["l2_latency_high"]
    rules = AlertEngine.default_rules(window=60, min_lookups=5, l2_p99_ms=20)
    assert {r.window for r in rules} == {60}
    assert [r.threshold for r in rules if r.name == "l2_latency_high"] == [20]
    cache = caches(alert_rules=[])
    assert engine(cache).rules == []


def test_a_rule_may_use_its_own_metric(caches, t0):
    rule = Rule("lookups_burst", lambda w: (w.delta("lookups") / w.seconds if w.seconds else None, 1), 5.0,
                window=60)
    cache = caches(alert_rules=[rule])
    e = engine(cache)
    e.evaluate(now=t0)
    lookups(cache, misses=100)
    changes = e.evaluate(now=t0 + 10)
    assert [(c["name"], c["value"]) for c in changes] == [("lookups_burst", 10.0)]
    assert changes[0]["message"].startswith("lookups_burst: 10")


def test_a_failing_metric_is_logged_once_and_the_other_rules_go_on(caches, t0, caplog):
    def broken(window):
        raise ZeroDivisionError("no")

    rules = [Rule("broken", broken, 1.0), *AlertEngine.default_rules()]
    cache = caches(alert_rules=rules)
    e = engine(cache)
    caplog.set_level(logging.ERROR, logger="tieredcache")
    e.evaluate(now=t0)
    lookups(cache, misses=100)
    assert names(e.evaluate(now=t0 + 10)) == ["hit_rate_low"]
    e.evaluate(now=t0 + 20)
    assert "alerts" in cache.stats()
    failed = [r for r in caplog.records if "alert rule broken failed" in r.getMessage()]
    assert len(failed) == 1 and "ZeroDivisionError (message not logged)" in failed[0].getMessage()


@pytest.mark.parametrize("kwargs, message", [
    (dict(name="x", metric="nope", threshold=1), "unknown metric"),
    (dict(name="x", metric="hit_rate", threshold=1, severity="page"), "severity"),
    (dict(name="x", metric="hit_rate", threshold=1, window=0), "window"),
    (dict(name="x", metric="hit_rate", threshold=float("nan")), "threshold"),
    (dict(name="x", metric="hit_rate", threshold=1, min_count=-1), "min_count"),
    (dict(name="x", metric="hit_rate", threshold=1, for_seconds=-1), "for_seconds"),
    (dict(name="", metric="hit_rate", threshold=1), "name"),
])
def test_bad_rules_are_refused(kwargs, message):
    with pytest.raises(ConfigurationError, match=message):
        Rule(**kwargs)


def test_bad_engine_settings_are_refused():
    twice = [Rule("a", "hit_rate", 0.5), Rule("a", "hit_rate", 0.6)]
    with pytest.raises(ConfigurationError, match="unique"):
        TieredCache(alert_rules=twice)
    with pytest.raises(ConfigurationError, match="Rule objects"):
        TieredCache(alert_rules=["hit_rate_low"])
    with pytest.raises(ConfigurationError, match="alert_interval"):
        TieredCache(alert_interval=0)
    with pytest.raises(ConfigurationError, match="unknown setting.*'hit_rat'"):
        TieredCache(alert_rules={"hit_rat": 0.5})


def test_the_engine_survives_the_clock_going_back(caches, t0):
    cache = caches()
    e = engine(cache)
    e.evaluate(now=t0 + 100)
    lookups(cache, misses=100)
    assert e.evaluate(now=t0) == []  # the ring starts over: no window yet
    lookups(cache, misses=100)
    assert names(e.evaluate(now=t0 + 10)) == ["hit_rate_low"]


def test_the_ring_stays_bounded_however_often_it_is_evaluated(caches, t0):
    cache = caches()
    e = engine(cache)
    for i in range(5000):
        e.evaluate(now=t0 + i * 0.1)  # every 100 ms for 500 s
    assert len(e._ring) <= 258


# ---- views, monitoring off, the thread -----------------------------------------------------


def test_views_share_the_roots_engine(caches, t0):
    cache = caches()
    view = cache.namespace("sub")
    assert engine(view) is engine(cache)
    engine(cache).evaluate(now=t0)
    lookups(view, misses=100)
    engine(view).evaluate(now=t0 + 10)
    assert names(view.stats()["alerts"]) == names(cache.stats()["alerts"]) == ["hit_rate_low"]


def alert_threads() -> int:
    return sum(t.name == "tieredcache-alerts" for t in threading.enumerate())


def test_no_engine_without_monitoring():
    before = alert_threads()
    cache = TieredCache(monitoring=False, alert_callback=print)
    try:
        assert engine(cache) is None
        cache.add_alert_callback(print)  # accepted, never called
        lookups(cache, misses=200)
        assert "alerts" not in cache.stats()
        assert cache.health()["alerts"] == []
        assert alert_threads() <= before
    finally:
        cache.close()


def test_the_thread_starts_on_first_use_evaluates_and_stops_on_close():
    cache = TieredCache(alert_interval=0.01)
    e = engine(cache)
    try:
        assert not e.running  # nothing started by the constructor
        cache.set("k", 1)
        assert e.running
        thread = e._thread
        assert thread.daemon and thread.name == "tieredcache-alerts"
        assert wait_until(lambda: e.evaluations >= 3)
    finally:
        cache.close()
    assert not thread.is_alive()
    assert not e.running
    cache.set("k", 2)  # a closed cache does not start it again
    assert not e.running
    done = e.evaluations
    cache.stats()
    assert e.evaluations == done  # nor evaluates


def test_stop_and_start(caches):
    cache = caches(alert_interval=0.01)
    e = engine(cache)
    e.start()
    assert e.running
    e.stop()
    assert not e.running
    cache.set("k", 1)
    assert not e.running  # stopped on purpose: no lazy restart
    e.start()
    assert e.running


def test_the_thread_lets_an_unclosed_cache_be_collected():
    import gc
    import weakref

    cache = TieredCache(alert_interval=0.01)
    cache.set("k", 1)
    e = engine(cache)
    thread = e._thread
    ref = weakref.ref(e)
    del cache, e
    gc.collect()
    assert ref() is None
    thread.join(5)
    assert not thread.is_alive()


def test_after_fork_the_child_restarts_the_thread_lazily(caches):
    import os

    if not hasattr(os, "fork"):
        pytest.skip("needs os.fork")
    from test_local_fork import run_in_child

    cache = caches()
    cache.set("k", 1)
    e = engine(cache)
    assert e.running

    def child():
        before = e.running
        cache.set("k", 2)
        return before, e.running, e._thread is not None and e._thread.name == "tieredcache-alerts"

    assert run_in_child(child) == repr((False, True, True))
    assert e.running  # the parent's thread goes on

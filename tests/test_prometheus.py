"""``tieredcache.prometheus``: the statistics in the Prometheus text format, and as a
``prometheus_client`` collector.

Every test parses what it checks with ``prometheus_client``'s own parser, and compares
the values with ``cache.stats()`` and the functions' histograms, to the unit.
"""

from __future__ import annotations

import asyncio
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("prometheus_client")

from prometheus_client import CollectorRegistry, generate_latest  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from tieredcache import TieredCache  # noqa: E402
from tieredcache._metrics import BOUNDS_SECONDS  # noqa: E402
from tieredcache.contrib._admin import AdminActions  # noqa: E402
from tieredcache.prometheus import CONTENT_TYPE, TieredCacheCollector, register, render_metrics  # noqa: E402
from tieredcache.testing import advance_clock  # noqa: E402

NS = "promtest"
SRC = Path(__file__).resolve().parent.parent / "src"

Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


# ---- reading the exposition -----------------------------------------------------------------


def families(text: str) -> dict[str, Any]:
    """The families by name as prometheus_client parses them (a counter's name without
    ``_total``), after checking what its lax parser lets through: one HELP and one TYPE
    line per family, before its samples, and no series twice."""
    assert text.endswith("\n")
    declared: list[str] = []
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            declared.append(line.split(" ")[2])
    assert len(declared) == len(set(declared)), "a family is declared twice"
    assert text.count("# HELP ") == len(declared)
    parsed = {m.name: m for m in text_string_to_metric_families(text)}
    assert len(parsed) == len(declared)
    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    for m in parsed.values():
        assert m.documentation, f"{m.name} has no HELP text"
        for s in m.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            assert key not in seen, f"series repeated: {key}"
            seen.add(key)
    return parsed


def series(text: str) -> Series:
    """Every sample as ``{(sample name, sorted labels): value}``."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for m in families(text).values() for s in m.samples}


def at(found: Series, name: str, **labels: str) -> float:
    return found[(name, tuple(sorted(labels.items())))]


def names(found: Series) -> set[str]:
    return {name for name, _ in found}


def histograms(text: str, name: str) -> dict[tuple[tuple[str, str], ...], dict[str, Any]]:
    """Per series of histogram family ``name``: its ``buckets`` [(le, count)] in the
    order written, ``sum`` and ``count``."""
    family = families(text)[name]
    assert family.type == "histogram"
    out: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}
    for s in family.samples:
        labels = {k: v for k, v in s.labels.items() if k != "le"}
        entry = out.setdefault(tuple(sorted(labels.items())), {"buckets": [], "sum": None, "count": None})
        if s.name == name + "_bucket":
            entry["buckets"].append((s.labels["le"], s.value))
        elif s.name == name + "_sum":
            entry["sum"] = s.value
        else:
            assert s.name == name + "_count", s.name
            entry["count"] = s.value
    return out


def assert_well_formed(histogram: dict[str, Any]) -> None:
    buckets = histogram["buckets"]
    bounds = [float(le) for le, _ in buckets]
    counts = [n for _, n in buckets]
    assert bounds == [*BOUNDS_SECONDS, math.inf]
    assert buckets[-1][0] == "+Inf"
    assert counts == sorted(counts), "buckets must be cumulative"
    assert counts[-1] == histogram["count"]
    assert histogram["sum"] is not None and histogram["sum"] >= 0


# ---- what the families must say: the stats() paths they expose ---------------------------


def expected_from_stats(stats: dict[str, Any]) -> Series:
    """Every cache-wide series ``render_metrics`` writes, from ``cache.stats()``."""
    ns = stats["namespace"]
    l1, l2 = stats["l1"], stats["l2"]
    out: Series = {}

    def put(name: str, value: Any, **labels: str) -> None:
        out[(name, tuple(sorted({"namespace": ns, **labels}.items())))] = float(value)

    for tier in ("l1", "l2") if l2["enabled"] else ("l1",):
        for what in ("hits", "misses", "sets", "deletes"):
            put(f"tieredcache_{what}_total", stats[tier][what], tier=tier)
    for reason in ("size", "bytes", "expired", "invalidated"):
        put("tieredcache_l1_evictions_total", l1["evictions_by_reason"][reason], reason=reason)
    for key in ("entries", "bytes", "peak_bytes", "max_entries", "max_bytes"):
        if l1[key] is not None:
            put(f"tieredcache_l1_{key}", l1[key])
    put("tieredcache_l1_rejected_total", l1["rejected"])
    put("tieredcache_l2_enabled", l2["enabled"])
    if l2["enabled"]:
        put("tieredcache_l2_up", l2["connected"])
        for state in ("closed", "open", "half-open"):
            put("tieredcache_l2_breaker_state", l2["breaker"] == state, state=state)
        for key in ("errors", "timeouts", "breaker_transitions", "reconnects"):
            put(f"tieredcache_l2_{key}_total", l2[key])
    for key in ("loads", "load_errors", "invalidations_sent", "invalidations_received", "l1_flushes",
                "stale_writes_refused", "warmed"):
        put(f"tieredcache_{key}_total", stats[key])
    return out


def expected_function_calls(stats: dict[str, Any]) -> Series:
    out: Series = {}
    for row in stats["functions"]:
        for outcome, field in (("l1_hit", "l1_hits"), ("l2_hit", "l2_hits"), ("miss", "misses"),
                               ("error", "errors")):
            labels = {"function": row["function"], "namespace": row["namespace"], "outcome": outcome}
            out[("tieredcache_function_calls_total", tuple(sorted(labels.items())))] = float(row[field])
    return out


# ---- a scripted workload ----------------------------------------------------------------------


@pytest.fixture
def cache():
    with TieredCache(namespace=NS, max_entries=4, default_ttl=60) as c:
        yield c


# The cache reports only the decorated functions still alive: the tests' stay here.
_alive: list[Any] = []


@pytest.fixture(autouse=True)
def _keep_functions_alive():
    yield
    _alive.clear()


def workload(cache: TieredCache) -> None:
    """Known hits, misses, errors and evictions of every reason."""

    @cache.cached(ttl=60, name="shop.price")
    def price(item: int) -> int:
        return item * 10

    @cache.cached(ttl=60, name="shop.fail")
    def fail(item: int) -> int:
        raise LookupError(item)

    price(1), price(1), price(1), price(2)  # 2 L1 hits, 2 misses
    for _ in range(2):
        with pytest.raises(LookupError):
            fail(1)
    cache.set("a", 1, tags=["t"])
    cache.set("b", 2, tags=["t"])
    assert cache.invalidate_tags("t") == 2  # 2 invalidated
    cache.set("short", 1, ttl=5)
    advance_clock(6)
    assert cache.get("short") is None  # 1 expired
    for i in range(6):  # 2 prices + 6 fills in 4 entries: 4 evicted by size
        cache.set(f"fill:{i}", i)
    assert cache.delete("fill:5")
    _alive.extend((price, fail))


def test_every_cache_wide_value_equals_stats(cache):
    workload(cache)

    found = series(render_metrics(cache))
    stats = cache.stats()

    expected = expected_from_stats(stats)
    assert {k: found[k] for k in expected} == expected
    assert at(found, "tieredcache_hits_total", namespace=NS, tier="l1") == 2
    assert at(found, "tieredcache_deletes_total", namespace=NS, tier="l1") == 1
    evictions = {reason: at(found, "tieredcache_l1_evictions_total", namespace=NS, reason=reason)
                 for reason in ("size", "bytes", "expired", "invalidated")}
    assert evictions == {"size": 4, "bytes": 0, "expired": 1, "invalidated": 2}
    assert at(found, "tieredcache_loads_total", namespace=NS) == 4
    assert at(found, "tieredcache_load_errors_total", namespace=NS) == 2


def test_every_function_call_count_equals_the_report(cache):
    workload(cache)

    found = series(render_metrics(cache))

    expected = expected_function_calls(cache.stats())
    assert {k: v for k, v in found.items() if k[0] == "tieredcache_function_calls_total"} == expected
    calls = {(fn, outcome): at(found, "tieredcache_function_calls_total", namespace=NS, function=fn,
                               outcome=outcome)
             for fn in ("shop.price", "shop.fail") for outcome in ("l1_hit", "l2_hit", "miss", "error")}
    assert calls == {("shop.price", "l1_hit"): 2, ("shop.price", "l2_hit"): 0, ("shop.price", "miss"): 2,
                     ("shop.price", "error"): 0, ("shop.fail", "l1_hit"): 0, ("shop.fail", "l2_hit"): 0,
                     ("shop.fail", "miss"): 0, ("shop.fail", "error"): 2}


def test_an_l1_only_cache_has_no_l2_series_but_says_so(cache):
    found = series(render_metrics(cache))

    assert at(found, "tieredcache_l2_enabled", namespace=NS) == 0
    assert not {n for n in names(found) if n.startswith("tieredcache_l2_") and n != "tieredcache_l2_enabled"}
    assert not [k for k in found if ("tier", "l2") in k[1]]
    assert "tieredcache_l1_max_bytes" not in names(found)  # no byte bound


def test_the_byte_bound_is_a_gauge_when_set():
    with TieredCache(namespace=NS, max_entries=10, max_bytes=4096) as c:
        c.set("k", "v")
        found = series(render_metrics(c))

        assert at(found, "tieredcache_l1_max_bytes", namespace=NS) == 4096
        assert at(found, "tieredcache_l1_bytes", namespace=NS) == c.stats()["l1"]["bytes"] > 0


def test_families_have_help_type_and_the_documented_kinds(cache):
    workload(cache)
    text = render_metrics(cache)

    kinds = {name: m.type for name, m in families(text).items()}

    assert kinds["tieredcache_hits"] == kinds["tieredcache_function_calls"] == "counter"
    assert kinds["tieredcache_l1_entries"] == kinds["tieredcache_l2_enabled"] == "gauge"
    assert kinds["tieredcache_function_latency_seconds"] == "histogram"
    assert "# TYPE tieredcache_hits_total counter\n" in text  # counters keep _total in the text
    assert "sampled" in families(text)["tieredcache_function_latency_seconds"].documentation
    for line in text.splitlines():
        if not line.startswith("#"):
            assert 'namespace="' in line, f"series without a namespace: {line}"


# ---- histograms -------------------------------------------------------------------------------


def test_function_histograms_are_cumulative_end_in_inf_and_match_the_functions(cache):
    workload(cache)

    text = render_metrics(cache)
    found = histograms(text, "tieredcache_function_latency_seconds")

    assert len(found) == 2 * 4  # 2 functions x (l1_hit, l2_hit, miss, load)
    specs = {fn.name: fn for fn in cache._core.functions.values()}
    for labels, h in found.items():
        assert_well_formed(h)
        d = dict(labels)
        truth = specs[d["function"]].histograms()[d["outcome"]]
        assert h["count"] == truth.count
        assert [n for _, n in h["buckets"]] == [n for _, n in truth.buckets()]
        assert h["sum"] == pytest.approx(truth.total_ns / 1e9)
    price = {d["outcome"]: h for labels, h in found.items() if (d := dict(labels))["function"] == "shop.price"}
    assert price["miss"]["count"] == price["load"]["count"] == 2
    assert price["l2_hit"]["count"] == 0
    assert price["l1_hit"]["count"] <= 2  # sampled


def test_a_known_duration_lands_in_its_bucket(cache):
    @cache.cached(ttl=60, name="shop.known")
    def known(x: int) -> int:
        return x

    known(1)  # binds it to the cache
    spec = next(fn for fn in cache._core.functions.values() if fn.name == "shop.known")
    spec.reset_stats()
    spec.h_load.observe(3_000_000)  # 3 ms: above le=0.0025, within le=0.005

    found = histograms(render_metrics(cache), "tieredcache_function_latency_seconds")
    load = found[(("function", "shop.known"), ("namespace", NS), ("outcome", "load"))]

    assert_well_formed(load)
    buckets = dict(load["buckets"])
    assert (buckets["0.001"], buckets["0.0025"], buckets["0.005"], buckets["+Inf"]) == (0, 0, 1, 1)
    assert load["sum"] == pytest.approx(0.003)


def test_with_monitoring_off_there_are_no_histograms():
    with TieredCache(namespace=NS, monitoring=False) as c:
        @c.cached(ttl=60)
        def f(x: int) -> int:
            return x

        f(1), f(1)
        text = render_metrics(c)

        assert " histogram\n" not in text
        assert at(series(text), "tieredcache_function_calls_total", namespace=NS,
                  function=c.report()[0]["function"], outcome="miss") == 1


# ---- labels and cardinality -------------------------------------------------------------------


def test_label_values_are_escaped(cache):
    nasty = 'quote " backslash \\ newline \n end'

    @cache.cached(ttl=60, name=nasty)
    def f(x: int) -> int:
        return x

    f(1), f(1)
    text = render_metrics(cache)

    assert 'function="quote \\" backslash \\\\ newline \\n end"' in text
    assert "\n end" not in text  # no raw newline inside a label
    found = series(text)
    assert at(found, "tieredcache_function_calls_total", namespace=NS, function=nasty, outcome="miss") == 1
    assert at(found, "tieredcache_function_calls_total", namespace=NS, function=nasty, outcome="l1_hit") == 1


def make_functions(cache: TieredCache, calls: dict[str, int]) -> None:
    """One cached function per name, called that many times with distinct arguments
    (all misses)."""
    for name, n in calls.items():
        @cache.cached(ttl=60, name=name)
        def f(x: int) -> int:
            return x

        for i in range(n):
            f(i)
        _alive.append(f)


def function_labels(found: Series) -> set[str]:
    return {dict(labels)["function"] for name, labels in found if name == "tieredcache_function_calls_total"}


def test_functions_beyond_max_functions_are_summed_into_other():
    with TieredCache(namespace=NS, max_entries=1000) as c:
        make_functions(c, {"f.a": 6, "f.b": 5, "f.c": 3, "f.d": 2, "f.e": 1})
        text = render_metrics(c, max_functions=3)
        found = series(text)

        assert function_labels(found) == {"f.a", "f.b", "other"}  # 3 values, "other" included
        assert at(found, "tieredcache_function_calls_total", namespace=NS, function="other", outcome="miss") == 6
        assert at(found, "tieredcache_function_calls_total", namespace=NS, function="f.a", outcome="miss") == 6
        other = histograms(text, "tieredcache_function_latency_seconds")[
            (("function", "other"), ("namespace", NS), ("outcome", "load"))]
        assert_well_formed(other)
        assert other["count"] == 6

        assert function_labels(series(render_metrics(c, max_functions=5))) == {"f.a", "f.b", "f.c", "f.d", "f.e"}
        assert function_labels(series(render_metrics(c, max_functions=1))) == {"other"}
        no_functions = render_metrics(c, max_functions=0)
        assert "tieredcache_function_" not in no_functions
        assert "tieredcache_hits_total" in no_functions


def test_functions_sharing_a_name_and_namespace_are_one_series():
    with TieredCache(namespace=NS) as c:
        make_functions(c, {"twin": 2})
        make_functions(c, {"twin": 3})
        found = series(render_metrics(c))

        rows = c.report()
        assert [r["function"] for r in rows] == ["twin", "twin"]
        for outcome, field in (("l1_hit", "l1_hits"), ("miss", "misses")):
            assert at(found, "tieredcache_function_calls_total", namespace=NS, function="twin",
                      outcome=outcome) == sum(r[field] for r in rows)
        assert sum(v for (name, _), v in found.items() if name == "tieredcache_function_calls_total") == 5
        (load,) = [h for labels, h in histograms(render_metrics(c), "tieredcache_function_latency_seconds").items()
                   if ("outcome", "load") in labels]
        assert load["count"] == sum(r["misses"] for r in rows)


def test_functions_of_a_sub_namespace_carry_its_name():
    with TieredCache(namespace=NS) as c:
        shop = c.namespace("shop")
        make_functions(shop, {"price": 2})
        found = series(render_metrics(c))

        assert at(found, "tieredcache_function_calls_total", namespace=f"{NS}/shop", function="price",
                  outcome="miss") == 2
        assert at(found, "tieredcache_l1_entries", namespace=NS) == 2


def test_max_functions_is_checked(cache):
    with pytest.raises(ValueError, match="max_functions"):
        render_metrics(cache, max_functions=-1)
    with pytest.raises(TypeError, match="max_functions"):
        render_metrics(cache, max_functions="3")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="TieredCache"):
        render_metrics(object())  # type: ignore[arg-type]


# ---- alerts -------------------------------------------------------------------------------------


def firing(*alerts: tuple[str, str]) -> list[dict[str, Any]]:
    return [{"name": name, "severity": severity, "message": "m", "since": 0.0, "value": 1.0, "threshold": 0.0}
            for name, severity in alerts]


def test_active_alerts_are_a_gauge_per_rule(cache, monkeypatch):
    engine = cache._core.alerts
    if engine is None:
        pytest.skip("no alert engine on this cache")
    monkeypatch.setattr(engine, "active", lambda: firing(("l2_unreachable", "critical"),
                                                         ("low_hit_rate", "warning")))
    found = series(render_metrics(cache))

    alerts = {dict(labels)["name"]: (dict(labels)["severity"], v)
              for (name, labels), v in found.items() if name == "tieredcache_alert_active"}
    assert alerts == {"low_hit_rate": ("warning", 1), "l2_unreachable": ("critical", 1)}

    monkeypatch.setattr(engine, "active", lambda: [])
    text = render_metrics(cache)
    assert "# TYPE tieredcache_alert_active gauge" in text  # the engine runs, nothing fires
    assert "tieredcache_alert_active{" not in text


def test_without_an_alert_engine_there_is_no_alert_family():
    with TieredCache(namespace=NS, monitoring=False) as c:  # monitoring off: no alert engine
        assert "alerts" not in c.stats()
        assert "tieredcache_alert_active" not in render_metrics(c)


# ---- prometheus_client's collector ------------------------------------------------------------


def test_the_collector_exposes_the_same_values_as_render_metrics(cache):
    workload(cache)
    registry = CollectorRegistry()

    collector = register(cache, registry=registry)
    exposed = generate_latest(registry).decode()
    rendered = render_metrics(cache)

    assert isinstance(collector, TieredCacheCollector)
    assert series(exposed) == series(rendered)
    assert {n: m.type for n, m in families(exposed).items()} == {n: m.type for n, m in families(rendered).items()}
    assert {n: m.documentation for n, m in families(exposed).items()} == {
        n: m.documentation for n, m in families(rendered).items()}
    registry.unregister(collector)
    assert generate_latest(registry) == b""


def test_the_collector_takes_several_caches_side_by_side():
    with TieredCache(namespace="one") as a, TieredCache(namespace="two") as b:
        a.set("k", 1), b.set("k", 1), b.set("j", 2)
        registry = CollectorRegistry()
        register(a, b, registry=registry)
        found = series(generate_latest(registry).decode())

        assert at(found, "tieredcache_l1_entries", namespace="one") == 1
        assert at(found, "tieredcache_l1_entries", namespace="two") == 2
        with TieredCache(namespace="one") as same_name, pytest.raises(ValueError, match="namespace"):
            TieredCacheCollector(a, same_name)
        with pytest.raises(ValueError, match="shares its counters"):
            TieredCacheCollector(a, a.namespace("sub"))
        with pytest.raises(ValueError):  # the registry refuses the same series twice
            register(a, registry=registry)


def test_the_module_imports_without_prometheus_client():
    code = (
        "import sys\n"
        "sys.modules['prometheus_client'] = None\n"
        "from tieredcache import TieredCache\n"
        "from tieredcache.prometheus import TieredCacheCollector, register, render_metrics\n"
        "c = TieredCache(namespace='x')\n"
        "assert 'tieredcache_hits_total' in render_metrics(c)\n"
        "for make in (lambda: TieredCacheCollector(c), lambda: register(c)):\n"
        "    try:\n"
        "        make()\n"
        "    except ImportError as exc:\n"
        "        assert 'pip install prometheus-client' in str(exc), exc\n"
        "    else:\n"
        "        raise AssertionError('no ImportError')\n"
        "import tieredcache.contrib._admin\n"
        "print('ok')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], env={"PYTHONPATH": str(SRC)}, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and r.stdout == "ok\n", r.stderr


def test_the_module_exports_exactly_these_names():
    import tieredcache.prometheus as module

    assert module.__all__ == ["CONTENT_TYPE", "TieredCacheCollector", "register", "render_metrics"]
    assert CONTENT_TYPE == "text/plain; version=0.0.4; charset=utf-8"


# ---- with Redis ---------------------------------------------------------------------------------


def settled(cache: TieredCache) -> tuple[str, dict[str, Any]]:
    """``render_metrics`` and ``stats()`` of the same moment: the invalidation listener
    counts messages on its own thread, so render again until the counters stood still."""
    for _ in range(100):
        before = cache.stats()
        text = render_metrics(cache)
        after = cache.stats()
        if expected_from_stats(before) == expected_from_stats(after):
            return text, after
        time.sleep(0.01)
    raise AssertionError("the counters never stood still")


def test_with_redis_the_l2_families_count_what_redis_did(redis_url):
    with TieredCache(redis_url, namespace=NS) as writer, TieredCache(redis_url, namespace=NS) as reader:

        @reader.cached(ttl=60, name="shop.remote")
        def remote(x: int) -> int:
            return x

        writer.set("shared", 1)
        assert reader.get("shared") == 1  # an L2 hit
        assert reader.get("nowhere") is None  # an L2 miss
        reader.set("mine", 2)
        reader.delete("mine")
        remote(1)  # miss, stored in Redis
        reader._core.l1.clear()
        remote(1)  # L2 hit

        text, stats = settled(reader)
        found = series(text)

        expected = expected_from_stats(stats)
        assert {k: found[k] for k in expected} == expected
        for name in ("tieredcache_hits_total", "tieredcache_misses_total", "tieredcache_sets_total",
                     "tieredcache_deletes_total"):
            assert at(found, name, namespace=NS, tier="l2") > 0, name
        assert at(found, "tieredcache_l2_up", namespace=NS) == 1
        assert at(found, "tieredcache_l2_breaker_state", namespace=NS, state="closed") == 1
        assert at(found, "tieredcache_l2_breaker_state", namespace=NS, state="open") == 0
        assert at(found, "tieredcache_invalidations_sent_total", namespace=NS) > 0
        assert at(found, "tieredcache_function_calls_total", namespace=NS, function="shop.remote",
                  outcome="l2_hit") == 1
        (l2,) = histograms(text, "tieredcache_l2_latency_seconds").values()
        assert_well_formed(l2)
        assert l2["count"] == stats["l2"]["latency"]["count"] > 0
        assert l2["sum"] > 0


# ---- GET /metrics through the admin core ---------------------------------------------------------


def test_the_admin_metrics_action_serves_render_metrics(cache):
    workload(cache)
    admin = AdminActions(cache)

    status, body, content_type = admin.handle("metrics")
    astatus, abody, acontent_type = asyncio.run(admin.ahandle("metrics"))

    assert (status, content_type) == (astatus, acontent_type) == (200, "text/plain; version=0.0.4; charset=utf-8")
    assert body == abody == render_metrics(cache)
    assert series(body)

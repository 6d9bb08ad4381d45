"""The cache's statistics for Prometheus (docs/observability.md).

``render_metrics(cache)`` writes ``cache.stats()`` and the latency histograms in the
Prometheus text exposition format 0.0.4 (what ``GET {prefix}/metrics`` of the admin
router serves); it needs nothing but the standard library. With ``prometheus_client``
installed, ``register(cache)`` adds a ``TieredCacheCollector`` to its registry, so the
same families appear wherever that registry is exposed (``start_http_server``,
``make_asgi_app``, ``generate_latest``).

HOW IT WORKS

One function, ``_families``, reads the cache once per scrape into neutral ``_Family``
records (name, type, help, label names, samples); the text renderer and the collector
only translate them, so both expose the same names, labels and values.

Labels: every series carries ``namespace`` (the cache's namespace; for the per-function
families the namespace the function caches in). A counter both tiers keep (hits, misses,
sets, deletes) is one family with ``tier="l1"|"l2"``; anything only one tier has keeps
the tier in its name (``tieredcache_l1_entries``, ``tieredcache_l2_errors_total``).
L2 series appear only when a Redis tier is configured; latency histograms only with
monitoring on.

LIMITATIONS

Cardinality is bounded by ``max_functions``: the per-function families carry at most
that many ``function`` label values, ``"other"`` included (the functions with the most
calls keep their own; the rest are summed into ``function="other"`` under the cache's
namespace). A function that moves in or out of the top set makes its series and
``other``'s jump, which Prometheus reads as a counter reset. The ``l1_hit`` latency
histogram of a function is sampled (one C-path L1 hit in 16), so its ``_count`` is about
a sixteenth of ``tieredcache_function_calls_total{outcome="l1_hit"}``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from ._metrics import BOUNDS_SECONDS, Histogram
from ._tiered import TieredCache

__all__ = ["CONTENT_TYPE", "TieredCacheCollector", "register", "render_metrics"]

#: The content type of the text exposition format 0.0.4.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_NO_CLIENT = ("TieredCacheCollector needs the prometheus_client package "
              "(pip install prometheus-client); render_metrics() works without it")

_TIERS = ("l1", "l2")
_EVICTION_REASONS = ("size", "bytes", "expired", "invalidated")
_BREAKER_STATES = ("closed", "open", "half-open")
_CALL_OUTCOMES = ("l1_hit", "l2_hit", "miss", "error")
_LATENCY_OUTCOMES = ("l1_hit", "l2_hit", "miss", "load")
_OTHER = "other"

# (name, help, key in stats()["l1"])
_L1_GAUGES = (
    ("tieredcache_l1_entries", "Entries held in L1.", "entries"),
    ("tieredcache_l1_bytes", "Bytes held in L1 (as L1 accounts them).", "bytes"),
    ("tieredcache_l1_peak_bytes", "Highest number of bytes L1 has held.", "peak_bytes"),
    ("tieredcache_l1_max_entries", "The entry bound of L1.", "max_entries"),
    ("tieredcache_l1_max_bytes", "The byte bound of L1 (absent when L1 has none).", "max_bytes"),
)
# (name, help, key in stats()["l2"]): L2 only
_L2_COUNTERS = (
    ("tieredcache_l2_errors_total", "Redis calls that failed.", "errors"),
    ("tieredcache_l2_timeouts_total", "Redis calls that timed out.", "timeouts"),
    ("tieredcache_l2_breaker_transitions_total", "State changes of the Redis circuit breaker.",
     "breaker_transitions"),
    ("tieredcache_l2_reconnects_total", "Connections to Redis opened again after a failure.", "reconnects"),
    ("tieredcache_l2_rejected_total", "Values not stored in Redis (serialized larger than max_value_bytes).",
     "rejected"),
)
# (name, help, key in stats())
_CACHE_COUNTERS = (
    ("tieredcache_l1_rejected_total", "Values L1 refused to store (larger than its bound).", None),
    ("tieredcache_loads_total", "Loader calls (misses in every tier).", "loads"),
    ("tieredcache_load_errors_total", "Loader calls that raised.", "load_errors"),
    ("tieredcache_invalidations_sent_total", "Invalidation messages published to other processes.",
     "invalidations_sent"),
    ("tieredcache_invalidations_received_total", "Invalidation messages received from other processes.",
     "invalidations_received"),
    ("tieredcache_l1_flushes_total", "Times L1 was emptied because invalidations may have been lost.",
     "l1_flushes"),
    ("tieredcache_stale_writes_refused_total", "Fills refused because an invalidation overtook them.",
     "stale_writes_refused"),
    ("tieredcache_warmed_total", "Entries loaded by cache warmers.", "warmed"),
)


# ---- the neutral model ----------------------------------------------------------------


class _Family:
    """One metric family: ``samples`` are ``(label values, value)`` for a counter or gauge,
    ``(label values, cumulative [(le seconds, count)], sum seconds)`` for a histogram.
    A counter's ``name`` ends in ``_total``."""

    __slots__ = ("name", "kind", "help", "labels", "samples")

    def __init__(self, name: str, kind: str, help_text: str, labels: tuple[str, ...]) -> None:
        self.name = name
        self.kind = kind
        self.help = help_text
        self.labels = labels
        self.samples: list[tuple[Any, ...]] = []

    def add(self, values: tuple[str, ...], *value: Any) -> _Family:
        self.samples.append((values, *value))
        return self


class _Function:
    """The per-function numbers of one (function, namespace) series, summed over every
    decorated function that shares it."""

    __slots__ = ("function", "namespace", "calls", "latency")

    def __init__(self, function: str, namespace: str) -> None:
        self.function = function
        self.namespace = namespace
        self.calls = dict.fromkeys(_CALL_OUTCOMES, 0)
        self.latency: dict[str, Histogram] = {}

    def add(self, calls: dict[str, int], latency: dict[str, Histogram]) -> None:
        for outcome, n in calls.items():
            self.calls[outcome] += n
        for outcome, h in latency.items():
            mine = self.latency.get(outcome)
            self.latency[outcome] = h if mine is None else mine.merge(h)

    @property
    def total(self) -> int:
        return sum(self.calls.values())


def _snapshot(h: Histogram) -> Histogram:
    """A copy of ``h`` whose buckets, sum and count agree (taken under its lock)."""
    lock = getattr(h, "_lock", None)
    if lock is None:
        return Histogram.from_counts(list(h.counts), h.total_ns, h.max_ns)
    with lock:
        return Histogram.from_counts(list(h.counts), h.total_ns, h.max_ns)


def _histogram_sample(h: Histogram) -> tuple[list[tuple[float, int]], float]:
    return h.buckets(), h.total_ns / 1e9


def _functions(cache: TieredCache, namespace: str) -> list[_Function]:
    """The ``report()`` rows with their histograms, one per (function, namespace); on a
    namespace view (a tenant's) only those of its namespace and its sub-namespaces."""
    merged: dict[tuple[str, str], _Function] = {}
    scope = None if cache._is_root else cache.name
    for fn in list(cache._core.functions.values()):
        row = fn.stats()
        if scope is not None and not (row["namespace"] == scope or str(row["namespace"]).startswith(scope + "/")):
            continue
        latency = {k: _snapshot(h) for k, h in fn.histograms().items() if k in _LATENCY_OUTCOMES}
        key = (str(row["function"]), str(row["namespace"] or namespace))
        entry = merged.get(key)
        if entry is None:
            entry = merged[key] = _Function(*key)
        entry.add({"l1_hit": row["l1_hits"], "l2_hit": row["l2_hits"], "miss": row["misses"],
                   "error": row["errors"]}, latency)
    return list(merged.values())


def _bounded(rows: list[_Function], max_functions: int, namespace: str) -> list[_Function]:
    """At most ``max_functions`` series: the busiest keep their own, the rest are summed
    into ``function="other"`` under ``namespace``."""
    rows.sort(key=lambda r: (-r.total, r.namespace, r.function))
    if len(rows) <= max_functions:
        return rows
    keep = rows[:max_functions - 1]
    other = next((r for r in keep if (r.function, r.namespace) == (_OTHER, namespace)), None)
    if other is None:
        other = _Function(_OTHER, namespace)
        keep.append(other)
    for row in rows[max_functions - 1:]:
        other.add(row.calls, row.latency)
    return keep


def _families(cache: TieredCache, max_functions: int) -> list[_Family]:
    """Everything one scrape exposes about ``cache``."""
    stats = cache.stats()
    ns = str(stats["namespace"])
    l1, l2 = stats["l1"], stats["l2"]
    l2_on = bool(l2.get("enabled"))
    monitoring = bool(stats.get("monitoring", True))
    tiers = _TIERS if l2_on else ("l1",)
    out: list[_Family] = []

    def family(name: str, kind: str, help_text: str, *labels: str) -> _Family:
        f = _Family(name, kind, help_text, ("namespace", *labels))
        out.append(f)
        return f

    # -- both tiers --
    for what, help_text in (("hits", "Lookups that found the key, per tier."),
                            ("misses", "Lookups that did not find the key, per tier (an L1 miss "
                                       "goes on to L2: do not sum the tiers)."),
                            ("sets", "Entries written, per tier."),
                            ("deletes", "Entries deleted, per tier.")):
        f = family(f"tieredcache_{what}_total", "counter", help_text, "tier")
        for tier in tiers:
            f.add((ns, tier), (l1 if tier == "l1" else l2)[what])

    # -- L1 --
    by_reason = l1["evictions_by_reason"]
    f = family("tieredcache_l1_evictions_total", "counter",
               "L1 entries removed other than by a delete, by reason: the entry bound (size), the "
               "byte bound (bytes), their TTL (expired), a tag or prefix invalidation (invalidated).",
               "reason")
    for reason in _EVICTION_REASONS:
        f.add((ns, reason), by_reason[reason])
    for name, help_text, key in _L1_GAUGES:
        if l1.get(key) is not None:
            family(name, "gauge", help_text).add((ns,), l1[key])

    # -- L2 --
    family("tieredcache_l2_enabled", "gauge", "1 when a Redis tier is configured.").add((ns,), int(l2_on))
    if l2_on:
        family("tieredcache_l2_up", "gauge",
               "1 while the cache's invalidation subscriber is connected to Redis, else 0.").add(
            (ns,), int(bool(l2.get("connected"))))
        state = str(l2["breaker"])
        states = _BREAKER_STATES if state in _BREAKER_STATES else (*_BREAKER_STATES, state)
        f = family("tieredcache_l2_breaker_state", "gauge",
                   "1 for the current state of the Redis circuit breaker, 0 for the others.", "state")
        for s in states:
            f.add((ns, s), int(s == state))
        for name, help_text, key in _L2_COUNTERS:
            family(name, "counter", help_text).add((ns,), l2[key])
        if monitoring:
            family("tieredcache_l2_latency_seconds", "histogram",
                   "Duration of Redis round trips.").add((ns,), *_histogram_sample(_snapshot(cache._core.l2_latency)))

    # -- the whole cache --
    for name, help_text, key in _CACHE_COUNTERS:
        family(name, "counter", help_text).add((ns,), l1["rejected"] if key is None else stats[key])

    # -- per function --
    if max_functions:
        rows = _bounded(_functions(cache, ns), max_functions, ns)
        calls = _Family("tieredcache_function_calls_total", "counter",
                        "Calls of a cached function by outcome: served from L1 (l1_hit) or Redis (l2_hit), "
                        "ran the function (miss), or raised (error).", ("namespace", "function", "outcome"))
        out.append(calls)
        for row in rows:
            for outcome in _CALL_OUTCOMES:
                calls.add((row.namespace, row.function, outcome), row.calls[outcome])
        if monitoring:
            latency = _Family("tieredcache_function_latency_seconds", "histogram",
                              "Duration of calls of a cached function by outcome: l1_hit (sampled, one C-path "
                              "L1 hit in 16), l2_hit, miss (the whole miss path) and load (the function itself).",
                              ("namespace", "function", "outcome"))
            out.append(latency)
            for row in rows:
                for outcome in _LATENCY_OUTCOMES:
                    h = row.latency.get(outcome) or Histogram()
                    latency.add((row.namespace, row.function, outcome), *_histogram_sample(h))

    # -- alerts --
    if "alerts" in stats:
        f = family("tieredcache_alert_active", "gauge", "1 for each alert rule firing now.", "name", "severity")
        seen: set[tuple[str, str]] = set()
        for alert in stats["alerts"] or ():
            key = (str(alert.get("name")), str(alert.get("severity")))
            if key not in seen:
                seen.add(key)
                f.add((ns, *key), 1)
    return out


def _check_max_functions(max_functions: Any) -> int:
    if isinstance(max_functions, bool) or not isinstance(max_functions, int):
        raise TypeError(f"max_functions must be an int, got {type(max_functions).__name__}")
    if max_functions < 0:
        raise ValueError(f"max_functions must be >= 0, got {max_functions}")
    return max_functions


def _check_cache(cache: Any) -> TieredCache:
    if not isinstance(cache, TieredCache):
        raise TypeError(f"cache must be a TieredCache, not {type(cache).__name__}")
    return cache


# ---- the text format ---------------------------------------------------------------------


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _value(v: Any) -> str:
    """A sample value as the text format writes it (ints exactly)."""
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int):
        return str(v)
    return _float(float(v))


def _float(d: float) -> str:
    """A float as Go (and prometheus_client) writes it: ``+Inf``, ``1e-07``, ``0.5``."""
    if math.isnan(d):
        return "NaN"
    if math.isinf(d):
        return "+Inf" if d > 0 else "-Inf"
    s = repr(d)
    dot = s.find(".")
    if d > 0 and dot > 6:  # Go switches to an exponent sooner than Python
        mantissa = f"{s[0]}.{s[1:dot]}{s[dot + 1:]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}"
    return s


# the ``le`` label of each bucket bound, as prometheus_client writes it
_LE = {b: _float(b) for b in (*BOUNDS_SECONDS, math.inf)}


def _le(bound: float) -> str:
    return _LE.get(bound) or _float(bound)


def _pairs(names: tuple[str, ...], values: tuple[str, ...]) -> str:
    """``a="x",b="y"`` (escaped), without the braces."""
    return ",".join(f'{n}="{_escape_label(v)}"' for n, v in zip(names, values))


def render_metrics(cache: TieredCache, *, max_functions: int = 100) -> str:
    """``cache``'s statistics in the Prometheus text exposition format 0.0.4.

    Serve it with ``CONTENT_TYPE``. Every family has its HELP and TYPE lines; histograms
    have cumulative ``_bucket{le=...}`` series ending in ``le="+Inf"`` (equal to
    ``_count``) and ``_sum`` in seconds. At most ``max_functions`` values of the
    ``function`` label, ``"other"`` included (0 leaves the per-function families out).
    """
    _check_cache(cache)
    max_functions = _check_max_functions(max_functions)
    lines: list[str] = []
    for f in _families(cache, max_functions):
        lines.append(f"# HELP {f.name} {_escape_help(f.help)}")
        lines.append(f"# TYPE {f.name} {f.kind}")
        if f.kind != "histogram":
            for values, v in f.samples:
                pairs = _pairs(f.labels, values)
                lines.append(f"{f.name}{{{pairs}}} {_value(v)}" if pairs else f"{f.name} {_value(v)}")
            continue
        for values, buckets, total in f.samples:
            pairs = _pairs(f.labels, values)
            braces = f"{{{pairs}}}" if pairs else ""
            prefix = f"{f.name}_bucket{{{pairs}," if pairs else f"{f.name}_bucket{{"
            lines.extend(f'{prefix}le="{_le(le)}"}} {count}' for le, count in buckets)
            lines.append(f"{f.name}_count{braces} {buckets[-1][1]}")
            lines.append(f"{f.name}_sum{braces} {_float(total)}")
    return "\n".join(lines) + "\n"


# ---- prometheus_client -------------------------------------------------------------------


def _client() -> Any:
    try:
        from prometheus_client import metrics_core
    except ImportError as exc:
        raise ImportError(_NO_CLIENT) from exc
    return metrics_core


class TieredCacheCollector:
    """A ``prometheus_client`` collector for one or more caches: each scrape yields the
    families ``render_metrics`` writes (one family per name, the caches' series side by
    side, told apart by ``namespace``).

    Give each root cache once: views of one cache share its counters, and two caches
    with the same namespace would expose the same series (both refused).
    """

    def __init__(self, cache: TieredCache, *more: TieredCache, max_functions: int = 100) -> None:
        self._mc = _client()
        caches = [_check_cache(c) for c in (cache, *more)]
        seen_cores: set[int] = set()
        seen_names: set[str] = set()
        for c in caches:
            if id(c._core) in seen_cores:
                raise ValueError(f"{c!r} shares its counters with a cache given before (a view of it)")
            if c.name in seen_names:
                raise ValueError(f"two caches with namespace {c.name!r}: their series would collide")
            seen_cores.add(id(c._core))
            seen_names.add(c.name)
        self.caches = tuple(caches)
        self.max_functions = _check_max_functions(max_functions)

    def __repr__(self) -> str:
        return f"<TieredCacheCollector {', '.join(repr(c.name) for c in self.caches)}>"

    def collect(self) -> Iterator[Any]:
        mc = self._mc
        merged: dict[str, Any] = {}
        for cache in self.caches:
            for f in _families(cache, self.max_functions):
                metric = merged.get(f.name)
                if metric is None:
                    if f.kind == "counter":
                        metric = mc.CounterMetricFamily(f.name, f.help, labels=f.labels)
                    elif f.kind == "gauge":
                        metric = mc.GaugeMetricFamily(f.name, f.help, labels=f.labels)
                    else:
                        metric = mc.HistogramMetricFamily(f.name, f.help, labels=f.labels)
                    merged[f.name] = metric
                for sample in f.samples:
                    if f.kind == "histogram":
                        values, buckets, total = sample
                        metric.add_metric(list(values), [(_le(le), count) for le, count in buckets], total)
                    else:
                        metric.add_metric(list(sample[0]), sample[1])
        yield from merged.values()

    def describe(self) -> list[Any]:
        """The families (a scrape): lets any registry refuse series registered twice."""
        return list(self.collect())


def register(cache: TieredCache, *more: TieredCache, registry: Any = None,
             max_functions: int = 100) -> TieredCacheCollector:
    """Register a ``TieredCacheCollector`` for the caches in ``registry`` (default:
    ``prometheus_client.REGISTRY``) and return it (``registry.unregister(it)`` undoes it).

    Raises ``ImportError`` without ``prometheus_client``, and ``ValueError`` (from the
    registry) when its series are registered already.
    """
    collector = TieredCacheCollector(cache, *more, max_functions=max_functions)
    if registry is None:
        from prometheus_client import REGISTRY as registry
    registry.register(collector)
    return collector

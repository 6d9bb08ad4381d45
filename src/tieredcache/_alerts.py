"""Alerts: rules evaluated on a sliding window of counter snapshots, never per call.

HOW IT WORKS
------------

::

    evaluate(now)
      snapshot the core's counters (L1 hits and misses, L2 hits, evictions, the L2
      latency histogram's buckets, whether L2 is reachable) and append it to the ring
      for each rule:
        window  = the newest snapshot at or before now - rule.window (else the oldest)
                  .. the snapshot just taken
        value   = the rule's metric over the window (deltas of the counters), with the
                  traffic it saw; too little traffic (< min_count): the rule is skipped
                  and its state kept
        firing  = value below / above the threshold, for at least for_seconds
        state changed?  log once (WARNING firing, INFO resolved) and call the callbacks

The ring keeps snapshots at least the longest window / 256 apart (a newer one replaces
the newest when closer), and none older than needed by the longest window: it holds at
most 258 snapshots however often ``evaluate()`` runs (31 at the defaults: 300 s windows,
10 s interval). An evaluation costs one ``LocalCache.stats()`` call and O(rules + ring).

Evaluations come from a daemon thread every ``interval`` seconds (started lazily by the
cache's first operation, restarted lazily in a forked child, stopped by ``close()``) and
from ``TieredCache.stats()`` / ``health()`` at most once per ``interval``. Tests call
``evaluate(now=...)`` with a synthetic clock.

LIMITATIONS
-----------

Times are wall-clock (``time.time()``): an alert's ``since`` is a unix time. A clock
stepped backwards empties the ring (the windows start over).
"""

from __future__ import annotations

import inspect
import logging
import math
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ._breaker import describe_traceback
from ._errors import ConfigurationError
from ._metrics import Histogram

__all__ = ["AlertEngine", "Rule", "Snapshot", "Window"]

log = logging.getLogger("tieredcache")

WARNING, CRITICAL = "warning", "critical"
_SEVERITIES = (WARNING, CRITICAL)
# Snapshots a ring may hold whatever the windows and the interval (a backstop: the
# spacing rule keeps it far smaller).
_RING_MAX = 1024


# ---- snapshots and windows ----------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """The counters at one instant (cumulative since the cache started)."""

    t: float
    lookups: int  # L1 hits + L1 misses: every lookup
    l1_hits: int
    l2_hits: int
    evictions: int  # L1 evictions for size and for bytes (not expirations, not invalidations)
    l2_counts: tuple[int, ...]  # the L2 latency histogram's buckets
    l2_total_ns: int
    l2_max_ns: int
    l2_down: str | None  # why L2 is unreachable now; None when reachable or not configured


@dataclass(frozen=True)
class Window:
    """What a rule looks at: the snapshot opening its window and the latest one."""

    first: Snapshot
    last: Snapshot

    @property
    def seconds(self) -> float:
        return self.last.t - self.first.t

    def delta(self, name: str) -> int:
        return max(0, getattr(self.last, name) - getattr(self.first, name))

    def l2_latency(self) -> Histogram:
        """The L2 round trips made inside the window."""
        counts = [max(0, b - a) for a, b in zip(self.first.l2_counts, self.last.l2_counts)]
        return Histogram.from_counts(counts, max(0, self.last.l2_total_ns - self.first.l2_total_ns),
                                     self.last.l2_max_ns)


# ---- the built-in metrics: window -> (value or None, traffic seen) -------------------------


def _hit_rate(w: Window) -> tuple[float | None, int]:
    lookups = w.delta("lookups")
    if not lookups:
        return None, 0
    return min(1.0, (w.delta("l1_hits") + w.delta("l2_hits")) / lookups), lookups


def _l2_unreachable(w: Window) -> tuple[float | None, int]:
    return (1.0 if w.last.l2_down else 0.0), 1


def _l2_p99_ms(w: Window) -> tuple[float | None, int]:
    h = w.l2_latency()
    n = h.count
    if not n:
        return None, 0
    q = h.quantile(0.99)
    return (None if q is None else q / 1e6), n


def _evictions_per_second(w: Window) -> tuple[float | None, int]:
    if w.seconds <= 0:
        return None, 0
    n = w.delta("evictions")
    return n / w.seconds, n


METRICS: dict[str, Callable[[Window], tuple[float | None, int]]] = {
    "hit_rate": _hit_rate,
    "l2_unreachable": _l2_unreachable,
    "l2_p99_ms": _l2_p99_ms,
    "evictions_per_second": _evictions_per_second,
}


def _describe(rule: Rule, value: float, window: Window, count: int, firing: bool) -> str:
    """The alert's message: counters only, never a key or a value of the cache."""
    metric, threshold = rule.metric, rule.threshold
    span = f"over the last {window.seconds:.0f} s"
    if metric == "hit_rate":
        if firing:
            return f"hit rate {value:.1%} {span} ({count} lookups) is below {threshold:.0%}"
        return f"hit rate {value:.1%} {span} ({count} lookups) is back above {threshold:.0%}"
    if metric == "l2_unreachable":
        if firing:
            return f"Redis unreachable: {window.last.l2_down}"
        return "Redis reachable again"
    if metric == "l2_p99_ms":
        if firing:
            return f"L2 p99 latency {value:.1f} ms {span} ({count} calls) is above {threshold:g} ms"
        return f"L2 p99 latency {value:.1f} ms {span} is back under {threshold:g} ms"
    if metric == "evictions_per_second":
        if firing:
            return (f"L1 evicts {value:.1f} entries/s {span}, above {threshold:g}/s: "
                    f"max_entries or max_bytes may be too small")
        return f"L1 evictions back to {value:.1f}/s {span} (at most {threshold:g}/s)"
    side = "below" if rule.below else "above"
    if firing:
        return f"{rule.name}: {value:g} {span} is {side} {threshold:g}"
    return f"{rule.name}: {value:g} {span} is no longer {side} {threshold:g}"


# ---- rules ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """One alert: fires while ``metric`` over the last ``window`` seconds is above
    ``threshold`` (below it with ``below=True``), once at least ``min_count`` events
    (lookups, L2 calls, evictions: what the metric counts) fell in the window, and for at
    least ``for_seconds`` (0: at the first evaluation that sees it).

    ``metric``: one of ``"hit_rate"`` (0..1, L1 and L2 hits over lookups),
    ``"l2_unreachable"`` (1 while the breaker is not closed or the invalidation channel
    is down, else 0), ``"l2_p99_ms"``, ``"evictions_per_second"``; or a callable
    ``f(window) -> (value or None, count)`` over a :class:`Window`.
    """

    name: str
    metric: str | Callable[[Window], tuple[float | None, int]]
    threshold: float
    below: bool = False
    window: float = 300.0
    min_count: int = 0
    severity: str = WARNING
    for_seconds: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigurationError(f"an alert rule needs a non-empty name, got {self.name!r}")
        if not callable(self.metric) and self.metric not in METRICS:
            raise ConfigurationError(f"alert rule {self.name!r}: unknown metric {self.metric!r} "
                                     f"(one of {', '.join(sorted(METRICS))}, or a callable)")
        for field in ("threshold", "window", "for_seconds"):
            v = getattr(self, field)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                    or (field == "window" and not v > 0) or (field == "for_seconds" and v < 0):
                raise ConfigurationError(f"alert rule {self.name!r}: {field} must be a finite number"
                                         f"{' > 0' if field == 'window' else ' >= 0' if field == 'for_seconds' else ''}"
                                         f", got {v!r}")
        if isinstance(self.min_count, bool) or not isinstance(self.min_count, int) or self.min_count < 0:
            raise ConfigurationError(f"alert rule {self.name!r}: min_count must be an int >= 0, "
                                     f"got {self.min_count!r}")
        if self.severity not in _SEVERITIES:
            raise ConfigurationError(f"alert rule {self.name!r}: severity must be 'warning' or 'critical', "
                                     f"got {self.severity!r}")

    def measure(self, window: Window) -> tuple[float | None, int]:
        fn = self.metric if callable(self.metric) else METRICS[self.metric]
        return fn(window)

    def breached(self, value: float) -> bool:
        return value < self.threshold if self.below else value > self.threshold


# ---- the engine ---------------------------------------------------------------------------


class AlertEngine:
    """Evaluates ``rules`` on the counters of a cache (its root and every view share one
    engine) and keeps the state of each: see the module docstring."""

    def __init__(self, cache: Any, rules: Iterable[Rule] | Mapping[str, Any] | None = None,
                 interval: float = 10.0, callback: Callable[[dict], Any] | None = None) -> None:
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not interval > 0 \
                or not math.isfinite(interval):
            raise ConfigurationError(f"alert_interval must be a positive number of seconds, got {interval!r}")
        self._core = getattr(cache, "_core", cache)
        self.namespace: str = getattr(cache, "name", "")
        if rules is None:
            self.rules: list[Rule] = self.default_rules()
        elif isinstance(rules, Mapping):
            known = inspect.signature(self.default_rules).parameters
            unknown = sorted(set(rules) - set(known))
            if unknown:
                raise ConfigurationError(f"alert_rules: unknown setting(s) {', '.join(map(repr, unknown))} "
                                         f"(known: {', '.join(known)})")
            self.rules = self.default_rules(**rules)
        else:
            self.rules = list(rules)
        for r in self.rules:
            if not isinstance(r, Rule):
                raise ConfigurationError(f"alert rules must be Rule objects, got {type(r).__name__}")
        names = [r.name for r in self.rules]
        if len(set(names)) != len(names):
            raise ConfigurationError(f"alert rule names must be unique, got {names}")
        self.interval = float(interval)
        self.callbacks: list[Callable[[dict], Any]] = []
        if callback is not None:
            self.add_callback(callback)
        self.evaluations = 0
        self._ring: deque[Snapshot] = deque()
        self._active: dict[str, dict[str, Any]] = {}  # rule name -> its alert, while firing
        self._pending: dict[str, float] = {}  # rule name -> since when breached (for_seconds)
        self._last: float | None = None  # time of the last evaluation
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._closed = False  # the cache was closed: evaluations do nothing
        self._stopped = False  # stop() was called: no lazy restart
        self._failing = False  # an evaluation by the thread raised; logged once
        self._broken: set[str] = set()  # rules whose metric raised; logged once
        self.idle = True  # the thread should be started on the cache's next operation

    @staticmethod
    def default_rules(hit_rate: float | None = 0.8, window: float = 300.0, min_lookups: int = 100,
                      l2_p99_ms: float | None = 50.0, evictions_per_second: float | None = 100.0,
                      min_l2_calls: int = 100, l2_unreachable: bool = True,
                      l2_unreachable_for: float = 5.0) -> list[Rule]:
        """The default rules with these thresholds (None or False leaves a rule out):
        ``hit_rate_low`` (warning), ``l2_unreachable`` (critical: must hold for
        ``l2_unreachable_for`` seconds, so a blip or the first subscription is no page),
        ``l2_latency_high`` (warning), ``evictions_high`` (warning)."""
        rules = []
        if hit_rate is not None:
            rules.append(Rule("hit_rate_low", "hit_rate", hit_rate, below=True, window=window,
                              min_count=min_lookups))
        if l2_unreachable:
            rules.append(Rule("l2_unreachable", "l2_unreachable", 0.0, window=window, severity=CRITICAL,
                              for_seconds=l2_unreachable_for))
        if l2_p99_ms is not None:
            rules.append(Rule("l2_latency_high", "l2_p99_ms", l2_p99_ms, window=window, min_count=min_l2_calls))
        if evictions_per_second is not None:
            rules.append(Rule("evictions_high", "evictions_per_second", evictions_per_second, window=window))
        return rules

    # ---- callbacks ---------------------------------------------------------------------

    def add_callback(self, fn: Callable[[dict], Any]) -> None:
        """Call ``fn(alert)`` on every state change (``alert["state"]``: "firing" or
        "resolved"), from the evaluating thread; exceptions are logged."""
        if not callable(fn):
            raise TypeError(f"an alert callback must be callable, not {type(fn).__name__}")
        self.callbacks.append(fn)

    def remove_callback(self, fn: Callable[[dict], Any]) -> None:
        try:
            self.callbacks.remove(fn)
        except ValueError:
            raise ValueError("fn is not an alert callback of this cache") from None

    # ---- evaluation --------------------------------------------------------------------

    def active(self) -> list[dict[str, Any]]:
        """The alerts firing now (copies), critical first, then oldest first."""
        alerts = [dict(a) for a in list(self._active.values())]
        alerts.sort(key=lambda a: (a["severity"] != CRITICAL, a["since"], a["name"]))
        return alerts

    def snapshot(self, now: float) -> Snapshot:
        core = self._core
        s = core.l1.stats()
        h = core.l2_latency
        with h._lock:
            counts, total, top = tuple(h.counts), h.total_ns, h.max_ns
        down = None
        if core.redis is not None:
            state = core.breaker.state
            if state != "closed":
                down = f"circuit breaker {state}"
            elif not core.listener_connected:
                down = "invalidation channel disconnected"
        return Snapshot(now, s["hits"] + s["misses"], s["hits"], core.stats["l2_hits"],
                        s["evictions"] + s["evictions_bytes"], counts, total, top, down)

    def evaluate(self, now: float | None = None) -> list[dict[str, Any]]:
        """Snapshot the counters, update every rule's state; returns the changes (the
        dicts given to the callbacks). A no-op once the cache is closed."""
        if self._closed:
            return []
        with self._lock:
            now = time.time() if now is None else float(now)
            changes = self._evaluate(now)
            callbacks = list(self.callbacks)
        for alert in changes:
            for fn in callbacks:
                try:
                    fn(dict(alert))
                except Exception as exc:
                    self._log_error("tieredcache: alert callback %r failed on %s %s", exc, fn, alert["name"],
                                    alert["state"])
        return changes

    def _log_error(self, message: str, exc: BaseException, *args: Any) -> None:
        """ERROR with the exception (log_keys=True), else its frames and types only: the
        message of an exception raised by user code may quote anything."""
        if getattr(self._core, "log_keys", False) is True:
            log.error(message, *args, exc_info=exc)
        else:
            log.error(message + "\n%s", *args, describe_traceback(exc))

    def maybe_evaluate(self, now: float | None = None) -> None:
        """Evaluate unless the last evaluation is less than ``interval`` seconds old."""
        now = time.time() if now is None else now
        last = self._last
        if last is None or now - last >= self.interval or now < last - self.interval:
            self.evaluate(now)

    def _evaluate(self, now: float) -> list[dict[str, Any]]:
        snap = self.snapshot(now)
        ring = self._ring
        if ring and now < ring[-1].t:
            ring.clear()  # the clock went back: start the windows over
        longest = max((r.window for r in self.rules), default=0.0)
        spacing = longest / 256
        if len(ring) >= 2 and ring[-1].t - ring[-2].t < spacing:
            ring[-1] = snap  # the newest was not kept yet: keep this one in its place
        else:
            ring.append(snap)
        horizon = now - longest
        while len(ring) > 2 and ring[1].t <= horizon or len(ring) > _RING_MAX:
            ring.popleft()
        self._last = now
        self.evaluations += 1

        changes: list[dict[str, Any]] = []
        names = set()
        for rule in self.rules:
            names.add(rule.name)
            window = Window(self._opening(now - rule.window), snap)
            try:
                value, count = rule.measure(window)
            except Exception as exc:  # a custom metric's bug: the cache goes on
                if rule.name not in self._broken:
                    self._broken.add(rule.name)
                    self._log_error("tieredcache: alert rule %s failed to measure", exc, rule.name)
                continue
            self._broken.discard(rule.name)
            if value is None or count < rule.min_count:
                continue  # not enough traffic to say: keep the state
            current = self._active.get(rule.name)
            if rule.breached(value):
                since = self._pending.setdefault(rule.name, now)
                message = _describe(rule, value, window, count, True)
                if current is not None:
                    current["value"] = round(value, 6)
                    current["message"] = message
                    continue
                if now - since < rule.for_seconds:
                    continue
                alert = {"name": rule.name, "severity": rule.severity, "message": message, "since": now,
                         "value": round(value, 6), "threshold": rule.threshold, "state": "firing",
                         "namespace": self.namespace}
                self._active[rule.name] = alert
                changes.append(dict(alert))
                log.warning("tieredcache: alert %s (%s) firing: %s", rule.name, rule.severity, message)
            else:
                self._pending.pop(rule.name, None)
                if current is None:
                    continue
                del self._active[rule.name]
                message = _describe(rule, value, window, count, False)
                resolved = dict(current, state="resolved", message=message, value=round(value, 6),
                                resolved_at=now)
                changes.append(resolved)
                log.info("tieredcache: alert %s resolved: %s", rule.name, message)
        for gone in [n for n in self._active if n not in names]:  # a rule removed from .rules
            del self._active[gone]
        return changes

    def _opening(self, start: float) -> Snapshot:
        """The newest snapshot taken at or before ``start``, else the oldest."""
        ring = self._ring
        first = ring[0]
        for snap in ring:
            if snap.t > start:
                break
            first = snap
        return first

    # ---- the thread --------------------------------------------------------------------

    def ensure_started(self) -> None:
        """Start the evaluating thread unless it runs, or was stopped, or the cache closed."""
        if self._stopped or self._closed or not self.idle:
            return
        self.start()

    def start(self) -> None:
        """Evaluate every ``interval`` seconds in a daemon thread (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._stopped = False
            self.idle = False
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop = threading.Event()
            t = threading.Thread(target=_run, args=(weakref.ref(self), self._stop, self.interval),
                                 name="tieredcache-alerts", daemon=True)
            self._thread = t
            t.start()

    def stop(self) -> None:
        """Stop the thread; it is not restarted lazily (``start()`` restarts it).
        ``evaluate()`` still works."""
        self._stopped = True
        self.idle = False
        self._stop.set()
        t, self._thread = self._thread, None
        if t is not None and t is not threading.current_thread():
            t.join(timeout=2.0)

    def close(self) -> None:
        """The cache closes: stop the thread; later evaluations do nothing."""
        self._closed = True
        self.stop()

    @property
    def running(self) -> bool:
        t = self._thread
        return t is not None and t.is_alive()

    def _forked(self) -> None:
        """In a forked child: the thread is gone; the next operation starts a new one."""
        self._lock = threading.Lock()
        self._thread = None
        self._stop = threading.Event()
        self.idle = not (self._stopped or self._closed)


def _run(ref: weakref.ref[AlertEngine], stop: threading.Event, interval: float) -> None:
    """The thread's loop; holds the engine weakly, so a cache never closed can still be
    collected (the thread then ends)."""
    while not stop.wait(interval):
        engine = ref()
        if engine is None:
            return
        try:
            engine.evaluate()
            engine._failing = False
        except Exception as exc:
            if not engine._failing:
                engine._failing = True
                engine._log_error("tieredcache: alert evaluation failed", exc)
        del engine

"""A circuit breaker for the L2 tier.

States::

    closed --(threshold consecutive failures)--> open --(cool-down over)--> half-open
      ^                                           ^                          |
      |                                           +------(probe fails)-------+
      +----------------------(probe succeeds)----------------------------------+

While open, calls are refused at once (no connect attempt, no timeout to wait for). After
the cool-down one probe call is let through (half-open); its success closes the breaker,
its failure reopens it with the cool-down doubled, up to ``max_cooldown``. Each state
change is logged once on the ``tieredcache`` logger, never per request: closed -> open
(the backend became unreachable) at WARNING, back to closed at INFO; the probes of an
outage that goes on (half-open, reopened) only at DEBUG.

The hot path (``allow()`` while closed, ``success()`` with no failures recorded) reads
attributes without taking the lock.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import traceback

__all__ = ["CircuitBreaker", "describe_error", "describe_traceback"]

log = logging.getLogger("tieredcache")

# "scheme://user:password@" in any text (the password part, even empty, is masked)
_URL_AUTH = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://)([^:@/\s]*):[^\s/]*@")
# Redis quotes a refused command's arguments (keys, values): "ERR unknown command 'X',
# with args beginning with: 'k' 'v'"
_REDIS_ARGS = re.compile(r",? with args beginning with:.*", re.DOTALL)


def describe_error(exc: BaseException) -> str:
    """``Type: message`` of an exception for a log line: a password in a URL masked, the
    command arguments Redis quotes in some error replies cut off, at most 300 characters."""
    text = _REDIS_ARGS.sub("", _URL_AUTH.sub(r"\1\2:***@", str(exc)))
    if len(text) > 300:
        text = text[:300] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def describe_traceback(exc: BaseException) -> str:
    """The traceback of an unexpected exception for a log line: the frames (source lines,
    never local values) and the type of each exception in its chain, without their
    messages, which may quote a key or a value."""
    chain: list[BaseException] = []
    e: BaseException | None = exc
    while e is not None and all(e is not c for c in chain):
        chain.append(e)
        e = e.__cause__ if e.__cause__ is not None else (None if e.__suppress_context__ else e.__context__)
    parts = []
    for i, e in enumerate(reversed(chain)):
        if i:
            parts.append("\nwhich led to:\n")
        parts.append("Traceback (most recent call last):\n")
        parts.extend(traceback.format_tb(e.__traceback__))
        t = type(e)
        name = t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"
        parts.append(f"{name} (message not logged)\n")
    return "".join(parts).rstrip("\n")


CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"


class CircuitBreaker:
    def __init__(self, threshold: int = 5, cooldown: float = 2.0, max_cooldown: float = 60.0,
                 name: str = "redis", clock=time.monotonic) -> None:
        if threshold < 1:
            raise ValueError(f"breaker_threshold must be at least 1, got {threshold!r}")
        if not cooldown > 0:
            raise ValueError(f"breaker_cooldown must be positive, got {cooldown!r}")
        self.threshold = threshold
        self.base_cooldown = cooldown
        self.max_cooldown = max(max_cooldown, cooldown)
        self.name = name
        self._clock = clock
        self._lock = threading.Lock()
        self.state = CLOSED
        self.failures = 0
        self.cooldown = cooldown
        self.open_until = 0.0
        self.transitions = 0
        self._probing = False

    def allow(self) -> bool:
        """May a call go to the backend now?"""
        if self.state == CLOSED:
            return True
        with self._lock:
            if self.state == OPEN:
                if self._clock() < self.open_until:
                    return False
                self._set(HALF_OPEN, "cool-down over, probing")
            if self.state == HALF_OPEN:
                if self._probing:
                    return False
                self._probing = True
                return True
            return True

    def success(self) -> None:
        if self.state == CLOSED and self.failures == 0:
            return
        with self._lock:
            self.failures = 0
            self._probing = False
            if self.state != CLOSED:
                self.cooldown = self.base_cooldown
                self._set(CLOSED, "backend answered again")

    def failure(self, exc: BaseException | None = None) -> None:
        with self._lock:
            self.failures += 1
            if self.state == HALF_OPEN:
                self._probing = False
                self.cooldown = min(self.cooldown * 2, self.max_cooldown)
                self._open(exc)
            elif self.state == CLOSED and self.failures >= self.threshold:
                self._open(exc)

    def _open(self, exc: BaseException | None) -> None:
        self.open_until = self._clock() + self.cooldown
        reason = f"{self.failures} consecutive failures"
        if exc is not None:
            reason += f", last: {describe_error(exc)}"
        self._set(OPEN, f"{reason}; not trying for {self.cooldown:g} s")

    def _set(self, state: str, why: str) -> None:
        if state == self.state:
            return
        previous, self.state = self.state, state
        self.transitions += 1
        if previous == CLOSED:
            level = logging.WARNING  # unreachable
        elif state == CLOSED:
            level = logging.INFO  # back
        else:
            level = logging.DEBUG  # probing during the same outage
        log.log(level, "tieredcache: %s circuit breaker %s: %s", self.name, state, why)

    def reset(self) -> None:
        """Forget every failure (after a fork: the child starts afresh)."""
        self._lock = threading.Lock()
        self.state = CLOSED
        self.failures = 0
        self.cooldown = self.base_cooldown
        self._probing = False

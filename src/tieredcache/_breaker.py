"""A circuit breaker for the L2 tier.

States::

    closed --(threshold consecutive failures)--> open --(cool-down over)--> half-open
      ^                                           ^                          |
      |                                           +------(probe fails)-------+
      +----------------------(probe succeeds)----------------------------------+

While open, calls are refused at once (no connect attempt, no timeout to wait for). After
the cool-down one probe call is let through (half-open); its success closes the breaker,
its failure reopens it with the cool-down doubled, up to ``max_cooldown``. Each state
change is logged once on the ``tieredcache`` logger, never per request.

The hot path (``allow()`` while closed, ``success()`` with no failures recorded) reads
attributes without taking the lock.
"""

from __future__ import annotations

import logging
import threading
import time

__all__ = ["CircuitBreaker"]

log = logging.getLogger("tieredcache")

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
            reason += f", last: {type(exc).__name__}: {exc}"
        self._set(OPEN, f"{reason}; not trying for {self.cooldown:g} s")

    def _set(self, state: str, why: str) -> None:
        if state == self.state:
            return
        self.state = state
        self.transitions += 1
        level = logging.WARNING if state == OPEN else logging.INFO
        log.log(level, "%s circuit breaker %s: %s", self.name, state, why)

    def reset(self) -> None:
        """Forget every failure (after a fork: the child starts afresh)."""
        self._lock = threading.Lock()
        self.state = CLOSED
        self.failures = 0
        self.cooldown = self.base_cooldown
        self._probing = False

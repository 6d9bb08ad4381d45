"""Shared fixtures.

``impl`` runs a test once against the C core (``LocalCache``) and once against the
pure-Python reference model (``refmodel.ModelCache``): both must behave as
``docs/local-cache.md`` says.
"""

from __future__ import annotations

import faulthandler
import os

import pytest

from refmodel import ModelCache
from tieredcache import LocalCache
from tieredcache.testing import reset_clock

# A hang (a deadlock in the C core, say) must fail the run rather than block it forever:
# a watchdog dumps every thread's stack to the real stderr and exits.
WATCHDOG_SECONDS = 120
_watchdog_fd: int | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _watchdog_fd
    # Output capturing is suspended while plugins configure, so fd 2 is the terminal here.
    _watchdog_fd = os.dup(2)


@pytest.fixture(autouse=True)
def _watchdog():
    faulthandler.dump_traceback_later(WATCHDOG_SECONDS, exit=True, file=_watchdog_fd)
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture(autouse=True)
def _fresh_clock():
    """Every test starts from the real clock, whatever the previous test advanced."""
    reset_clock()
    yield
    reset_clock()


@pytest.fixture(params=[LocalCache, ModelCache], ids=["c", "model"])
def impl(request: pytest.FixtureRequest) -> type:
    """The cache class under test: the C core, then the reference model."""
    return request.param

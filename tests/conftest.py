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


# --------------------------------------------------------------------------------------
# Redis: a private redis-server per session (never the system one on 6379)
# --------------------------------------------------------------------------------------

import shutil as _shutil  # noqa: E402

from tieredcache._redis_server import RedisServer  # noqa: E402

_NO_REDIS = "redis-server is not on PATH (install Redis, e.g. 'apt install redis-server', to run the Redis tests)"


def _require_redis_server() -> None:
    if _shutil.which("redis-server") is None:
        pytest.skip(_NO_REDIS)


@pytest.fixture(scope="session")
def redis_server():
    """A private redis-server for the whole session (127.0.0.1, a free port, no
    persistence). Tests that stop, pause or restart a server use ``fresh_redis_server``."""
    _require_redis_server()
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session server's URL, every database and the script cache emptied first."""
    if not redis_server.running:  # a test broke it: bring it back rather than fail the rest
        redis_server.restart()
    redis_server.flushall()
    return redis_server.url


@pytest.fixture
def fresh_redis_server():
    """A redis-server of this test's own, stopped afterwards: free to kill, pause and
    restart."""
    _require_redis_server()
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.stop()

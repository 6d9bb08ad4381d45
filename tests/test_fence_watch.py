"""The invalidation fence's socket watcher (csrc/fence.c), driven directly through a
socketpair, without Redis: data arriving raises the fence, taking it lowers it, and
watching, re-watching, unwatching and deallocating a watching cache leave no descriptor,
thread or reference behind.

These are the fence paths hardening/refleak.sh repeats under a debug CPython (references,
blocks and descriptors back to baseline); here each path also checks its own descriptors.
"""

from __future__ import annotations

import gc
import os
import socket
import sys
import threading
import time

import pytest

from tieredcache import LocalCache


def _fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def _settle(pred, seconds: float = 10.0) -> bool:
    """Liveness wait (the watcher is a thread): True as soon as pred() holds."""
    deadline = time.monotonic() + seconds
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


def test_data_on_the_watched_socket_raises_the_fence_and_taking_it_lowers_it(pair) -> None:
    a, b = pair
    cache = LocalCache()
    cache._watch(a.fileno())
    try:
        assert cache._take_pending() is False
        for message in (b"x", b"y"):  # every arrival raises it again
            b.send(message)
            assert _settle(lambda: cache._pending), "the fence never rose"
            assert cache._take_pending() is True
            assert a.recv(16) == message
            # The watcher may still raise it once more for data already read (a late
            # wake-up is allowed: readers then find nothing to apply); then it stays down.
            assert _settle(lambda: not cache._take_pending() and not cache._pending)
    finally:
        cache._watch(None)


def test_unwatching_releases_the_watchers_descriptors_and_thread(pair) -> None:
    a, _ = pair
    cache = LocalCache()
    before, threads = _fds(), threading.active_count()
    cache._watch(a)  # anything with fileno()
    cache._watch(a.fileno())  # watching again replaces the watcher
    cache._watch(a.fileno())
    cache._watch(None)
    cache._watch(None)  # unwatching twice is harmless
    assert _fds() == before
    assert threading.active_count() == threads


def test_a_cache_freed_while_watching_releases_its_descriptors(pair) -> None:
    a, b = pair
    before = _fds()
    cache = LocalCache()
    cache._watch(a.fileno())
    b.send(b"x")
    assert _settle(lambda: cache._pending)
    del cache
    gc.collect()
    assert _fds() == before
    assert a.recv(16) == b"x"  # the watched socket itself is the caller's, still open


def test_watching_does_not_keep_a_reference_to_the_socket_object(pair) -> None:
    a, _ = pair
    cache = LocalCache()
    refs = sys.getrefcount(a)
    cache._watch(a)
    assert sys.getrefcount(a) == refs
    cache._watch(None)


def test_wait_readable_raises_the_fence_when_the_socket_is_readable(pair) -> None:
    a, b = pair
    cache = LocalCache()
    assert cache._wait_readable(a.fileno(), 0) is False
    assert cache._take_pending() is False
    b.send(b"y")
    assert cache._wait_readable(a.fileno(), 5) is True
    assert cache._take_pending() is True


@pytest.mark.parametrize("bad, exc", [("3", TypeError), (-1, ValueError), (1.5, TypeError)])
def test_watch_rejects_what_is_not_a_descriptor(bad, exc) -> None:
    cache = LocalCache()
    before = _fds()
    with pytest.raises(exc):
        cache._watch(bad)
    assert _fds() == before
    assert cache._pending is False

"""A cache used before ``os.fork()`` works in the child and in the parent.

The child's store lock is reset at fork, and a bulk operation running in another thread
of the parent at the moment of the fork finishes in the parent before the fork proceeds,
so the child never inherits a half-done operation or a held lock. A child that hangs
fails the test (it is killed after a deadline) rather than hanging the suite.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import threading
import time
import traceback
import warnings

import pytest

from tieredcache import LocalCache

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

CHILD_DEADLINE = 30.0  # seconds; generous, a healthy child needs milliseconds
BULK = 200_000


def run_in_child(body, *args):
    """Fork; run body(*args) in the child; return the child's report (repr of the result).

    The child exits with 0 if body returned, 1 with a traceback if it raised. A child
    still running after CHILD_DEADLINE seconds gets SIGABRT, so faulthandler writes the
    Python stack of where it hangs into the report, then it is killed and the test fails.
    """
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():  # Python 3.12+ warns about forking with threads
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # child
        status = 1
        try:
            os.close(read_end)
            faulthandler.enable(file=write_end, all_threads=True)
            report = body(*args)
            os.write(write_end, repr(report).encode())
            status = 0
        except BaseException:
            os.write(write_end, traceback.format_exc().encode()[-4000:])
        finally:
            os._exit(status)
    os.close(write_end)
    status = wait_for(pid, CHILD_DEADLINE)
    if status is None:
        os.kill(pid, signal.SIGABRT)
        if wait_for(pid, 5.0) is None:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    with os.fdopen(read_end, "rb") as pipe:
        report = pipe.read().decode(errors="replace")
    if status is None:
        pytest.fail(f"the child did not finish within {CHILD_DEADLINE} s (deadlock?); it was in:\n{report}")
    assert os.WIFEXITED(status), f"the child died: status {status}\n{report}"
    assert os.WEXITSTATUS(status) == 0, report
    return report


def wait_for(pid, seconds):
    """The exit status of child pid, or None if it is still running after seconds."""
    deadline = time.monotonic() + seconds
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        if time.monotonic() > deadline:
            return None
        time.sleep(0.005)


def use_cache(cache):
    """What the child does: read, write, invalidate, check the structure."""
    assert cache.get("before-fork") == "parent value"
    assert cache.set("in-child", "child value", tags=["child"]) is True
    assert cache.get("in-child") == "child value"
    cache.set_many({f"child:{i}": i for i in range(1000)}, tags=["child"])
    assert cache.invalidate_tags("child") == 1001
    assert cache.invalidate_prefix("tagged:") == 10
    cache._selfcheck()
    return len(cache)


def test_a_cache_used_before_fork_works_in_the_child_and_the_parent():
    cache = LocalCache(max_entries=10_000)
    cache.set("before-fork", "parent value")
    cache.set_many({f"tagged:{i}": i for i in range(10)}, tags=["t"])
    report = run_in_child(use_cache, cache)
    assert report == "1"
    # the child's changes are its own; the parent's cache is untouched and usable
    assert cache.get("in-child") is None
    assert len(cache) == 11
    assert cache.invalidate_tags("t") == 10
    cache.set("after-fork", 1)
    cache._selfcheck()


def test_a_child_can_fork_again_and_the_grandchild_works():
    cache = LocalCache()
    cache.set("before-fork", "parent value")
    cache.set_many({f"tagged:{i}": i for i in range(10)})

    def child():
        return run_in_child(use_cache, cache)

    assert run_in_child(child) == repr("1")


def test_fork_during_a_bulk_invalidation_in_another_thread_gives_a_working_child():
    """The fork waits for the bulk operation; the child sees it all done or not begun."""
    cache = LocalCache(max_entries=BULK + 100)
    for _round in range(3):
        cache.set("before-fork", "parent value")
        cache.set_many({f"tagged:{i}": i for i in range(10)})
        cache.set_many({f"bulk:{i}": i for i in range(BULK)}, tags=["bulk"])
        started = threading.Event()
        results = []

        def invalidate():
            started.set()
            results.append(cache.invalidate_tags("bulk"))

        worker = threading.Thread(target=invalidate)
        worker.start()
        started.wait()

        def child():
            left = len(cache)
            assert left in (11, 11 + BULK), f"the child inherited a half-done invalidation: {left}"
            cache._selfcheck()
            cache.invalidate_tags("bulk")
            return use_cache(cache)

        report = run_in_child(child)
        worker.join()
        assert report == "1"
        assert results == [BULK]
        assert len(cache) == 11
        cache._selfcheck()


def test_fork_while_other_threads_hammer_the_cache_gives_a_working_child():
    cache = LocalCache(max_entries=50_000)
    cache.set("before-fork", "parent value")
    cache.set_many({f"tagged:{i}": i for i in range(10)})
    stop = threading.Event()

    def hammer(index):
        i = 0
        while not stop.is_set():
            cache.set(f"h{index}:{i % 1000}", i, tags=[f"h{index}"])
            if i % 500 == 0:
                cache.set_many({f"hb{index}:{j}": j for j in range(5000)}, tags=[f"hb{index}"])
                cache.invalidate_tags(f"hb{index}")
            i += 1

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(5):
            def child():
                cache._selfcheck()
                for index in range(3):
                    cache.invalidate_tags(f"h{index}", f"hb{index}")
                return use_cache(cache)

            assert run_in_child(child) == "1"
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    cache._selfcheck()

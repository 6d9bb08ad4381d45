"""Many threads, one cache: never corrupted, and bulk work does not stall Python.

The store has its own lock. Bulk operations release the GIL while they unlink entries,
so other Python threads keep running during a large invalidation; threads calling into
the same cache meanwhile wait for it and then see its result.
"""

from __future__ import annotations

import random
import sys
import threading
import time

import pytest

from tieredcache import LocalCache
from tieredcache.testing import advance_clock

BULK = 200_000


@pytest.fixture
def short_switch_interval():
    """Switch threads every 10 µs so the operations of different threads interleave finely."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(old)


def run_threads(target, count):
    """Run target(index) in count threads at once; re-raise the first failure."""
    errors = []
    barrier = threading.Barrier(count)

    def wrapper(index):
        try:
            barrier.wait()
            target(index)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=wrapper, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def test_eight_threads_doing_everything_at_once_leave_a_consistent_cache(short_switch_interval):
    cache = LocalCache(max_entries=500, max_bytes=50_000)
    keys = [f"user:{i}" for i in range(300)] + [f"org:{i}".encode() for i in range(300)]
    tags = [f"tag{i}" for i in range(12)]

    def work(index):
        rng = random.Random(index)
        for step in range(4000):
            op = rng.random()
            key = rng.choice(keys)
            if op < 0.30:
                cache.get(key)
            elif op < 0.55:
                cache.set(key, rng.randbytes(rng.randrange(200)), tags=rng.sample(tags, rng.randrange(3)),
                          ttl=rng.choice([None, 0.5, 5, 60]))
            elif op < 0.62:
                cache.delete(key)
            elif op < 0.67:
                cache.get_many(rng.sample(keys, 5))
            elif op < 0.72:
                cache.set_many({k: step for k in rng.sample(keys, 5)}, tags=[rng.choice(tags)])
            elif op < 0.77:
                cache.touch(key, rng.choice([None, 1, 30]))
            elif op < 0.80:
                try:
                    cache.ttl(key)
                except KeyError:
                    pass
            elif op < 0.86:
                cache.invalidate_tags(rng.choice(tags))
            elif op < 0.90:
                cache.invalidate_prefix(rng.choice(["user:1", b"org:2", "user:", b""]))
            elif op < 0.93:
                cache.expire()
            elif op < 0.95:
                advance_clock(0.25)
            elif op < 0.96:
                cache.clear()
            elif op < 0.98:
                # a bulk insert and a bulk invalidation large enough to release the GIL
                bulk_tag = f"bulk{index}"
                cache.set_many({f"bulk:{index}:{i}": i for i in range(2000)}, tags=[bulk_tag])
                cache.invalidate_tags(bulk_tag)
            else:
                cache.keys()
                len(cache)
                cache.stats()

    run_threads(work, 8)
    cache._selfcheck()
    stats = cache.stats()
    assert len(cache) <= 500
    assert stats["entries"] <= 500
    assert stats["bytes"] <= 50_000
    for key in cache.keys():
        assert isinstance(cache.get(key, b""), (bytes, int))


def test_concurrent_writers_of_disjoint_keys_all_land(short_switch_interval):
    cache = LocalCache(max_entries=100_000)

    def write(index):
        for i in range(5000):
            assert cache.set(f"t{index}:{i}", (index, i), tags=[f"thread{index}"]) is True

    run_threads(write, 8)
    cache._selfcheck()
    assert len(cache) == 40_000
    for index in range(8):
        assert cache.get(f"t{index}:4999") == (index, 4999)
        assert cache.invalidate_tags(f"thread{index}") == 5000
    assert len(cache) == 0


def test_concurrent_bulk_invalidations_of_the_same_tag_remove_each_entry_once(short_switch_interval):
    cache = LocalCache(max_entries=100_000)
    cache.set_many({f"k{i}": i for i in range(50_000)}, tags=["shared"])
    removed = []

    def invalidate(index):
        removed.append(cache.invalidate_tags("shared"))

    run_threads(invalidate, 4)
    assert sorted(removed) == [0, 0, 0, 50_000]
    assert cache.stats()["invalidations"] == 50_000
    cache._selfcheck()


def _fill_bulk(cache):
    cache.set_many({f"bulk:{i}": i for i in range(BULK)}, tags=["bulk"])


def _fill_expiring(cache):
    cache.set_many({f"bulk:{i}": i for i in range(BULK)}, ttl=60)
    advance_clock(61)


# name -> (fill the cache, run the bulk operation): each removes all BULK entries
BULK_OPERATIONS = {
    "tag invalidation": (_fill_bulk, lambda cache: cache.invalidate_tags("bulk")),
    "prefix invalidation": (_fill_bulk, lambda cache: cache.invalidate_prefix("bulk:")),
    "clear": (_fill_bulk, lambda cache: cache.clear()),
    "expiry sweep": (_fill_expiring, lambda cache: cache.expire()),
}


@pytest.mark.parametrize("operation", list(BULK_OPERATIONS))
def test_another_thread_makes_progress_while_a_200000_entry_bulk_operation_runs(operation):
    """Bulk operations release the GIL while they unlink entries.

    A worker thread counts in a pure-Python loop, sleeping 100 µs between increments.
    The switch interval is set far beyond the test's length, so the main thread never
    gives up the GIL on its own: the worker can only run while the main thread is
    blocked in something that released the GIL. The main thread reads the counter,
    removes 200,000 entries and reads it again: if the operation held the GIL
    throughout, the two reads are equal, always; if it released it, the worker counted
    meanwhile. Each attempt refills the cache; one attempt that shows progress suffices.
    """
    fill, run = BULK_OPERATIONS[operation]
    cache = LocalCache(max_entries=BULK + 10)
    counter = [0]
    stop = threading.Event()

    def count():
        while not stop.is_set():
            counter[0] += 1
            time.sleep(1e-4)

    old_interval = sys.getswitchinterval()
    worker = threading.Thread(target=count)
    deltas = []
    try:
        sys.setswitchinterval(1000.0)
        worker.start()
        for _attempt in range(5):
            fill(cache)
            started = counter[0]
            while counter[0] == started:  # the worker is alive and counting
                time.sleep(1e-3)
            before = counter[0]
            removed = run(cache)
            after = counter[0]
            assert removed == BULK
            deltas.append(after - before)
            if after > before:
                break
    finally:
        stop.set()
        sys.setswitchinterval(old_interval)
        worker.join()
    assert any(deltas), f"no progress in the worker during any {operation}: {deltas}"
    cache._selfcheck()


def test_a_thread_waiting_for_a_bulk_operation_does_not_hold_the_gil():
    """A reader that calls into the cache while a bulk invalidation runs waits without the GIL.

    As above, the switch interval is set beyond the test's length, so a thread keeps the
    GIL until it blocks. A reader thread reads the counter, calls ``get``, and reads the
    counter again. Uncontended, ``get`` runs under the GIL and the two reads are equal.
    When ``get`` has to wait for the main thread's bulk invalidation, the counting thread
    can only advance meanwhile if the reader waits without the GIL.
    """
    cache = LocalCache(max_entries=BULK + 10)
    cache.set("keep", "kept")
    counter = [0]
    progressed_during_get = [0]
    stop = threading.Event()
    errors = []

    def count():
        while not stop.is_set():
            counter[0] += 1
            time.sleep(1e-4)

    def read():
        try:
            while not stop.is_set():
                before = counter[0]
                assert cache.get("keep") == "kept"
                if counter[0] > before:
                    progressed_during_get[0] += 1
                time.sleep(1e-4)
        except BaseException as exc:
            errors.append(exc)

    old_interval = sys.getswitchinterval()
    threads = [threading.Thread(target=count), threading.Thread(target=read)]
    try:
        sys.setswitchinterval(1000.0)
        for thread in threads:
            thread.start()
        for _attempt in range(5):
            _fill_bulk(cache)
            started = counter[0]
            while counter[0] < started + 10:
                time.sleep(1e-3)
            assert cache.invalidate_tags("bulk") == BULK
            if progressed_during_get[0]:
                break
    finally:
        stop.set()
        sys.setswitchinterval(old_interval)
        for thread in threads:
            thread.join()
    assert not errors, errors[0]
    assert progressed_during_get[0] > 0, "no thread ran while the reader waited for the bulk operation"
    cache._selfcheck()


def test_threads_reading_during_a_bulk_invalidation_get_correct_results():
    cache = LocalCache(max_entries=BULK + 10)
    _fill_bulk(cache)
    keep = object()
    cache.set("keep", keep, tags=["other"])
    done = threading.Event()
    errors = []
    reads = [0]

    def read(index):
        rng = random.Random(index)
        try:
            while not done.is_set():
                assert cache.get("keep") is keep
                i = rng.randrange(BULK)
                value = cache.get(f"bulk:{i}")
                assert value in (i, None)
                reads[0] += 1
            # the invalidation has returned: every bulk entry is gone for every thread
            for i in rng.sample(range(BULK), 100):
                assert cache.get(f"bulk:{i}") is None
            assert cache.get("keep") is keep
        except BaseException as exc:
            errors.append(exc)

    readers = [threading.Thread(target=read, args=(i,)) for i in range(3)]
    for reader in readers:
        reader.start()
    while reads[0] < 100:
        time.sleep(1e-3)
    assert cache.invalidate_tags("bulk") == BULK
    done.set()
    for reader in readers:
        reader.join()
    assert not errors, errors[0]
    assert len(cache) == 1
    cache._selfcheck()


def test_a_clear_racing_with_writers_leaves_only_whole_entries(short_switch_interval):
    cache = LocalCache(max_entries=100_000, max_bytes=10_000_000)
    stop = threading.Event()

    def write(index):
        i = 0
        while not stop.is_set():
            cache.set(f"w{index}:{i % 5000}", b"x" * (i % 50), tags=[f"w{index}"])
            i += 1

    writers = [threading.Thread(target=write, args=(i,)) for i in range(3)]
    for writer in writers:
        writer.start()
    try:
        for _ in range(20):
            cache.set_many({f"c:{i}": i for i in range(20_000)}, tags=["c"])
            cache.clear()
            cache._selfcheck()
    finally:
        stop.set()
        for writer in writers:
            writer.join()
    cache._selfcheck()
    stats = cache.stats()
    assert stats["entries"] == len(cache)
    assert stats["bytes"] == sum(len(cache.get(k)) for k in cache.keys())

"""A tour of tieredcache.LocalCache, the in-process (L1) cache with a C core.

Run it with ``make demo``, or ``python docs/examples/demo_local.py`` wherever tieredcache
is installed. It takes a second or two, uses no network and never sleeps: expiry is shown
by moving the caches' clock forward with ``tieredcache.testing.advance_clock``, the same
hook the test suite uses.

Every section prints what it does. The ``assert`` lines are guarantees that
docs/local-cache.md makes, so this script also serves as a smoke test.
"""

from __future__ import annotations

import itertools
import random

from tieredcache import LocalCache
from tieredcache.testing import advance_clock, reset_clock


def section(title: str) -> None:
    print(f"\n== {title} {'=' * max(3, 72 - len(title))}")


def show(code: str, value: object) -> None:
    """Print a line of code and what it gave."""
    print(f"  {code:<50} # -> {value!r}")


def print_stats(cache: LocalCache) -> None:
    stats = cache.stats()
    width = max(map(len, stats))
    for name, value in stats.items():
        text = f"{value:,}" if isinstance(value, int) else repr(value)
        print(f"    {name:<{width}}  {text:>12}")


def basics() -> None:
    section("1. get / set / delete")
    cache = LocalCache(max_entries=1_000)
    profile = {"name": "Ada", "plan": "pro"}
    show('cache.set("user:1", profile)', cache.set("user:1", profile))
    show('cache.get("user:1")', cache.get("user:1"))
    show('cache.get("user:2")', cache.get("user:2"))
    show('cache.get("user:2", "n/a")', cache.get("user:2", "n/a"))
    cache["user:2"] = {"name": "Grace"}
    print('  cache["user:2"] = {"name": "Grace"}')
    show('"user:2" in cache', "user:2" in cache)
    show('cache.get_many(["user:1", "user:3"])', cache.get_many(["user:1", "user:3"]))
    show('cache.delete("user:2")', cache.delete("user:2"))
    # Values are stored by reference: get() returns the very object that was set.
    show('cache.get("user:1") is profile', cache.get("user:1") is profile)
    print("  (so cache immutable values, or copies, if callers might mutate them)")
    assert cache.get("user:1") is profile and "user:2" not in cache


def ttl() -> None:
    section("2. TTL: expiry without sleeping")
    print("  advance_clock(seconds) moves every cache's clock forward; no real time passes.")
    sessions = LocalCache(default_ttl=300)
    sessions.set("session:ada", "ada", ttl=30)     # explicit TTL
    sessions.set("session:bob", "bob")             # default_ttl: 300 s
    sessions.set("feature-flags", {"beta": True})
    sessions.touch("feature-flags", None)          # touch(key, None): never expires
    show('sessions.ttl("session:ada")', round(sessions.ttl("session:ada"), 1))
    show('sessions.ttl("feature-flags")', sessions.ttl("feature-flags"))

    advance_clock(31)
    print("  advance_clock(31)")
    show('sessions.get("session:ada")', sessions.get("session:ada"))
    show('sessions.ttl("session:bob")', round(sessions.ttl("session:bob"), 1))
    assert sessions.get("session:ada") is None  # an expired entry is never returned

    advance_clock(300)
    print("  advance_clock(300)")
    show('sessions.get("session:bob")', sessions.get("session:bob"))
    show('len(sessions)', len(sessions))
    show("sessions.expire()  # reclaim expired memory now", sessions.expire())
    try:
        sessions.ttl("session:bob")
    except KeyError as exc:
        show('sessions.ttl("session:bob")', exc)
    assert "session:bob" not in sessions and "feature-flags" in sessions
    print("  Expired entries are also reclaimed gradually by a timing wheel that the cache")
    print("  advances during its own operations: no background thread.")


def tags_and_prefixes() -> None:
    section("3. Invalidation by tag and by key prefix")
    pages = LocalCache()
    pages.set("page:/menu?org=1", "<menu 1>", tags=["org:1", "menu"])
    pages.set("page:/menu?org=2", "<menu 2>", tags=["org:2", "menu"])
    pages.set("page:/about?org=1", "<about 1>", tags=["org:1"])
    print("  three pages, tagged with their organisation and section")
    show('pages.invalidate_tags("org:1")', pages.invalidate_tags("org:1"))
    show("pages.keys()", pages.keys())
    show('pages.invalidate_tags("menu", "org:9")', pages.invalidate_tags("menu", "org:9"))
    assert len(pages) == 0

    users = LocalCache()
    for key in ("user:1:profile", "user:1:settings", "user:12:profile"):
        users.set(key, "...")
    users.set(b"user:1:avatar", b"\x89PNG...")
    show('users.invalidate_prefix("user:1:")', users.invalidate_prefix("user:1:"))
    show("users.keys()", sorted(users.keys(), key=repr))
    print('  str prefixes match str keys and bytes prefixes bytes keys: b"user:1:" is apart.')
    show('users.invalidate_prefix(b"user:1:")', users.invalidate_prefix(b"user:1:"))


def bounds() -> None:
    section("4. Bounds: max_entries, max_bytes, oversized values")
    small = LocalCache(max_entries=100)
    for i in range(1_000):
        small.set(f"row:{i}", i)
    print("  LocalCache(max_entries=100), then 1,000 sets:")
    show("len(small)", len(small))
    show('small.stats()["evictions"]', small.stats()["evictions"])
    assert len(small) <= 100

    blobs = LocalCache(max_entries=10_000, max_bytes=64 * 1024)
    for i in range(100):
        blobs.set(f"thumb:{i}", b"x" * 4096)  # a bytes value is charged len(value)
    print("  LocalCache(max_bytes=64 KiB), then 100 values of 4 KiB:")
    stats = blobs.stats()
    show("len(blobs)", len(blobs))
    show('stats["bytes"], stats["evictions_bytes"]', (stats["bytes"], stats["evictions_bytes"]))
    assert stats["bytes"] <= 64 * 1024

    blobs.set("report", b"old report")
    print("  a value larger than max_bytes is refused, and its key's old value dropped:")
    show('blobs.set("report", b"x" * 100_000)', blobs.set("report", b"x" * 100_000))
    show('blobs.get("report")', blobs.get("report"))
    show('blobs.stats()["rejected"]', blobs.stats()["rejected"])
    assert blobs.get("report") is None
    # Other objects are charged sys.getsizeof(value) (shallow); size= states the charge.
    show('blobs.set("rows", rows, size=20_000)', blobs.set("rows", [[0] * 100] * 50, size=20_000))
    show('blobs.stats()["bytes"]', blobs.stats()["bytes"])


def zipf_workload() -> None:
    section("5. A skewed workload: hit rate")
    n_keys, capacity, n_requests = 10_000, 1_000, 200_000
    rng = random.Random(2024)
    keys = [f"item:{rank}" for rank in range(n_keys)]
    # Zipf-like popularity: the key of rank r is requested in proportion to 1/r.
    cum_weights = list(itertools.accumulate(1 / rank for rank in range(1, n_keys + 1)))
    requests = rng.choices(keys, cum_weights=cum_weights, k=n_requests)
    print(f"  {n_requests:,} requests over {n_keys:,} keys (Zipf, s=1), "
          f"LocalCache(max_entries={capacity:,}); a miss loads and sets the value")

    cache = LocalCache(max_entries=capacity)

    def serve(batch: list[str]) -> float:
        before = cache.stats()
        for key in batch:
            if cache.get(key) is None:
                cache.set(key, key.upper())  # stand-in for a database read
        after = cache.stats()
        hits = after["hits"] - before["hits"]
        return hits / (hits + after["misses"] - before["misses"])

    def row(label: str, rate: float) -> None:
        print(f"    {label:<64} {rate:6.1%}")

    row("hit rate", serve(requests))
    # Yardstick: a cache that always held exactly the most popular keys.
    row(f"share of requests that go to the {capacity:,} most popular keys",
        cum_weights[capacity - 1] / cum_weights[-1])
    # A one-off scan (a batch job reading every row once) should not flush the hot keys:
    # W-TinyLFU admits a newcomer only if it is used more often than what it would evict.
    serve([f"scan:{i}" for i in range(20_000)])
    row("hit rate of the next 5,000 requests, after a scan of 20,000 keys", serve(requests[:5_000]))
    assert len(cache) <= capacity

    section("6. stats() of that cache")
    print_stats(cache)


def main() -> None:
    print("tieredcache.LocalCache: a tour (see docs/local-cache.md for the full API)")
    try:
        basics()
        ttl()
        tags_and_prefixes()
        bounds()
        zipf_workload()
    finally:
        reset_clock()  # the clock offset is process-wide
    print("\nDone.")


if __name__ == "__main__":
    main()

"""What the C core's W-TinyLFU policy promises (docs/local-cache.md, *Eviction*).

Which entry is evicted is the policy's choice, so the conformance suite only checks
bounds; these tests check the one promise the documentation makes about the choice:
one-off scans cannot flush the frequently used entries. (The reference model is plain
LRU and would fail them, so they run against the C core only.)
"""

from __future__ import annotations

from tieredcache import LocalCache


def warm(cache, keys, rounds):
    for _ in range(rounds):
        for key in keys:
            if cache.get(key) is None:
                cache.set(key, key)


# A count-min sketch over-estimates now and then (colliding keys), so a correct policy
# may lose a hot entry to a one-off key once in a few hundred duels: allow 1 %.
ALLOWED_LOSSES = 2
HOT = [f"hot:{i}" for i in range(200)]


def test_a_one_off_scan_does_not_flush_the_frequently_used_entries():
    """Warm 200 keys while the cache is small, then scan 2,000 one-off keys through it.

    The scan is shorter than the sketch's aging period (10 x max_entries), so every hot
    key keeps a frequency of about 10 against the scanned keys' 1. The cache grows from
    200 to 1,000 entries during the scan: its frequency history must survive that.
    """
    cache = LocalCache(max_entries=1000)
    warm(cache, HOT, rounds=10)
    for i in range(2000):  # each scanned key is used once
        cache.set(f"scan:{i}", i)
    lost = [key for key in HOT if key not in cache]
    assert len(lost) <= ALLOWED_LOSSES, f"the scan flushed {len(lost)} hot entries: {lost}"
    assert len(cache) == 1000


def test_a_bulk_set_many_of_cold_entries_does_not_flush_the_frequently_used_entries():
    cache = LocalCache(max_entries=1000)
    warm(cache, HOT, rounds=10)
    cache.set_many({f"cold:{i}": i for i in range(2000)})
    lost = [key for key in HOT if key not in cache]
    assert len(lost) <= ALLOWED_LOSSES, f"the bulk insert flushed {len(lost)} hot entries: {lost}"


def test_a_long_scan_leaves_most_frequently_used_entries_in_place():
    """Ten times the aging period: frequencies halve, yet the hot set mostly stays."""
    cache = LocalCache(max_entries=1000)
    warm(cache, HOT, rounds=10)
    for i in range(20_000):
        cache.set(f"scan:{i}", i)
    survivors = sum(key in cache for key in HOT)
    assert survivors >= 0.9 * len(HOT), f"only {survivors} of {len(HOT)} hot entries survived"


def test_new_entries_still_get_in_when_the_old_ones_stop_being_used():
    """Frequencies age (the sketch is halved periodically): yesterday's hot set yields."""
    cache = LocalCache(max_entries=500)
    old = [f"old:{i}" for i in range(400)]
    new = [f"new:{i}" for i in range(400)]
    warm(cache, old, rounds=5)
    warm(cache, new, rounds=30)
    assert sum(key in cache for key in new) >= 0.75 * len(new)

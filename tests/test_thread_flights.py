"""Single flight under thread interleavings found by the thread stress campaign
(hardening/threads_stress.py, issue 7).

A caller of ``get_or_set`` that took its generation snapshot before an invalidation but
reached the registry of loads in flight only after a newer caller had started the
post-invalidation load used to replace that current load with its own outdated one;
every caller arriving next then found no load of its generation and ran the loader
again: two concurrent loads of one key in one generation, which the single-flight
guarantee (docs/concepts.md, "Stampede protection") rules out. The snapshot is now
taken under the registry's lock.

The test forces the interleaving: the outdated caller is held right after taking its
snapshot (by wrapping the cache's snapshot function) until the newer load runs (or, once
the fix holds the registry's lock there, for at most HOLD seconds).

Pass: the caller arriving last joins the current load; its own loader never runs.
"""

from __future__ import annotations

import threading

from tiered_helpers import TieredCache

HOLD = 1.0
DEADLINE = 30.0


def test_a_caller_with_an_outdated_snapshot_does_not_split_the_current_flight():
    cache = TieredCache(namespace="flights")
    core = cache._core
    real_snap = core.snap
    z_snapped, x_loading, z_loading, w_loaded, release = (threading.Event() for _ in range(5))
    holder: list[threading.Thread] = []

    def snap(*args):
        s = real_snap(*args)
        if holder and threading.current_thread() is holder[0] and not z_snapped.is_set():
            z_snapped.set()
            x_loading.wait(HOLD)  # the outdated caller is preempted here
        return s

    core.snap = snap
    calls: list[str] = []
    results: dict[str, object] = {}

    def loader(name: str, started: threading.Event):
        def load():
            calls.append(name)
            started.set()
            if name != "W":
                release.wait(DEADLINE)
            return name
        return load

    def caller(name: str, started: threading.Event) -> threading.Thread:
        t = threading.Thread(target=lambda: results.__setitem__(name, cache.get_or_set("k", loader(name, started))))
        return t

    z = caller("Z", z_loading)
    holder.append(z)
    z.start()
    assert z_snapped.wait(DEADLINE)
    cache.delete("k")  # an invalidation after Z's snapshot: Z's load is outdated
    x = caller("X", x_loading)
    x.start()
    assert x_loading.wait(DEADLINE) and z_loading.wait(DEADLINE)
    w = caller("W", w_loaded)  # arrives after the invalidation, while X (current) loads
    w.start()
    w_loaded.wait(HOLD)  # W's loader running would be the bug; else W waits for X
    release.set()
    for t in (z, x, w):
        t.join(DEADLINE)
        assert not t.is_alive()
    core.snap = real_snap
    assert sorted(calls) == ["X", "Z"], calls  # no third load
    assert results["W"] == "X"  # W shared the current load
    assert results["Z"] == "Z"  # the outdated one got its own value...
    assert cache.get("k") == "X"  # ...but only the current one was cached
    cache.close()

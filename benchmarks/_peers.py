"""The caches measured by bench_local.py, behind one small adapter each.

Every adapter hands out the cache's own bound methods (plus any constant extra positional
arguments) so the timed loops call the implementation directly: no Python wrapper sits
between the loop and the cache. A peer whose package is not installed is reported as
unavailable with the import error, and the benchmark prints "n/a" for it.

Variants:
  ttl=False  entries never expire (compare with dict / lru_cache / LRU caches)
  ttl=True   every entry carries a TTL (a per-cache default where the peer has one)
"""

from __future__ import annotations

import functools
import os
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable

__all__ = ["IMPLS", "TTL_SECONDS", "Impl", "import_local_cache", "library_versions"]

# Long enough that nothing expires while the benchmark runs.
TTL_SECONDS = 3600

Call = tuple[Callable[..., Any], tuple[Any, ...]]  # fn, extra args: fn(key, *extra)


def import_local_cache() -> tuple[Any, str | None]:
    """Return (LocalCache class or None, error text or None).

    Falls back to the repository's src/ directory when tieredcache is not importable as
    is (the usual way to run it is PYTHONPATH=src).
    """
    try:
        from tieredcache import LocalCache

        return LocalCache, None
    except ImportError as first:
        src = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
        if src in sys.path:
            return None, f"{type(first).__name__}: {first}"
        sys.path.insert(0, src)
        for name in [m for m in sys.modules if m == "tieredcache" or m.startswith("tieredcache.")]:
            del sys.modules[name]
        try:
            from tieredcache import LocalCache

            return LocalCache, None
        except ImportError as exc:
            return None, f"{type(exc).__name__}: {exc}"


@dataclass
class Impl:
    """How to build and drive one cache implementation."""

    name: str
    dist: str  # distribution whose absence makes the impl unavailable
    ttl: bool  # entries carry a TTL
    bounded: bool  # has a max number of entries
    ours: bool
    build: Callable[[int], Any]  # capacity -> cache
    get: Callable[[Any], Call] | None  # get(key) -> value (hit) or a miss marker
    set: Callable[[Any, Any], Call]  # (cache, value) -> call storing key -> value
    overwrite: bool = True  # set() of a present key is an overwrite (not for lru_cache)
    delete: Callable[[Any], Call] | None = None
    contains: Callable[[Any, Any], bool] | None = None  # untimed presence check
    settle: Callable[[Any], None] = lambda c: None  # run deferred maintenance
    close: Callable[[Any], None] = lambda c: None  # free the cache now
    note: str = ""
    available: bool = True
    error: str | None = None

    @property
    def has_miss(self) -> bool:
        return self.get is not None and self.name != "functools.lru_cache"


def _lru_cache_build(n: int) -> Any:
    # The wrapped function is a builtin so that a miss costs a C call, not a frame.
    # A single str argument is its own key in the C lru_cache (no tuple is built).
    return functools.lru_cache(maxsize=n)(len)


def _lru_cache_contains(c: Any, k: Any) -> bool:
    before = c.cache_info().hits
    c(k)
    return c.cache_info().hits > before


def _theine_close(c: Any) -> None:
    # The maintenance coroutine keeps the cache alive until close(); clear() frees now.
    c.clear()
    c.close()


def _make_impls(local_cache: Any, local_error: str | None) -> list[Impl]:
    ttl_td = timedelta(seconds=TTL_SECONDS)
    impls: list[Impl] = []

    # --- ours -------------------------------------------------------------------------
    for ttl in (False, True):
        impls.append(
            Impl(
                name="LocalCache+ttl" if ttl else "LocalCache",
                dist="tieredcache",
                ttl=ttl,
                bounded=True,
                ours=True,
                build=(
                    (lambda n: local_cache(max_entries=n, default_ttl=TTL_SECONDS))
                    if ttl
                    else (lambda n: local_cache(max_entries=n))
                ),
                get=lambda c: (c.get, ()),
                set=lambda c, v: (c.set, (v,)),
                delete=lambda c: (c.delete, ()),
                contains=lambda c, k: k in c,
                note="default_ttl=3600, set(k, v)" if ttl else "",
                available=local_cache is not None,
                error=local_error,
            )
        )

    # --- stdlib -----------------------------------------------------------------------
    impls.append(
        Impl(
            name="dict",
            dist="",
            ttl=False,
            bounded=False,
            ours=False,
            build=lambda n: {},
            get=lambda c: (c.get, ()),
            set=lambda c, v: (c.__setitem__, (v,)),
            delete=lambda c: (c.__delitem__, ()),
            contains=lambda c, k: k in c,
            note="unbounded: set of a new key never evicts",
        )
    )
    impls.append(
        Impl(
            name="functools.lru_cache",
            dist="",
            ttl=False,
            bounded=True,
            ours=False,
            build=_lru_cache_build,
            get=lambda c: (c, ()),
            set=lambda c, v: (c, ()),
            overwrite=False,
            contains=_lru_cache_contains,
            note="lru_cache(maxsize=n)(len); hit = call on a cached arg, set = call on a new arg",
        )
    )

    # --- peers ------------------------------------------------------------------------
    try:
        import cachetools

        impls.append(
            Impl(
                name="cachetools.LRUCache",
                dist="cachetools",
                ttl=False,
                bounded=True,
                ours=False,
                build=lambda n: cachetools.LRUCache(n),
                get=lambda c: (c.get, ()),
                set=lambda c, v: (c.__setitem__, (v,)),
                delete=lambda c: (c.__delitem__, ()),
                contains=lambda c, k: k in c,
            )
        )
        impls.append(
            Impl(
                name="cachetools.TTLCache",
                dist="cachetools",
                ttl=True,
                bounded=True,
                ours=False,
                build=lambda n: cachetools.TTLCache(n, ttl=TTL_SECONDS),
                get=lambda c: (c.get, ()),
                set=lambda c, v: (c.__setitem__, (v,)),
                delete=lambda c: (c.__delitem__, ()),
                contains=lambda c, k: k in c,
                note="ttl=3600",
            )
        )
    except ImportError as exc:
        for name, ttl in (("cachetools.LRUCache", False), ("cachetools.TTLCache", True)):
            impls.append(_missing(name, "cachetools", ttl, exc))

    try:
        import lru

        impls.append(
            Impl(
                name="lru-dict",
                dist="lru-dict",
                ttl=False,
                bounded=True,
                ours=False,
                build=lambda n: lru.LRU(n),
                get=lambda c: (c.get, ()),
                set=lambda c, v: (c.__setitem__, (v,)),
                delete=lambda c: (c.__delitem__, ()),
                contains=lambda c, k: k in c,
            )
        )
    except ImportError as exc:
        impls.append(_missing("lru-dict", "lru-dict", False, exc))

    try:
        import cachebox

        impls.append(
            Impl(
                name="cachebox.LRUCache",
                dist="cachebox",
                ttl=False,
                bounded=True,
                ours=False,
                build=lambda n: cachebox.LRUCache(n),
                get=lambda c: (c.get, ()),
                set=lambda c, v: (c.insert, (v,)),
                delete=lambda c: (c.__delitem__, ()),
                contains=lambda c, k: k in c,
            )
        )
        impls.append(
            Impl(
                name="cachebox.TTLCache",
                dist="cachebox",
                ttl=True,
                bounded=True,
                ours=False,
                build=lambda n: cachebox.TTLCache(n, global_ttl=TTL_SECONDS),
                get=lambda c: (c.get, ()),
                set=lambda c, v: (c.insert, (v,)),
                delete=lambda c: (c.__delitem__, ()),
                contains=lambda c, k: k in c,
                note="global_ttl=3600 (FIFO order)",
            )
        )
    except ImportError as exc:
        for name, ttl in (("cachebox.LRUCache", False), ("cachebox.TTLCache", True)):
            impls.append(_missing(name, "cachebox", ttl, exc))

    try:
        from theine import Cache as TheineCache

        for ttl in (False, True):
            impls.append(
                Impl(
                    name="theine+ttl" if ttl else "theine",
                    dist="theine",
                    ttl=ttl,
                    bounded=True,
                    ours=False,
                    build=lambda n: TheineCache(n),
                    get=lambda c: (c.get, ()),  # returns (value, found)
                    set=(lambda c, v: (c.set, (v, ttl_td))) if ttl else (lambda c, v: (c.set, (v,))),
                    delete=lambda c: (c.delete, ()),
                    contains=lambda c, k: c.get(k)[1],
                    close=_theine_close,
                    note="set(k, v, timedelta(3600s)); get -> (value, found)" if ttl else "get -> (value, found)",
                )
            )
    except ImportError as exc:
        for name, ttl in (("theine", False), ("theine+ttl", True)):
            impls.append(_missing(name, "theine", ttl, exc))

    try:
        from moka_py import Moka

        for ttl in (False, True):
            impls.append(
                Impl(
                    name="moka+ttl" if ttl else "moka",
                    dist="moka-py",
                    ttl=ttl,
                    bounded=True,
                    ours=False,
                    build=(lambda n: Moka(n, ttl=TTL_SECONDS)) if ttl else (lambda n: Moka(n)),
                    get=lambda c: (c.get, ()),
                    set=lambda c, v: (c.set, (v,)),
                    delete=lambda c: (c.remove, ()),
                    contains=lambda c, k: c.get(k) is not None,
                    settle=lambda c: c.run_pending_tasks(),
                    note="Moka(n, ttl=3600)" if ttl else "",
                )
            )
    except ImportError as exc:
        for name, ttl in (("moka", False), ("moka+ttl", True)):
            impls.append(_missing(name, "moka-py", ttl, exc))

    return impls


def _missing(name: str, dist: str, ttl: bool, exc: BaseException) -> Impl:
    return Impl(
        name=name,
        dist=dist,
        ttl=ttl,
        bounded=True,
        ours=False,
        build=lambda n: None,
        get=None,
        set=lambda c, v: (None, ()),  # type: ignore[arg-type, return-value]
        available=False,
        error=f"{type(exc).__name__}: {exc}",
    )


def library_versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": sys.version.split()[0]}
    for dist in ("tieredcache", "cachetools", "lru-dict", "cachebox", "theine", "theine-core", "moka-py"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


_LOCAL_CACHE, _LOCAL_ERROR = import_local_cache()
IMPLS: list[Impl] = _make_impls(_LOCAL_CACHE, _LOCAL_ERROR)

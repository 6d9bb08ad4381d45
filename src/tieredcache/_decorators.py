"""Decorators: ``@cache.cached``, ``@cache.invalidates``, ``@cache.warmer``, and the
module-level default cache they use when called as ``tieredcache.cached``.

STRUCTURE
    ``cached`` turns a function into a ``_core.CachedCall`` (C): on each call it binds the
    arguments, builds the key (``_keys``: the same text the Python side builds) and looks
    it up in L1, all in C; a hit returns there. Anything the C side cannot do (an
    argument of another type, a key template with attribute access, an unbound default
    cache) and every miss goes to ``_Cached.miss``, which binds the arguments in Python,
    builds the key, reads L2 and calls the function through ``TieredCache.get_or_set``
    (single flight, lock, early refresh). ``async def`` functions get an ``async def``
    wrapper whose hit path is the same C lookup (``_probe``) and whose miss path awaits
    ``aget_or_set``.

    A decorated function is bound to one TieredCache (or view). The module-level
    decorators bind late: to ``get_cache()`` on first call, again after ``configure()``.

COUNTERS
    Hits on the C path are counted in C (and one in 16 is timed); everything else here.
    ``stats()`` / ``TieredCache.report()`` combine them.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import inspect
import os
import threading
import time
import typing
import weakref
from typing import Any, Callable, Iterable, Iterator

from . import _core
from ._keys import OMITTED, Template, call_key, encode_args
from ._metrics import Histogram

_MISSING = object()
_NODEFAULT = object()

# Named TTL tiers (seconds), with the seeds' names.
TIERS: dict[str, int] = {
    "real_time": 60,
    "user_data": 300,
    "business_intelligence": 900,
    "analytics": 1800,
    "static": 3600,
}

# Loads made by cached functions while a warmer runs (see warm()).
_warm_loads: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar("tieredcache_warm_loads", default=None)

_NON_DATA_TYPES = {
    ("starlette.requests", "HTTPConnection"), ("starlette.requests", "Request"),
    ("starlette.websockets", "WebSocket"), ("starlette.responses", "Response"),
    ("starlette.background", "BackgroundTasks"), ("fastapi", "Request"), ("fastapi", "Response"),
    ("fastapi", "BackgroundTasks"), ("fastapi", "WebSocket"),
    ("werkzeug.wrappers.request", "Request"), ("werkzeug.sansio.request", "Request"),
    ("werkzeug.wrappers.response", "Response"), ("flask.wrappers", "Request"),
    ("flask.wrappers", "Response"),
}


def _is_non_data_type(t: Any) -> bool:
    if t is _NonDataName:
        return True
    if not isinstance(t, type):
        return False
    for k in t.__mro__:
        if (k.__module__, k.__name__) in _NON_DATA_TYPES:
            return True
    return False


def _is_depends(obj: Any) -> bool:
    for k in type(obj).__mro__:
        if k.__module__.startswith("fastapi") and k.__name__ in ("Depends", "Security"):
            return True
    return False


# A string annotation that cannot be evaluated (a local import under
# `from __future__ import annotations`) is matched by its last name.
_NON_DATA_NAMES = {"Request", "Response", "WebSocket", "BackgroundTasks", "HTTPConnection"}


def _annotation(func: Callable, ann: Any) -> Any:
    if not isinstance(ann, str):
        return ann
    try:
        return eval(ann, getattr(func, "__globals__", {}))  # noqa: S307 - the function's own annotation
    except Exception:
        name = ann.rsplit(".", 1)[-1].strip()
        return _NonDataName if name in _NON_DATA_NAMES else ann


class _NonDataName:
    """Stands for an unresolvable annotation naming a request or response type."""


def _is_non_data_value(v: Any) -> bool:
    """A request, response or background-task object passed at call time."""
    t = type(v)
    if t.__module__.startswith(("starlette", "fastapi", "werkzeug", "flask")):
        return _is_non_data_type(t) or (
            t.__name__ == "LocalProxy" and _is_non_data_type(getattr(v, "__class__", None)))
    return False


def check_ttl(ttl: Any, what: str = "ttl") -> float | None:
    if ttl is None:
        return None
    if isinstance(ttl, str):
        try:
            return float(TIERS[ttl])
        except KeyError:
            raise ValueError(f"{what} must be seconds or one of {', '.join(TIERS)}; got {ttl!r}") from None
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)):
        raise TypeError(f"{what} must be a number of seconds, a tier name or None, not {type(ttl).__name__}")
    if not ttl > 0 or ttl == float("inf"):
        raise ValueError(f"{what} must be a positive finite number of seconds, got {ttl!r}")
    return float(ttl)


# ---- signatures -------------------------------------------------------------------------

class _Params:
    """A function's parameters, which of them make the key, and a fast binder."""

    def __init__(self, func: Callable, exclude: Iterable[str]) -> None:
        self.sig = inspect.signature(func)
        params = list(self.sig.parameters.values())
        self.names = tuple(p.name for p in params)
        exclude = tuple(exclude)
        for name in exclude:
            if not isinstance(name, str):
                raise TypeError(f"exclude must hold argument names (str), got {name!r}")
            if name not in self.names:
                raise ValueError(f"exclude names {name!r}, which is not an argument of {func.__qualname__} "
                                 f"(arguments: {', '.join(self.names) or 'none'})")
        included = []
        for i, p in enumerate(params):
            skip = p.name in exclude
            if i == 0 and p.name in ("self", "cls"):
                skip = True
            ann = _annotation(func, p.annotation)
            if typing.get_origin(ann) is typing.Annotated:
                if any(_is_depends(m) for m in ann.__metadata__):
                    skip = True
                ann = typing.get_args(ann)[0]
            if _is_non_data_type(ann) or (p.default is not p.empty and _is_depends(p.default)):
                skip = True
            included.append(not skip)
        self.included = tuple(included)
        self.kinds = tuple(p.kind for p in params)
        self.defaults = tuple(_NODEFAULT if p.default is p.empty else p.default for p in params)
        self.has_var = any(k in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for k in self.kinds)
        self.index = {p.name: i for i, p in enumerate(params) if p.kind not in (p.POSITIONAL_ONLY,)}
        self.npositional = sum(1 for k in self.kinds if k in (inspect.Parameter.POSITIONAL_ONLY,
                                                               inspect.Parameter.POSITIONAL_OR_KEYWORD))

    def bind(self, args: tuple, kwargs: dict) -> dict[str, Any]:
        """name -> value for every parameter, defaults applied; TypeError as a call would."""
        if not self.has_var and len(args) <= self.npositional:
            n = len(self.names)
            vals = list(args) + [_MISSING] * (n - len(args))
            ok = True
            for k, v in kwargs.items():
                i = self.index.get(k)
                if i is None or vals[i] is not _MISSING:
                    ok = False
                    break
                vals[i] = v
            if ok:
                for i in range(len(args), n):
                    if vals[i] is _MISSING:
                        d = self.defaults[i]
                        if d is _NODEFAULT:
                            ok = False
                            break
                        vals[i] = d
            if ok:
                return dict(zip(self.names, vals))
        ba = self.sig.bind(*args, **kwargs)  # raises the TypeError a call would
        ba.apply_defaults()
        return ba.arguments

    def key_values(self, bound: dict[str, Any]) -> list[tuple[str, Any]]:
        out = []
        for name, inc, kind in zip(self.names, self.included, self.kinds):
            if inc:
                v = bound[name]
                if kind == inspect.Parameter.VAR_KEYWORD:
                    v = dict(v)
                out.append((name, OMITTED if _is_non_data_value(v) else v))
        return out


def _qualified_name(func: Callable) -> str:
    return f"{getattr(func, '__module__', None) or '?'}.{getattr(func, '__qualname__', func.__name__)}"


# ---- the default cache ------------------------------------------------------------------

_default_lock = threading.RLock()
_default: Any = None  # TieredCache | None
_default_owned = False
_default_bound: weakref.WeakSet = weakref.WeakSet()  # _Cached bound through the default


def _after_fork_in_child() -> None:
    # get_cache() holds the lock while it builds the default cache (up to connect_timeout
    # with Redis): a thread of the parent doing that when the process forked is gone.
    global _default_lock
    _default_lock = threading.RLock()


os.register_at_fork(after_in_child=_after_fork_in_child)


def configure(cache: Any = None, **overrides: Any) -> Any:
    """Install the default cache used by the module-level decorators; returns it.

    ``configure(cache)`` uses the given TieredCache (the caller keeps owning it);
    ``configure(**overrides)`` builds ``TieredCache.from_env(**overrides)``. Functions
    already decorated re-bind to it on their next call.
    """
    from ._tiered import TieredCache

    global _default, _default_owned
    if cache is not None and overrides:
        raise TypeError("configure() takes a cache or keyword settings, not both")
    if cache is not None and not isinstance(cache, TieredCache):
        raise TypeError(f"cache must be a TieredCache, not {type(cache).__name__}")
    new = cache if cache is not None else TieredCache.from_env(**overrides)
    with _default_lock:
        old, old_owned = _default, _default_owned
        _default, _default_owned = new, cache is None
        _adopt_default_warmers(new)
        for c in list(_default_bound):
            c.unbind()
    if old is not None and old_owned and old is not new:
        old.close()
    return new


def get_cache() -> Any:
    """The default cache: the one ``configure()`` installed, else ``TieredCache.from_env()``."""
    global _default, _default_owned
    cache = _default
    if cache is None:
        from ._tiered import TieredCache

        with _default_lock:
            if _default is None:
                _default, _default_owned = TieredCache.from_env(), True
                _adopt_default_warmers(_default)
            cache = _default
    return cache


@contextlib.contextmanager
def installed_default(cache: Any) -> Iterator[Any]:
    """Within the block, ``cache`` is the default cache (not owned: never closed here);
    afterwards the previous default comes back as it was, ownership included."""
    global _default, _default_owned
    from ._tiered import TieredCache

    if not isinstance(cache, TieredCache):
        raise TypeError(f"cache must be a TieredCache, not {type(cache).__name__}")
    with _default_lock:
        saved = (_default, _default_owned)
        _default, _default_owned = cache, False
        _adopt_default_warmers(cache)
        for c in list(_default_bound):
            c.unbind()
    try:
        yield cache
    finally:
        with _default_lock:
            _default, _default_owned = saved
            for c in list(_default_bound):
                c.unbind()


def peek_default_cache() -> Any:
    """The default cache if there is one, without creating it."""
    return _default


def reset_default_cache() -> None:
    """Forget the default cache (closing it if ``get_cache``/``configure`` created it)."""
    global _default, _default_owned
    with _default_lock:
        old, owned = _default, _default_owned
        _default, _default_owned = None, False
        for c in list(_default_bound):
            c.unbind()
    if old is not None and owned:
        old.close()


# ---- @cached ----------------------------------------------------------------------------

class _Cached:
    """What a decorated function knows: its key recipe, its cache, its counters."""

    def __init__(self, func: Callable, source: Any, ttl: Any, tags: Any, key: Any, exclude: Any,
                 name: str | None) -> None:
        if not callable(func):
            raise TypeError(f"cached() decorates functions, not {type(func).__name__}")
        if inspect.isasyncgenfunction(func) or inspect.isgeneratorfunction(func):
            raise TypeError(f"cached() cannot cache generator function {func.__qualname__}: it would cache the "
                            "generator object; return a list instead")
        if isinstance(exclude, str):
            exclude = (exclude,)
        if name is not None and (not isinstance(name, str) or not name):
            raise TypeError(f"name must be a non-empty str, got {name!r}")
        self.func = func
        self.source = source  # a TieredCache, or None: the default cache
        self.ttl = check_ttl(ttl)
        self.params = _Params(func, exclude)
        self.name = name or _qualified_name(func)
        if isinstance(tags, str):
            tags = (tags,)
        try:
            tags = tuple(tags)
        except TypeError:
            raise TypeError(f"tags must be an iterable of str, not {type(tags).__name__}") from None
        self.tags = tuple(Template(t, self.params.names, "tag") if isinstance(t, str) and "{" in t else _plain_tag(t)
                          for t in tags)
        self.dynamic_tags = any(isinstance(t, Template) for t in self.tags)
        self.template = Template(key, self.params.names, "key") if key is not None else None
        self.is_async = inspect.iscoroutinefunction(func)
        self.view: Any = None
        self.owner: Any = None  # weakref to the decorated object (its .cache follows bind())
        self.lock = threading.Lock()
        # counters of the Python paths (the C side counts its own hits)
        self.py_hits = 0
        self.l2_hits = 0
        self.misses = 0
        self.errors = 0
        self.l2_ns = 0
        self.miss_ns = 0
        self.load_ns = 0
        # latency histograms of the Python paths (the C side keeps the L1 hits')
        self.h_l2 = Histogram()
        self.h_miss = Histogram()
        self.h_load = Histogram()
        self.monitoring = True
        self.call = _core.CachedCall(func, self.miss, self.name, self._c_params(), self._c_template(), _MISSING)

    def _c_params(self) -> tuple | None:
        """(name, kind, default, included) per parameter for the C binder, or None when
        the C side must always defer (``*args``/``**kwargs``)."""
        p = self.params
        if p.has_var:
            return None
        return tuple((n, int(k), _MISSING if d is _NODEFAULT else d, inc)
                     for n, k, d, inc in zip(p.names, p.kinds, p.defaults, p.included))

    def _c_template(self) -> tuple | None:
        t = self.template
        if t is None:
            return None
        if not t.simple:
            return ()  # the C side defers every call to Python
        parts: list[Any] = []
        for literal, field, _spec, _conv in t.parts:
            if literal:
                parts.append(literal)
            if field is not None:
                parts.append(self.params.names.index(field))
        return tuple(parts)

    # ---- binding to a cache -----------------------------------------------------------

    def bind(self) -> Any:
        """The view this function caches in (resolving the default cache); arms the C path."""
        view = self.source
        if view is None:
            view = get_cache()
            with _default_lock:
                _default_bound.add(self)
        if view is not self.view:
            with self.lock:
                core = view._core
                self.call._bind(core.l1 if core.enabled else None, view._ns.l1prefix)
                self.monitoring = core.monitoring
                self.call._monitor(core.monitoring)
                self.view = view
                core.functions[id(self)] = self
                owner = self.owner() if self.owner is not None else None
                if owner is not None:
                    owner.cache = view
        return view

    def unbind(self) -> None:
        with self.lock:
            self.view = None
            self.call._bind(None, "")

    # ---- keys -------------------------------------------------------------------------

    def key_for(self, bound: dict[str, Any]) -> str:
        if self.template is not None:
            return self.template.render(bound)
        return call_key(self.name, encode_args(self.params.key_values(bound)))

    def cache_key(self, *args: Any, **kwargs: Any) -> str:
        return self.key_for(self.params.bind(args, kwargs))

    def tags_for(self, bound: dict[str, Any] | None) -> tuple[str, ...]:
        if not self.dynamic_tags:
            return self.tags  # type: ignore[return-value]
        return tuple(t.render(bound) if isinstance(t, Template) else t for t in self.tags)  # type: ignore[arg-type]

    # ---- the slow paths ---------------------------------------------------------------

    def miss(self, l1key: str | None, /, *args: Any, **kwargs: Any) -> Any:
        """Called by the C side on an L1 miss (with the key it built) or when it could not
        build the key (None)."""
        view = self.view or self.bind()
        core = view._core
        if not core.enabled:
            return self.func(*args, **kwargs)
        prefix = view._ns.l1prefix
        bound = None
        if l1key is not None and l1key.startswith(prefix):
            key = l1key[len(prefix):]
        else:
            bound = self.params.bind(args, kwargs)
            key = self.key_for(bound)
            if core.redis is not None and core.l1._pending:
                core.fence()
            value = core.l1.get(prefix + key, _MISSING)
            if value is not _MISSING:
                self.py_hits += 1
                return value
        if self.dynamic_tags and bound is None:
            bound = self.params.bind(args, kwargs)
        tags = self.tags_for(bound)
        func = self.func
        loaded = 0

        def loader() -> Any:
            nonlocal loaded
            t = time.perf_counter_ns()
            try:
                return func(*args, **kwargs)
            finally:
                loaded = time.perf_counter_ns() - t or 1

        t0 = time.perf_counter_ns()
        try:
            value = view.get_or_set(key, loader, self.ttl, tags, _probed=True)
        except BaseException:
            self.errors += 1
            raise
        self._count(loaded, time.perf_counter_ns() - t0)
        return value

    def _count(self, loaded: int, elapsed: int) -> None:
        if loaded:
            self.misses += 1
            self.miss_ns += elapsed
            self.load_ns += loaded
            if self.monitoring:
                self.h_miss.observe(elapsed)
                self.h_load.observe(loaded)
            counter = _warm_loads.get()
            if counter is not None:
                counter[0] += 1
        else:
            self.l2_hits += 1
            self.l2_ns += elapsed
            if self.monitoring:
                self.h_l2.observe(elapsed)

    async def amiss(self, args: tuple, kwargs: dict) -> Any:
        view = self.view or self.bind()
        core = view._core
        if not core.enabled:
            return await self.func(*args, **kwargs)
        bound = self.params.bind(args, kwargs)
        key = self.key_for(bound)
        if core.redis is not None and core.l1._pending:
            core.fence()
        value = core.l1.get(view._ns.l1prefix + key, _MISSING)
        if value is not _MISSING:
            self.py_hits += 1
            return value
        tags = self.tags_for(bound)
        func = self.func
        loaded = 0

        async def loader() -> Any:
            nonlocal loaded
            t = time.perf_counter_ns()
            try:
                return await func(*args, **kwargs)
            finally:
                loaded = time.perf_counter_ns() - t or 1

        t0 = time.perf_counter_ns()
        try:
            value = await view.aget_or_set(key, loader, self.ttl, tags, _probed=True)
        except BaseException:
            self.errors += 1
            raise
        self._count(loaded, time.perf_counter_ns() - t0)
        return value

    # ---- statistics -------------------------------------------------------------------

    def histograms(self) -> dict[str, Histogram]:
        """Latency per outcome: ``l1_hit`` (one C-path hit in 16, sampled), ``l2_hit``,
        ``miss`` (the whole miss path) and ``load`` (the function itself)."""
        _, _, sampled_ns, max_ns, counts = self.call._counters()
        return {"l1_hit": Histogram.from_counts(counts, sampled_ns, max_ns), "l2_hit": self.h_l2,
                "miss": self.h_miss, "load": self.h_load}

    def stats(self) -> dict[str, Any]:
        c_hits, sampled, sampled_ns, _, _ = self.call._counters()
        l1_hits = c_hits + self.py_hits
        hits = l1_hits + self.l2_hits
        calls = hits + self.misses + self.errors
        l1_avg = sampled_ns / sampled if sampled else None
        if hits:
            hit_ns = (l1_avg or 0.0) * l1_hits + self.l2_ns
            avg_hit = hit_ns / hits / 1e6
        else:
            avg_hit = None
        avg_miss = self.miss_ns / self.misses / 1e6 if self.misses else None
        avg_uncached = self.load_ns / self.misses / 1e6 if self.misses else None
        improvement = None
        if avg_hit is not None and avg_uncached:
            improvement = round((1.0 - avg_hit / avg_uncached) * 100.0, 2)
        view = self.view
        return {
            "function": self.name,
            "namespace": view.name if view is not None else None,
            "calls": calls,
            "hits": hits,
            "l1_hits": l1_hits,
            "l2_hits": self.l2_hits,
            "misses": self.misses,
            "errors": self.errors,
            "hit_rate": hits / calls if calls else 0.0,
            "l1_hit_rate": l1_hits / calls if calls else 0.0,
            "l2_hit_rate": self.l2_hits / calls if calls else 0.0,
            "latency": {k: h.summary() for k, h in self.histograms().items()},
            "avg_hit_ms": avg_hit,
            "avg_miss_ms": avg_miss,
            "avg_cached_ms": avg_hit,
            "avg_uncached_ms": avg_uncached,
            "performance_improvement_percent": improvement,
        }

    def reset_stats(self) -> None:
        self.call._reset_counters()
        self.py_hits = self.l2_hits = self.misses = self.errors = 0
        self.l2_ns = self.miss_ns = self.load_ns = 0
        for h in (self.h_l2, self.h_miss, self.h_load):
            h.reset()


def _plain_tag(t: Any) -> str:
    if not isinstance(t, str) or not t:
        raise TypeError(f"tags must be non-empty str, got {t!r}")
    return t


def make_cached(source: Any, ttl: Any = None, tags: Any = (), key: Any = None, exclude: Any = (),
                name: str | None = None) -> Callable[[Callable], Any]:
    """The decorator behind ``TieredCache.cached`` and ``tieredcache.cached``."""
    if callable(ttl) and not isinstance(ttl, (int, float, str)):
        raise TypeError("cached needs parentheses: write @cache.cached() (or @cache.cached(ttl=...))")
    check_ttl(ttl)  # fail at decoration time
    if name is not None and (not isinstance(name, str) or not name):
        raise TypeError(f"name must be a non-empty str, got {name!r}")

    def decorate(func: Callable) -> Any:
        spec = _Cached(func, source, ttl, tags, key, exclude, name)
        if spec.is_async:
            probe = spec.call._probe
            amiss = spec.amiss

            @functools.wraps(func)
            async def wrapper(*args: Any, **kwargs: Any) -> Any:
                value = probe(*args, **kwargs)
                if value is not _MISSING:
                    return value
                return await amiss(args, kwargs)

            obj: Any = wrapper
        else:
            obj = spec.call
            functools.update_wrapper(obj, func)
        obj._tc = spec
        spec.owner = weakref.ref(obj)
        obj.cache = source
        obj.cache_key = spec.cache_key
        obj.uncached = func
        obj.stats = spec.stats
        obj.qualname = spec.name

        def invalidate(*args: Any, **kwargs: Any) -> bool:
            return spec.bind().delete(spec.cache_key(*args, **kwargs))

        async def ainvalidate(*args: Any, **kwargs: Any) -> bool:
            return await spec.bind().adelete(spec.cache_key(*args, **kwargs))

        obj.invalidate = invalidate
        obj.ainvalidate = ainvalidate
        return obj

    return decorate


def cache_of(fn: Any) -> Any:
    """The TieredCache a decorated function is bound to."""
    return fn._tc.bind()


# ---- @invalidates -----------------------------------------------------------------------

def make_invalidates(source: Any, tags: Any = (), keys: Any = ()) -> Callable[[Callable], Any]:
    """The decorator behind ``TieredCache.invalidates``: after a successful return only."""
    if callable(tags) and not isinstance(tags, (str, tuple, list)):
        raise TypeError("invalidates needs parentheses: write @cache.invalidates(tags=[...])")
    if isinstance(tags, str):
        tags = (tags,)
    if isinstance(keys, str):
        keys = (keys,)
    tags, keys = tuple(tags), tuple(keys)
    for what, items in (("tags", tags), ("keys", keys)):
        for t in items:
            if not isinstance(t, str) or not t:
                raise TypeError(f"{what} must hold non-empty str templates, got {t!r}")
    if not tags and not keys:
        raise ValueError("invalidates() needs tags or keys to invalidate")

    def decorate(func: Callable) -> Any:
        params = _Params(func, ())
        ttags = [Template(t, params.names, "tag") if "{" in t else t for t in tags]
        tkeys = [Template(k, params.names, "key") if "{" in k else k for k in keys]
        dynamic = any(isinstance(t, Template) for t in ttags + tkeys)

        def targets(args: tuple, kwargs: dict) -> tuple[list[str], list[str]]:
            bound = params.bind(args, kwargs) if dynamic else {}
            return ([t.render(bound) if isinstance(t, Template) else t for t in ttags],
                    [k.render(bound) if isinstance(k, Template) else k for k in tkeys])

        def view() -> Any:
            return source if source is not None else get_cache()

        if inspect.iscoroutinefunction(func):
            @functools.wraps(func)
            async def awrapper(*args: Any, **kwargs: Any) -> Any:
                result = await func(*args, **kwargs)
                t, k = targets(args, kwargs)
                v = view()
                if t:
                    await v.ainvalidate_tags(*t)
                for key in k:
                    await v.adelete(key)
                return result

            return awrapper

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            result = func(*args, **kwargs)
            t, k = targets(args, kwargs)
            v = view()
            if t:
                v.invalidate_tags(*t)
            for key in k:
                v.delete(key)
            return result

        return wrapper

    return decorate


# ---- warming ----------------------------------------------------------------------------

def make_warmer(view: Any, group: Any) -> Callable[[Callable], Callable]:
    """``@cache.warmer(group)``. Registered on a root cache, a warmer is shared: every view
    that warms runs it against itself. Registered on a namespace view (a tenant's), it
    belongs to that view: it runs against it, when it or a view above it (the root)
    warms, never when another tenant's view does."""
    core = view._core
    owner = None if view._is_root else view
    if callable(group) and not isinstance(group, str):
        raise TypeError("warmer needs a group name: write @cache.warmer(\"products\")")
    if not isinstance(group, str) or not group or group == "all":
        raise ValueError(f"group must be a non-empty str other than 'all', got {group!r}")

    def decorate(func: Callable) -> Callable:
        if not callable(func):
            raise TypeError(f"warmer() registers functions, not {type(func).__name__}")
        with core.warmers_lock:
            core.warmers.setdefault(group, []).append((func, owner))
        return func

    return decorate


def _runs(view: Any, group: str) -> list[tuple[Callable, Any]]:
    """(warmer, the view it runs against) for each warmer of group that view may run:
    the shared ones against view itself, those owned by view or a view below it against
    their owner."""
    core = view._core
    out = []
    for fn, owner in list(core.warmers.get(group, ())):
        if owner is None:
            out.append((fn, view))
        elif view._is_root or owner.name == view.name or owner.name.startswith(view.name + "/"):
            out.append((fn, owner))
    return out


def warmer_groups(view: Any) -> list[str]:
    return sorted(g for g in list(view._core.warmers) if _runs(view, g))


def _groups(view: Any, groups: tuple) -> list[str]:
    known = warmer_groups(view)
    if not groups or "all" in groups:
        return known
    out = []
    for g in groups:
        if not isinstance(g, str):
            raise TypeError(f"groups must be str, got {g!r}")
        if g not in known:
            raise ValueError(f"no warmer registered for group {g!r} (groups: {', '.join(known) or 'none'})")
        if g not in out:
            out.append(g)
    return out


def _takes_cache(fn: Callable) -> bool:
    try:
        params = [p for p in inspect.signature(fn).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty]
    except (TypeError, ValueError):
        return False
    return len(params) >= 1


def _store(view: Any, result: Any, counter: list[int]) -> int:
    if result is None:
        return counter[0]
    if isinstance(result, bool):
        raise TypeError("a warmer returns a mapping, (key, value) pairs, a count or None, not bool")
    if isinstance(result, int):
        return result
    items = list(result.items()) if hasattr(result, "items") else list(result)
    for kv in items:
        if not (isinstance(kv, tuple) and len(kv) == 2):
            raise TypeError(f"a warmer's pairs must be (key, value) tuples, got {kv!r}")
    if items:
        view.set_many(dict(items))
    return len(items) + counter[0]


async def _astore(view: Any, result: Any, counter: list[int]) -> int:
    if result is None or isinstance(result, int):
        return _store(view, result, counter)
    items = list(result.items()) if hasattr(result, "items") else list(result)
    for kv in items:
        if not (isinstance(kv, tuple) and len(kv) == 2):
            raise TypeError(f"a warmer's pairs must be (key, value) tuples, got {kv!r}")
    if items:
        await view.aset_many(dict(items))
    return len(items) + counter[0]


def warm(view: Any, groups: tuple) -> dict[str, int]:
    core = view._core
    names = _groups(view, groups)
    counts: dict[str, int] = {}
    for g in names:
        total = 0
        for fn, target in _runs(view, g):
            counter = [0]
            token = _warm_loads.set(counter)
            try:
                result = fn(target) if _takes_cache(fn) else fn()
                if inspect.isawaitable(result):
                    try:
                        asyncio.get_running_loop()
                    except RuntimeError:
                        result = _run_coro(result)
                    else:
                        result.close()
                        raise RuntimeError(f"warmer {getattr(fn, '__qualname__', fn)!r} is async and an event "
                                           "loop is running: use `await cache.awarm(...)`")
                total += _store(target, result, counter)
            finally:
                _warm_loads.reset(token)
        counts[g] = total
        core.stats["warmed"] += total
    view._emit("warm", counts=dict(counts))
    return counts


def _run_coro(coro: Any) -> Any:
    async def run() -> Any:
        return await coro

    return asyncio.run(run())


async def awarm(view: Any, groups: tuple) -> dict[str, int]:
    core = view._core
    names = _groups(view, groups)
    counts: dict[str, int] = {}
    for g in names:
        total = 0
        for fn, target in _runs(view, g):
            counter = [0]
            token = _warm_loads.set(counter)
            try:
                if inspect.iscoroutinefunction(fn):
                    result = await (fn(target) if _takes_cache(fn) else fn())
                else:
                    ctx = contextvars.copy_context()
                    result = await asyncio.to_thread(ctx.run, lambda: fn(target) if _takes_cache(fn) else fn())
                    if inspect.isawaitable(result):
                        result = await result
                total += await _astore(target, result, counter)
            finally:
                _warm_loads.reset(token)
        counts[g] = total
        core.stats["warmed"] += total
    view._emit("warm", counts=dict(counts))
    return counts


# ---- module-level decorators on the default cache -----------------------------------------

def cached(ttl: Any = None, tags: Any = (), key: Any = None, exclude: Any = (), name: str | None = None
           ) -> Callable[[Callable], Any]:
    """``@tieredcache.cached(...)``: like ``TieredCache.cached`` on the default cache."""
    return make_cached(None, ttl, tags, key, exclude, name)


def invalidates(tags: Any = (), keys: Any = ()) -> Callable[[Callable], Any]:
    """``@tieredcache.invalidates(...)`` on the default cache."""
    return make_invalidates(None, tags, keys)


# Warmers registered with @tieredcache.warmer: every default cache gets them.
_default_warmers: dict[str, list[Callable]] = {}


def _adopt_default_warmers(cache: Any) -> None:
    core = cache._core
    with core.warmers_lock:
        for group, fns in _default_warmers.items():
            have = core.warmers.setdefault(group, [])
            have.extend((f, None) for f in fns if (f, None) not in have)


def warmer(group: str) -> Callable[[Callable], Callable]:
    """``@tieredcache.warmer(group)``: a warmer of the default cache, whichever it is when
    warming runs (registering does not create the default cache)."""
    if callable(group) and not isinstance(group, str):
        raise TypeError("warmer needs a group name: write @tieredcache.warmer(\"products\")")
    if not isinstance(group, str) or not group or group == "all":
        raise ValueError(f"group must be a non-empty str other than 'all', got {group!r}")

    def decorate(func: Callable) -> Callable:
        if not callable(func):
            raise TypeError(f"warmer() registers functions, not {type(func).__name__}")
        with _default_lock:
            _default_warmers.setdefault(group, []).append(func)
            if _default is not None:
                _adopt_default_warmers(_default)
        return func

    return decorate


def warm_default(*groups: str) -> dict[str, int]:
    """``tieredcache.warm(*groups)`` on the default cache."""
    return get_cache().warm(*groups)




# ---- recommendations --------------------------------------------------------------------

# A function needs this many calls before its hit rate says anything.
MIN_CALLS = 20
LOW_HIT_RATE = 0.5


def recommendations(view: Any) -> list[dict[str, Any]]:
    """Advice per cached function and for the whole cache. On a namespace view (a
    tenant's), only the functions of its namespace and its sub-namespaces are named."""
    core = view._core
    out: list[dict[str, Any]] = []
    mine = None if view._is_root else view.name
    for fn in sorted(list(core.functions.values()), key=lambda f: f.name):
        row = fn.stats()
        if mine is not None and not (row["namespace"] == mine or str(row["namespace"]).startswith(mine + "/")):
            continue
        calls = row["calls"]
        if calls >= MIN_CALLS and row["hit_rate"] < LOW_HIT_RATE:
            ttl = fn.ttl if fn.ttl is not None else core.default_ttl
            out.append({"function": fn.name, "kind": "low_hit_rate", "message": (
                f"hit rate {row['hit_rate']:.0%} over {calls} calls: lengthen its TTL (now {ttl}s) if the data "
                "allows, or check that its key does not include an argument that changes on every call "
                "(a timestamp, a request id); exclude= leaves such arguments out")})
        hit, uncached = row["avg_hit_ms"], row["avg_uncached_ms"]
        if row["misses"] >= MIN_CALLS and hit is not None and uncached is not None and uncached < hit:
            out.append({"function": fn.name, "kind": "not_worth_caching", "message": (
                f"computing it takes {uncached:.3f} ms, less than a cached read ({hit:.3f} ms): "
                "consider not caching it")})
    s = core.l1.stats()
    evicted = s["evictions"] + s["evictions_bytes"]
    if s["sets"] >= MIN_CALLS and evicted > s["sets"] // 10:
        bound = "max_bytes" if s["evictions_bytes"] > s["evictions"] else "max_entries"
        out.append({"function": None, "kind": "evictions", "message": (
            f"{evicted} of {s['sets']} L1 entries were evicted for room: raise {bound} "
            f"(now {s[bound]}) so that hot entries stay in memory")})
    if core.redis is not None:
        if core.breaker.state != "closed":
            out.append({"function": None, "kind": "redis_unavailable", "message": (
                f"Redis is unreachable (circuit breaker {core.breaker.state}): reads are served from L1 and the "
                "loaders; check the server and the network")})
        elif core.stats["l2_errors"]:
            out.append({"function": None, "kind": "redis_errors", "message": (
                f"{core.stats['l2_errors']} Redis calls failed ({core.stats['l2_timeouts']} timeouts): check its "
                "latency and socket_timeout")})
    return out

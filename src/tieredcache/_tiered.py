"""TieredCache: L1 (LocalCache, in process) -> L2 (Redis, shared) -> the caller's loader.

Structure::

    TieredCache (a namespace view) --+
    TieredCache (another view)    ---+--> _Core: one per root cache, shared by its views
                                           L1 LocalCache (keys "ns:key", tags "ns:tag")
                                           RedisClient (sync pool), AsyncRedisClient per loop
                                           CircuitBreaker, Lua scripts
                                           listener thread: pub/sub -> L1 invalidation

Redis layout (ns = escaped namespace, never containing ':')::

    tc:{ns}:k:{key}    payload: version (1 byte) + expires_at_ms (8, 0 = none) + load ms (4)
                       + write id (8, random) + length of the tags (2) + the tags (JSON
                       list) + serializer bytes;
                       the tags travel with the value so that a process filling its L1
                       from Redis tags the entry and later tag invalidations reach it
    tc:{ns}:kt:{key}   set of the tag-set keys of key
    tc:{ns}:t:{tag}    set of the keys carrying tag (expires with its longest-lived member)
    tc:{ns}:tg:{tag}   the tag's generation (INCR by every invalidation of the tag)
    tc:{ns}:x:{key}    tombstone of a deleted key (60 s): refuses loads that started before
    tc:{ns}:gen        namespace generation (INCR by prefix invalidations and clear)
    tc:{ns}:lock:{key} cross-process loader lock
    tc:{top}:inv       pub/sub channel of invalidation messages, one per top-level
                       namespace ({top}: ns up to its first "/"), shared by its
                       sub-namespaces (tenants): a message names its namespace

Invariants: a value loaded before an invalidation is never stored after it (Redis: the
write-back is a compare-and-set on what the miss saw: the key's value, its tombstone,
its tags' generations and the namespace generation; L1: the same with local generation
counters); while invalidation messages may be missed (no confirmed subscription, a PING on
the subscriber unanswered past its lease (_Heartbeat), or the breaker open) L1 keeps
entries at most ``degraded_l1_ttl`` seconds (none with 0), and L1 is flushed when that
starts and ends; an L2 reply read while the subscriber does not answer PINGs is a miss;
an invalidation that could not reach Redis waits in an outbox and is applied before
Redis is used again.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import inspect
import json
import logging
import math
import os
import random
import struct
import threading
import time
import uuid
import weakref
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from ._breaker import CLOSED, CircuitBreaker, describe_error, describe_traceback
from ._core import LocalCache
from ._metrics import Histogram
from ._errors import (
    BackendError,
    CircuitOpenError,
    ConfigurationError,
    SerializationError,
)

__all__ = ["TieredCache"]

log = logging.getLogger("tieredcache")

_MISSING = object()
_GO = object()  # l2_begin: go on to Redis
_HEADER = struct.Struct(">BQIQH")  # version, expires_at_ms, load_ms, write id, tags length
_VERSION = 2
_ON_ERROR = ("ignore", "raise")
_NS_KEPT = 10_000  # namespaces kept alive without a view (the most recently asked for)
_MAX_VALUE_BYTES = 16 * 1024 * 1024  # default cap on one payload in Redis (max_value_bytes)

# ---- Lua scripts (run atomically by Redis) -----------------------------------------------

# Store KEYS[1] = ARGV[1] for ARGV[2] ms (0: no expiry), replacing its tags with the tag
# sets KEYS[first .. first+nt-1]; KEYS[2] is the key's own set of its tag sets. A tag set
# lives as long as its longest-lived member.
# The SET comes first: under maxmemory it is the command Redis refuses (OOM) before the
# script has written anything, so a full Redis refuses the whole store.
_STORE_BODY = """
local ttl = tonumber(ARGV[2])
if ttl > 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
else
  redis.call('SET', KEYS[1], ARGV[1])
end
local old = redis.call('SMEMBERS', KEYS[2])
for _, t in ipairs(old) do redis.call('SREM', t, KEYS[1]) end
redis.call('DEL', KEYS[2])
for i = first, first + nt - 1 do
  local existed = redis.call('EXISTS', KEYS[i])
  redis.call('SADD', KEYS[i], KEYS[1])
  redis.call('SADD', KEYS[2], KEYS[i])
  if ttl > 0 then
    local cur = redis.call('PTTL', KEYS[i])
    if existed == 0 or (cur >= 0 and cur < ttl) then redis.call('PEXPIRE', KEYS[i], ttl) end
  else
    redis.call('PERSIST', KEYS[i])
  end
end
if nt > 0 and ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
return 1
"""

# set(): KEYS key, key's tag index, tag sets...   ARGV payload, ttl ms
_SET_LUA = "local first, nt = 3, #KEYS - 2\n" + _STORE_BODY

# The write-back of a load: store only if nothing invalidated the entry since the miss.
# KEYS key, key's tag index, namespace generation, key's tombstone, tag sets (nt),
#      tag generations (nt)
# ARGV payload, ttl ms, SHA-1 of the value seen at the miss ("" if none), namespace
#      generation seen, tombstone seen ("" if none), nt, tag generations seen (nt)
_CAS_SET_LUA = """
local nt = tonumber(ARGV[6])
local cur = redis.call('GET', KEYS[1])
local seen = ''
if cur then seen = redis.sha1hex(cur) end
if seen ~= ARGV[3] then return 0 end
if (redis.call('GET', KEYS[3]) or '0') ~= ARGV[4] then return 0 end
if (redis.call('GET', KEYS[4]) or '') ~= ARGV[5] then return 0 end
for i = 1, nt do
  if (redis.call('GET', KEYS[4 + nt + i]) or '0') ~= ARGV[6 + i] then return 0 end
end
local first = 5
""" + _STORE_BODY

# Remove keys with their tag bookkeeping; with ARGV[4] > 0 leave each a tombstone
# "tc:{ns}:x:{key}" for that many ms, which refuses the write-back of loads that started
# before the delete.
# KEYS keys...   ARGV key prefix, tag-index prefix, tombstone prefix, tombstone ms, value
# Returns how many keys were removed.
_DELETE_LUA = """
local n = 0
local tomb = tonumber(ARGV[4])
for i = 1, #KEYS do
  local k = KEYS[i]
  local rest = string.sub(k, #ARGV[1] + 1)
  local kt = ARGV[2] .. rest
  for _, t in ipairs(redis.call('SMEMBERS', kt)) do redis.call('SREM', t, k) end
  redis.call('DEL', kt)
  n = n + redis.call('DEL', k)
  if tomb > 0 then redis.call('SET', ARGV[3] .. rest, ARGV[5], 'PX', tomb) end
end
return n
"""

# Remove every key carrying any of the tags and bump the tags' generations.
# KEYS tag sets (n), tag generations (n)   ARGV key prefix, tag-index prefix, gen ttl ms
_INVALIDATE_TAGS_LUA = """
local n = 0
local nt = #KEYS / 2
for i = 1, nt do
  for _, k in ipairs(redis.call('SMEMBERS', KEYS[i])) do
    local kt = ARGV[2] .. string.sub(k, #ARGV[1] + 1)
    for _, t in ipairs(redis.call('SMEMBERS', kt)) do
      if t ~= KEYS[i] then redis.call('SREM', t, k) end
    end
    redis.call('DEL', kt)
    n = n + redis.call('DEL', k)
  end
  redis.call('DEL', KEYS[i])
  redis.call('INCR', KEYS[nt + i])
  redis.call('PEXPIRE', KEYS[nt + i], ARGV[3])
end
return n
"""

_UNLOCK_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_ALL_LUA = (_SET_LUA, _CAS_SET_LUA, _DELETE_LUA, _INVALIDATE_TAGS_LUA, _UNLOCK_LUA)
_SHA = {lua: hashlib.sha1(lua.encode()).hexdigest() for lua in _ALL_LUA}

# A deleted key keeps a tombstone this long: longer than any sane load.
_TOMBSTONE_MS = 60_000
# Tag generations outlive any load in flight by far, then go.
_TAG_GEN_MS = 3_600_000
# Local generation slots (per key / per tag, hashed): a collision only refuses a fill.
_SLOTS = 4096
# Invalidations remembered while Redis is unreachable; beyond, the namespace is cleared.
_OUTBOX_MAX = 10_000
# How many recent L1 fills from Redis remember their payload's SHA-1.
_RECENT_FILLS = 4096


def _remember(table: OrderedDict, key: str, value: int) -> None:
    table[key] = value
    table.move_to_end(key)
    if len(table) > _RECENT_FILLS:
        table.popitem(last=False)


def _escape_ns(namespace: str) -> str:
    return namespace.replace("%", "%25").replace(":", "%3A")


_GLOB = str.maketrans({c: "\\" + c for c in "*?[]\\"})


def _glob_escape(text: str) -> str:
    return text.translate(_GLOB)


def _check_key(key: Any) -> str:
    if type(key) is not str:
        if isinstance(key, str):
            return str.__str__(key)
        raise TypeError(f"key must be str, not {type(key).__name__}")
    return key


def _check_tags(tags: Any) -> tuple[str, ...]:
    if not tags:
        return ()
    if isinstance(tags, (str, bytes)):
        raise TypeError(f"tags must be an iterable of str, not a single {type(tags).__name__} (use tags=[{tags!r}])")
    out = tuple(tags)
    for t in out:
        if not isinstance(t, str):
            raise TypeError(f"tags must be str, not {type(t).__name__}")
    return out


def _check_ttl(ttl: Any, name: str = "ttl") -> float | None:
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)):
        raise TypeError(f"{name} must be a number of seconds or None, not {type(ttl).__name__}")
    if not (ttl > 0) or math.isinf(ttl):
        raise ConfigurationError(f"{name} must be a positive, finite number of seconds, got {ttl!r}")
    return float(ttl)


def _key_hash(key: str) -> str:
    """A key as logs show it by default: a short hash, stable across processes and runs
    (correlates log lines, hides what the key is made of)."""
    return "key#" + hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=3).hexdigest()


def _error_kind(exc: BaseException) -> str:
    """The types of an exception and of its cause, without their messages (a decoding
    error's message may quote the payload)."""
    cause = exc.__cause__ or exc.__context__
    return type(exc).__name__ + (f" (from {type(cause).__name__})" if cause is not None else "")


_FLIGHTS_GUARD = threading.Lock()  # guards every flight's done flag and waiter list
# The flights this context is loading as their leader: seen by the loader, by the worker
# thread of a sync loader of aget_or_set (asyncio.to_thread copies the context) and by
# tasks the loader creates. A call that would wait for one of them would wait for itself:
# it raises instead (TieredCache._cannot_wait).
_LOADING: contextvars.ContextVar[tuple] = contextvars.ContextVar("tieredcache_loading", default=())


class _Flight:
    """One in-process load that concurrent callers of the same key wait for: threads on
    ``gate`` (a lock the leader holds until it finishes: far cheaper to create than an
    Event, which matters because every miss creates a flight), asyncio tasks (of any loop)
    on a future resolved from the leader's thread."""

    __slots__ = ("gate", "done", "value", "error", "snap", "waiters", "loop")

    def __init__(self, snap: tuple) -> None:
        self.snap = snap
        self.gate = threading.Lock()
        self.gate.acquire()
        self.done = False
        self.value: Any = None
        self.error: BaseException | None = None
        self.waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future]] = []
        self.loop: asyncio.AbstractEventLoop | None = None  # the leader's, when it is a task

    def finish(self, value: Any = None, error: BaseException | None = None) -> None:
        with _FLIGHTS_GUARD:
            self.value, self.error = value, error
            self.done = True
            waiters, self.waiters = self.waiters, []
        self.gate.release()
        for loop, fut in waiters:
            try:
                loop.call_soon_threadsafe(self._resolve, fut)
            except RuntimeError:  # that loop is closed: nobody waits there any more
                pass

    def wait(self) -> None:
        """Block this thread until the leader finished."""
        if not self.done:
            self.gate.acquire()
            self.gate.release()

    def _resolve(self, fut: asyncio.Future) -> None:
        if fut.done():
            return
        if self.error is not None:
            fut.set_exception(self.error)
        else:
            fut.set_result(self.value)

    def result(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value

    async def wait_async(self) -> Any:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        with _FLIGHTS_GUARD:
            if not self.done:
                self.waiters.append((loop, fut))
            else:
                return self.result()
        return await fut


class NoStore:
    """Returned by a loader (or a cached function): ``get_or_set`` and the decorators give
    the caller ``value`` and store nothing (an error page, an empty result)."""

    __slots__ = ("value",)

    def __init__(self, value: Any = None) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"NoStore({self.value!r})"


class _LeaderCancelled(Exception):
    """The task loading a key was cancelled; a waiter retries the load itself."""


def _channel_of(name: str) -> str:
    """The invalidation channel of a namespace: its top-level namespace's (a tenant's
    view subscribes to nothing new)."""
    return f"tc:{_escape_ns(name.split('/', 1)[0])}:inv"


class _Namespace:
    """Per-namespace state shared by every view on it. ``subscribed`` is its channel's
    event (shared by the namespaces of that channel), set while subscribed."""

    __slots__ = ("name", "ns", "l1prefix", "kprefix", "kglob", "ktprefix", "tprefix", "tgprefix", "xprefix",
                 "gen", "channel", "subscribed", "__weakref__")

    def __init__(self, name: str, subscribed: threading.Event | None = None) -> None:
        self.name = name
        self.ns = _escape_ns(name)
        self.l1prefix = self.ns + ":"
        base = f"tc:{self.ns}:"
        self.kprefix = base + "k:"
        # kprefix as a SCAN MATCH pattern: a namespace "x*" must not match namespace "xy"
        self.kglob = _glob_escape(self.kprefix)
        self.ktprefix = base + "kt:"
        self.tprefix = base + "t:"
        self.tgprefix = base + "tg:"
        self.xprefix = base + "x:"
        self.gen = base + "gen"
        self.channel = _channel_of(name)
        self.subscribed = threading.Event() if subscribed is None else subscribed


_cores: weakref.WeakSet[_Core] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    global _FLIGHTS_GUARD
    _FLIGHTS_GUARD = threading.Lock()  # another thread of the parent may have held it
    for core in list(_cores):
        core._forked()


os.register_at_fork(after_in_child=_after_fork_in_child)


class _Heartbeat:
    """Liveness of the invalidation channel, judged by the listener thread.

    A paused (SIGSTOP, CLIENT PAUSE), slowed or silently cut-off Redis keeps the
    subscriber connection open while it holds invalidation messages up; meanwhile a writer
    in another process gives up after ``socket_timeout`` and answers its client, and this
    process would go on serving what that write changed from L1. So the listener PINGs
    the subscriber every ``lease / 4`` s, and the channel is *alive* while no PING sent
    more than ``lease`` ago is unanswered; ``lease`` (0.4 x socket_timeout, 0.1 s by
    default) is shorter than a writer's wait, so a lapse is noticed before such a write
    is answered (the listener flushes L1 then: ``_Core._lease_changed``). A listener kept
    from running (the GIL) does not lapse falsely: it reads what arrived before judging.
    Bounded work: one PING per step at most; the unanswered PINGs are capped at 1,000.
    """

    __slots__ = ("lease", "every", "sent", "pongs", "next_at")

    def __init__(self, socket_timeout: float) -> None:
        self.lease = self.lease_of(socket_timeout)
        self.every = self.lease / 4
        self.sent: deque[float] = deque(maxlen=1000)  # send times of the unanswered PINGs
        self.pongs = 0  # the subscriber's pong count already accounted for
        self.next_at = 0.0

    @staticmethod
    def lease_of(socket_timeout: float) -> float:
        return 0.4 * socket_timeout

    def step(self, ps: Any, now: float) -> tuple[bool, float]:
        """Account for the pongs read, send a PING when one is due; (alive, seconds to
        wait before the next step)."""
        answered, self.pongs = ps.pongs - self.pongs, ps.pongs
        for _ in range(min(answered, len(self.sent))):
            self.sent.popleft()
        if now >= self.next_at:
            ps.ping()
            self.sent.append(now)
            self.next_at = now + self.every
        alive = not self.sent or now - self.sent[0] <= self.lease
        return alive, min(max(self.next_at - now, 0.001), 0.1)


class _Core:
    """Everything the views of one root cache share."""

    def __init__(self, *, redis_url: str | None, max_entries: int, max_bytes: int | None,
                 default_ttl: float | None, l1_ttl: float | None, serializer: Any,
                 secret_key: bytes | str | None, compress_threshold: int | None, on_error: str,
                 socket_timeout: float, connect_timeout: float, max_connections: int,
                 pool_timeout: float, degraded_l1_ttl: float, breaker_threshold: int,
                 breaker_cooldown: float, lock_timeout: float | None, early_refresh: float | None,
                 enabled: bool, monitoring: bool = True, log_keys: Any = False,
                 max_value_bytes: int | None = _MAX_VALUE_BYTES) -> None:
        from ._serializers import make_serializer

        if on_error not in _ON_ERROR:
            raise ConfigurationError(f"on_error must be 'ignore' or 'raise', got {on_error!r}")
        self.l1 = LocalCache(max_entries=max_entries, max_bytes=max_bytes)
        self.default_ttl = _check_ttl(default_ttl, "default_ttl")
        self.l1_ttl = _check_ttl(l1_ttl, "l1_ttl")
        if degraded_l1_ttl == 0 and not isinstance(degraded_l1_ttl, bool):
            self.degraded_l1_ttl = 0.0  # nothing enters L1 while invalidations may be missed
        else:
            self.degraded_l1_ttl = _check_ttl(degraded_l1_ttl, "degraded_l1_ttl") or 5.0
        self.lock_timeout = _check_ttl(lock_timeout, "lock_timeout")
        if max_value_bytes is not None and (isinstance(max_value_bytes, bool) or not isinstance(max_value_bytes, int)):
            raise ConfigurationError(f"max_value_bytes must be an int or None, not {type(max_value_bytes).__name__}")
        if max_value_bytes is not None and max_value_bytes < 1:
            raise ConfigurationError(f"max_value_bytes must be at least 1, got {max_value_bytes!r}")
        self.max_value_bytes = max_value_bytes
        self.oversize_next = 0.0  # monotonic time before which oversized values log at DEBUG
        if early_refresh is not None and (isinstance(early_refresh, bool) or not isinstance(early_refresh, (int, float))
                                          or not early_refresh > 0):
            raise ConfigurationError(f"early_refresh must be a positive number (beta) or None, got {early_refresh!r}")
        self.early_refresh = early_refresh
        self.serializer = make_serializer(serializer, secret_key=secret_key, compress_threshold=compress_threshold)
        self.raise_errors = on_error == "raise"
        self.enabled = enabled
        self.breaker = CircuitBreaker(threshold=breaker_threshold, cooldown=breaker_cooldown)
        # Local generations, bumped by every invalidation this process makes or hears of:
        # a fill of L1 checks them against a snapshot taken before its read or load.
        self.gen_global = 0  # prefix invalidations, clear, L1 flushes
        self.gen_tags_any = 0  # any tag invalidation (for fills whose tags come from Redis)
        self.gen_slots = [0] * _SLOTS  # per key and per tag, hashed
        self.flights: dict[str, _Flight] = {}
        self.flights_lock = threading.Lock()
        # Namespaces by name, held by their views (weakly here) and, for the _NS_KEPT most
        # recently asked for, by ns_kept: names that come from requests (tenants) cannot
        # grow memory without bound. A namespace that dies has its L1 entries dropped
        # (ns_retired, drained before a namespace is made again): no message reaches it
        # meanwhile.
        self.namespaces: weakref.WeakValueDictionary[str, _Namespace] = weakref.WeakValueDictionary()
        self.ns_kept: OrderedDict[str, _Namespace] = OrderedDict()
        self.ns_retired: deque[str] = deque()
        self.channels: dict[str, threading.Event] = {}  # invalidation channel -> subscribed
        self.ns_lock = threading.Lock()
        self.stats = {
            "l2_hits": 0, "l2_misses": 0, "l2_errors": 0, "l2_timeouts": 0, "l2_sets": 0,
            "l2_deletes": 0, "loads": 0, "load_errors": 0, "invalidations_sent": 0,
            "invalidations_received": 0, "l1_flushes": 0, "stale_writes_refused": 0,
            "listener_reconnects": 0, "warmed": 0, "l2_rejected": 0,
        }
        self.monitoring = monitoring
        self.l2_latency = Histogram()  # every L2 round trip (monitoring on)
        self.alerts: Any = None  # the AlertEngine (monitoring on), set by TieredCache
        if not (isinstance(log_keys, bool) or callable(log_keys)):
            raise ConfigurationError(f"log_keys must be True, False or a callable, not {type(log_keys).__name__}")
        self.log_keys = log_keys
        self.undecodable_next = 0.0  # monotonic time before which undecodable payloads log at DEBUG
        self.undecodable_quiet = 0  # how many were logged at DEBUG since the last WARNING
        self.started = time.time()
        # decorated functions bound to this cache (id -> _Cached), warmers, listeners
        self.functions: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
        self.warmers: dict[str, list[tuple[Callable, Any]]] = {}  # group -> (warmer, owner view or None)
        self.warmers_lock = threading.Lock()
        self.listeners: list[Callable[[str, dict], Any]] = []
        self.redis = None
        self.redis_url = redis_url
        self._client_args = dict(socket_timeout=socket_timeout, connect_timeout=connect_timeout,
                                 max_connections=max_connections, pool_timeout=pool_timeout)
        self.aclients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self.origin = uuid.uuid4().hex
        self.pid = os.getpid()
        self.closed = False
        self.listener: threading.Thread | None = None
        self.listen_lock = threading.Lock()  # one reader of the subscriber at a time (see fence)
        self.stop_listener = threading.Event()
        self.listener_pending: list[str] = []  # channels to subscribe to
        self.listener_connected = False
        # the subscriber connection did not answer a PING within its lease (_Heartbeat):
        # messages may be held up, so L1 is flushed and filled as while unsubscribed
        self.suspect = False
        self.lease_log_next = 0.0  # monotonic time before which a lapsed lease logs at DEBUG
        self.pubsub = None
        # invalidations that could not reach Redis: applied before Redis is used again
        self.outbox: list[tuple[TieredCache, str, tuple]] = []
        self.outbox_lock = threading.Lock()
        # held by the one caller applying the outbox (see replay_busy)
        self.replay_lock = threading.Lock()
        # write ids of the payloads of the latest L1 fills from Redis: a "set" message
        # about the very payload this process just read leaves its L1 entry in place
        self.recent: OrderedDict[str, int] = OrderedDict()
        # write id of the latest payload another process announced for a key: a fill that
        # read exactly that payload is current even if the announcement arrived mid-read
        self.announced: OrderedDict[str, int] = OrderedDict()
        if redis_url is not None:
            from ._redis import RedisClient, RedisURL

            url = RedisURL.parse(redis_url)  # ConfigurationError on a bad URL
            self.redis = RedisClient(url, client_name="tieredcache", **self._client_args)
        _cores.add(self)

    # ---- namespaces and the listener ---------------------------------------------------

    def namespace(self, name: str) -> _Namespace:
        with self.ns_lock:
            ns = self.namespaces.get(name)
            if ns is None:
                while self.ns_retired:  # a namespace of that name may have lived: its entries go
                    self.l1.invalidate_prefix(self.ns_retired.popleft())
                channel = _channel_of(name)
                subscribed = self.channels.get(channel)
                if subscribed is None:
                    subscribed = self.channels[channel] = threading.Event()
                    if self.redis is not None:
                        self.listener_pending.append(channel)
                ns = _Namespace(name, subscribed)
                self.namespaces[name] = ns
                weakref.finalize(ns, self.ns_retired.append, ns.l1prefix)
            kept = self.ns_kept
            kept[name] = ns
            kept.move_to_end(name)
            if len(kept) > _NS_KEPT:
                kept.popitem(last=False)
        self.ensure_listener()
        return ns

    def ensure_listener(self) -> None:
        if self.redis is None or self.closed:
            return
        if self.pid != os.getpid():
            self._forked()
        if self.listener is None or not self.listener.is_alive():
            with self.ns_lock:
                if self.listener is None or not self.listener.is_alive():
                    self.stop_listener = threading.Event()
                    t = threading.Thread(target=self._listen, name="tieredcache-invalidations", daemon=True)
                    self.listener = t
                    t.start()

    def _forked(self) -> None:
        """In a forked child: the listener thread and the parent's identity are gone."""
        self.pid = os.getpid()
        self.origin = uuid.uuid4().hex
        # invalidations may be missed until the child has subscribed: start it cold
        self.bump_all()
        self.l1.clear()
        self.outbox_lock = threading.Lock()
        self.replay_lock = threading.Lock()
        self.listener = None
        self.listener_connected = False
        self.flights = {}
        self.flights_lock = threading.Lock()
        self.ns_lock = threading.Lock()
        self.listen_lock = threading.Lock()
        self.pubsub = None  # the parent's subscriber: not ours to read
        self.l1._take_pending()
        self.breaker.reset()
        self.aclients = weakref.WeakKeyDictionary()
        self.channels = {channel: threading.Event() for channel in self.channels}
        for ns in list(self.namespaces.values()):
            ns.subscribed = self.channels[ns.channel]
        self.listener_pending = list(self.channels)
        if self.alerts is not None:
            self.alerts._forked()

    def snap(self, l1key: str, l1tags: tuple[str, ...] | None = None) -> tuple:
        """What must not change between a read or load and the L1 fill it leads to."""
        slots = self.gen_slots
        if l1tags is None:
            return (self.gen_global, self.gen_tags_any, slots[hash(l1key) & (_SLOTS - 1)])
        return (self.gen_global, slots[hash(l1key) & (_SLOTS - 1)],
                *[slots[hash(t) & (_SLOTS - 1)] for t in l1tags])

    def oversized(self, payload: bytes, key: str) -> bool:
        """Whether payload exceeds max_value_bytes (then counted as rejected, and logged:
        a WARNING at most once a minute, DEBUG in between)."""
        cap = self.max_value_bytes
        if cap is None or len(payload) <= cap:
            return False
        self.stats["l2_rejected"] += 1
        now = time.monotonic()
        level = logging.DEBUG
        if now >= self.oversize_next:
            self.oversize_next = now + 60.0
            level = logging.WARNING
        if log.isEnabledFor(level):
            log.log(level, "tieredcache: %s serializes to %d bytes, over max_value_bytes=%d: not stored in Redis",
                    self.key_for_log(key), len(payload), cap)
        return True

    def key_for_log(self, key: str) -> str:
        """A key as log lines show it: ``key#3f2a1c`` (log_keys=False), the key itself
        (True), or what the log_keys callable makes of it."""
        if self.log_keys is False:
            return _key_hash(key)
        if self.log_keys is True:
            return repr(key)
        try:
            return str(self.log_keys(key))
        except Exception:
            return _key_hash(key)

    def log_error(self, message: str, exc: BaseException, *args: Any) -> None:
        """Log an unexpected exception at ERROR: with its messages when log_keys=True,
        else frames and types only (a message may quote a key or a value)."""
        if self.log_keys is True:
            log.error(message, *args, exc_info=exc)
        else:
            log.error(message + "\n%s", *args, describe_traceback(exc))

    def undecodable(self, ns: _Namespace, key: str | None, exc: BaseException) -> None:
        """Log a payload that does not decode: at WARNING the first time, then at most
        once a minute (with how many since), the others at DEBUG. The types of the error
        only: its message may quote the payload."""
        what = f"{self.key_for_log(key)} in namespace {ns.name!r}" if key is not None else f"namespace {ns.name!r}"
        now = time.monotonic()
        if now >= self.undecodable_next:
            self.undecodable_next = now + 60.0
            quiet, self.undecodable_quiet = self.undecodable_quiet, 0
            more = f" ({quiet} more since the last report)" if quiet else ""
            log.warning("tieredcache: undecodable payload in Redis for %s treated as a miss: %s%s",
                        what, _error_kind(exc), more)
        else:
            self.undecodable_quiet += 1
            log.debug("tieredcache: undecodable payload in Redis for %s treated as a miss: %s",
                      what, _error_kind(exc))

    def forget_announced(self, l1key: str) -> None:
        self.announced.pop(l1key, None)

    def bump_key(self, l1key: str) -> None:
        self.gen_slots[hash(l1key) & (_SLOTS - 1)] += 1

    def bump_tags(self, l1tags: Iterable[str]) -> None:
        for t in l1tags:
            self.gen_slots[hash(t) & (_SLOTS - 1)] += 1
        self.gen_tags_any += 1

    def bump_all(self) -> None:
        self.gen_global += 1

    def pipe(self, cmds: list[tuple]) -> list:
        """One round trip; reloads the scripts once if Redis lost them; raises the first
        error reply."""
        replies = self.redis.pipeline(cmds)
        if any(isinstance(r, BackendError) and str(r).startswith("NOSCRIPT") for r in replies):
            for lua in _ALL_LUA:
                self.redis.execute("SCRIPT", "LOAD", lua)
            replies = self.redis.pipeline(cmds)
        for r in replies:
            if isinstance(r, BackendError):
                raise r
        return replies

    async def apipe(self, cmds: list[tuple]) -> list:
        client = self.aclient()
        replies = await client.pipeline(cmds)
        if any(isinstance(r, BackendError) and str(r).startswith("NOSCRIPT") for r in replies):
            for lua in _ALL_LUA:
                await client.execute("SCRIPT", "LOAD", lua)
            replies = await client.pipeline(cmds)
        for r in replies:
            if isinstance(r, BackendError):
                raise r
        return replies

    def filled(self, l1key: str, wid: int) -> None:
        _remember(self.recent, l1key, wid)

    def queue(self, view: TieredCache, op: str, args: tuple) -> None:
        with self.outbox_lock:
            if len(self.outbox) >= _OUTBOX_MAX:
                # too much to remember: clear the namespace in Redis instead
                self.outbox = [o for o in self.outbox if o[0]._ns is not view._ns]
                op, args = "matching", (view._ns.kglob + "*", "clear", [])
                log.warning("tieredcache: %d invalidations waiting for Redis: namespace %r will be cleared in "
                            "Redis instead once it is back", _OUTBOX_MAX, view._ns.name)
            self.outbox.append((view, op, args))
        log.debug("tieredcache: invalidation queued until Redis is back (%d waiting)", len(self.outbox))

    def replay(self) -> None:
        """Apply the queued invalidations, oldest first; BackendError if Redis fails."""
        done = 0
        while self.outbox:
            view, op, args = self.outbox[0]
            if op == "cmds":
                self.pipe(list(args))
            else:
                view._delete_matching(*args)
            with self.outbox_lock:
                if self.outbox and self.outbox[0][0] is view and self.outbox[0][2] is args:
                    self.outbox.pop(0)
            done += 1
        if done:
            log.info("tieredcache: %d invalidation(s) made while Redis was unreachable applied", done)

    def degraded(self, ns: _Namespace) -> bool:
        return self.redis is not None and (self.suspect or not ns.subscribed.is_set()
                                           or self.breaker.state != CLOSED)

    def flush_l1(self, why: str | None) -> None:
        """Drop L1 (invalidations may have been missed); logs ``why`` at WARNING unless
        it is None (the caller logs the state change itself)."""
        self.bump_all()
        self.l1.clear()
        self.stats["l1_flushes"] += 1
        if why is not None:
            log.warning("tieredcache: L1 flushed: %s", why)

    def _listen(self) -> None:
        backoff = 0.05
        was_connected = False
        failing = False  # the channel's trouble was logged: quiet until it is back
        broken = False  # a bug was logged: quiet until a message is applied again
        stop = self.stop_listener
        while not stop.is_set():
            ps = None
            try:
                ps = self.pubsub = self.redis.pubsub()
                with self.ns_lock:
                    channels = list(self.channels.items())
                    self.listener_pending.clear()
                ps.subscribe(*[channel for channel, _ in channels])
                # Messages may have been missed while the channel was down: drop what L1
                # holds, then trust it again. (Before the first subscription L1 entries
                # were kept only degraded_l1_ttl.)
                if was_connected:
                    self.flush_l1(None)
                for _, subscribed in channels:
                    subscribed.set()
                if was_connected:
                    self.stats["listener_reconnects"] += 1
                    log.log(logging.DEBUG if broken else logging.INFO,
                            "tieredcache: invalidation channel resubscribed; L1 flushed (messages may have "
                            "been missed while it was down)")
                elif failing:
                    log.info("tieredcache: invalidation channel subscribed")
                failing = False
                was_connected = True
                self.listener_connected = True
                backoff = 0.05
                self.l1._watch(ps.fileno())  # the fence rises without waiting for this thread
                beat = _Heartbeat(self._client_args["socket_timeout"])
                while not stop.is_set():
                    with self.listen_lock:
                        if self.listener_pending:
                            with self.ns_lock:
                                pending = list(self.listener_pending)
                                self.listener_pending.clear()
                            # the confirmations may come behind messages, which are then
                            # read but not yet applied: readers must not trust L1 meanwhile
                            self.l1._raise_pending()
                            ps.subscribe(*pending)
                            for channel in pending:
                                self.channels[channel].set()
                        # Raised (or data waiting, which the probe raises): read and apply,
                        # and only then lower it (see csrc/fence.c: lowered first, a reader
                        # could trust L1 while this thread's recv holds messages unapplied).
                        if self.l1._pending:
                            try:
                                if self._drain(ps):
                                    broken = False
                            finally:
                                self.l1._take_pending()
                        # under the lock: the PING writes, and a fence that finds the channel
                        # lost sets suspect under it too
                        alive, wait = beat.step(ps, time.monotonic())
                        if alive == self.suspect:
                            self._lease_changed(alive)
                    if self.outbox and self.replay_lock.acquire(blocking=False):
                        try:
                            self.replay()
                        except BackendError:
                            pass  # Redis still failing; the next pass tries again
                        finally:
                            self.replay_lock.release()
                    # Wait without the GIL; the fence rises as soon as a message arrives,
                    # so readers apply it even while this thread waits for the GIL.
                    self.l1._wait_readable(ps.fileno(), wait)
            except BackendError as exc:
                if stop.is_set():
                    break  # close(): the subscriber was closed on purpose
                if self.listener_connected:
                    # Degraded first (fills from now on are short-lived), then the flush,
                    # and only then "disconnected": whoever sees that sees a flushed L1.
                    for subscribed in list(self.channels.values()):
                        subscribed.clear()
                    self.flush_l1(f"invalidation channel lost ({describe_error(exc)}); "
                                  f"L1 entries live at most {self.degraded_l1_ttl:g} s until it is back")
                    self.listener_connected = False
                elif not failing:
                    log.warning("tieredcache: cannot subscribe to invalidations (%s); L1 entries live at most "
                                "%g s until it is subscribed", describe_error(exc), self.degraded_l1_ttl)
                else:
                    log.debug("tieredcache: invalidation channel still down: %s", describe_error(exc))
                failing = True
                stop.wait(backoff)
                backoff = min(backoff * 2, 1.0)
            except Exception as exc:  # a bug must not kill invalidation silently
                for subscribed in list(self.channels.values()):
                    subscribed.clear()
                if not broken:
                    self.log_error("tieredcache: invalidation listener failed; L1 flushed, restarting it", exc)
                else:
                    log.debug("tieredcache: invalidation listener failed again (%s)", type(exc).__name__)
                self.flush_l1(None)
                broken = True
                stop.wait(backoff)
                backoff = min(backoff * 2, 1.0)
            finally:
                if ps is not None:
                    try:
                        self.l1._watch(None)  # before its socket closes
                        ps.close()
                    except Exception:
                        pass

    def _drain(self, ps: Any) -> int:
        """Apply every message already received (with ``listen_lock`` held)."""
        n = 0
        msg = ps.get_message(timeout=0)
        while msg is not None:
            self._apply(msg[1])
            n += 1
            msg = ps.get_message(timeout=0)
        return n

    def _lease_changed(self, alive: bool) -> None:
        """The subscriber connection stopped (or started again) answering PINGs within
        the lease: a paused, slowed or cut-off Redis holds invalidations up without closing
        the connection. Either way L1 is flushed: going suspect, because messages may be
        waiting; back, because what was filled meanwhile may predate them."""
        now = time.monotonic()
        loud = now >= self.lease_log_next
        if not alive:
            self.suspect = True
            self.flush_l1(None)
            if loud:
                self.lease_log_next = now + 60.0
            log.log(logging.WARNING if loud else logging.DEBUG,
                    "tieredcache: invalidation channel did not answer a PING within %g s; L1 flushed, entries "
                    "live at most %g s until it answers", _Heartbeat.lease_of(self._client_args["socket_timeout"]),
                    self.degraded_l1_ttl)
        else:
            self.suspect = False
            self.flush_l1(None)
            log.debug("tieredcache: invalidation channel answers again; L1 flushed")

    def fence(self) -> None:
        """Before trusting L1: apply the invalidations that have arrived but that the
        listener thread has not applied yet (it may be waiting for the GIL)."""
        ps = self.pubsub
        if ps is None:
            self.l1._take_pending()
            return
        with self.listen_lock:
            if not self.l1._pending:
                return  # the listener or another reader applied them meanwhile
            try:
                self._drain(ps)
            except BackendError:
                # The channel is lost and messages may be missed from now on; the
                # listener thread, which flushes L1 and reconnects, may not know yet: do
                # not trust L1 (nor fill it for long) past this point.
                self.suspect = True
                self.flush_l1(None)
            except Exception as exc:  # never into the caller; and never trust L1 after it
                self.log_error("tieredcache: applying invalidations failed; L1 flushed", exc)
                self.flush_l1(None)
            finally:
                self.l1._take_pending()  # only now: what was read is applied (or L1 flushed)

    def _apply(self, data: bytes) -> None:
        try:
            msg = json.loads(data)
            if msg.get("o") == self.origin:
                return
            ns = self.namespaces.get(msg["n"])
            kind, values = msg["k"], msg["v"]
        except (ValueError, KeyError, TypeError, AttributeError):
            log.debug("tieredcache: ignored a malformed invalidation message")
            return
        self.stats["invalidations_received"] += 1
        if ns is None:
            return
        l1, p = self.l1, ns.l1prefix
        if kind == "key":
            for k in values:
                self.announced.pop(p + k, None)
                self.bump_key(p + k)
                l1.delete(p + k)
        elif kind == "set":
            for k, wid in values:
                _remember(self.announced, p + k, wid)
                if self.recent.get(p + k) == wid:
                    continue  # this process already holds exactly that payload
                self.bump_key(p + k)
                l1.delete(p + k)
        elif kind == "tags":
            tags = [p + t for t in values]
            self.bump_tags(tags)
            l1.invalidate_tags(*tags)
        elif kind == "prefix":
            self.bump_all()
            for prefix in values:
                l1.invalidate_prefix(p + prefix)
        elif kind == "clear":
            self.bump_all()
            l1.invalidate_prefix(p)

    def message(self, ns: _Namespace, kind: str, values: list) -> bytes:
        return json.dumps({"o": self.origin, "n": ns.name, "k": kind, "v": values}).encode()

    # ---- L2 calls through the breaker --------------------------------------------------

    def l2_failed(self, exc: BaseException) -> None:
        from ._errors import BackendTimeout

        self.breaker.failure(exc)
        self.stats["l2_errors"] += 1
        if isinstance(exc, BackendTimeout):
            self.stats["l2_timeouts"] += 1
        log.debug("tieredcache: L2 call failed: %s", describe_error(exc))

    def skip_l2(self, write: bool) -> bool:
        """Whether an L2 call must not be made: the breaker is open, unless it is an
        invalidating write while the invalidation channel answers (Redis is most likely
        back; one timeout at most): queued behind the breaker, the write would let the
        other processes, which trust their L1 again, serve what it replaced until the
        queue drains."""
        if write and self.listener_connected and not self.suspect:
            return False
        if not self.breaker.allow():
            if self.raise_errors:
                raise CircuitOpenError("the Redis circuit breaker is open")
            return True
        return False

    def replay_busy(self) -> Any:
        """An L2 call while another caller applies the outbox: Redis must not be used
        before the queued invalidations are, and waiting for them, or applying them once
        more, would cost this call several timeouts when Redis hangs (every async call
        replayed in its own thread of the default executor, 30 callers took 5 timeouts).
        Unavailable for this call (a write is queued behind them)."""
        if self.raise_errors:
            from ._errors import BackendUnavailable

            raise BackendUnavailable("invalidations made while Redis was unreachable are being applied")
        return _MISSING

    def l2_begin(self, write: bool) -> tuple[Any, bool]:
        """The start of every L2 call (l2, al2): the listener and alert threads running,
        the outbox's replay claimed, the breaker asked. ``(_GO, replaying)`` to go on
        (``replaying``: this caller holds ``replay_lock`` and must apply the outbox
        first); otherwise ``(answer, False)`` with nothing held."""
        if self.listener is None:  # after a fork (the at-fork hook reset it), or first use
            self.ensure_listener()
        if self.alerts is not None and self.alerts.idle:  # likewise for the alerts' thread
            self.alerts.ensure_started()
        # the outbox first: a breaker that let this call probe must see it succeed or fail
        replaying = False
        if self.outbox:
            if not self.replay_lock.acquire(blocking=False):
                return self.replay_busy(), False
            replaying = True
        try:
            skip = self.skip_l2(write)
        except BaseException:
            if replaying:
                self.replay_lock.release()
            raise
        if skip:
            if replaying:
                self.replay_lock.release()
            return _MISSING, False
        return _GO, replaying

    def l2(self, fn: Callable, *args: Any, write: bool = False) -> Any:
        """Call fn(*args) on Redis; _MISSING if Redis is unavailable (unless raising).
        ``write``: an invalidation (see skip_l2)."""
        answer, replaying = self.l2_begin(write)
        if answer is not _GO:
            return answer
        t0 = time.perf_counter_ns()
        try:
            if replaying:
                try:
                    self.replay()
                finally:
                    self.replay_lock.release()
            result = fn(*args)
        except BackendError as exc:
            self.l2_failed(exc)
            if self.raise_errors:
                raise
            return _MISSING
        if self.monitoring:
            self.l2_latency.observe(time.perf_counter_ns() - t0)
        self.breaker.success()
        if self.suspect and not write:
            # The invalidation channel does not answer: another process's invalidation
            # may still be on its way to Redis, which then holds what it replaced. Not
            # trusted: a miss (the loader reads the source).
            return _MISSING
        return result

    async def al2(self, fn: Callable[..., Awaitable], *args: Any, write: bool = False) -> Any:
        answer, replaying = self.l2_begin(write)
        if answer is not _GO:
            return answer
        t0 = time.perf_counter_ns()
        try:
            if replaying:
                try:
                    await asyncio.to_thread(self.replay)
                finally:
                    self.replay_lock.release()
            result = await fn(*args)
        except BackendError as exc:
            self.l2_failed(exc)
            if self.raise_errors:
                raise
            return _MISSING
        if self.monitoring:
            self.l2_latency.observe(time.perf_counter_ns() - t0)
        self.breaker.success()
        if self.suspect and not write:  # not trusted (see l2)
            return _MISSING
        return result

    def aclient(self):
        """The AsyncRedisClient of the running loop (one per loop: loop-safe)."""
        loop = asyncio.get_running_loop()
        client = self.aclients.get(loop)
        if client is None:
            from ._aioredis import AsyncRedisClient

            if self.closed:  # as the closed sync client does: no new connections
                from ._errors import BackendUnavailable

                raise BackendUnavailable("client closed: this TieredCache was closed")
            # A client keeps its loop alive (so the weak key never goes): close the
            # connections of loops that have ended (asyncio.run closes its loop) rather
            # than keep them open for as long as the cache lives.
            try:
                ended = [(old, c) for old, c in self.aclients.items() if old.is_closed()]
            except RuntimeError:  # another thread's loop added its client meanwhile: next time
                ended = []
            for old, stale in ended:
                if self.aclients.pop(old, None) is not None:
                    stale.close()
            client = AsyncRedisClient(self.redis.url, client_name="tieredcache", **self._client_args)
            self.aclients[loop] = client
        return client

    # ---- payloads ----------------------------------------------------------------------

    def encode(self, value: Any, ttl: float | None, tags: tuple[str, ...] = (), load_ms: int = 0,
               wid: int | None = None) -> bytes:
        expires = int((time.time() + ttl) * 1000) if ttl else 0
        tagbytes = json.dumps(tags, separators=(",", ":")).encode() if tags else b""
        if len(tagbytes) > 0xFFFF:
            raise ValueError("tags of one entry must take less than 64 KiB")
        if wid is None:
            wid = random.getrandbits(64)
        head = _HEADER.pack(_VERSION, expires, min(load_ms, 0xFFFFFFFF), wid, len(tagbytes))
        return head + tagbytes + self.serializer.dumps(value)

    def decode(self, payload: bytes) -> tuple[Any, float | None, int, tuple[str, ...], int]:
        """(value, seconds left or None, load ms, tags, write id); SerializationError if
        corrupt."""
        if len(payload) < _HEADER.size:
            raise SerializationError("payload too short for its header")
        version, expires, load_ms, wid, ntag = _HEADER.unpack_from(payload)
        if version != _VERSION:
            raise SerializationError(f"unknown payload version {version}")
        body = _HEADER.size + ntag
        tags: tuple[str, ...] = ()
        if ntag:
            try:
                raw = json.loads(payload[_HEADER.size:body])
            except (ValueError, RecursionError) as exc:
                raise SerializationError(f"corrupt tags in payload: {exc!r}") from None
            # A planted or corrupt payload may hold any JSON there: only a list of str is
            # a list of tags (anything else would fail later, in the L1 store).
            if type(raw) is not list or not all(type(t) is str for t in raw):
                raise SerializationError("corrupt tags in payload: not a list of str")
            tags = tuple(raw)
        value = self.serializer.loads(payload[body:])
        left = (expires / 1000.0 - time.time()) if expires else None
        return value, left, load_ms, tags, wid

    def l1_ttl_for(self, ns: _Namespace, ttl: float | None, left: float | None = None) -> float | None:
        """The TTL to give an L1 entry: no longer than the entry's, l1_ttl, what is left in
        Redis, or degraded_l1_ttl while invalidations may be missed; 0: do not fill L1
        (degraded_l1_ttl=0 while invalidations may be missed)."""
        t = ttl
        for c in (self.l1_ttl, left):
            if c is not None and (t is None or c < t):
                t = c
        if self.degraded(ns):
            if not self.degraded_l1_ttl:
                return 0.0
            if t is None or self.degraded_l1_ttl < t:
                t = self.degraded_l1_ttl
        return t if t is None or t > 0 else None

    def close(self) -> None:
        self.closed = True
        if self.alerts is not None:
            self.alerts.close()
        self.stop_listener.set()
        ps = self.pubsub
        if ps is not None:
            try:
                ps.close()  # wakes the listener's get_message at once
            except Exception:
                pass
        for client in list(self.aclients.values()):  # every loop's, even ended loops
            client.close()
        self.aclients = weakref.WeakKeyDictionary()
        if self.listener is not None and self.listener is not threading.current_thread():
            self.listener.join(timeout=2.0)
        if self.redis is not None:
            self.redis.close()


class TieredCache:
    """L1 (in process) in front of Redis (shared) in front of your loader.

    See docs/tiered-cache.md. ``redis_url=None`` runs L1 only.
    """

    __slots__ = ("_core", "_ns", "_is_root", "__weakref__")

    def __init__(self, redis_url: str | None = None, namespace: str = "default", max_entries: int = 100_000,
                 max_bytes: int | None = None, default_ttl: float | None = 300, l1_ttl: float | None = None,
                 serializer: Any = "json", *, secret_key: bytes | str | None = None,
                 compress_threshold: int | None = None, on_error: str = "ignore", socket_timeout: float = 0.25,
                 connect_timeout: float = 0.5, max_connections: int = 50, pool_timeout: float = 0.25,
                 degraded_l1_ttl: float = 5.0, breaker_threshold: int = 5, breaker_cooldown: float = 2.0,
                 lock_timeout: float | None = None, early_refresh: float | None = None,
                 enabled: bool = True, monitoring: bool = True, log_keys: bool | Callable[[str], str] = False,
                 alert_rules: Any = None, alert_callback: Callable[[dict], Any] | None = None,
                 alert_interval: float = 10.0, max_value_bytes: int | None = _MAX_VALUE_BYTES) -> None:
        if not isinstance(namespace, str) or not namespace:
            raise ConfigurationError(f"namespace must be a non-empty str, got {namespace!r}")
        self._core = _Core(redis_url=redis_url, max_entries=max_entries, max_bytes=max_bytes,
                           default_ttl=default_ttl, l1_ttl=l1_ttl, serializer=serializer, secret_key=secret_key,
                           compress_threshold=compress_threshold, on_error=on_error,
                           socket_timeout=socket_timeout, connect_timeout=connect_timeout,
                           max_connections=max_connections, pool_timeout=pool_timeout,
                           degraded_l1_ttl=degraded_l1_ttl, breaker_threshold=breaker_threshold,
                           breaker_cooldown=breaker_cooldown, lock_timeout=lock_timeout,
                           early_refresh=early_refresh, enabled=enabled, monitoring=bool(monitoring),
                           log_keys=log_keys, max_value_bytes=max_value_bytes)
        self._ns = self._core.namespace(namespace)
        self._is_root = True
        if self._core.monitoring:  # alerts read the counters monitoring keeps (docs/observability.md)
            from ._alerts import AlertEngine

            try:
                self._core.alerts = AlertEngine(self, rules=alert_rules, interval=alert_interval,
                                                callback=alert_callback)
            except BaseException:
                self._core.close()
                raise
        if redis_url is not None:  # invalidations reach this process from the first call on
            self._ns.subscribed.wait(connect_timeout)

    @classmethod
    def from_env(cls, **overrides: Any) -> TieredCache:
        """A cache configured from REDIS_URL, REDIS_SSL, REDIS_MAX_CONNECTIONS, CACHE_ENABLED,
        CACHE_MONITORING_ENABLED, CACHE_DEFAULT_TTL and CACHE_NAMESPACE; keyword arguments
        win."""
        env = os.environ
        kw: dict[str, Any] = {}

        def flag(name: str) -> bool | None:
            raw = env.get(name)
            if raw is None or raw.strip() == "":
                return None
            v = raw.strip().lower()
            if v in ("1", "true", "yes", "on"):
                return True
            if v in ("0", "false", "no", "off"):
                return False
            raise ConfigurationError(f"{name} must be true or false, got {raw!r}")

        url = env.get("REDIS_URL") or None
        ssl = flag("REDIS_SSL")
        if url:
            from ._redis import RedisURL

            if ssl and url.startswith("redis://"):
                url = "rediss://" + url[len("redis://"):]
            try:
                RedisURL.parse(url)
            except ConfigurationError as exc:
                raise ConfigurationError(f"REDIS_URL: {exc}") from None
        kw["redis_url"] = url
        if env.get("REDIS_MAX_CONNECTIONS"):
            raw = env["REDIS_MAX_CONNECTIONS"]
            try:
                kw["max_connections"] = int(raw)
                if kw["max_connections"] < 1:
                    raise ValueError
            except ValueError:
                raise ConfigurationError(f"REDIS_MAX_CONNECTIONS must be a positive integer, got {raw!r}") from None
        enabled = flag("CACHE_ENABLED")
        if enabled is not None:
            kw["enabled"] = enabled
        monitoring = flag("CACHE_MONITORING_ENABLED")
        if monitoring is not None:
            kw["monitoring"] = monitoring
        if env.get("CACHE_DEFAULT_TTL"):
            raw = env["CACHE_DEFAULT_TTL"]
            try:
                ttl = float(raw)
                if not ttl > 0 or math.isinf(ttl):
                    raise ValueError
            except ValueError:
                raise ConfigurationError(f"CACHE_DEFAULT_TTL must be a positive number of seconds, got {raw!r}") from None
            kw["default_ttl"] = ttl
        if env.get("CACHE_NAMESPACE"):
            kw["namespace"] = env["CACHE_NAMESPACE"]
        kw.update(overrides)
        return cls(**kw)

    def namespace(self, name: str) -> TieredCache:
        """A view on the sub-namespace "{namespace}/{name}" sharing L1 bounds and connections.

        A ``/`` or ``%`` in ``name`` is percent-encoded (``%2F``, ``%25``), so that a tenant
        called ``"a/b"`` is not the sub-namespace ``"b"`` of tenant ``"a"``."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty str, got {name!r}")
        if "/" in name or "%" in name:
            name = name.replace("%", "%25").replace("/", "%2F")
        view = object.__new__(TieredCache)
        view._core = self._core
        view._ns = self._core.namespace(f"{self._ns.name}/{name}")
        view._is_root = False
        core = self._core
        if core.redis is not None and core.listener_connected:
            view._ns.subscribed.wait(core._client_args["connect_timeout"])
        return view

    @property
    def name(self) -> str:
        return self._ns.name

    @property
    def default_ttl(self) -> float | None:
        """The TTL of entries stored without one (seconds; None: no expiry)."""
        return self._core.default_ttl

    def redis_key(self, key: str) -> str:
        return self._ns.kprefix + _check_key(key)

    def __repr__(self) -> str:
        where = self._core.redis.url.redacted() if self._core.redis is not None else "L1 only"
        return f"<TieredCache namespace={self._ns.name!r} {where}>"

    # ---- helpers (shared by the sync and async twins) -----------------------------------

    def _ttl(self, ttl: Any) -> float | None:
        return self._core.default_ttl if ttl is None else _check_ttl(ttl)

    def _l1tags(self, tags: tuple[str, ...]) -> tuple[str, ...]:
        p = self._ns.l1prefix
        return tuple(p + t for t in tags)

    def _l1_store(self, key: str, value: Any, ttl: float | None, tags: tuple[str, ...],
                  left: float | None = None, snap: tuple | None = None,
                  snap_tags: tuple[str, ...] | None = None, wid: int | None = None) -> None:
        """Fill L1, unless an invalidation happened since `snap` was taken (a fill that
        read the payload another process just announced is not outdated by it)."""
        core, ns = self._core, self._ns
        l1key = ns.l1prefix + key
        if snap is not None:
            now = core.snap(l1key, snap_tags)
            if snap != now and not (snap_tags is None and wid is not None and snap[:2] == now[:2]
                                    and core.announced.get(l1key) == wid):
                core.stats["stale_writes_refused"] += 1
                return
        if left is not None and left <= 0:
            return
        l1ttl = core.l1_ttl_for(ns, ttl, left)
        if l1ttl == 0:  # degraded_l1_ttl=0 and invalidations may be missed
            return
        core.l1.set(l1key, value, ttl=l1ttl, tags=self._l1tags(tags))

    def _decode(self, payload: Any, key: str | None = None) -> Any:
        """(value, left, load_ms, tags), or _MISSING for none, a tombstone or a payload
        that does not decode."""
        if payload is None or payload is _MISSING:
            return _MISSING
        try:
            return self._core.decode(payload)
        except SerializationError as exc:
            self._core.undecodable(self._ns, key, exc)
            if self._core.raise_errors:
                raise
            return _MISSING

    def _early(self, left: float | None, load_ms: int) -> bool:
        """XFetch: should this caller refresh a hit that is close to expiring?"""
        beta = self._core.early_refresh
        if beta is None or left is None or load_ms <= 0:
            return False
        return -load_ms / 1000.0 * beta * math.log(1.0 - random.random()) >= left

    def _evalsha(self, script_lua: str, keys: list, args: list) -> tuple:
        return ("EVALSHA", _SHA[script_lua], len(keys), *keys, *args)

    def _set_cmds(self, items: list[tuple[str, Any]], ttl: float | None, tags: tuple[str, ...]) -> list[tuple]:
        """The SETs of items and the message announcing them (with each payload's write id).
        An item whose payload exceeds max_value_bytes is not stored: its key is deleted
        instead (the value it replaces must not stay), and announced as such."""
        ns, core = self._ns, self._core
        cmds, announced, oversized = [], [], []
        ttl_ms = int(ttl * 1000) if ttl else 0
        tagkeys = [ns.tprefix + t for t in tags]
        for key, value in items:
            wid = random.getrandbits(64)
            payload = core.encode(value, ttl, tags, wid=wid)
            if core.oversized(payload, key):
                oversized.append(key)
                continue
            cmds.append(self._evalsha(_SET_LUA, [ns.kprefix + key, ns.ktprefix + key, *tagkeys], [payload, ttl_ms]))
            announced.append([key, wid])
        if announced:
            cmds.append(self._publish_cmd("set", announced))
        if oversized:
            cmds.extend(self._forget(oversized))
        return cmds

    def _publish_cmd(self, kind: str, values: list) -> tuple:
        return ("PUBLISH", self._ns.channel, self._core.message(self._ns, kind, values))

    def _miss_cmds(self, key: str, tags: tuple[str, ...]) -> list[tuple]:
        ns = self._ns
        return ([("GET", ns.kprefix + key), ("GET", ns.gen), ("GET", ns.xprefix + key)]
                + [("GET", ns.tgprefix + t) for t in tags])

    def _cas_cmd(self, key: str, value: Any, ttl: float | None, tags: tuple[str, ...], seen: list,
                 load_ms: int) -> tuple | None:
        """The write-back of a load, refused by Redis if anything invalidated it since the
        miss (`seen`: the replies of _miss_cmds); None if the payload exceeds
        max_value_bytes (not stored in Redis)."""
        ns, core = self._ns, self._core
        payload, gen, tomb, tag_gens = seen[0], seen[1], seen[2], seen[3:]
        keys = ([ns.kprefix + key, ns.ktprefix + key, ns.gen, ns.xprefix + key] + [ns.tprefix + t for t in tags]
                + [ns.tgprefix + t for t in tags])
        seen_sha = hashlib.sha1(payload).hexdigest() if payload is not None else ""
        new = core.encode(value, ttl, tags, load_ms)
        if core.oversized(new, key):
            return None
        args = [new, int(ttl * 1000) if ttl else 0, seen_sha,
                gen if gen is not None else b"0", tomb if tomb is not None else b"",
                len(tags)] + [g if g is not None else b"0" for g in tag_gens]
        return self._evalsha(_CAS_SET_LUA, keys, args)

    def _delete_cmd(self, keys: list[str], tombstone: bool) -> tuple:
        ns = self._ns
        return self._evalsha(_DELETE_LUA, keys, [ns.kprefix, ns.ktprefix, ns.xprefix,
                                                 _TOMBSTONE_MS if tombstone else 0, os.urandom(8).hex()])

    def _tags_cmd(self, tags: tuple[str, ...]) -> tuple:
        ns = self._ns
        keys = [ns.tprefix + t for t in tags] + [ns.tgprefix + t for t in tags]
        return self._evalsha(_INVALIDATE_TAGS_LUA, keys, [ns.kprefix, ns.ktprefix, _TAG_GEN_MS])

    def _forget(self, keys: list[str]) -> list[tuple]:
        """What replaces a failed set of keys: their deletion, announced."""
        return [self._delete_cmd([self._ns.kprefix + k for k in keys], tombstone=True),
                self._publish_cmd("key", keys)]

    # ---- one body per operation, two drivers ------------------------------------------
    #
    # Each operation that talks to Redis is written once, as a generator that yields what
    # it needs and receives the answer (sans I/O); _run drives it with blocking calls,
    # _arun with awaits. A request is a tuple:
    #
    #   ("pipe", cmds)                  one round trip through the breaker -> replies | _MISSING
    #   ("send", cmds, fallback)        the same, for invalidating writes: queued in the
    #                                   outbox (as fallback, if given) when Redis fails
    #   ("matching", (pattern, kind, values))  SCAN-delete through the breaker, queued likewise
    #   ("raw", cmds)                   one round trip, no breaker (inside "matching")
    #   ("sleep", seconds)              time.sleep / asyncio.sleep
    #   ("load", loader)                call the loader / await it (sync ones in a thread)
    #
    # An exception raised while serving a request is thrown into the generator.

    def _run(self, gen: Any) -> Any:
        core = self._core
        if core.alerts is not None and core.alerts.idle:  # first use, or first after a fork
            core.alerts.ensure_started()
        try:
            req = next(gen)
            while True:
                try:
                    op = req[0]
                    if op == "pipe":
                        r = core.l2(core.pipe, req[1])
                    elif op == "send" or op == "matching":
                        try:
                            if op == "send":
                                r = core.l2(core.pipe, req[1], write=True)
                            else:
                                r = core.l2(self._run, self._scan_delete(*req[1]), write=True)
                        except BackendError:
                            core.queue(self, *self._outbox_item(req))
                            raise
                        if r is _MISSING:
                            core.queue(self, *self._outbox_item(req))
                    elif op == "raw":
                        r = core.pipe(req[1])
                    elif op == "sleep":
                        time.sleep(req[1])
                        r = None
                    else:  # "load"
                        r = req[1]()
                except BaseException as exc:
                    req = gen.throw(exc)
                    continue
                req = gen.send(r)
        except StopIteration as stop:
            return stop.value

    async def _arun(self, gen: Any) -> Any:
        core = self._core
        if core.alerts is not None and core.alerts.idle:
            core.alerts.ensure_started()
        try:
            req = next(gen)
            while True:
                try:
                    op = req[0]
                    if op == "pipe":
                        r = await core.al2(core.apipe, req[1])
                    elif op == "send" or op == "matching":
                        try:
                            if op == "send":
                                r = await core.al2(core.apipe, req[1], write=True)
                            else:
                                r = await core.al2(self._arun, self._scan_delete(*req[1]), write=True)
                        except BackendError:
                            core.queue(self, *self._outbox_item(req))
                            raise
                        if r is _MISSING:
                            core.queue(self, *self._outbox_item(req))
                    elif op == "raw":
                        r = await core.apipe(req[1])
                    elif op == "sleep":
                        await asyncio.sleep(req[1])
                        r = None
                    else:  # "load"
                        r = await self._acall(req[1])
                except BaseException as exc:
                    req = gen.throw(exc)
                    continue
                req = gen.send(r)
        except StopIteration as stop:
            return stop.value

    @staticmethod
    def _outbox_item(req: tuple) -> tuple[str, tuple]:
        if req[0] == "send":
            return "cmds", tuple(req[2] or req[1])
        return "matching", tuple(req[1])

    @staticmethod
    async def _acall(loader: Callable[[], Any]) -> Any:
        if inspect.iscoroutinefunction(loader):
            return await loader()
        result = await asyncio.to_thread(loader)
        if inspect.isawaitable(result):
            result = await result
        return result

    # ---- the operations (generators; see above) ------------------------------------------

    def _get_cmds(self, key: str) -> tuple[tuple, list[tuple]]:
        """An L2 read: the L1 snapshot to fill against, and GET + PTTL. (get/aget send it
        directly rather than through a generator: the L2 hit is the hottest Redis path.)"""
        rkey = self._ns.kprefix + key
        return self._core.snap(self._ns.l1prefix + key), [("GET", rkey), ("PTTL", rkey)]

    def _filled(self, key: str, replies: Any, snap: tuple, default: Any) -> Any:
        """The value of a GET + PTTL, filling L1 for no longer than Redis keeps it."""
        core = self._core
        got = self._decode(replies[0], key) if replies is not _MISSING else _MISSING
        if got is _MISSING:
            core.stats["l2_misses"] += 1
            return default
        core.stats["l2_hits"] += 1
        pttl = replies[1]
        left = pttl / 1000.0 if isinstance(pttl, int) and pttl > 0 else got[1]
        core.filled(self._ns.l1prefix + key, got[4])
        self._l1_store(key, got[0], None, got[3], left, snap, None, got[4])
        return got[0]

    def _set(self, mapping: Mapping[str, Any] | list, ttl: Any, tags: Any):
        tags = _check_tags(tags)
        ttl = self._ttl(ttl)
        items = [(_check_key(k), v) for k, v in (mapping.items() if isinstance(mapping, Mapping) else mapping)]
        core, p = self._core, self._ns.l1prefix
        if not core.enabled or not items:
            return
        for k, _ in items:  # loads of the old values must not land
            core.forget_announced(p + k)
            core.bump_key(p + k)
        if core.redis is not None:
            keys = [k for k, _ in items]
            cmds = self._set_cmds(items, ttl, tags)
            if (yield ("send", cmds, self._forget(keys))) is not _MISSING:
                core.stats["l2_sets"] += sum(1 for c in cmds if c[1] == _SHA[_SET_LUA])
                core.stats["invalidations_sent"] += 1
        for k, v in items:
            self._l1_store(k, v, ttl, tags)

    def _get_many(self, keys: Iterable[str]):
        keys = [_check_key(k) for k in keys]
        core, ns = self._core, self._ns
        out: dict[str, Any] = {}
        if not core.enabled:
            return out
        if core.redis is not None and core.l1._pending:
            core.fence()
        missing = []
        for k in keys:
            v = core.l1.get(ns.l1prefix + k, _MISSING)
            if v is _MISSING:
                missing.append(k)
            else:
                out[k] = v
        if missing and core.redis is not None:
            snaps = [core.snap(ns.l1prefix + k) for k in missing]
            replies = yield ("pipe", [("MGET", *[ns.kprefix + k for k in missing])])
            if replies is not _MISSING:
                self._fill_many(missing, replies[0], snaps, out)
        return out

    def _fill_many(self, missing: list[str], payloads: list, snaps: list, out: dict) -> None:
        core = self._core
        for k, payload, snap in zip(missing, payloads, snaps):
            got = self._decode(payload, k)
            if got is _MISSING:
                core.stats["l2_misses"] += 1
                continue
            core.stats["l2_hits"] += 1
            out[k] = got[0]
            core.filled(self._ns.l1prefix + k, got[4])
            self._l1_store(k, got[0], None, got[3], got[1], snap, None, got[4])

    def _delete(self, key: str):
        key = _check_key(key)
        core = self._core
        if not core.enabled:
            return False
        found = bool(self._begin_invalidation("key", [key]))
        if core.redis is not None:
            replies = yield ("send", self._forget([key]), None)
            if replies is not _MISSING:
                core.stats["l2_deletes"] += 1
                core.stats["invalidations_sent"] += 1
                found = found or bool(replies[0])
            self._begin_invalidation("key", [key])
        return found

    def _invalidate_tags(self, tags: Any):
        tags = _check_tags(tags)
        core = self._core
        if not core.enabled or not tags:
            return 0
        n = self._begin_invalidation("tags", list(tags))
        if core.redis is not None:
            replies = yield ("send", [self._tags_cmd(tags), self._publish_cmd("tags", list(tags))], None)
            if replies is not _MISSING:
                n = int(replies[0])
                core.stats["invalidations_sent"] += 1
            self._begin_invalidation("tags", list(tags))
        return n

    def _invalidate_matching(self, kind: str, values: list, pattern: str):
        core = self._core
        if not core.enabled:
            return 0
        n = self._begin_invalidation(kind, values)
        if core.redis is not None:
            r = yield ("matching", (pattern, kind, values))
            if r is not _MISSING:
                n = r
                core.stats["invalidations_sent"] += 1
            self._begin_invalidation(kind, values)
        return n

    def _scan_delete(self, pattern: str, kind: str, values: list):
        """SCAN the namespace for pattern and delete in batches: O(keyspace), not atomic;
        the namespace generation, bumped before and after, refuses loads in flight."""
        ns = self._ns
        cursor, n = b"0", 0
        yield ("raw", [("INCR", ns.gen)])
        while True:
            cursor, keys = (yield ("raw", [("SCAN", cursor, "MATCH", pattern, "COUNT", 1000)]))[0]
            if keys:
                n += int((yield ("raw", [self._delete_cmd(list(keys), tombstone=False)]))[0])
            if cursor in (b"0", 0, "0"):
                break
        yield ("raw", [("INCR", ns.gen), self._publish_cmd(kind, values)])
        return n

    def _load(self, key: str, loader: Callable[[], Any], ttl: float | None, tags: tuple[str, ...],
              snap: tuple, snap_tags: tuple[str, ...]):
        """The miss path of get_or_set, run by the single-flight leader."""
        core, ns = self._core, self._ns
        seen = None
        if core.redis is not None:
            seen = yield ("pipe", self._miss_cmds(key, tags))
            if seen is _MISSING:
                seen = None
            else:
                got = self._decode(seen[0], key)
                if got is not _MISSING and not self._early(got[1], got[2]):
                    core.stats["l2_hits"] += 1
                    core.filled(ns.l1prefix + key, got[4])
                    self._l1_store(key, got[0], ttl, got[3], got[1], snap, snap_tags)
                    return got[0]
                core.stats["l2_misses"] += 1
                if core.lock_timeout is not None and got is _MISSING:
                    found = yield from self._other_loader(key)
                    if found is not _MISSING:
                        self._l1_store(key, found[0], ttl, found[3], found[1], snap, snap_tags)
                        return found[0]
        start = time.perf_counter()
        core.stats["loads"] += 1
        try:
            value = yield ("load", loader)
        except BaseException as exc:
            core.stats["load_errors"] += 1
            if log.isEnabledFor(logging.DEBUG):
                log.debug("tieredcache: loader of %s in namespace %r raised %s", core.key_for_log(key), ns.name,
                          type(exc).__name__)
            raise
        load_ms = int((time.perf_counter() - start) * 1000)
        if type(value) is NoStore:  # the loader's answer, not to be cached
            if seen is not None and core.lock_timeout is not None:
                yield ("pipe", [self._evalsha(_UNLOCK_LUA, [self._lock_key(key)], [core.origin])])
            return value.value
        cas = self._cas_cmd(key, value, ttl, tags, seen, load_ms) if seen is not None else None
        if cas is None:
            if seen is not None and core.lock_timeout is not None:  # oversized: release the lock
                yield ("pipe", [self._evalsha(_UNLOCK_LUA, [self._lock_key(key)], [core.origin])])
        else:
            r = yield ("pipe", [cas])
            if core.lock_timeout is not None:
                yield ("pipe", [self._evalsha(_UNLOCK_LUA, [self._lock_key(key)], [core.origin])])
            if r is not _MISSING:
                if r[0] == 0:  # invalidated while loading: the caller gets it, nobody else
                    core.stats["stale_writes_refused"] += 1
                    if log.isEnabledFor(logging.DEBUG):
                        log.debug("tieredcache: %s in namespace %r loaded but not stored: invalidated while "
                                  "loading", core.key_for_log(key), ns.name)
                    return value
                core.stats["l2_sets"] += 1
        self._l1_store(key, value, ttl, tags, None, snap, snap_tags)
        return value

    def _load_l1(self, key: str, loader: Callable[[], Any], ttl: float | None, tags: tuple[str, ...],
                 snap: tuple, snap_tags: tuple[str, ...]) -> Any:
        """_load for a cache without Redis (sync): call the loader, fill L1."""
        core = self._core
        core.stats["loads"] += 1
        try:
            value = loader()
        except BaseException as exc:
            core.stats["load_errors"] += 1
            if log.isEnabledFor(logging.DEBUG):
                log.debug("tieredcache: loader of %s in namespace %r raised %s", core.key_for_log(key), self._ns.name,
                          type(exc).__name__)
            raise
        if type(value) is NoStore:
            return value.value
        self._l1_store(key, value, ttl, tags, None, snap, snap_tags)
        return value

    def _lock_key(self, key: str) -> str:
        return f"tc:{self._ns.ns}:lock:{key}"

    def _other_loader(self, key: str):
        """Cross-process stampede lock: the payload another process loaded, or _MISSING
        for "load it yourself" (this caller holds the lock, Redis is gone, or the wait
        timed out)."""
        core = self._core
        ms = int(core.lock_timeout * 1000)
        got = yield ("pipe", [("SET", self._lock_key(key), core.origin, "NX", "PX", ms)])
        if got is _MISSING or got[0] is not None:
            return _MISSING
        deadline = time.monotonic() + core.lock_timeout
        pause = 0.005
        while time.monotonic() < deadline:
            yield ("sleep", pause)
            pause = min(pause * 2, 0.05)
            replies = yield ("pipe", [("GET", self._ns.kprefix + key)])
            got = self._decode(replies[0], key) if replies is not _MISSING else _MISSING
            if got is not _MISSING:
                core.stats["l2_hits"] += 1
                return got
        return _MISSING

    def _flight(self, fkey: str, snap_tags: tuple[str, ...]) -> tuple[_Flight, bool]:
        """Join the load of fkey in flight, unless an invalidation outdated it; else lead
        (the new flight's ``snap`` is what its fill checks). The snapshot is taken under
        the lock: one taken before it could be older than the flight registered meanwhile,
        and replacing that current flight would split the callers who arrive next."""
        core = self._core
        with core.flights_lock:
            snap = core.snap(fkey, snap_tags)
            flight = core.flights.get(fkey)
            if flight is not None and flight.snap == snap:
                return flight, False
            flight = core.flights[fkey] = _Flight(snap)
            return flight, True

    def _cannot_wait(self, flight: _Flight, key: str, sync: bool) -> None:
        """Raise RuntimeError, rather than wait forever, when waiting for ``flight`` is a
        deadlock: the caller is the flight's own load (the loader asks for its own key,
        directly, from the thread running a sync loader of aget_or_set, or from a task it
        awaits), or a sync call on an event loop's thread while a task of that very loop
        leads the load (the loop would be blocked, so the load could never finish)."""
        problem = None
        if any(mine is flight for mine in _LOADING.get()):
            problem = ("called from inside the loader of that same key: it would wait for itself forever (a "
                       "loader, or a cached function, must not ask the cache for its own key)")
        elif sync and flight.loop is not None:
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is flight.loop:
                problem = ("called with the sync API on the event loop's thread while a task of this loop is "
                           "loading that key: waiting would block the loop that must finish the load (a "
                           "deadlock); use 'await cache.aget_or_set(...)' or an async cached function in async code")
        if problem is not None:
            raise RuntimeError(f"tieredcache: get_or_set of {self._core.key_for_log(key)} in namespace "
                               f"{self._ns.name!r} {problem}")

    def _begin_invalidation(self, kind: str, values: list) -> int:
        """Drop the entries from this process's L1 (before the Redis step; _end_... drops
        them again after it, so a read racing the invalidation cannot refill them)."""
        core, ns = self._core, self._ns
        l1, p = core.l1, ns.l1prefix
        if kind == "key":
            n = 0
            for k in values:
                core.forget_announced(p + k)
                core.bump_key(p + k)
                n += l1.delete(p + k)
            return n
        if kind == "tags":
            tags = self._l1tags(tuple(values))
            core.bump_tags(tags)
            return l1.invalidate_tags(*tags)
        core.bump_all()
        if kind == "prefix":
            return sum(l1.invalidate_prefix(p + v) for v in values)
        return l1.invalidate_prefix(p)

    # ---- sync API ----------------------------------------------------------------------

    def get(self, key: str, default: Any = None) -> Any:
        key = _check_key(key)
        core = self._core
        if not core.enabled:
            return default
        if core.redis is not None and core.l1._pending:
            core.fence()
        value = core.l1.get(self._ns.l1prefix + key, _MISSING)
        if value is not _MISSING:
            return value
        if core.redis is None:
            return default
        snap, cmds = self._get_cmds(key)
        return self._filled(key, core.l2(core.pipe, cmds), snap, default)

    def set(self, key: str, value: Any, ttl: float | None = None, tags: Iterable[str] = ()) -> None:
        self._run(self._set([(key, value)], ttl, tags))

    def set_many(self, mapping: Mapping[str, Any], ttl: float | None = None, tags: Iterable[str] = ()) -> None:
        self._run(self._set(mapping, ttl, tags))

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        return self._run(self._get_many(keys))

    def delete(self, key: str) -> bool:
        r = self._run(self._delete(key))
        if self._core.listeners:
            self._emit("delete", key=key)
        return r

    def invalidate_tags(self, *tags: str) -> int:
        r = self._run(self._invalidate_tags(tags))
        if self._core.listeners:
            self._emit("invalidate_tags", tags=list(tags))
        return r

    def invalidate_prefix(self, prefix: str) -> int:
        prefix = _check_key(prefix)
        r = self._run(self._invalidate_matching("prefix", [prefix], self._ns.kglob + _glob_escape(prefix) + "*"))
        if self._core.listeners:
            self._emit("invalidate_prefix", prefix=prefix)
        return r

    def clear(self) -> int:
        r = self._run(self._invalidate_matching("clear", [], self._ns.kglob + "*"))
        if self._core.listeners:
            self._emit("clear")
        return r

    def _delete_matching(self, pattern: str, kind: str, values: list) -> int:
        """Replay of a queued prefix invalidation or clear (see _Core.replay)."""
        return self._run(self._scan_delete(pattern, kind, values))

    def get_or_set(self, key: str, loader: Callable[[], Any], ttl: float | None = None,
                   tags: Iterable[str] = (), *, _probed: bool = False) -> Any:
        """The value of key, from L1, Redis or ``loader()`` (stored then). ``_probed``
        (the decorators'): the caller already looked in L1 and counted the miss."""
        key = _check_key(key)
        tags = _check_tags(tags)
        ttl = self._ttl(ttl)
        core, ns = self._core, self._ns
        if not core.enabled:
            return loader()
        fkey = ns.l1prefix + key
        if core.redis is not None and core.l1._pending:
            core.fence()
        # looked again after a counted miss (another caller may have filled it since):
        # `in` counts nothing, so one call is one miss in the L1 statistics
        value = core.l1.get(fkey, _MISSING) if not _probed or fkey in core.l1 else _MISSING
        if value is not _MISSING:
            return value
        snap_tags = self._l1tags(tags)
        while True:
            flight, leader = self._flight(fkey, snap_tags)
            if leader:
                break
            if not flight.done:
                self._cannot_wait(flight, key, sync=True)
            flight.wait()
            if not isinstance(flight.error, _LeaderCancelled):
                return flight.result()
        snap = flight.snap
        loading = _LOADING.set(_LOADING.get() + (flight,))
        try:
            if core.redis is None:  # L1 only: the same steps as _load, without a generator
                value = self._load_l1(key, loader, ttl, tags, snap, snap_tags)
            else:
                value = self._run(self._load(key, loader, ttl, tags, snap, snap_tags))
        except BaseException as exc:
            flight.finish(error=exc)
            raise
        else:
            flight.finish(value=value)
            return value
        finally:
            _LOADING.reset(loading)
            with core.flights_lock:
                if core.flights.get(fkey) is flight:
                    del core.flights[fkey]

    # ---- async API ---------------------------------------------------------------------

    async def aget(self, key: str, default: Any = None) -> Any:
        key = _check_key(key)
        core = self._core
        if not core.enabled:
            return default
        if core.redis is not None and core.l1._pending:
            core.fence()
        value = core.l1.get(self._ns.l1prefix + key, _MISSING)
        if value is not _MISSING:
            return value
        if core.redis is None:
            return default
        snap, cmds = self._get_cmds(key)
        return self._filled(key, await core.al2(core.apipe, cmds), snap, default)

    async def aset(self, key: str, value: Any, ttl: float | None = None, tags: Iterable[str] = ()) -> None:
        await self._arun(self._set([(key, value)], ttl, tags))

    async def aset_many(self, mapping: Mapping[str, Any], ttl: float | None = None, tags: Iterable[str] = ()) -> None:
        await self._arun(self._set(mapping, ttl, tags))

    async def aget_many(self, keys: Iterable[str]) -> dict[str, Any]:
        return await self._arun(self._get_many(keys))

    async def adelete(self, key: str) -> bool:
        r = await self._arun(self._delete(key))
        if self._core.listeners:
            self._emit("delete", key=key)
        return r

    async def ainvalidate_tags(self, *tags: str) -> int:
        r = await self._arun(self._invalidate_tags(tags))
        if self._core.listeners:
            self._emit("invalidate_tags", tags=list(tags))
        return r

    async def ainvalidate_prefix(self, prefix: str) -> int:
        prefix = _check_key(prefix)
        r = await self._arun(
            self._invalidate_matching("prefix", [prefix], self._ns.kglob + _glob_escape(prefix) + "*"))
        if self._core.listeners:
            self._emit("invalidate_prefix", prefix=prefix)
        return r

    async def aclear(self) -> int:
        r = await self._arun(self._invalidate_matching("clear", [], self._ns.kglob + "*"))
        if self._core.listeners:
            self._emit("clear")
        return r

    async def aget_or_set(self, key: str, loader: Callable[[], Any], ttl: float | None = None,
                          tags: Iterable[str] = (), *, _probed: bool = False) -> Any:
        key = _check_key(key)
        tags = _check_tags(tags)
        ttl = self._ttl(ttl)
        core, ns = self._core, self._ns
        if not core.enabled:
            return await self._acall(loader)
        fkey = ns.l1prefix + key
        if core.redis is not None and core.l1._pending:
            core.fence()
        # looked again after a counted miss (another caller may have filled it since):
        # `in` counts nothing, so one call is one miss in the L1 statistics
        value = core.l1.get(fkey, _MISSING) if not _probed or fkey in core.l1 else _MISSING
        if value is not _MISSING:
            return value
        snap_tags = self._l1tags(tags)
        while True:
            flight, leader = self._flight(fkey, snap_tags)
            if leader:
                break
            if not flight.done:
                self._cannot_wait(flight, key, sync=False)
            try:
                return await flight.wait_async()
            except _LeaderCancelled:
                continue  # the loading task was cancelled: load it here instead
        snap = flight.snap
        flight.loop = asyncio.get_running_loop()
        loading = _LOADING.set(_LOADING.get() + (flight,))
        try:
            value = await self._arun(self._load(key, loader, ttl, tags, snap, snap_tags))
        except asyncio.CancelledError:
            flight.finish(error=_LeaderCancelled())  # waiters take over, not fail
            raise
        except BaseException as exc:
            flight.finish(error=exc)
            raise
        else:
            flight.finish(value=value)
            return value
        finally:
            _LOADING.reset(loading)
            with core.flights_lock:
                if core.flights.get(fkey) is flight:
                    del core.flights[fkey]

    # ---- decorators, warming, listeners (see _decorators.py) ---------------------------

    def cached(self, ttl: float | str | None = None, tags: Iterable[str] | str = (), key: str | None = None,
               exclude: Iterable[str] | str = (), name: str | None = None) -> Callable[[Callable], Any]:
        """Cache a function's results in this cache (docs/decorators.md).

        ``ttl`` in seconds or a tier name; ``tags`` and ``key`` are templates over the
        argument names (``"shop:{shop_id}"``); ``exclude`` names arguments left out of
        the key (a DB session); ``name`` replaces the qualified name in default keys.
        """
        from ._decorators import make_cached

        return make_cached(self, ttl, tags, key, exclude, name)

    def invalidates(self, tags: Iterable[str] | str = (), keys: Iterable[str] | str = ()) -> Callable[[Callable], Any]:
        """After the decorated function returns (never when it raises), invalidate these
        tags and delete these keys (templates over its arguments)."""
        from ._decorators import make_invalidates

        return make_invalidates(self, tags, keys)

    def warmer(self, group: str) -> Callable[[Callable], Callable]:
        """Register a warmer for ``group``: on a root cache, shared by its namespace views
        (each runs it against itself); on a view, that view's own."""
        from ._decorators import make_warmer

        return make_warmer(self, group)

    def warmer_groups(self) -> list[str]:
        """The groups this view's ``warm()`` runs warmers of."""
        from ._decorators import warmer_groups

        return warmer_groups(self)

    def warm(self, *groups: str) -> dict[str, int]:
        """Run the warmers of these groups (none or "all": every group) against this view;
        returns the number of entries warmed per group."""
        from ._decorators import warm

        return warm(self, groups)

    async def awarm(self, *groups: str) -> dict[str, int]:
        from ._decorators import awarm

        return await awarm(self, groups)

    def add_listener(self, fn: Callable[[str, dict], Any]) -> None:
        """Call ``fn(event, detail)`` after each delete, invalidate_tags, invalidate_prefix,
        clear and warm made through this cache or its views (never on reads)."""
        if not callable(fn):
            raise TypeError(f"fn must be callable, not {type(fn).__name__}")
        self._core.listeners.append(fn)

    def remove_listener(self, fn: Callable[[str, dict], Any]) -> None:
        try:
            self._core.listeners.remove(fn)
        except ValueError:
            raise ValueError("fn is not a listener of this cache") from None

    def _emit(self, event: str, **detail: Any) -> None:
        detail["namespace"] = self._ns.name
        for fn in list(self._core.listeners):
            try:
                fn(event, detail)
            except Exception as exc:
                self._core.log_error("tieredcache: listener %r failed on %s", exc, fn, event)

    # ---- lifecycle and statistics ----------------------------------------------------

    def report(self) -> list[dict[str, Any]]:
        """One row per cached function bound to this cache (any namespace), by calls."""
        rows = [fn.stats() for fn in list(self._core.functions.values())]
        rows.sort(key=lambda r: (-r["calls"], r["function"]))
        return rows

    def health(self) -> dict[str, Any]:
        """L1 occupancy, Redis reachability (a PING, timed) and the active alerts;
        "degraded" while Redis is unreachable or a critical alert fires."""
        core = self._core
        s = core.l1.stats()
        l1 = {"entries": s["entries"], "max_entries": s["max_entries"], "bytes": s["bytes"],
              "max_bytes": s["max_bytes"]}
        l2: dict[str, Any] = {"enabled": core.redis is not None, "connected": False,
                              "breaker": core.breaker.state, "ping_ms": None}
        status = "ok"
        if core.redis is not None:
            t0 = time.perf_counter()
            try:
                core.redis.execute("PING")
            except BackendError as exc:
                l2["error"] = type(exc).__name__
                status = "degraded"
            else:
                l2["ping_ms"] = round((time.perf_counter() - t0) * 1000, 3)
                l2["connected"] = True
            l2["invalidations_subscribed"] = core.listener_connected
            l2["invalidations_live"] = core.listener_connected and not core.suspect
            if not core.listener_connected or core.suspect or core.breaker.state != CLOSED:
                status = "degraded"
        alerts: list[dict[str, Any]] = []
        engine = core.alerts
        if engine is not None:
            engine.ensure_started()
            engine.maybe_evaluate()
            alerts = engine.active()
            if any(a["severity"] == "critical" for a in alerts):
                status = "degraded"
        return {"status": status, "namespace": self._ns.name, "l1": l1, "l2": l2, "alerts": alerts}

    def recommendations(self) -> list[dict[str, Any]]:
        """Advice drawn from the counters: TTLs, bounds, Redis health."""
        from ._decorators import recommendations

        return recommendations(self)

    def stats(self) -> dict[str, Any]:
        """Every counter of this cache as a plain dict (docs/observability.md): per tier,
        per cached function (``functions``: the ``report()`` rows), and active alerts."""
        core = self._core
        s = core.stats
        l1 = core.l1.stats()
        l1["evictions_by_reason"] = {"size": l1["evictions"], "bytes": l1["evictions_bytes"],
                                     "expired": l1["expirations"], "invalidated": l1["invalidations"]}
        looked = l1["hits"] + l1["misses"]
        l1["hit_rate"] = l1["hits"] / looked if looked else 0.0
        reconnects = s["listener_reconnects"]
        if core.redis is not None:
            reconnects += core.redis.reconnects + sum(c.reconnects for c in list(core.aclients.values()))
        l2_looked = s["l2_hits"] + s["l2_misses"]
        out = {
            "namespace": self._ns.name,
            "monitoring": core.monitoring,
            "uptime_seconds": round(time.time() - core.started, 3),
            "l1": l1,
            "l2": {
                "enabled": core.redis is not None,
                "hits": s["l2_hits"], "misses": s["l2_misses"], "errors": s["l2_errors"],
                "timeouts": s["l2_timeouts"], "sets": s["l2_sets"], "deletes": s["l2_deletes"],
                "rejected": s["l2_rejected"],
                "hit_rate": s["l2_hits"] / l2_looked if l2_looked else 0.0,
                "breaker": core.breaker.state, "breaker_transitions": core.breaker.transitions,
                "connected": core.listener_connected, "reconnects": reconnects,
                "latency": core.l2_latency.summary(),
            },
            "loads": s["loads"], "load_errors": s["load_errors"], "warmed": s["warmed"],
            "invalidations_sent": s["invalidations_sent"],
            "invalidations_received": s["invalidations_received"],
            "l1_flushes": s["l1_flushes"], "stale_writes_refused": s["stale_writes_refused"],
            "functions": self.report(),
        }
        alerts = getattr(core, "alerts", None)
        if alerts is not None:
            alerts.ensure_started()
            alerts.maybe_evaluate()
            out["alerts"] = alerts.active()
        return out

    def add_alert_callback(self, fn: Callable[[dict], Any]) -> None:
        """Call ``fn(alert)`` when an alert fires or resolves (``alert["state"]``), for
        this cache and its views; its exceptions are logged, never raised. Without
        monitoring there are no alerts: nothing is registered."""
        engine = self._core.alerts
        if engine is None:
            if not callable(fn):
                raise TypeError(f"an alert callback must be callable, not {type(fn).__name__}")
            return
        engine.add_callback(fn)

    def remove_alert_callback(self, fn: Callable[[dict], Any]) -> None:
        engine = self._core.alerts
        if engine is not None:
            engine.remove_callback(fn)

    def close(self) -> None:
        """Stop the invalidation listener and close connections (views: no-op)."""
        if self._is_root:
            self._core.close()

    async def arelease(self) -> None:
        """Close the Redis connections opened for the running event loop (the cache stays
        open for other loops and threads): for an app whose loop ends before the cache."""
        client = self._core.aclients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()

    async def aclose(self) -> None:
        core = self._core
        if not self._is_root:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        client = core.aclients.pop(loop, None) if loop is not None else None
        if client is not None:
            await client.aclose()
        await asyncio.to_thread(core.close)

    def __enter__(self) -> TieredCache:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    async def __aenter__(self) -> TieredCache:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

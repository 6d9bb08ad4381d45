"""The FastAPI app of the Redis chaos campaign (hardening/chaos.sh), run by uvicorn with
2 workers: ``uvicorn chaos_app:app --workers 2`` with CHAOS_REDIS_URL (the delaying proxy
in front of Redis) and CHAOS_DB (a SQLite file both workers share) in the environment.

Items ``1..N`` each have a version, bumped by every write. Read endpoints, all tagged
``item:{id}``:

    GET  /items/{id}        async def, @cache.cached (aget_or_set, asyncio Redis client)
    GET  /items/{id}/sync   def,       @cache.cached (C CachedCall, sync Redis client)
    GET  /items/{id}/page   cache_response (the HTTP response cached)

answer ``{"id", "version", "loaded_pid", "loaded_at"}`` (who read the database for this
answer, and when) with ``X-Cache: HIT|MISS`` (MISS: this request ran the loader) and
``X-Pid``. Writes, acknowledged only after the database committed and the cache call
that invalidates returned:

    POST /items/{id}        async def, @cache.invalidates(tags="item:{item_id}")
    POST /items/{id}/sync   def, cache.invalidate_tags

answer ``{"id", "version"}`` (the version this write made). ``GET /_chaos/health`` (a
def endpoint: ``cache.health()`` PINGs Redis synchronously) answers the worker's pid,
health and counters. No pass criterion of its own: chaos_run.py judges its answers.
"""

from __future__ import annotations

import contextvars
import os
import sqlite3
import threading
import time
from typing import Any

from fastapi import FastAPI, Response

from tieredcache import TieredCache
from tieredcache.contrib.fastapi import cache_response

if os.environ.get("CHAOS_DUMP"):  # development: SIGUSR1 dumps every thread's stack to the log
    import faulthandler
    import signal

    faulthandler.register(signal.SIGUSR1, all_threads=True)

DB_PATH = os.environ.get("CHAOS_DB", "chaos.db")
REDIS_URL = os.environ.get("CHAOS_REDIS_URL")

# degraded_l1_ttl=0: nothing enters L1 while invalidations may be missed (the default 5 s lets
# another worker serve what a write changed for up to 5 s during an outage, by design)
cache = TieredCache(redis_url=REDIS_URL, namespace="chaos", default_ttl=600, degraded_l1_ttl=0)

_local = threading.local()


def db() -> sqlite3.Connection:
    conn = getattr(_local, "conn", None)
    if conn is None:
        conn = sqlite3.connect(DB_PATH, timeout=30, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        _local.conn = conn
    return conn


def init_db(path: str, n: int) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, version INTEGER NOT NULL)")
    conn.execute("DELETE FROM items")
    conn.executemany("INSERT INTO items VALUES (?, 0)", [(i,) for i in range(1, n + 1)])
    conn.close()


# which requests ran a loader: a list per request (shared with to_thread's copied context)
_loaded: contextvars.ContextVar[list | None] = contextvars.ContextVar("chaos_loaded", default=None)


def _load(item_id: int) -> dict[str, Any]:
    marks = _loaded.get()
    if marks is not None:
        marks.append(item_id)
    row = db().execute("SELECT version FROM items WHERE id = ?", (item_id,)).fetchone()
    return {"id": item_id, "version": row[0] if row else -1, "loaded_pid": os.getpid(), "loaded_at": time.time()}


@cache.cached(tags="item:{item_id}")
async def item_async(item_id: int) -> dict[str, Any]:
    return _load(item_id)


@cache.cached(tags="item:{item_id}")
def item_sync(item_id: int) -> dict[str, Any]:
    return _load(item_id)


def _write(item_id: int) -> int:
    conn = db()
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("UPDATE items SET version = version + 1 WHERE id = ?", (item_id,))
        version = conn.execute("SELECT version FROM items WHERE id = ?", (item_id,)).fetchone()[0]
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return int(version)


@cache.invalidates(tags="item:{item_id}")
async def bump_async(item_id: int) -> int:
    return _write(item_id)


app = FastAPI()



class _PidHeader:
    """X-Pid on every answer (also the ones cache_response replays)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def send_pid(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-pid", str(os.getpid()).encode())]
            await send(message)

        await self.inner(scope, receive, send_pid if scope["type"] == "http" else send)


app.add_middleware(_PidHeader)


def _answer(value: dict[str, Any], marks: list, response: Response) -> dict[str, Any]:
    response.headers["X-Cache"] = "MISS" if marks else "HIT"
    return value


@app.get("/items/{item_id}")
async def get_item(item_id: int, response: Response) -> dict[str, Any]:
    marks: list = []
    _loaded.set(marks)
    return _answer(await item_async(item_id), marks, response)


@app.get("/items/{item_id}/sync")
def get_item_sync(item_id: int, response: Response) -> dict[str, Any]:
    marks: list = []
    _loaded.set(marks)
    return _answer(item_sync(item_id), marks, response)


@app.get("/items/{item_id}/page")
@cache_response(cache, tags="item:{item_id}")
async def get_item_page(item_id: int, response: Response) -> dict[str, Any]:
    return _load(item_id)


@app.post("/items/{item_id}")
async def post_item(item_id: int, response: Response) -> dict[str, Any]:
    return {"id": item_id, "version": await bump_async(item_id)}


@app.post("/items/{item_id}/sync")
def post_item_sync(item_id: int, response: Response) -> dict[str, Any]:
    version = _write(item_id)
    cache.invalidate_tags(f"item:{item_id}")
    return {"id": item_id, "version": version}


@app.get("/_chaos/health")
def health(response: Response) -> dict[str, Any]:
    h = cache.health()
    s = cache.stats()
    return {"pid": os.getpid(), "health": h,
            "stats": {k: s[k] for k in ("loads", "l1_flushes", "stale_writes_refused", "invalidations_sent",
                                        "invalidations_received")},
            "l2": {k: s["l2"][k] for k in ("hits", "misses", "errors", "timeouts", "breaker",
                                           "breaker_transitions", "connected", "reconnects")},
            "l1_hit_rate": s["l1"]["hit_rate"]}

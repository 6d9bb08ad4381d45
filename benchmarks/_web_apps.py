"""The web apps bench_web.py loads, and the server process that serves them.

    python benchmarks/_web_apps.py fastapi --port 8123            # uvicorn, 1 worker
    python benchmarks/_web_apps.py flask --port 8124 --server gunicorn

Every variant is a route of the same app, ``GET /<variant>/items/<int:item_id>``, whose
handler body is the same: count the call, return the same small dict (PAYLOAD). The
"constant" variant is that handler with no cache; the others put a cache in front of it:

FastAPI (uvicorn):
  constant          ``async def`` returning PAYLOAD
  tiered            ``tieredcache.contrib.fastapi.cache_response(...)`` (the whole response)
  tiered-cached     ``@cache.cached(ttl=3600)`` on the handler (the return value; FastAPI
                    still serializes it on every request)
  fastapi-cache2    ``@cache(expire=3600)`` with ``InMemoryBackend``
  cashews           ``@cache(ttl=3600)`` with ``mem://``

Flask (gunicorn, else werkzeug):
  constant          a view returning PAYLOAD
  tiered            ``TieredCacheFlask(app, cache=...)``, ``@ext.cached_view(ttl=3600)``
  flask-caching     Flask-Caching ``SimpleCache``, ``@cache.cached(timeout=3600)``

``GET /_bench/calls`` returns how many times each variant's handler body ran (a cached
variant's stays at the number of distinct item ids), ``GET /_bench/info`` the server's
configuration. A variant whose library is missing is left out and reported by /_bench/info.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(os.path.dirname(HERE), "src")

TTL = 3600  # longer than any run: every id is loaded once, then served from the cache

# About 300 bytes of JSON: a cached row with a few nested fields.
PAYLOAD: dict[str, Any] = {
    "id": 42,
    "name": "Chez Nous",
    "address": {"street": "12 rue des Lilas", "city": "Lyon", "zip": "69003"},
    "open": True,
    "rating": 4.6,
    "tags": ["bistro", "terrace", "vegetarian"],
    "slots": [{"start": "12:00", "end": "12:30", "free": 3}, {"start": "12:30", "end": "13:00", "free": 0},
              {"start": "19:00", "end": "19:30", "free": 5}],
}

FASTAPI_VARIANTS = ("constant", "tiered", "tiered-cached", "fastapi-cache2", "cashews")
FLASK_VARIANTS = ("constant", "tiered", "flask-caching")


def _import_tieredcache() -> Any:
    try:
        import tieredcache
    except ImportError:
        sys.path.insert(0, SRC)
        import tieredcache
    return tieredcache


def _err(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


# --------------------------------------------------------------------------------------
# FastAPI
# --------------------------------------------------------------------------------------


def fastapi_app(variants: tuple[str, ...] = FASTAPI_VARIANTS) -> Any:
    from contextlib import asynccontextmanager

    from fastapi import FastAPI

    calls = {v: 0 for v in variants}
    info: dict[str, Any] = {"framework": "fastapi", "variants": {}, "unavailable": {}}
    closers: list[Any] = []
    startups: list[Any] = []

    @asynccontextmanager
    async def lifespan(app: Any):
        for fn in startups:
            r = fn()
            if hasattr(r, "__await__"):
                await r
        yield
        for fn in closers:
            r = fn()
            if hasattr(r, "__await__"):
                await r

    app = FastAPI(lifespan=lifespan, openapi_url=None, docs_url=None, redoc_url=None)

    @app.get("/_bench/calls")
    async def bench_calls() -> dict:
        return calls

    @app.get("/_bench/info")
    async def bench_info() -> dict:
        return info

    if "constant" in variants:
        @app.get("/constant/items/{item_id}")
        async def constant(item_id: int) -> Any:
            calls["constant"] += 1
            return PAYLOAD

        info["variants"]["constant"] = "async def returning a module-level dict"

    tc = None
    if "tiered" in variants or "tiered-cached" in variants:
        try:
            tc = _import_tieredcache()
            cache = tc.TieredCache(max_entries=10_000, default_ttl=300, namespace="bench-web")
            closers.append(cache.close)
        except Exception as exc:  # noqa: BLE001
            for v in ("tiered", "tiered-cached"):
                if v in variants:
                    info["unavailable"][v] = _err(exc)
            tc = None
    if tc is not None and "tiered" in variants:
        try:
            from tieredcache.contrib.fastapi import cache_response

            deco, desc = _tiered_cache_response(cache_response, cache)

            @app.get("/tiered/items/{item_id}")
            @deco
            async def tiered(item_id: int) -> Any:
                calls["tiered"] += 1
                return PAYLOAD

            info["variants"]["tiered"] = f"tieredcache.contrib.fastapi.{desc}"
        except Exception as exc:  # noqa: BLE001
            info["unavailable"]["tiered"] = _err(exc)
    if tc is not None and "tiered-cached" in variants:
        try:
            @app.get("/tiered-cached/items/{item_id}")
            @cache.cached(ttl=TTL)
            async def tiered_cached(item_id: int) -> Any:
                calls["tiered-cached"] += 1
                return PAYLOAD

            info["variants"]["tiered-cached"] = "@cache.cached(ttl=3600) on the async handler (L1-only TieredCache)"
        except Exception as exc:  # noqa: BLE001
            info["unavailable"]["tiered-cached"] = _err(exc)
    if "fastapi-cache2" in variants:
        try:
            from fastapi_cache import FastAPICache
            from fastapi_cache.backends.inmemory import InMemoryBackend
            from fastapi_cache.decorator import cache as fc_cache

            FastAPICache.init(InMemoryBackend(), prefix="fastapi-cache")

            @app.get("/fastapi-cache2/items/{item_id}")
            @fc_cache(expire=TTL)
            async def fastapi_cache2(item_id: int) -> Any:
                calls["fastapi-cache2"] += 1
                return PAYLOAD

            info["variants"]["fastapi-cache2"] = "FastAPICache.init(InMemoryBackend()); @cache(expire=3600)"
        except Exception as exc:  # noqa: BLE001
            info["unavailable"]["fastapi-cache2"] = _err(exc)
    if "cashews" in variants:
        try:
            from cashews import Cache

            cw = Cache()
            cw.setup("mem://?size=10000")
            closers.append(cw.close)

            @app.get("/cashews/items/{item_id}")
            @cw(ttl=TTL)
            async def cashews_(item_id: int) -> Any:
                calls["cashews"] += 1
                return PAYLOAD

            info["variants"]["cashews"] = "Cache().setup('mem://?size=10000'); @cache(ttl=3600) on the async handler"
        except Exception as exc:  # noqa: BLE001
            info["unavailable"]["cashews"] = _err(exc)
    return app


def _tiered_cache_response(cache_response: Any, cache: Any) -> tuple[Any, str]:
    """cache_response(...) called with the arguments its signature takes (cache=, ttl=);
    returns the decorator and a description of the call."""
    import inspect

    params = inspect.signature(cache_response).parameters
    kwargs: dict[str, Any] = {}
    if "cache" in params:
        kwargs["cache"] = cache
    if "ttl" in params:
        kwargs["ttl"] = TTL
    desc = ", ".join("cache=<L1-only TieredCache>" if k == "cache" else f"{k}={v!r}" for k, v in kwargs.items())
    return cache_response(**kwargs), f"cache_response({desc})"


# --------------------------------------------------------------------------------------
# Flask
# --------------------------------------------------------------------------------------


def flask_app(variants: tuple[str, ...] = FLASK_VARIANTS) -> Any:
    from flask import Flask

    calls = {v: 0 for v in variants}
    info: dict[str, Any] = {"framework": "flask", "variants": {}, "unavailable": {}}
    app = Flask("bench_web")

    @app.get("/_bench/calls")
    def bench_calls() -> Any:
        return calls

    @app.get("/_bench/info")
    def bench_info() -> Any:
        return info

    if "constant" in variants:
        @app.get("/constant/items/<int:item_id>")
        def constant(item_id: int) -> Any:
            calls["constant"] += 1
            return PAYLOAD

        info["variants"]["constant"] = "a view returning a module-level dict"
    if "tiered" in variants:
        try:
            tc = _import_tieredcache()
            from tieredcache.contrib.flask import TieredCacheFlask

            cache = tc.TieredCache(max_entries=10_000, default_ttl=300, namespace="bench-web")
            ext = TieredCacheFlask(app, cache=cache)

            @app.get("/tiered/items/<int:item_id>")
            @ext.cached_view(ttl=TTL)
            def tiered(item_id: int) -> Any:
                calls["tiered"] += 1
                return PAYLOAD

            info["variants"]["tiered"] = "TieredCacheFlask(app, cache=L1-only TieredCache); @ext.cached_view(ttl=3600)"
        except Exception as exc:  # noqa: BLE001
            info["unavailable"]["tiered"] = _err(exc)
    if "flask-caching" in variants:
        try:
            from flask_caching import Cache

            fc = Cache(app, config={"CACHE_TYPE": "SimpleCache", "CACHE_DEFAULT_TIMEOUT": TTL,
                                    "CACHE_THRESHOLD": 10_000})

            @app.get("/flask-caching/items/<int:item_id>")
            @fc.cached(timeout=TTL)
            def flask_caching(item_id: int) -> Any:
                calls["flask-caching"] += 1
                return PAYLOAD

            info["variants"]["flask-caching"] = "Flask-Caching SimpleCache; @cache.cached(timeout=3600)"
        except Exception as exc:  # noqa: BLE001
            info["unavailable"]["flask-caching"] = _err(exc)
    return app


# --------------------------------------------------------------------------------------
# the server process
# --------------------------------------------------------------------------------------


def _serve_fastapi(args: argparse.Namespace) -> None:
    import uvicorn

    variants = tuple(args.variants.split(",")) if args.variants else FASTAPI_VARIANTS
    app = fastapi_app(variants)
    loop, http = args.loop, args.http
    if loop == "auto":
        try:
            import uvloop  # noqa: F401

            loop = "uvloop"
        except ImportError:
            loop = "asyncio"
    if http == "auto":
        try:
            import httptools  # noqa: F401

            http = "httptools"
        except ImportError:
            http = "h11"
    _announce({"server": f"uvicorn {uvicorn.__version__}, 1 worker, loop={loop}, http={http}"})
    uvicorn.run(app, host="127.0.0.1", port=args.port, workers=1, loop=loop, http=http,
                log_level="warning", access_log=False, lifespan="on")


def _serve_flask(args: argparse.Namespace) -> None:
    variants = tuple(args.variants.split(",")) if args.variants else FLASK_VARIANTS
    server = args.server
    if server == "auto":
        try:
            import gunicorn  # noqa: F401

            server = "gunicorn"
        except ImportError:
            server = "werkzeug"
    if server == "gunicorn":
        from gunicorn.app.base import BaseApplication

        app = flask_app(variants)

        class _App(BaseApplication):
            def load_config(self) -> None:
                self.cfg.set("bind", f"127.0.0.1:{args.port}")
                self.cfg.set("workers", 1)
                self.cfg.set("worker_class", args.worker_class)
                self.cfg.set("threads", args.threads)
                self.cfg.set("keepalive", 30)
                self.cfg.set("backlog", 2048)
                self.cfg.set("loglevel", "warning")
                self.cfg.set("accesslog", None)

            def load(self) -> Any:
                return app

        from importlib.metadata import version

        _announce({"server": f"gunicorn {version('gunicorn')}, 1 worker, worker_class={args.worker_class}, "
                             f"threads={args.threads}, keepalive=30 s"})
        _App().run()
    else:
        from werkzeug.serving import WSGIRequestHandler, run_simple

        from importlib.metadata import version

        WSGIRequestHandler.protocol_version = "HTTP/1.1"  # keep-alive
        app = flask_app(variants)
        _announce({"server": f"werkzeug {version('werkzeug')} run_simple, threaded, HTTP/1.1"})
        import logging

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        run_simple("127.0.0.1", args.port, app, threaded=True, use_reloader=False, use_debugger=False)


def _announce(d: dict) -> None:
    print("BENCHWEB " + json.dumps(d), file=sys.stderr, flush=True)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description="serve the bench_web apps")
    ap.add_argument("framework", choices=("fastapi", "flask"))
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--variants", default=None)
    ap.add_argument("--loop", default="auto", help="uvicorn event loop: auto, uvloop, asyncio")
    ap.add_argument("--http", default="auto", help="uvicorn HTTP parser: auto, httptools, h11")
    ap.add_argument("--server", default="auto", help="Flask: gunicorn, werkzeug, auto")
    ap.add_argument("--worker-class", default="gthread", help="gunicorn worker class")
    ap.add_argument("--threads", type=int, default=4, help="gunicorn gthread threads")
    args = ap.parse_args(argv)
    if args.framework == "fastapi":
        _serve_fastapi(args)
    else:
        _serve_flask(args)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

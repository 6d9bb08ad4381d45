"""In-process cost of one request through each bench_web variant: no socket, no server.

    python benchmarks/_web_inproc.py fastapi --seconds 1.5     # prints one JSON line

The same apps as the load test (_web_apps.py), one per variant, called directly: FastAPI as an ASGI app
(``await app(scope, receive, send)`` in one event loop, uvloop when installed, a pre-built
scope per item id), Flask as a WSGI app (``app.wsgi_app(environ, start_response)`` with a
pre-built environ per item id, the body iterated and closed). A timed run goes once over
the --ids paths (all cached after the first run); runs are spread over --passes passes
round-robin over the variants, and each variant reports the fastest run and the median
run, in µs per request, with the garbage collector off during a run.

This isolates what the framework plus the cache cost per request from the HTTP server,
the network stack and the machine's other load, which move the load test's req/s by
several %: the difference between a cached variant and "constant" here is the cache's
own cost (or saving) on the request path.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import sys
from time import perf_counter_ns
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _web_apps import FASTAPI_VARIANTS, FLASK_VARIANTS, PAYLOAD, fastapi_app, flask_app  # noqa: E402


def _scope(path: str) -> dict[str, Any]:
    return {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
        "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "headers": [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"bench"),
                                     (b"accept", b"*/*")],
        "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000), "state": {},
    }


def bench_fastapi(variants: list[str], ids: int, seconds: float, passes: int) -> dict[str, Any]:
    try:
        import uvloop

        loop = uvloop.new_event_loop()
        loop_name = "uvloop"
    except ImportError:
        loop = asyncio.new_event_loop()
        loop_name = "asyncio"
    asyncio.set_event_loop(loop)
    apps: dict[str, Any] = {}
    unavailable: dict[str, str] = {}
    for v in variants:  # one app per variant: every app has the same routes (routing costs the same)
        app = fastapi_app((v,))
        info = loop.run_until_complete(_asgi_json(app, "/_bench/info"))
        unavailable.update(info.get("unavailable", {}))
        if v in info["variants"]:
            apps[v] = app
    variants = [v for v in variants if v in apps]
    scopes = {v: [_scope(f"/{v}/items/{i}") for i in range(1, ids + 1)] for v in variants}
    request = {"type": "http.request", "body": b"", "more_body": False}

    async def receive() -> dict:
        return request

    status: list[int] = []

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    async def run(v: str) -> int:
        app = apps[v]
        t0 = perf_counter_ns()
        for scope in scopes[v]:
            await app(dict(scope), receive, send)
        return perf_counter_ns() - t0

    async def lifespan_start(app: Any) -> Any:
        # run the app's lifespan startup, as the server would
        queue: asyncio.Queue = asyncio.Queue()
        await queue.put({"type": "lifespan.startup"})
        done = asyncio.Event()

        async def lrecv() -> dict:
            return await queue.get()

        async def lsend(message: dict) -> None:
            if message["type"].startswith("lifespan.startup"):
                done.set()

        task = loop.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, lrecv, lsend))
        await done.wait()
        return task

    lifespans = [loop.run_until_complete(lifespan_start(app)) for app in apps.values()]

    def timed(v: str) -> int:
        return loop.run_until_complete(run(v))

    for v in variants:  # check: the body is the constant's
        body = loop.run_until_complete(_asgi_json(apps[v], f"/{v}/items/1"))
        if body != PAYLOAD:
            unavailable[v] = "body differs from the constant's"
    variants = [v for v in variants if v not in unavailable]
    out = _measure(variants, timed, ids, seconds, passes, status)
    out["loop"] = loop_name
    out["unavailable"] = unavailable
    for task in lifespans:
        task.cancel()
    return out


async def _asgi_json(app: Any, path: str) -> Any:
    chunks: list[bytes] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(_scope(path), receive, send)
    return json.loads(b"".join(chunks))


def bench_flask(variants: list[str], ids: int, seconds: float, passes: int) -> dict[str, Any]:
    from werkzeug.test import EnvironBuilder

    apps: dict[str, Any] = {}
    unavailable: dict[str, str] = {}

    def environ(path: str) -> dict:
        return EnvironBuilder(path=path, base_url="http://127.0.0.1:8000",
                              headers={"User-Agent": "bench", "Accept": "*/*"}).get_environ()

    status: list[int] = []

    def start_response(s: str, headers: list, exc_info: Any = None) -> None:
        status.append(int(s[:3]))

    def call(wsgi: Any, env: dict) -> bytes:
        body = wsgi(dict(env), start_response)
        try:
            return b"".join(body)
        finally:
            if hasattr(body, "close"):
                body.close()

    for v in variants:  # one app per variant, as for FastAPI
        app = flask_app((v,))
        info = json.loads(call(app.wsgi_app, environ("/_bench/info")))
        unavailable.update(info.get("unavailable", {}))
        if v in info["variants"]:
            apps[v] = app.wsgi_app
    variants = [v for v in variants if v in apps]
    envs = {v: [environ(f"/{v}/items/{i}") for i in range(1, ids + 1)] for v in variants}
    for v in variants:
        if json.loads(call(apps[v], envs[v][0])) != PAYLOAD:
            unavailable[v] = "body differs from the constant's"
    variants = [v for v in variants if v not in unavailable]

    def timed(v: str) -> int:
        wsgi = apps[v]
        t0 = perf_counter_ns()
        for env in envs[v]:
            call(wsgi, env)
        return perf_counter_ns() - t0

    out = _measure(variants, timed, ids, seconds, passes, status)
    out["unavailable"] = unavailable
    return out


def _measure(variants: list[str], timed: Any, ids: int, seconds: float, passes: int,
             status: list[int]) -> dict[str, Any]:
    samples: dict[str, list[float]] = {v: [] for v in variants}
    for v in variants:
        timed(v)  # first run: fills the caches
    per_pass_ns = seconds * 1e9 / passes
    for _ in range(passes):
        for v in variants:
            spent = 0
            timed(v)  # warm-up run
            while spent < per_pass_ns:
                del status[:]
                was = gc.isenabled()
                gc.disable()
                try:
                    t = timed(v)
                finally:
                    if was:
                        gc.enable()
                spent += t
                if any(s != 200 for s in status):
                    raise RuntimeError(f"{v}: a response was not 200: {sorted(set(status))}")
                samples[v].append(t / ids / 1e3)
    return {"variants": {v: {"us_min": round(min(s), 2), "us_median": round(statistics.median(s), 2),
                             "runs": len(s)} for v, s in samples.items()}}


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description="in-process request cost of the bench_web variants")
    ap.add_argument("framework", choices=("fastapi", "flask"))
    ap.add_argument("--variants", default=None)
    ap.add_argument("--ids", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=1.5, help="timed seconds per variant")
    ap.add_argument("--passes", type=int, default=5)
    a = ap.parse_args(argv)
    default = FASTAPI_VARIANTS if a.framework == "fastapi" else FLASK_VARIANTS
    variants = [v for v in (a.variants.split(",") if a.variants else default) if v in default]
    if "constant" not in variants:
        variants.insert(0, "constant")
    fn = bench_fastapi if a.framework == "fastapi" else bench_flask
    print(json.dumps(fn(variants, a.ids, a.seconds, max(1, a.passes))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Per-worker counters for bench_e2e.py, written where the benchmark can sum them.

A server with several workers (uvicorn ``--workers 2``, gunicorn ``-w 2``) answers a
request from whichever worker accepted the connection, so asking it over HTTP for "the"
query count reaches one worker at random. Instead each worker runs a daemon thread that
watches ``$E2E_STATS_DIR/trigger`` (an ``os.stat``-cheap read every POLL seconds) and,
when the benchmark writes a new token there, writes ``collect()`` (its own counters) with
that token to ``$E2E_STATS_DIR/<pid>.json`` (write, then rename). ``snapshot`` writes a
token and waits for every worker's answer: exact counters, and no work in the workers
between two snapshots beyond the file check.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from typing import Any

POLL = 0.02
_tokens = iter(range(1, 1 << 62))


def start_dumper(collect: Callable[[], dict[str, Any]]) -> None:
    """In a worker: answer every new trigger token (no-op without E2E_STATS_DIR)."""
    folder = os.environ.get("E2E_STATS_DIR")
    if not folder:
        return
    pid = os.getpid()
    path = os.path.join(folder, f"{pid}.json")
    tmp = os.path.join(folder, f".{pid}.tmp")
    trigger = os.path.join(folder, "trigger")

    def dump(token: str) -> None:
        try:
            data = {"pid": pid, "token": token, "time": time.time(), **collect()}
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(data, fh)
            os.replace(tmp, path)
        except Exception:  # noqa: BLE001 - a failed dump must not hurt the server
            pass

    def loop() -> None:
        last = None
        while True:
            try:
                with open(trigger, encoding="ascii") as fh:
                    token = fh.read()
            except OSError:
                token = ""
            if token != last:
                dump(token)
                last = token
            time.sleep(POLL)

    threading.Thread(target=loop, name="e2e-stats", daemon=True).start()


def read_all(folder: str) -> dict[int, dict[str, Any]]:
    """{pid: last dump} of every worker that wrote to ``folder``."""
    out: dict[int, dict[str, Any]] = {}
    try:
        names = os.listdir(folder)
    except OSError:
        return out
    for name in names:
        if not name.endswith(".json"):
            continue
        try:
            with open(os.path.join(folder, name), encoding="utf-8") as fh:
                d = json.load(fh)
            out[int(d["pid"])] = d
        except (OSError, ValueError, KeyError):
            continue
    return out


def snapshot(folder: str, workers: int, timeout: float = 5.0) -> dict[int, dict[str, Any]]:
    """Ask every worker for its counters now; returns {pid: counters} of the workers that
    answered within ``timeout`` (each answer carries the new token)."""
    token = f"t{next(_tokens)}-{time.monotonic_ns()}"
    tmp = os.path.join(folder, ".trigger.tmp")
    with open(tmp, "w", encoding="ascii") as fh:
        fh.write(token)
    os.replace(tmp, os.path.join(folder, "trigger"))
    deadline = time.monotonic() + timeout
    while True:
        got = {pid: d for pid, d in read_all(folder).items() if d.get("token") == token}
        if len(got) >= workers or time.monotonic() > deadline:
            return got
        time.sleep(POLL / 2)

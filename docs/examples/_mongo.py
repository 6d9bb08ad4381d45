"""A MongoDB-wire server for the examples, their tests and ``make demo``.

``MONGODB_URL`` set: that server is used as it is (a real mongod, say) and nothing is
started. Otherwise nx-27017, the MongoDB wire protocol on SQLite (PyPI ``nx-27017``), is
started in memory on a free loopback port, with its log and pid files in a private
temporary directory, and stopped again by its process id::

    from _mongo import mongo_server

    with mongo_server() as url:               # "mongodb://127.0.0.1:41234"
        client = pymongo.MongoClient(url)

    url, stop = start_mongo()                 # the same, without the `with`
    try: ...
    finally: stop()

Every step is bounded in time: the server must answer a ``ping`` within ``timeout``
seconds, and stopping it waits a few seconds before a SIGKILL. A server that cannot start
raises ``MongoUnavailable`` with the reason and the tail of its log (tests turn that into
a skip). On Linux the server is also asked to die with the thread that started it, so a
killed demo or test run leaves no server behind.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["MongoUnavailable", "mongo_server", "nx_27017_command", "start_mongo"]

START_TIMEOUT = 20.0     # seconds until the first successful ping
STOP_TIMEOUT = 5.0       # seconds between SIGTERM and SIGKILL
PORT_ATTEMPTS = 3        # a free port can be taken between choosing it and binding it


class MongoUnavailable(RuntimeError):
    """No MongoDB-wire server could be started (or reached)."""


def nx_27017_command() -> list[str]:
    """How to run nx-27017 with this interpreter: the console script installed next to
    ``sys.executable`` (``.venv/bin/nx-27017``), else the one on ``PATH``, else the module
    run by this interpreter. Raises ``MongoUnavailable`` when it is not installed."""
    bindir = Path(sys.executable).parent
    for name in ("nx-27017", "nx-27017.exe"):
        script = bindir / name
        if script.is_file() and os.access(script, os.X_OK):
            return [str(script)]
    if importlib.util.find_spec("nx_27017") is not None:
        return [sys.executable, "-c",
                "import sys; from nx_27017.nx_27017 import main; sys.argv[0] = 'nx-27017'; sys.exit(main())"]
    found = shutil.which("nx-27017")
    if found:
        return [found]
    raise MongoUnavailable("nx-27017 is not installed (pip install nx-27017, or set MONGODB_URL "
                           "to a running MongoDB server)")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _parent_death_signal() -> Callable[[], None] | None:
    """Linux: a function for ``preexec_fn`` that has the child SIGTERMed when the thread
    that started it ends (prctl PR_SET_PDEATHSIG). Bound here, in the parent: the child
    runs it between fork and exec, where importing anything could deadlock."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def set_pdeathsig() -> None:  # pragma: no cover - runs in the child
        prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG

    return set_pdeathsig


def _ping(url: str, timeout: float) -> None:
    from pymongo import MongoClient

    client: MongoClient = MongoClient(url, serverSelectionTimeoutMS=int(timeout * 1000),
                                      connectTimeoutMS=int(timeout * 1000))
    try:
        client.admin.command("ping")
    finally:
        client.close()


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no output)"
    return "\n".join(text[-lines:]) or "(no output)"


def _stop(proc: subprocess.Popen, workdir: Path) -> None:
    """Stop the server we started, by its pid: SIGTERM, then SIGKILL after STOP_TIMEOUT."""
    try:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STOP_TIMEOUT)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _start_nx(timeout: float) -> tuple[str, Callable[[], None]]:
    command = nx_27017_command()
    workdir = Path(tempfile.mkdtemp(prefix="tc-nx27017-"))
    deadline = time.monotonic() + timeout
    reasons = []
    for attempt in range(PORT_ATTEMPTS):
        port = _free_port()
        url = f"mongodb://127.0.0.1:{port}"
        out = workdir / f"server-{attempt}.out"
        argv = [*command, "--db", "memory", "--host", "127.0.0.1", "-p", str(port),
                "--log-file", str(workdir / f"nx-27017-{attempt}.log"),
                "--pid-file", str(workdir / f"nx-27017-{attempt}.pid")]
        with open(out, "wb") as sink:
            # its own session: a Ctrl-C in the terminal reaches us, and we stop it
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT,
                cwd=workdir, close_fds=True, preexec_fn=_parent_death_signal(),
                start_new_session=os.name == "posix",
            )
        while True:
            if proc.poll() is not None:
                reasons.append(f"port {port}: exited with status {proc.returncode}:\n{_tail(out)}")
                break
            left = deadline - time.monotonic()
            if left <= 0:
                _stop(proc, workdir)
                raise MongoUnavailable(f"nx-27017 did not answer a ping within {timeout:g} s "
                                       f"({' '.join(argv)}):\n{_tail(out)}")
            try:
                _ping(url, min(0.5, left))
            except Exception:
                time.sleep(0.05)
                continue
            return url, lambda proc=proc: _stop(proc, workdir)
        if time.monotonic() >= deadline:
            break
    shutil.rmtree(workdir, ignore_errors=True)
    raise MongoUnavailable("nx-27017 could not start:\n" + "\n".join(reasons))


def start_mongo(*, timeout: float = START_TIMEOUT) -> tuple[str, Callable[[], None]]:
    """Return ``(url, stop)``: ``MONGODB_URL`` (checked with a ping; ``stop`` does nothing),
    or a fresh in-memory nx-27017 on 127.0.0.1 and the function that stops it."""
    url = os.environ.get("MONGODB_URL", "").strip()
    if url:
        try:
            _ping(url, timeout)
        except Exception as exc:
            reason = str(exc).split(" (configured timeouts")[0][:300]
            raise MongoUnavailable(f"MONGODB_URL does not answer a ping: {type(exc).__name__}: {reason}") from None
        return url, lambda: None
    return _start_nx(timeout)


@contextlib.contextmanager
def mongo_server(*, timeout: float = START_TIMEOUT) -> Iterator[str]:
    """``with mongo_server() as url:`` the ``start_mongo()`` server, stopped on exit."""
    url, stop = start_mongo(timeout=timeout)
    try:
        yield url
    finally:
        stop()


if __name__ == "__main__":  # python docs/examples/_mongo.py: start one and wait for Ctrl-C
    with mongo_server() as url:
        print(url, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause() if hasattr(signal, "pause") else time.sleep(1e9)

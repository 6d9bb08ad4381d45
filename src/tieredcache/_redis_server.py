"""Run a private ``redis-server`` for tests and benchmarks.

::

    with RedisServer() as server:             # free loopback port, temp dir, no persistence
        client = RedisClient(server.url)
        server.pause(); server.resume()       # SIGSTOP / SIGCONT: a server that hangs
        server.restart()                      # same port (and unix socket), empty data
        server.kill()                         # SIGKILL: a server that crashes

The server runs with ``--save "" --appendonly no`` in a fresh temporary directory
(removed by ``stop()``), bound to 127.0.0.1 on a port chosen free just before the start.
It is killed at interpreter exit if still running, and on Linux (through ``setpriv
--pdeathsig``, when started from the main thread) also when this process dies abruptly.
``LD_PRELOAD`` is removed from its environment: a test process running under a sanitizer
preloads its runtime, which must not be forced on redis-server.

Nothing here imports the client: readiness is checked with a raw socket.
"""

from __future__ import annotations

import atexit
import functools
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from typing import Sequence

import hiredis

__all__ = ["RedisServer", "RedisServerError", "server_version"]

# Environment variables that inject code into a child process.
_STRIPPED_ENV = ("LD_PRELOAD", "LD_AUDIT", "DYLD_INSERT_LIBRARIES")


class RedisServerError(RuntimeError):
    """redis-server is missing, did not start, or did not answer."""


@functools.lru_cache(maxsize=8)
def server_version(binary: str = "redis-server") -> tuple[int, int, int]:
    """``redis-server --version`` as a tuple, e.g. (7, 0, 15)."""
    path = shutil.which(binary)
    if path is None:
        raise RedisServerError(f"{binary!r} not found on PATH")
    env = {k: v for k, v in os.environ.items() if k not in _STRIPPED_ENV}
    out = subprocess.run([path, "--version"], capture_output=True, text=True, env=env, check=False).stdout
    m = re.search(r"v=(\d+)\.(\d+)\.(\d+)", out)
    if m is None:
        raise RedisServerError(f"cannot read the version of {path}: {out.strip()!r}")
    return int(m[1]), int(m[2]), int(m[3])


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


_running: weakref.WeakSet[RedisServer] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    for server in list(_running):
        server.kill()


class RedisServer:
    """A redis-server child process.

    ``password``: run with ``--requirepass``. ``unix_socket``: also listen on a unix
    socket in the temp dir (``unix_url``). ``tls``: ``(cert_file, key_file, ca_file)``:
    listen with TLS only (``url`` is then ``rediss://``). ``args``: more command-line
    arguments (``["--maxmemory", "10mb"]``). ``debug_command``: allow DEBUG (``DEBUG
    SLEEP`` makes a slow server) from local clients, on Redis 7+ where it is off by default.
    """

    def __init__(
        self,
        *,
        binary: str = "redis-server",
        host: str = "127.0.0.1",
        port: int | None = None,
        password: str | None = None,
        unix_socket: bool = False,
        tls: tuple[str, str, str] | None = None,
        args: Sequence[str] = (),
        debug_command: bool = True,
        startup_timeout: float = 10.0,
    ) -> None:
        self.binary = binary
        self.host = host
        self.port = port
        self.password = password
        self.unix_socket = unix_socket
        self.tls = tls
        self.args = list(args)
        self.debug_command = debug_command
        self.startup_timeout = startup_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: str | None = None

    # -- properties ---------------------------------------------------------------------

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RedisServerError("the server is not running")
        return self._proc.pid

    @property
    def url(self) -> str:
        """``redis://[:password@]127.0.0.1:PORT/0`` (``rediss://`` with TLS)."""
        if self.port is None:
            raise RedisServerError("the server was never started")
        auth = f":{self.password}@" if self.password else ""
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://{auth}{self.host}:{self.port}/0"

    @property
    def unix_path(self) -> str:
        if not self.unix_socket or self._dir is None:
            raise RedisServerError("the server has no unix socket (RedisServer(unix_socket=True))")
        return os.path.join(self._dir, "redis.sock")

    @property
    def unix_url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"unix://{auth}{self.unix_path}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def log_path(self) -> str | None:
        return os.path.join(self._dir, "redis.log") if self._dir else None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> RedisServer:
        """Start the server and wait until it answers PING. Returns ``self``."""
        if self.running:
            return self
        binary = shutil.which(self.binary)
        if binary is None:
            raise RedisServerError(
                f"{self.binary!r} not found on PATH: install Redis (e.g. 'apt install redis-server' "
                "or 'brew install redis') or pass RedisServer(binary='/path/to/redis-server')"
            )
        if self._dir is None:
            self._dir = tempfile.mkdtemp(prefix="tieredcache-redis-")
        fixed_port = self.port is not None
        for attempt in range(5):
            if not fixed_port:
                self.port = _free_port(self.host)
            try:
                self._spawn(binary)
                break
            except RedisServerError:
                # Another process may have taken the port between the probe and the bind.
                if fixed_port or attempt == 4:
                    raise
        _running.add(self)
        return self

    def _spawn(self, binary: str) -> None:
        assert self._dir is not None and self.port is not None
        argv = [
            binary,
            "--bind", self.host,
            "--save", "",
            "--appendonly", "no",
            "--dir", self._dir,
            "--logfile", "redis.log",
            "--daemonize", "no",
            "--protected-mode", "no",
        ]  # fmt: skip
        if self.tls:
            cert, key, ca = self.tls
            argv += ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", cert,
                     "--tls-key-file", key, "--tls-ca-cert-file", ca, "--tls-auth-clients", "no"]  # fmt: skip
        else:
            argv += ["--port", str(self.port)]
        if self.password:
            argv += ["--requirepass", self.password]
        if self.unix_socket:
            argv += ["--unixsocket", os.path.join(self._dir, "redis.sock"), "--unixsocketperm", "700"]
        if self.debug_command and server_version(self.binary) >= (7, 0, 0):
            argv += ["--enable-debug-command", "local"]
        argv += self.args
        # If this process dies without stopping the server (os._exit, SIGKILL, a watchdog),
        # the kernel kills the server too. PR_SET_PDEATHSIG follows the thread that
        # forked, so only when that is the main thread.
        if sys.platform.startswith("linux") and threading.current_thread() is threading.main_thread():
            setpriv = shutil.which("setpriv")
            if setpriv is not None:
                argv = [setpriv, "--pdeathsig", "KILL", "--", *argv]
        env = {k: v for k, v in os.environ.items() if k not in _STRIPPED_ENV}
        log = self.log_path
        assert log is not None
        if os.path.exists(log):
            os.unlink(log)
        self._proc = subprocess.Popen(
            argv, cwd=self._dir, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
                self._close_pipes()
                self._proc = None
                raise RedisServerError(f"redis-server exited at startup: {self._log_tail()}{err}".strip())
            if self._answers_ping():
                return
            if time.monotonic() > deadline:
                self.kill()
                raise RedisServerError(f"redis-server did not answer PING within {self.startup_timeout} s")
            time.sleep(0.01)

    def _log_tail(self) -> str:
        try:
            with open(self.log_path or "", encoding="utf-8", errors="replace") as fh:
                return "".join(fh.readlines()[-5:])
        except OSError:
            return ""

    def _answers_ping(self) -> bool:
        """Any reply to PING (even NOAUTH) means the server is up."""
        try:
            sock = socket.create_connection((self.host, self.port or 0), timeout=1.0)
        except OSError:
            return False
        try:
            if self.tls:
                ctx = ssl.create_default_context()
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                sock = ctx.wrap_socket(sock)
            return self._command(sock, ("PING",)) is not None
        except OSError:
            return False
        finally:
            sock.close()

    @staticmethod
    def _command(sock: socket.socket, args: tuple[str, ...]) -> object:
        reader = hiredis.Reader()
        sock.sendall(hiredis.pack_command(args))
        while True:
            data = sock.recv(65536)
            if not data:
                raise ConnectionResetError("redis-server closed the connection")
            reader.feed(data)
            reply = reader.gets()
            if reply is not False:
                return reply

    def flushall(self) -> None:
        """Empty every database and the script cache (with a raw socket)."""
        sock = socket.create_connection((self.host, self.port or 0), timeout=5.0)
        try:
            if self.tls:
                ctx = ssl.create_default_context()
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                sock = ctx.wrap_socket(sock)
            if self.password:
                self._check(self._command(sock, ("AUTH", self.password)))
            self._check(self._command(sock, ("FLUSHALL",)))
            self._check(self._command(sock, ("SCRIPT", "FLUSH")))
        finally:
            sock.close()

    @staticmethod
    def _check(reply: object) -> None:
        if isinstance(reply, hiredis.ReplyError):
            raise RedisServerError(f"redis-server answered {reply}")

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, then SIGKILL if it has not exited within ``timeout``; removes the
        temp dir. Idempotent."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            for sig in (signal.SIGTERM, signal.SIGCONT):  # a paused server needs the SIGCONT
                try:
                    os.kill(proc.pid, sig)
                except ProcessLookupError:
                    pass
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._close_pipes()
        self._proc = None
        _running.discard(self)
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def kill(self) -> None:
        """SIGKILL (a crash); the temp dir stays for ``start()`` / ``restart()``."""
        proc = self._proc
        if proc is not None:
            if proc.poll() is None:
                self._signal(signal.SIGKILL)
            proc.wait()
            self._close_pipes()
            self._proc = None
        _running.discard(self)

    def pause(self) -> None:
        """SIGSTOP: the server keeps its connections but answers nothing."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT."""
        self._signal(signal.SIGCONT)

    def restart(self) -> RedisServer:
        """Kill the server (if running) and start a new, empty one on the same port and
        socket path."""
        if self.port is None or self._dir is None:
            raise RedisServerError("the server was never started")
        self.kill()
        binary = shutil.which(self.binary)
        if binary is None:
            raise RedisServerError(f"{self.binary!r} not found on PATH")
        self._spawn(binary)
        _running.add(self)
        return self

    def _signal(self, sig: int) -> None:
        if self._proc is None or self._proc.poll() is not None:
            raise RedisServerError("the server is not running")
        os.kill(self._proc.pid, sig)

    def _close_pipes(self) -> None:
        if self._proc is not None and self._proc.stderr is not None:
            self._proc.stderr.close()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid {self._proc.pid}" if self.running and self._proc else "stopped"
        return f"<RedisServer {self.host}:{self.port} {state}>"

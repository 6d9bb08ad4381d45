"""A SQLite database handle shared by the barbershop and point-of-sale reference apps.

One connection per thread (SQLite connections are not shared across threads), and two
counters, ``reads`` and ``writes``: ``reads`` is what a cache hit saves, and the apps
report it at ``GET /debug/queries``.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class Database:
    """One SQLite connection per thread; ``reads`` and ``writes`` count the statements run.

    ``reads`` is what a cache hit saves: ``GET /debug/queries`` reports it.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.reads = 0
        self.writes = 0
        self._count_lock = threading.Lock()
        self._local = threading.local()
        self._opened: list[sqlite3.Connection] = []

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=10, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA foreign_keys = ON")
            self._local.conn = conn
            with self._count_lock:
                self._opened.append(conn)
        return conn

    def _count(self, sql: str) -> None:
        with self._count_lock:
            if sql.lstrip()[:6].upper() == "SELECT":
                self.reads += 1
            else:
                self.writes += 1

    def query(self, sql: str, *params: Any) -> list[dict[str, Any]]:
        self._count(sql)
        return [dict(row) for row in self._conn().execute(sql, params)]

    def one(self, sql: str, *params: Any) -> dict[str, Any] | None:
        rows = self.query(sql, *params)
        return rows[0] if rows else None

    def scalar(self, sql: str, *params: Any) -> Any:
        """The first column of the first row."""
        rows = self.query(sql, *params)
        return next(iter(rows[0].values())) if rows else None

    def execute(self, sql: str, *params: Any) -> int:
        """Run a write; returns the last row id."""
        self._count(sql)
        return self._conn().execute(sql, params).lastrowid or 0

    @contextmanager
    def transaction(self) -> Iterator[Database]:
        """``BEGIN IMMEDIATE`` (one writer at a time) ... ``COMMIT``, or ``ROLLBACK`` on error."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield self
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def close(self) -> None:
        with self._count_lock:
            opened, self._opened = self._opened, []
        for conn in opened:
            conn.close()

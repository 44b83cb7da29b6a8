"""A `limits` storage in one SQLite file, so every gunicorn worker counts the same login attempts.

Flask-Limiter's memory storage lives in each worker process: with 3 workers an attacker got up
to 3x the configured attempts. The `limits` library's shared backends (Redis, memcached, MongoDB)
would each need a server this product does not otherwise run; the workers of one web host share
a disk, so a small SQLite file (stdlib, WAL journal) does the job. Fixed-window counters only:
the strategy Flask-Limiter uses by default.

    RATELIMIT_STORAGE_URI = "sqlite:////path/to/login-limits.sqlite"
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from typing import ClassVar

from limits.storage import Storage

SCHEMA = """
CREATE TABLE IF NOT EXISTS counters (key TEXT PRIMARY KEY, n INTEGER NOT NULL, expires REAL NOT NULL);
CREATE INDEX IF NOT EXISTS counters_expires ON counters (expires);
"""


class SQLiteStorage(Storage):
    STORAGE_SCHEME: ClassVar[list[str]] = ["sqlite"]  # how limits finds us: sqlite:///abs/path

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, **options) -> None:
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        path = (uri or "").removeprefix("sqlite://")
        if not path.startswith("/"):
            raise ValueError(f"sqlite rate-limit storage needs an absolute path: {uri!r}")
        self.path = path
        self._local = threading.local()
        self._db()  # create the file and table now: a bad path fails at start, not at login

    @property
    def base_exceptions(self) -> type[Exception]:
        return sqlite3.Error

    def _db(self) -> sqlite3.Connection:
        # One connection per process and thread: a connection must not cross a fork.
        db = getattr(self._local, "db", None)
        if db is None or self._local.pid != os.getpid():
            db = sqlite3.connect(self.path, timeout=5.0, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # a lost counter on power loss is harmless
            db.executescript(SCHEMA)
            self._local.db, self._local.pid = db, os.getpid()
        return db

    def incr(self, key: str, expiry: float, amount: int = 1) -> int:
        now = time.time()
        db = self._db()
        db.execute("BEGIN IMMEDIATE")  # read-modify-write under the file's write lock
        try:
            # Every expired window goes, not just this key's: the table holds live windows only.
            db.execute("DELETE FROM counters WHERE expires <= ?", (now,))
            db.execute("INSERT INTO counters VALUES (?, ?, ?) "
                       "ON CONFLICT(key) DO UPDATE SET n = n + excluded.n", (key, amount, now + expiry))
            (n,) = db.execute("SELECT n FROM counters WHERE key = ?", (key,)).fetchone()
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return n

    def get(self, key: str) -> int:
        row = self._db().execute("SELECT n FROM counters WHERE key = ? AND expires > ?",
                                 (key, time.time())).fetchone()
        return row[0] if row else 0

    def get_expiry(self, key: str) -> float:
        row = self._db().execute("SELECT expires FROM counters WHERE key = ? AND expires > ?",
                                 (key, time.time())).fetchone()
        return row[0] if row else time.time()

    def check(self) -> bool:
        try:
            self._db().execute("SELECT 1").fetchone()
        except sqlite3.Error:
            return False
        return True

    def reset(self) -> int | None:
        return self._db().execute("DELETE FROM counters").rowcount

    def clear(self, key: str) -> None:
        self._db().execute("DELETE FROM counters WHERE key = ?", (key,))

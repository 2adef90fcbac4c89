"""``SQLiteCache``: responses in a SQLite file, shared by threads and processes.

One connection per process, guarded by a lock (opened on first use, and again
after a fork); the database runs in WAL mode with a busy timeout, so several
processes can read and write the same file.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmkit.cache.base import check_ttl, default_cache_path, time_source

if TYPE_CHECKING:
    import sqlite3

__all__ = ["SQLiteCache"]

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())

_TABLE = "llmkit_responses"
_SCHEMA = f"CREATE TABLE IF NOT EXISTS {_TABLE} (key TEXT PRIMARY KEY, value TEXT NOT NULL, expires_at REAL)"


class SQLiteCache:
    """Responses in the SQLite file ``path`` (default: :func:`default_cache_path`), kept ``ttl`` seconds.

    Args:
        path: the database file (its directory is created), or ``":memory:"``.
        ttl: seconds an entry lives; None: forever.
        clock: wall-clock seconds (a callable or an object with ``now()``); for tests.
        timeout: seconds to wait for another process's write lock.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        ttl: float | None = None,
        *,
        clock: Any = None,
        timeout: float = 30.0,
    ) -> None:
        self.path = str(path) if path is not None else str(default_cache_path())
        self.ttl = check_ttl(ttl)
        self.timeout = timeout
        self._now = time_source(clock)
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._pid = 0

    def __repr__(self) -> str:
        return f"SQLiteCache(path={self.path!r}, ttl={self.ttl})"

    def _connection(self) -> sqlite3.Connection:
        """The open connection (the caller holds the lock)."""
        if self._db is not None and self._pid == os.getpid():
            return self._db
        import sqlite3

        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=self.timeout, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute(_SCHEMA)
        self._db, self._pid = db, os.getpid()
        logger.debug("opened the response cache %s", self.path)
        return db

    def get(self, key: str) -> str | None:
        with self._lock:
            db = self._connection()
            row = db.execute(f"SELECT value, expires_at FROM {_TABLE} WHERE key = ?", (key,)).fetchone()
            if row is None:
                return None
            value, expires_at = row
            if expires_at is not None and self._now() >= expires_at:
                db.execute(f"DELETE FROM {_TABLE} WHERE key = ? AND expires_at = ?", (key, expires_at))
                return None
            return str(value)

    def set(self, key: str, value: str) -> None:
        expires_at = None if self.ttl is None else self._now() + self.ttl
        with self._lock:
            self._connection().execute(
                f"INSERT OR REPLACE INTO {_TABLE} (key, value, expires_at) VALUES (?, ?, ?)",
                (key, value, expires_at),
            )

    def delete(self, key: str) -> None:
        with self._lock:
            self._connection().execute(f"DELETE FROM {_TABLE} WHERE key = ?", (key,))

    def clear(self) -> None:
        with self._lock:
            self._connection().execute(f"DELETE FROM {_TABLE}")

    def purge_expired(self) -> int:
        """Delete the expired entries; returns how many."""
        with self._lock:
            cursor = self._connection().execute(
                f"DELETE FROM {_TABLE} WHERE expires_at IS NOT NULL AND expires_at <= ?", (self._now(),)
            )
            return cursor.rowcount

    def __len__(self) -> int:
        with self._lock:
            return int(self._connection().execute(f"SELECT COUNT(*) FROM {_TABLE}").fetchone()[0])

    def close(self) -> None:
        """Close the connection (it reopens if the cache is used again). Idempotent."""
        with self._lock:
            if self._db is not None and self._pid == os.getpid():
                self._db.close()
            self._db = None

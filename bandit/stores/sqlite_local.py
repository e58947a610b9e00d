"""One SQLite connection per thread to a file a host's workers share."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path


class ThreadConnections:
    """Calling it gives this thread's connection to ``path`` (opened on first use):
    autocommit, write-ahead log (readers never wait for the writer), ``synchronous
    NORMAL`` and a busy timeout (10 s unless given), as every shared store of the
    service uses."""

    def __init__(self, path: str | Path, timeout: float = 10.0) -> None:
        self.path = str(path)
        self.timeout = timeout  # how long a statement waits for another writer's lock
        self._local = threading.local()

    def __call__(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db = db
        return db

    def close(self) -> None:
        """Close this thread's connection (a later call opens a new one)."""
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

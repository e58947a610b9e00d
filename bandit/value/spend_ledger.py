"""Where :class:`~bandit.value.constraints.BudgetPacer` keeps each UTC day's spend per
key: :class:`MemorySpends` (one process's, for library code, tests and simulators) or
:class:`SqliteSpends` (one SQLite file that a host's workers share and that outlives
a restart; the server keeps it in the model dir as :data:`LEDGER_FILE`).

Both add one impression's spend at a time and return the key's new total, so a pacer
over either sees the same numbers for the same sequence of impressions.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Protocol

from bandit.stores.sqlite_local import ThreadConnections

LEDGER_FILE = "budgets.sqlite"
BUSY_SECONDS = 0.1  # a ledger statement's wait for another writer's lock, at most

log = logging.getLogger("bandit.budgets")


class SpendStore(Protocol):
    def add(self, day: int, key: str, amount: float) -> float:
        """Add ``amount`` to ``key``'s spend on ``day``; the key's new total that day
        (every writer's spend included)."""
        ...

    def totals(self, day: int) -> dict[str, float]:
        """Every key's spend on ``day``."""
        ...

    def latest(self) -> tuple[int, dict[str, float]]:
        """The most recent day with spend and its totals (``(-1, {})``: none)."""
        ...

    def forget_before(self, day: int) -> None:
        """Drop the spend of the days before ``day``."""
        ...


class MemorySpends:
    """The day's spend in this process's memory."""

    def __init__(self) -> None:
        self._days: dict[int, dict[str, float]] = {}

    def add(self, day: int, key: str, amount: float) -> float:
        spent = self._days.setdefault(day, {})
        spent[key] = spent.get(key, 0.0) + amount
        return spent[key]

    def totals(self, day: int) -> dict[str, float]:
        return dict(self._days.get(day, {}))

    def latest(self) -> tuple[int, dict[str, float]]:
        day = max(self._days, default=-1)
        return day, self.totals(day)

    def forget_before(self, day: int) -> None:
        for d in [d for d in self._days if d < day]:
            del self._days[d]

    def __str__(self) -> str:
        return "memory"


class SqliteSpends:
    """The day's spend in one SQLite file (write-ahead log): each impression is one
    ``INSERT … ON CONFLICT DO UPDATE … RETURNING`` statement, atomic across the
    processes that share the file.

    The ledger is on the request path, so it fails soft: a statement waits at most
    :data:`BUSY_SECONDS` for another writer, and when the file cannot be written or
    read (locked, disk full, gone) the spend is kept in this process until a later
    write succeeds, and the last totals read stand in for the file's. ``errors``
    counts such failures."""

    SCHEMA = """
    CREATE TABLE IF NOT EXISTS spend (day INTEGER NOT NULL, key TEXT NOT NULL,
                                      spent REAL NOT NULL, PRIMARY KEY (day, key));
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = ThreadConnections(self.path, timeout=BUSY_SECONDS)
        self._db().executescript(self.SCHEMA)
        self._unsaved: dict[tuple[int, str], float] = {}  # spend not written yet
        self._seen: dict[int, dict[str, float]] = {}  # the last totals read, by day
        self.errors = 0

    def _failed(self, what: str, exc: sqlite3.Error) -> None:
        self.errors += 1
        if self.errors == 1 or self.errors % 1000 == 0:
            log.warning("budget ledger %s: %s failed (%s); spend kept in this process "
                        "(%d failures so far)", self.path, what, exc, self.errors)

    def add(self, day: int, key: str, amount: float) -> float:
        self._unsaved[day, key] = self._unsaved.get((day, key), 0.0) + amount
        try:
            db = self._db()
            total = 0.0
            for (d, k), spent in list(self._unsaved.items()):
                rows = db.execute(
                    "INSERT INTO spend VALUES (?, ?, ?) ON CONFLICT (day, key) "
                    "DO UPDATE SET spent = spent + excluded.spent RETURNING spent",
                    (d, k, spent)).fetchall()  # to the end: the statement commits
                del self._unsaved[d, k]
                self._seen.setdefault(d, {})[k] = float(rows[0][0])
                if (d, k) == (day, key):
                    total = float(rows[0][0])
            return total
        except sqlite3.Error as exc:
            self._failed("a write", exc)
            return self._seen.get(day, {}).get(key, 0.0) + self._unsaved[day, key]

    def totals(self, day: int) -> dict[str, float]:
        try:
            cur = self._db().execute("SELECT key, spent FROM spend WHERE day = ?", (day,))
            seen = self._seen[day] = {str(k): float(v) for k, v in cur}
        except sqlite3.Error as exc:
            self._failed("a read", exc)
            seen = self._seen.get(day, {})
        out = dict(seen)
        for (d, k), spent in self._unsaved.items():
            if d == day:
                out[k] = out.get(k, 0.0) + spent
        return out

    def latest(self) -> tuple[int, dict[str, float]]:
        try:
            row = self._db().execute("SELECT MAX(day) FROM spend").fetchone()
        except sqlite3.Error as exc:
            self._failed("a read", exc)
            row = (max(self._seen, default=None),)
        day = -1 if row is None or row[0] is None else int(row[0])
        return day, self.totals(day) if day >= 0 else {}

    def forget_before(self, day: int) -> None:
        for d in [d for d in self._seen if d < day]:
            del self._seen[d]
        for key in [key for key in self._unsaved if key[0] < day]:
            del self._unsaved[key]
        try:
            self._db().execute("DELETE FROM spend WHERE day < ?", (day,))
        except sqlite3.Error as exc:
            self._failed("a delete", exc)

    def close(self) -> None:
        """Close this thread's connection."""
        self._db.close()

    def __str__(self) -> str:
        return self.path

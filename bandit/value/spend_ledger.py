"""Where :class:`~bandit.value.constraints.BudgetPacer` keeps each UTC day's spend per
key: :class:`MemorySpends` (one process's, for library code, tests and simulators) or
:class:`SqliteSpends` (one SQLite file that a host's workers share and that outlives
a restart; the server keeps it in the model dir as :data:`LEDGER_FILE`).

Both add one impression's spend at a time and return the key's new total, so a pacer
over either sees the same numbers for the same sequence of impressions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from bandit.stores.sqlite_local import ThreadConnections

LEDGER_FILE = "budgets.sqlite"


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
    processes that share the file."""

    SCHEMA = """
    CREATE TABLE IF NOT EXISTS spend (day INTEGER NOT NULL, key TEXT NOT NULL,
                                      spent REAL NOT NULL, PRIMARY KEY (day, key));
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = ThreadConnections(self.path)
        self._db().executescript(self.SCHEMA)

    def add(self, day: int, key: str, amount: float) -> float:
        rows = self._db().execute(
            "INSERT INTO spend VALUES (?, ?, ?) ON CONFLICT (day, key) "
            "DO UPDATE SET spent = spent + excluded.spent RETURNING spent",
            (day, key, amount)).fetchall()  # to the end: the statement commits
        return float(rows[0][0])

    def totals(self, day: int) -> dict[str, float]:
        cur = self._db().execute("SELECT key, spent FROM spend WHERE day = ?", (day,))
        return {str(k): float(v) for k, v in cur}

    def latest(self) -> tuple[int, dict[str, float]]:
        row = self._db().execute("SELECT MAX(day) FROM spend").fetchone()
        day = -1 if row is None or row[0] is None else int(row[0])
        return day, self.totals(day) if day >= 0 else {}

    def forget_before(self, day: int) -> None:
        self._db().execute("DELETE FROM spend WHERE day < ?", (day,))

    def close(self) -> None:
        """Close this thread's connection."""
        self._db.close()

    def __str__(self) -> str:
        return self.path

"""The status page's and the arm guard's counts over every worker of a host.

Each worker keeps its own :class:`~bandit.server.livestats.LiveStats` on the request path and,
once a second, writes its 10-second buckets to one SQLite file in
``BANDIT_SHARED_DIR`` (a row per worker, bucket and series, replaced whole), together
with the event ids and series of the decisions it made since the last time. A reward
that reached a worker other than the one that decided is held there until the
decision's series turns up in that file, then counted under it (after
``RESOLVE_SECONDS`` without it, under ``other``). Readers sum the rows of every
worker, a replaced one's included, so the counts are the host's, at most about a
second old. The arm guard's switch lives here too, so a trip or a reset reaches every
worker.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from bandit.server.livestats import BUCKET_SECONDS, BUCKETS, Counts, LiveStats
from bandit.stores.sqlite_local import ThreadConnections

RESOLVE_SECONDS = 30.0
KEEP_SECONDS = BUCKET_SECONDS * (BUCKETS + 6)

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (event TEXT PRIMARY KEY, series TEXT, t REAL);
CREATE INDEX IF NOT EXISTS events_t ON events (t);
CREATE TABLE IF NOT EXISTS counts (worker TEXT, bucket REAL, series TEXT, decisions INT,
                                   explored INT, rewards INT, reward_sum REAL,
                                   PRIMARY KEY (worker, bucket, series));
CREATE TABLE IF NOT EXISTS flags (name TEXT PRIMARY KEY, value INT);
"""


class SharedLive:
    def __init__(self, path: str | Path, worker: str | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.worker = worker or f"{os.getpid()}-{time.time_ns()}"
        self._db = ThreadConnections(self.path)
        self._db().executescript(SCHEMA)

    def flush(self, live: LiveStats, now: float | None = None) -> None:
        """Publish this worker's decisions and counts; settle the rewards it holds."""
        t = time.time() if now is None else now
        db = self._db()
        new, held = live.drain()
        with db:
            db.execute("BEGIN IMMEDIATE")
            db.executemany("INSERT OR REPLACE INTO events VALUES (?, ?, ?)", new)
        still = []
        for event, value, at in held:
            row = db.execute("SELECT series FROM events WHERE event=?", (event,)).fetchone()
            if row is not None:
                live.settle(row[0], value, t)
            elif t - at < RESOLVE_SECONDS:
                still.append((event, value, at))
            else:
                live.settle("other", value, t)
        live.hold(still)
        rows = [(self.worker, start, s, c.decisions, c.explored, c.rewards, c.reward_sum)
                for start, b in live.timeline() for s, c in b.items()]
        with db:
            db.execute("BEGIN IMMEDIATE")
            db.execute("DELETE FROM counts WHERE worker=?", (self.worker,))
            db.executemany("INSERT INTO counts VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            db.execute("DELETE FROM counts WHERE bucket<?", (t - KEEP_SECONDS,))
            db.execute("DELETE FROM events WHERE t<?", (t - KEEP_SECONDS,))

    def _buckets(self, since: float) -> list[tuple[float, str, Counts]]:
        cur = self._db().execute(
            "SELECT bucket, series, SUM(decisions), SUM(explored), SUM(rewards), "
            "SUM(reward_sum) FROM counts WHERE bucket>=? GROUP BY bucket, series "
            "ORDER BY bucket", (since,))
        return [(b, s, Counts(int(d), int(e), int(r), float(v))) for b, s, d, e, r, v in cur]

    def window(self, seconds: float, now: float | None = None) -> dict[str, Counts]:
        """Like :meth:`LiveStats.window`, over every worker."""
        t = time.time() if now is None else now
        out: dict[str, Counts] = {}
        for _, s, c in self._buckets(t - seconds):
            out.setdefault(s, Counts()).add(c)
        return out

    def timeline(self, now: float | None = None) -> list[tuple[float, dict[str, Counts]]]:
        t = time.time() if now is None else now
        out: dict[float, dict[str, Counts]] = {}
        for b, s, c in self._buckets(t - BUCKET_SECONDS * BUCKETS):
            out.setdefault(b, {})[s] = c
        return sorted(out.items())

    def flag(self, name: str) -> bool:
        row = self._db().execute("SELECT value FROM flags WHERE name=?", (name,)).fetchone()
        return bool(row and row[0])

    def set_flag(self, name: str, value: bool) -> None:
        db = self._db()
        with db:
            db.execute("INSERT OR REPLACE INTO flags VALUES (?, ?)", (name, int(value)))

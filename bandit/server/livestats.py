"""Recent activity of this worker in 10-second buckets, for the status page.

Per series (the policy, or the experiment arm): decisions, explored decisions, rewards
and their sum. A reward is attributed to the series of the decision it names when this
worker made that decision. Alone (``shared`` off), a reward for another worker's decision
counts under ``other``; with ``shared`` on, it is held until :mod:`bandit.server.shared_live`
finds the decision's series among the other workers' (``drain`` / ``settle``).
Bounded: 60 buckets (10 minutes) and the last 20,000 event ids.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field

BUCKET_SECONDS = 10.0
BUCKETS = 60
MAX_EVENTS = 20_000


@dataclass
class Counts:
    decisions: int = 0
    explored: int = 0
    rewards: int = 0
    reward_sum: float = 0.0

    def add(self, other: Counts) -> None:
        """Add ``other``'s counts to these (a window over buckets, or over workers)."""
        self.decisions += other.decisions
        self.explored += other.explored
        self.rewards += other.rewards
        self.reward_sum += other.reward_sum


@dataclass
class LiveStats:
    buckets: deque[tuple[float, dict[str, Counts]]] = field(default_factory=deque)
    series_of: OrderedDict[str, str] = field(default_factory=OrderedDict)
    shared: bool = False  # other workers decide too: hold rewards for unknown decisions
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _new: deque[tuple[str, str, float]] = field(
        default_factory=lambda: deque(maxlen=MAX_EVENTS))  # decisions since the last drain
    _held: deque[tuple[str, float, float]] = field(
        default_factory=lambda: deque(maxlen=MAX_EVENTS))  # rewards, decision not seen here

    def _bucket(self, now: float) -> dict[str, Counts]:
        start = now - now % BUCKET_SECONDS
        if not self.buckets or self.buckets[-1][0] != start:
            self.buckets.append((start, {}))
            while len(self.buckets) > BUCKETS:
                self.buckets.popleft()
        return self.buckets[-1][1]

    def decision(self, series: str, explored: bool, event_id: str | None = None,
                 now: float | None = None) -> None:
        t = time.time() if now is None else now
        with self._lock:
            bucket = self._bucket(t)
            c = bucket.get(series)
            if c is None:
                c = bucket[series] = Counts()
            c.decisions += 1
            c.explored += int(explored)
            if event_id is not None:
                self.series_of[event_id] = series
                if len(self.series_of) > MAX_EVENTS:
                    self.series_of.popitem(last=False)
                if self.shared:
                    self._new.append((event_id, series, t))

    def reward(self, event_id: str, value: float, now: float | None = None) -> None:
        t = time.time() if now is None else now
        with self._lock:
            series = self.series_of.get(event_id)
            if series is None:
                if self.shared:
                    self._held.append((event_id, value, t))
                    return
                series = "other"
            self._count(series, value, t)

    def _count(self, series: str, value: float, t: float) -> None:
        c = self._bucket(t).setdefault(series, Counts())
        c.rewards += int(value > 0)
        c.reward_sum += value

    def drain(self) -> tuple[list[tuple[str, str, float]], list[tuple[str, float, float]]]:
        """The decisions made and the rewards held since the last drain."""
        with self._lock:
            new, held = list(self._new), list(self._held)
            self._new.clear()
            self._held.clear()
        return new, held

    def settle(self, series: str, value: float, now: float | None = None) -> None:
        """Count a held reward under the series found for its decision (in the current
        bucket: it arrived a moment ago)."""
        with self._lock:
            self._count(series, value, time.time() if now is None else now)

    def hold(self, held: list[tuple[str, float, float]]) -> None:
        """Hold rewards again whose decision is not known yet anywhere."""
        with self._lock:
            self._held.extendleft(reversed(held))

    def series(self) -> list[str]:
        with self._lock:
            names = {s for _, b in self.buckets for s in b}
        return sorted(names)

    def window(self, seconds: float, now: float | None = None) -> dict[str, Counts]:
        t = time.time() if now is None else now
        out: dict[str, Counts] = {}
        with self._lock:
            for start, b in self.buckets:
                if start >= t - seconds:
                    for s, c in b.items():
                        out.setdefault(s, Counts()).add(c)
        return out

    def timeline(self) -> list[tuple[float, dict[str, Counts]]]:
        with self._lock:
            return [(t, {s: Counts(**c.__dict__) for s, c in b.items()})
                    for t, b in self.buckets]

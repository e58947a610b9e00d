"""A consumer that reads each partition's offsets without gaps.

The service's topics are neither compacted nor transactional (an external cluster must
keep them so: a commit marker or a compacted record is a gap too), so each partition's
offsets run on without gaps, and a message past the next offset expected means the
fetch did not return the records before it: the embedded broker can answer a fetch
with a producer's batch before an earlier batch is readable
(``benchmarks/fetch_gaps.py``; seen once in a 10-minute soak, five decisions of one
partition that were in the topic and read from it afterwards).

:class:`Gapless` wraps a consumer: its :meth:`~Gapless.consume` returns each
partition's messages in offset order, each once. At a gap it sends the consumer back
to the first offset missing (``seek``) and holds back that partition's later messages
of the fetch (they come again, in order), for ``budget`` seconds after the gap was
first met; a gap still there after that, and at once one below the partition's first
offset (its records deleted by retention; only the part below it), is given up: the
messages past it are returned and the gap is put in :attr:`~Gapless.given_up` for the
caller to decide on (the learner counts and logs it and goes on; replay fails, naming
it). A caller that cannot wait for a message past a gap to come again asks
:meth:`~Gapless.overdue`. A seek the client refuses is tried again at every
``consume`` (the client's position is past the messages held back, which would
otherwise never come again).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bandit.streaming import kafka_client

log = logging.getLogger("bandit.kafka")

__all__ = ["Gap", "Gapless"]


@dataclass(frozen=True)
class Gap:
    """Offsets ``first``..``last`` of a partition that a fetch did not return."""

    topic: str
    partition: int
    first: int
    last: int
    retention: bool = False  # below the partition's first offset: deleted, not late

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}] offsets {self.first}-{self.last}"


class Gapless:
    """``consume`` without gaps (see the module doc). ``start(topic, partition,
    offset)`` says where a partition is read from (a checkpoint's offset); without
    it, a partition's first message sets where it starts."""

    def __init__(self, consumer: Any, budget: float = kafka_client.GAP_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.consumer = consumer
        self.budget = budget
        self.clock = clock
        self.next: dict[tuple[str, int], int] = {}  # the next offset of each partition
        self.met = 0  # gaps met, each counted once
        self.given_up: list[Gap] = []  # gaps taken as they are, until the caller clears it
        # gap → (when first met, the offset of the message past it)
        self._open: dict[tuple[str, int, int], tuple[float, int]] = {}
        self._seeks: dict[tuple[str, int], int] = {}  # seeks refused: tried again

    def start(self, topic: str, partition: int, offset: int) -> None:
        self.next[(topic, partition)] = offset

    @property
    def reading_gap(self) -> bool:
        """Whether a gap is being read again now."""
        return bool(self._open)

    def open_gaps(self) -> list[tuple[str, int, int]]:
        """(topic, partition, first offset missing) of each gap being read again."""
        return list(self._open)

    def overdue(self) -> list[Gap]:
        """The gaps being read again for ``budget`` seconds or more (still open: they
        are given up only when a message past them comes again)."""
        now = self.clock()
        return [Gap(t, p, first, past - 1) for (t, p, first), (seen, past)
                in self._open.items() if now - seen >= self.budget]

    def consume(self, n: int, timeout: float) -> list[Any]:
        """Up to ``n`` messages (see the module doc); error events pass through."""
        for (topic, part), offset in list(self._seeks.items()):
            self._seek(topic, part, offset)
        out: list[Any] = []
        rewound: set[tuple[str, int]] = set()
        for m in self.consumer.consume(n, timeout) or ():
            if m.error() is not None:
                out.append(m)
                continue
            key = (m.topic(), m.partition())
            offset = m.offset()
            if key in rewound or offset is None:
                continue  # past a gap: it comes again, in order, after the rewind
            want = self.next.get(key)
            if want is not None and offset < want:
                # the position went back without a seek of ours (a seek back drops what
                # was fetched past it): an offset reset, say to the start of a broker
                # that restarted empty, whose records are new; read on from there
                log.warning("%s[%s]: offset %d is before %d, where the partition was; "
                            "reading on from it", key[0], key[1], offset, want)
                self._open = {g: v for g, v in self._open.items() if g[:2] != key}
                self._seeks.pop(key, None)
            elif want is not None and offset > want and self._rewind(key, want, offset):
                rewound.add(key)
                continue
            self.next[key] = offset + 1
            out.append(m)
        if self._open:  # gaps read past are over
            self._open = {g: v for g, v in self._open.items()
                          if self.next.get((g[0], g[1]), 0) <= g[2]}
        return out

    def _seek(self, topic: str, part: int, offset: int) -> None:
        try:
            self.consumer.seek(kafka_client.TopicPartition(topic, part, offset))
            self._seeks.pop((topic, part), None)
        except Exception as exc:  # tried again at the next consume
            if (topic, part) not in self._seeks:
                log.warning("%s[%s]: could not go back to offset %d: %s", topic, part,
                            offset, exc)
            self._seeks[(topic, part)] = offset

    def _rewind(self, key: tuple[str, int], want: int, offset: int) -> bool:
        """At a gap ``want``..``offset - 1``: whether the consumer went back to read it
        again (True), or it is given up."""
        topic, part = key
        gap = (topic, part, want)
        now = self.clock()
        opened = self._open.get(gap)
        if opened is None:  # a new gap: counted and logged once
            self.met += 1
            low = self._log_start(topic, part)
            if want < low:  # (the part below the partition's first offset is gone)
                self.given_up.append(Gap(topic, part, want, min(low, offset) - 1,
                                         retention=True))
                if low >= offset:
                    return False
                self.next[key] = want = low  # the rest is read again
                gap = (topic, part, want)
            log.warning("%s[%s]: offsets %d-%d were not returned by the fetch; reading "
                        "again from %d (%d gaps so far)", topic, part, want, offset - 1,
                        want, self.met)
            opened = self._open[gap] = (now, offset)
        if now - opened[0] < self.budget:
            self._seek(topic, part, want)
            return True
        del self._open[gap]
        self._seeks.pop(key, None)
        self.given_up.append(Gap(topic, part, want, offset - 1))
        return False

    def _log_start(self, topic: str, part: int) -> int:
        """The partition's first offset as the last fetch response gave it (-1 if
        unknown)."""
        try:
            low, _ = self.consumer.get_watermark_offsets(
                kafka_client.TopicPartition(topic, part), cached=True)
            return int(low)
        except Exception as exc:  # unknown: the gap is read again
            log.debug("no low watermark for %s[%s]: %s", topic, part, exc)
            return -1

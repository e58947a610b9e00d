"""The learner's reading side: decisions and rewards from Kafka into the join.

A consumer is decode → handle → commit: each message is decoded at this boundary
(a decision from its head alone when the server's ``c_at`` header says where its
context starts), handed to the join, and its partition's next offset noted for the
next checkpoint; an undecodable one is counted and dead-lettered, never retried.
Partitions are assigned by hand at the offsets of the last checkpoint (no group
rebalance), and the pending decisions that checkpoint stored by offset are read back
first (:func:`reload_pending`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from bandit.core.codec import C_AT
from bandit.core.errors import BadRequest
from bandit.core.events import (
    LoggedDecision,
    decode,
    parse_decision,
    parse_decision_head,
    parse_reward,
)
from bandit.learner.join import INF, Joined, JoinState, event_time
from bandit.learner.live_config import LogRange
from bandit.learner.outputs import Outputs
from bandit.streaming import kafka_client
from bandit.streaming.gaps import Gapless
from bandit.streaming.topics import Topics, ensure_topics

log = logging.getLogger("bandit.learner")

POLL_RECORDS = 5000
# a fetch that skipped offsets of a partition is read again from the first one missing,
# for this long (bandit.streaming.gaps); past it the gap is taken as it is, logged and
# counted. Shorter than STALL_SECONDS: the partition's messages after the gap wait
# meanwhile, and the join's windows with them.
GAP_SECONDS = kafka_client.GAP_SECONDS
# a partition behind its high-water mark that yields nothing for this long is not waited
# for by the join's windows (a fetch that cannot reach it must not hold them for good)
STALL_SECONDS = 10.0


def decision_of(m: Any) -> LoggedDecision:
    """The decision in a message: from its head alone when the server's ``c_at``
    header says where its context starts, else decoded whole."""
    value = m.value() or b""
    d = None
    for name, at in m.headers() or ():
        if name == C_AT and at and at.isdigit():
            d = parse_decision_head(value, int(at))
    return d or parse_decision(decode(value))


class Intake:
    """Reads ``decisions`` and ``rewards`` into ``state``, noting in ``logs`` the latest
    reward timestamp read; undecodable messages go to ``outputs``' dead-letter topic.
    ``offsets``: the next offset of every partition consumed (what a checkpoint
    stores)."""

    def __init__(self, bootstrap: str, topics: Topics, group: str, state: JoinState,
                 outputs: Outputs, logs: LogRange) -> None:
        self.bootstrap = bootstrap
        self.topics = topics
        self.group = group
        self.state = state
        self.outputs = outputs
        self.logs = logs
        self.offsets: dict[str, int] = {}
        self.dead_letters = 0
        self.gaps_skipped = 0  # gaps still there after GAP_SECONDS of reading again
        self.consumer: Any = None
        self.gapless: Gapless | None = None  # the consumer, read without gaps
        self.times: dict[str, str] = {}  # the Timestamp of the last event read, by partition
        # when a message of each partition was last read (or the consumer assigned)
        self.progress: dict[str, float] = {}
        self.assigned_at = 0.0

    def connect(self, partitions: int, timeout: float) -> None:
        """Assign every partition at its checkpointed offset (a new learner starts at
        the start), then read back the pending decisions the checkpoint stored."""
        ensure_topics(self.bootstrap, self.topics, partitions)
        consumer = kafka_client.consumer(self.bootstrap, self.group)
        tps = []
        deadline = time.monotonic() + timeout
        for topic in (self.topics.decisions, self.topics.rewards):
            parts = kafka_client.topic_partitions(consumer, topic)
            while not parts and time.monotonic() < deadline:
                time.sleep(0.2)
                parts = kafka_client.topic_partitions(consumer, topic)
            if not parts:
                raise RuntimeError(f"topic {topic} has no partitions")
            for p in parts:
                # the checkpoint's offsets are the truth; a new learner starts at the start
                off = self.offsets.get(f"{topic}:{p}", kafka_client.OFFSET_BEGINNING)
                tps.append(kafka_client.TopicPartition(topic, p, off))
        consumer.assign(tps)  # manual assignment: no group rebalance delay
        reload_pending(self.bootstrap, self.group + "-reload", self.topics.decisions,
                       self.state, timeout)
        self.consumer = consumer
        self.gapless = Gapless(consumer, GAP_SECONDS)
        for tp in tps:
            if tp.offset >= 0:  # (a new learner's partitions start at their first message)
                self.gapless.start(tp.topic, tp.partition, tp.offset)
        self.assigned_at = time.monotonic()

    @property
    def offset_gaps(self) -> int:
        """Gaps met in a partition's offsets, each counted once (bandit.streaming.gaps)."""
        return self.gapless.met if self.gapless is not None else 0

    def fetch(self, timeout_ms: int) -> list[Any]:
        """The messages the client has fetched already; if none, those that come within
        ``timeout_ms`` (a batch with a timeout waits until it is full, though messages
        are there to work on). Each partition's come in offset order without gaps: a
        gap is read again for ``GAP_SECONDS``, then taken as it is, logged and counted
        in ``gaps_skipped`` (at once when retention deleted its records)."""
        assert self.gapless is not None, "connect() first"
        messages: list[Any] = self.gapless.consume(POLL_RECORDS, 0) or \
            self.gapless.consume(POLL_RECORDS, timeout_ms / 1000)
        for gap in self.gapless.given_up:
            self.gaps_skipped += 1
            if gap.retention:
                log.error("%s are no longer in the topic (retention): skipped (%d so far)",
                          gap, self.gaps_skipped)
            else:
                log.error("%s still not returned after %.0f s: skipped (%d so far)", gap,
                          GAP_SECONDS, self.gaps_skipped)
        self.gapless.given_up.clear()
        return messages

    def handle(self, messages: list[Any], now: float, feed: Callable[[], None]
               ) -> tuple[list[Joined], bool]:
        """Hand fetched messages to the join: the decisions joined, and whether any
        message was read (the offsets moved). ``feed`` is called every 128 messages (to
        keep a VW child busy while the batch is decoded and joined)."""
        joined: list[Joined] = []
        last: dict[tuple[str, int], Any] = {}  # the last message of each partition
        for i, m in enumerate(messages):
            if i % 128 == 0:
                feed()
            err = m.error()
            if err is not None:  # a transient client condition, not a message
                log.warning("consumer: %s", err)
                continue
            topic = m.topic()
            joined += self._handle(topic, m, now)
            last[(topic, m.partition())] = m
        read_at = time.monotonic()
        for (topic, part), m in last.items():
            self.offsets[f"{topic}:{part}"] = m.offset() + 1
            self.progress[f"{topic}:{part}"] = read_at
        return joined, bool(last)

    def _handle(self, topic: str, m: Any, now: float) -> list[Joined]:
        try:
            if topic == self.topics.decisions:
                part, off = m.partition(), m.offset()
                ref = (part, off) if part is not None and off is not None else None
                d = decision_of(m)
                self.times[f"{topic}:{part}"] = d.timestamp
                return self.state.add_decision(d, now, ref)
            reward = parse_reward(decode(m.value() or b""))
            self.logs.reward(reward.timestamp)
            self.times[f"{topic}:{m.partition()}"] = reward.timestamp
            return self.state.add_reward(reward, now)
        except BadRequest as exc:
            self.dead_letters += 1
            self.outputs.dead_letter(topic, m, exc.message +
                                     (f" ({exc.field})" if exc.field else ""))
            return []

    def commit(self, offsets: dict[str, int]) -> None:
        """Commit ``offsets`` to Kafka, for monitoring only (the manifest holds the
        offsets a learner resumes from)."""
        tps = []
        for key, off in offsets.items():
            topic, _, part = key.rpartition(":")
            tps.append(kafka_client.TopicPartition(topic, int(part), off))
        try:
            self.consumer.commit(offsets=tps, asynchronous=True)
        except Exception as exc:  # monitoring only: the manifest holds the real offsets
            log.debug("offset commit failed: %s", exc)

    def read_to(self, topic: str) -> float:
        """How far ``topic`` has been read, in event time (for the join's windows):
        ``inf`` when every partition has been read to its high-water mark as the last
        fetch responses gave it, else the earliest, over the partitions behind (or whose
        mark no fetch has given yet), of the time of the last event read from them
        (``-inf`` if none yet: a restarted learner holds its windows until it has read
        on). A partition with no offset in the checkpoint and nothing read is at its
        beginning (where :meth:`connect` started it). Not waited for: a partition whose
        last event read has no ``Timestamp`` (it tells nothing), and one that yielded
        nothing for ``STALL_SECONDS`` (so a partition the fetch cannot reach holds no
        window for good)."""
        out = INF
        if self.consumer is None:
            return out
        stalled = time.monotonic() - STALL_SECONDS
        for tp in self.consumer.assignment():
            if tp.topic != topic:
                continue
            key = f"{topic}:{tp.partition}"
            try:
                low, high = self.consumer.get_watermark_offsets(tp, cached=True)
            except Exception as exc:  # unknown, as before the first fetch answered
                log.debug("no high-water mark for %s: %s", tp, exc)
                low = high = -1
            # no checkpoint, nothing read: connect() started it at its beginning
            pos = self.offsets.get(key, max(low, 0))
            if 0 <= high <= pos or self.progress.get(key, self.assigned_at) <= stalled:
                continue  # read to its end, or stalled: not waited for
            ts = self.times.get(key)
            if ts is None:
                return -INF  # nothing read from it since the start: hold every window
            t = event_time(ts)
            if t > -INF:  # (an unstamped event tells nothing)
                out = min(out, t)
        return out

    def lag(self) -> int:
        """Messages not yet consumed, from the high-water marks of the last fetch
        responses (a ListOffsets answer can under-report on some brokers)."""
        total = 0
        for tp in self.consumer.assignment():
            try:
                _, high = self.consumer.get_watermark_offsets(tp, cached=True)
            except Exception as exc:  # lag is informational: skip a partition that times out
                log.debug("no high-water mark for %s: %s", tp, exc)
                continue
            pos = self.offsets.get(f"{tp.topic}:{tp.partition}", 0)
            total += max(0, high - pos)
        return total

    def close(self) -> None:
        if self.consumer is not None:
            self.consumer.close()
            self.consumer = None


def reload_pending(bootstrap: str, group: str, topic: str, state: JoinState,
                   timeout: float) -> None:
    """Read back the pending decisions the checkpoint stored by offset. One the
    topic no longer holds (its retention is shorter than the reward window) is
    logged and counted as lost. If reading makes no progress for ``timeout``
    seconds, or an offset holds another event, the start fails: learning without
    those decisions would break exactly-once."""
    want = state.unloaded()
    if not want:
        return
    reader = kafka_client.consumer(bootstrap, group)
    try:
        left = _drop_expired(reader, topic, state, want, timeout)
        reader.assign([kafka_client.TopicPartition(topic, p, min(o)) for p, o in left.items()])
        deadline = time.monotonic() + timeout
        while any(left.values()):
            if time.monotonic() > deadline:
                raise RuntimeError(f"could not read back {sum(map(len, left.values()))} "
                                   f"pending decisions from {topic}")
            for m in reader.consume(POLL_RECORDS, 0.5):
                mp, mo = m.partition(), m.offset()
                if (m.error() is None and mp is not None and mo is not None
                        and mo in left.get(mp, ())):
                    left[mp].discard(mo)
                    _reload_one(m, topic, state, want[mp][mo])
                    deadline = time.monotonic() + timeout  # progress: wait again
    finally:
        reader.close()
    log.info("read back %d pending decisions", sum(map(len, want.values())))


def _drop_expired(reader: Any, topic: str, state: JoinState,
                  want: dict[int, dict[int, str]], timeout: float) -> dict[int, set[int]]:
    """Forget (count as lost) the wanted decisions below each partition's low-water
    mark; the offsets left to read, by partition."""
    left: dict[int, set[int]] = {}
    lost = state.counters.lost
    for part, offsets in want.items():
        low, _ = reader.get_watermark_offsets(kafka_client.TopicPartition(topic, part),
                                              timeout=timeout)
        for off in [o for o in offsets if o < low]:
            state.forget(offsets.pop(off))
        if offsets:
            left[part] = set(offsets)
    if state.counters.lost > lost:
        log.error("%d pending decisions were no longer in %s (retention shorter "
                  "than the reward window?): they are not learned",
                  state.counters.lost - lost, topic)
    return left


def _reload_one(m: Any, topic: str, state: JoinState, eid: str) -> None:
    """Give pending decision ``eid`` its event back from message ``m``."""
    try:
        d = decision_of(m)
    except BadRequest as exc:  # valid when read first, not any more
        log.error("pending decision %s (%s partition %d offset %d) no longer passes "
                  "validation, not learned: %s", eid, topic, m.partition(), m.offset(),
                  exc.message)
        state.forget(eid)
        return
    try:
        state.reload(eid, d)
    except ValueError as exc:
        raise RuntimeError(f"{topic} partition {m.partition()} offset {m.offset()} does not "
                           f"hold the pending decision: {exc}") from None

"""The Kafka event sink: write-ahead spool on the request path, shipping off it.

``decision``/``reward`` append one line to this process's spool (one ``write``;
nothing on the request path waits for the network). A background thread ships the
spool to Kafka in batches every ``SHIP_EVERY`` seconds (taking the records from the
writer's memory, :meth:`~bandit.streaming.spool.SpoolWriter.take`, rather than reading them
back), advancing the spool cursor only after the broker
acknowledged a batch, fsyncs the spool in batches, and adopts spools left behind by
processes that died. When the broker is down or slow the spool simply grows and is
shipped in order when it is back; ``health()`` reports its depth and the producer
errors, for ``/readyz`` and ``/metrics``.

Messages are keyed by event id. Re-shipping after a crash can duplicate a message;
consumers deduplicate by event id.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bandit.config.settings import Settings
from bandit.core.events import C_AT, dumps, encode_decision
from bandit.streaming import kafka_client
from bandit.streaming.broker import port_open
from bandit.streaming.spool import Record, SpoolReader, SpoolWriter, adopt_orphans
from bandit.streaming.topics import Topics, ensure_topics

log = logging.getLogger("bandit.streaming.kafka_sink")

BATCH = 5000
SHIP_EVERY = 0.02  # s between batches when caught up: fewer, larger batches cost the
# request threads less (the shipper shares their interpreter) and the broker less
PERSIST_EVERY = 0.25  # s between writes of a spool's cursor (a crash re-ships that much)
SHIP_TIMEOUT = 15.0  # > the producer's message.timeout.ms, so every send is settled


@dataclass
class _Source:
    reader: SpoolReader
    lock_fd: int | None  # held while draining an adopted spool
    pending: int


class _Adopted:
    """Spools left behind by processes that died: found (locked, so no other process
    drains them too), shipped in order, removed once drained."""

    def __init__(self, root: Path, exclude: Path) -> None:
        self.root = root
        self.exclude = exclude
        self.sources: list[_Source] = []

    def __bool__(self) -> bool:
        return bool(self.sources)

    @property
    def pending(self) -> int:
        return sum(s.pending for s in self.sources)

    def scan(self) -> None:
        for path, fd in adopt_orphans(self.root, exclude=self.exclude):
            reader = SpoolReader(path, owned=False)
            pending = sum(1 for _ in _lines(reader))
            log.info("adopting spool %s with %d events", path.name, pending)
            self.sources.append(_Source(reader, fd, pending))

    def ship(self, ship: Callable[[_Source], int]) -> int:
        """Ship a batch of each with ``ship``; the number of records shipped."""
        shipped = 0
        for source in list(self.sources):
            shipped += ship(source)
            if source.reader.drained():
                source.reader.remove()
                if source.lock_fd is not None:
                    os.close(source.lock_fd)
                self.sources.remove(source)
        return shipped

    def close(self) -> None:
        for s in self.sources:
            if s.lock_fd is not None:
                os.close(s.lock_fd)


class KafkaSink:
    def __init__(self, settings: Settings, *, drain_timeout: float = 5.0) -> None:
        self.bootstrap = settings.kafka_bootstrap
        self.topics = Topics.from_settings(settings)
        self.partitions = settings.partitions
        self.compression = settings.kafka_compression
        self._topic_of = {"d": self.topics.decisions, "r": self.topics.rewards}
        self.writer = SpoolWriter(settings.spool_dir)
        self.own = _Source(SpoolReader(self.writer.dir, owned=True), None, 0)
        self.adopted = _Adopted(self.writer.root, self.writer.dir)
        self.drain_timeout = drain_timeout
        self.shipped = 0
        self._own_shipped = 0
        self.producer_errors = 0
        self.connected = False
        self.last_error: str | None = None
        self._producer: Any = None
        self._pending: list[Record] = []  # taken from the writer, not yet acknowledged
        self._from_disk = False  # the writer's memory overflowed: read the spool back
        self._persisted_at = 0.0
        self._errors: list[str] = []  # the batch being shipped's delivery failures
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kafka-sink", daemon=True)
        self._thread.start()

    # -- request path -----------------------------------------------------------------
    def decision(self, event_id: str, event: dict[str, Any]) -> None:
        self.decision_encoded(event_id, *encode_decision(event))

    def decision_encoded(self, event_id: str, value: bytes, c_at: int | None) -> None:
        # c last and its offset in a header: the learner then decodes only the head
        self.writer.append("d", event_id, value, c_at)

    def reward(self, event_id: str, event: dict[str, Any]) -> None:
        self.writer.append("r", event_id, dumps(event))

    def health(self) -> dict[str, Any]:
        own = self.writer.appended - self._own_shipped
        return {
            "ready": self.writer.error is None,
            "kind": "kafka",
            "connected": self.connected,
            "spool_depth": own + self.adopted.pending,
            "shipped": self.shipped,
            "producer_errors": self.producer_errors,
            "last_error": self.writer.error or self.last_error,
        }

    def close(self) -> None:
        """Ship what is spooled (up to ``drain_timeout``), then stop; the rest stays
        on disk and is shipped by the next process."""
        self._stop.set()
        self._wake.set()
        self._thread.join(self.drain_timeout + 15)
        with contextlib.suppress(OSError):
            self.own.reader.persist()
        self.writer.close()
        if self.writer.appended == self._own_shipped:
            self.own.reader.remove()  # fully shipped: nothing for a successor to adopt
        self.adopted.close()
        if self._producer is not None:
            with contextlib.suppress(Exception):
                self._producer.flush(1)

    # -- shipping thread ---------------------------------------------------------------
    def _connect(self) -> bool:
        # A plain TCP probe first keeps outages cheap to detect and quick to recover
        # from (a client would retry its bootstrap for many seconds).
        if not any_reachable(self.bootstrap):
            self._fail(f"cannot reach Kafka at {self.bootstrap}: connection refused")
            return False
        try:
            ensure_topics(self.bootstrap, self.topics, self.partitions)
            # delivery callbacks only for failures, and one for the producer rather than
            # one per message: no Python object or call per shipped event
            self._producer = kafka_client.producer(
                self.bootstrap, self.compression,
                **{"delivery.report.only.error": True, "on_delivery": self._undelivered})
        except Exception as exc:  # any client error means "not now"
            self._fail(f"cannot reach Kafka at {self.bootstrap}: {exc}")
            return False
        self.connected = True
        self.last_error = None
        log.info("shipping events to Kafka at %s", self.bootstrap)
        return True

    def _undelivered(self, err: Any, msg: Any) -> None:
        if err is not None:
            self._errors.append(str(err))

    def _fail(self, message: str) -> None:
        if self.connected or self.last_error != message:
            log.warning(message)
        self.producer_errors += 1
        self.connected = False
        self.last_error = message
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(Exception):
                producer.purge()  # what it still holds is in the spool, shipped again later

    def _own_records(self) -> list[Record]:
        """The next batch from this process's spool: what was taken and not yet
        shipped, else what the writer appended since (kept in memory), else (after
        the writer's memory overflowed) read back from disk until caught up."""
        if not self._pending and not self._from_disk:
            taken = self.writer.take()
            if taken is None:
                self._from_disk = True
            else:
                self._pending = taken
        if self._pending:
            return self._pending[:BATCH]
        if self._from_disk:
            records = self.own.reader.read(BATCH, self.writer.position())
            if not records and self.writer.resume_tail(self.own.reader.cursor):
                self._from_disk = False
            return records
        return []

    def _ship(self, source: _Source) -> int:
        """Ship one batch from ``source``; the number of records shipped."""
        is_own = source is self.own
        records = self._own_records() if is_own else source.reader.read(BATCH)
        if not records:
            return 0
        errors = self._errors = []  # filled by _undelivered while flush() waits
        try:
            for r in records:
                topic = self._topic_of.get(r.kind, self.topics.deadletter)
                while True:
                    try:
                        self._producer.produce(
                            topic, key=r.key.encode("utf-8"), value=r.value,
                            headers=None if r.c_at is None else [(C_AT, b"%d" % r.c_at)])
                        break
                    except BufferError:  # librdkafka's queue is full: let it drain
                        self._producer.poll(0.05)
            undelivered = self._producer.flush(SHIP_TIMEOUT)
        except Exception as exc:
            self._fail(f"Kafka send failed: {exc}")
            return 0
        if undelivered or errors:
            reason = errors[0] if errors else f"{undelivered} not acknowledged in time"
            self._fail(f"Kafka refused {len(errors) or undelivered} of {len(records)} events: "
                       f"{reason}")
            return 0
        now = time.monotonic()
        persist = now - self._persisted_at >= PERSIST_EVERY
        source.reader.commit(records[-1].end, persist=persist)
        if persist:
            self._persisted_at = now
        if is_own:
            self._own_shipped += len(records)
            if self._pending:
                del self._pending[:len(records)]
        else:
            source.pending = max(0, source.pending - len(records))
        self.shipped += len(records)
        return len(records)

    def _run(self) -> None:
        last_sync = last_scan = 0.0
        backoff = 0.2
        stop_deadline: float | None = None
        while True:
            now = time.monotonic()
            if self._stop.is_set() and stop_deadline is None:
                stop_deadline = now + self.drain_timeout
            if now - last_sync >= 0.05:
                try:
                    self.writer.sync()
                except OSError as exc:
                    self.writer.error = f"spool fsync failed: {exc}"
                last_sync = now
            if now - last_scan >= 10.0:
                try:
                    self.adopted.scan()
                except OSError as exc:
                    log.warning("could not scan the spool directory: %s", exc)
                last_scan = now
            if self._producer is None and not self._connect():
                if stop_deadline is not None and now >= stop_deadline:
                    return
                self._wake.wait(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            backoff = 0.2
            shipped = self.adopted.ship(self._ship)
            if self._producer is not None:
                shipped += self._ship(self.own)
            if stop_deadline is not None:
                if shipped == 0 and not self.adopted and \
                        self.writer.appended == self._own_shipped:
                    return
                if time.monotonic() >= stop_deadline:
                    return
            if shipped < BATCH:  # caught up: gather the next batch for a while
                self._wake.wait(SHIP_EVERY)


def any_reachable(bootstrap: str) -> bool:
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        if host and port.isdigit() and port_open(host.strip("[]"), int(port), timeout=0.5):
            return True
    return False


def _lines(reader: SpoolReader) -> Any:
    cursor = reader.cursor
    while True:
        batch = reader.read(BATCH)
        if not batch:
            break
        yield from batch
        reader.cursor = batch[-1].end
    reader.cursor = cursor

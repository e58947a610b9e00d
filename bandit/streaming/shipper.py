"""Ships a process's spool to Kafka: the sink's background half.

:class:`Shipper` takes batches of this process's records from an :class:`OwnTail`,
produces them, and advances the spool cursor only after the broker acknowledged a
whole batch; it fsyncs the spool in batches and adopts (and drains first) spools whose
owner died. Where it runs is the sink's choice (:mod:`bandit.streaming.kafka_sink`):

* in a **child process** (the default, ``BANDIT_SHIPPER=process``; ``python -m
  bandit.streaming.shipper``): it reads the records back from the spool files
  (:class:`DiskTail`), so the server's interpreter does nothing for an event after
  its one ``write``; the child reports its counts through a status file;
* in a **thread** of the server (``BANDIT_SHIPPER=thread``, the plain twin): it takes
  the records from the writer's memory (:class:`MemoryTail`), sharing the server's
  interpreter lock.

Both ship the same records in the same order (tested byte for byte on a real broker).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson

from bandit.core.events import C_AT
from bandit.streaming import kafka_client
from bandit.streaming.broker import port_open
from bandit.streaming.spool import Record, SpoolReader, SpoolWriter, adopt_orphans, segments
from bandit.streaming.topics import Topics, ensure_topics

log = logging.getLogger("bandit.streaming.shipper")

BATCH = 5000
# s between batches when caught up. Each ship is flushed (one batch per partition), and
# the embedded broker's CPU grows with the batches it holds (docs/streaming.md): 20 ms
# made it grow ~2x as fast as 50 ms; 200 ms, slower still, put the servers' p99 at
# 1,000 req/s past the baseline's + 1 ms in a benchmark run (bigger bursts)
SHIP_EVERY = 0.05
PERSIST_EVERY = 0.25  # s between writes of a spool's cursor (a crash re-ships that much)
SHIP_TIMEOUT = 15.0  # > the producer's message.timeout.ms, so every send is settled
SYNC_EVERY = 0.05  # s between fsyncs of the spool
STATUS_FILE = "shipper.json"


class OwnTail(Protocol):
    """Where the shipper finds this process's records that are not shipped yet."""

    reader: SpoolReader

    def records(self) -> list[Record]: ...  # the next batch, from the cursor on
    def shipped(self, n: int) -> None: ...  # the first ``n`` of them were acknowledged
    def sync(self) -> None: ...  # fsync what was appended


class MemoryTail:
    """The writer's own memory of what it appended (:meth:`SpoolWriter.take`), read
    back from disk only after that memory overflowed (the broker away for long)."""

    def __init__(self, writer: SpoolWriter) -> None:
        self.writer = writer
        self.reader = SpoolReader(writer.dir, owned=True)
        self._pending: list[Record] = []  # taken from the writer, not yet acknowledged
        self._from_disk = False

    def records(self) -> list[Record]:
        if not self._pending and not self._from_disk:
            taken = self.writer.take()
            if taken is None:
                self._from_disk = True
            else:
                self._pending = taken
        if self._pending:
            return self._pending[:BATCH]
        if self._from_disk:
            records = self.reader.read(BATCH, self.writer.position())
            if not records and self.writer.resume_tail(self.reader.cursor):
                self._from_disk = False
            return records
        return []

    def shipped(self, n: int) -> None:
        if self._pending:
            del self._pending[:n]

    def sync(self) -> None:
        self.writer.sync()


class DiskTail:
    """The spool files, read back from the cursor on, while another process appends
    to them; fsynced by descriptors of this process's own."""

    def __init__(self, directory: Path) -> None:
        self.reader = SpoolReader(directory, owned=True)
        self._fds: dict[int, int] = {}

    def records(self) -> list[Record]:
        return self.reader.read(BATCH, None, live=True)

    def shipped(self, n: int) -> None:
        pass

    def sync(self) -> None:
        segs = segments(self.reader.dir)
        for n in [s for s in self._fds if s not in segs]:
            os.close(self._fds.pop(n))
        for n in segs[-2:]:  # the one being written and the one just finished
            fd = self._fds.get(n)
            if fd is None:
                try:
                    fd = self._fds[n] = os.open(self.reader.dir / f"seg-{n:06d}.log",
                                                os.O_RDONLY)
                except FileNotFoundError:
                    continue
            os.fsync(fd)

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds = {}


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

    def close(self) -> None:
        for s in self.sources:
            if s.lock_fd is not None:
                os.close(s.lock_fd)


@dataclass
class Target:
    """Where the events go: the broker, the topics and how batches are compressed."""

    bootstrap: str
    topics: Topics
    partitions: int
    compression: str

    def argv(self) -> list[str]:
        t = self.topics
        return ["--bootstrap", self.bootstrap, "--decisions", t.decisions, "--rewards",
                t.rewards, "--joined", t.joined, "--deadletter", t.deadletter,
                "--partitions", str(self.partitions), "--compression", self.compression]


@dataclass
class Counts:
    """What the shipper reports (the sink's health)."""

    shipped: int = 0  # records shipped, adopted spools' included
    own_shipped: int = 0  # of this process's own spool
    adopted_pending: int = 0
    producer_errors: int = 0
    connected: bool = False
    last_error: str | None = None
    sync_error: str | None = None
    drained: bool = False  # stopped with everything of its own shipped

    def to_json(self) -> bytes:
        return orjson.dumps(self.__dict__)

    @classmethod
    def from_json(cls, data: bytes) -> Counts:
        fields = orjson.loads(data)
        return cls(**{k: v for k, v in fields.items() if k in cls.__dataclass_fields__})


@dataclass
class Shipper:
    target: Target
    own: OwnTail
    root: Path  # the spool root, where spools of dead processes are adopted from
    drain_timeout: float = 5.0
    counts: Counts = field(default_factory=Counts)
    on_change: Any = None  # (counts, idle): after each batch, state change and when idle
    stop: threading.Event = field(default_factory=threading.Event)
    wake: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._topic_of = {"d": self.target.topics.decisions, "r": self.target.topics.rewards}
        self._adopted = _Adopted(self.root, self.own.reader.dir)
        self._producer: Any = None
        self._errors: list[str] = []  # the batch being shipped's delivery failures
        self._persisted_at = 0.0

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.own.reader.persist()
        self._adopted.close()
        if self._producer is not None:
            with contextlib.suppress(Exception):
                self._producer.flush(1)

    # -- connecting ---------------------------------------------------------------------
    def _connect(self) -> bool:
        # A plain TCP probe first keeps outages cheap to detect and quick to recover
        # from (a client would retry its bootstrap for many seconds).
        t = self.target
        if not any_reachable(t.bootstrap):
            self._fail(f"cannot reach Kafka at {t.bootstrap}: connection refused")
            return False
        try:
            ensure_topics(t.bootstrap, t.topics, t.partitions)
            # delivery callbacks only for failures, and one for the producer rather than
            # one per message: no Python object or call per shipped event
            self._producer = kafka_client.producer(
                t.bootstrap, t.compression,
                **{"delivery.report.only.error": True, "on_delivery": self._undelivered})
        except Exception as exc:  # any client error means "not now"
            self._fail(f"cannot reach Kafka at {t.bootstrap}: {exc}")
            return False
        self.counts.connected = True
        self.counts.last_error = None
        log.info("shipping events to Kafka at %s", t.bootstrap)
        self._changed()
        return True

    def _undelivered(self, err: Any, msg: Any) -> None:
        if err is not None:
            self._errors.append(str(err))

    def _fail(self, message: str) -> None:
        c = self.counts
        if c.connected or c.last_error != message:
            log.warning(message)
        c.producer_errors += 1
        c.connected = False
        c.last_error = message
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(Exception):
                producer.purge()  # what it still holds is in the spool, shipped again later
        self._changed()

    def _changed(self, idle: bool = False) -> None:
        if self.on_change is not None:
            self.on_change(self.counts, idle)

    # -- shipping -----------------------------------------------------------------------
    def _send(self, records: list[Record]) -> bool:
        """Produce ``records`` and wait until all are acknowledged: True if they were."""
        errors = self._errors = []  # filled by _undelivered while flush() waits
        try:
            for r in records:
                topic = self._topic_of.get(r.kind, self.target.topics.deadletter)
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
            return False
        if undelivered or errors:
            reason = errors[0] if errors else f"{undelivered} not acknowledged in time"
            self._fail(f"Kafka refused {len(errors) or undelivered} of {len(records)} events: "
                       f"{reason}")
            return False
        return True

    def _commit(self, reader: SpoolReader, records: list[Record]) -> None:
        now = time.monotonic()
        persist = now - self._persisted_at >= PERSIST_EVERY
        reader.commit(records[-1].end, persist=persist)
        if persist:
            self._persisted_at = now

    def ship_own(self) -> int:
        records = self.own.records()
        if not records or not self._send(records):
            return 0
        self._commit(self.own.reader, records)
        self.own.shipped(len(records))
        self.counts.own_shipped += len(records)
        self.counts.shipped += len(records)
        self._changed()
        return len(records)

    def ship_adopted(self) -> int:
        shipped = 0
        for source in list(self._adopted.sources):
            records = source.reader.read(BATCH)
            if records and self._send(records):
                self._commit(source.reader, records)
                source.pending = max(0, source.pending - len(records))
                shipped += len(records)
            if source.reader.drained():
                source.reader.remove()
                if source.lock_fd is not None:
                    os.close(source.lock_fd)
                self._adopted.sources.remove(source)
        self.counts.adopted_pending = self._adopted.pending
        self.counts.shipped += shipped
        if shipped:
            self._changed()
        return shipped

    def _chores(self, now: float, last: dict[str, float]) -> None:
        if now - last["sync"] >= SYNC_EVERY:
            try:
                self.own.sync()
                self.counts.sync_error = None
            except OSError as exc:
                self.counts.sync_error = f"spool fsync failed: {exc}"
            last["sync"] = now
        if now - last["scan"] >= 10.0:
            try:
                self._adopted.scan()
                self.counts.adopted_pending = self._adopted.pending
            except OSError as exc:
                log.warning("could not scan the spool directory: %s", exc)
            last["scan"] = now

    def run(self, caught_up: Any) -> None:
        """Ship until :attr:`stop` is set, then drain for up to ``drain_timeout``:
        ``caught_up()`` tells whether everything of this process's own was shipped."""
        last = {"sync": 0.0, "scan": 0.0}
        backoff = 0.2
        stop_deadline: float | None = None
        while True:
            now = time.monotonic()
            if self.stop.is_set() and stop_deadline is None:
                stop_deadline = now + self.drain_timeout
            self._chores(now, last)
            if self._producer is None and not self._connect():
                if stop_deadline is not None and now >= stop_deadline:
                    return
                self.wake.wait(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            backoff = 0.2
            shipped = self.ship_adopted()
            if self._producer is not None:
                shipped += self.ship_own()
            if stop_deadline is not None:
                if shipped == 0 and not self._adopted and caught_up():
                    return
                if time.monotonic() >= stop_deadline:
                    return
            if shipped < BATCH:  # caught up: gather the next batch for a while
                self._changed(idle=True)
                self.wake.wait(SHIP_EVERY)


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


# -- the child process ------------------------------------------------------------------
class StatusFile:
    """The child's counts, written atomically at most every ``every`` seconds while
    busy, at once when the connection state changes, and whenever the shipper is
    idle with news; read by the server for its health."""

    def __init__(self, path: Path, every: float = 0.05) -> None:
        self.path = path
        self.every = every
        self._at = 0.0
        self._written = b""
        self._state: tuple[bool, str | None] = (False, None)  # of what was written

    def write(self, counts: Counts, idle: bool = False) -> None:
        data = counts.to_json()
        if data == self._written:
            return
        now = time.monotonic()
        state = (counts.connected, counts.last_error)
        if not idle and now - self._at < self.every and state == self._state:
            return
        self._at, self._written, self._state = now, data, state
        tmp = self.path.with_suffix(".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, self.path)


    def read(self) -> Counts | None:
        try:
            return Counts.from_json(self.path.read_bytes())
        except (FileNotFoundError, orjson.JSONDecodeError, TypeError):
            return None


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bandit.streaming.shipper",
                                description="Ship a server's spool to Kafka (a child of it).")
    p.add_argument("--spool", required=True, help="the server's own spool directory")
    p.add_argument("--parent", type=int, required=True, help="the server's pid")
    p.add_argument("--drain-timeout", type=float, default=5.0)
    for name in ("bootstrap", "decisions", "rewards", "joined", "deadletter", "compression"):
        p.add_argument(f"--{name}", required=True)
    p.add_argument("--partitions", type=int, required=True)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Ship until the server says stop (SIGTERM: drain, then exit) or dies (exit at
    once: its successor adopts the spool)."""
    a = _parse(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s shipper %(levelname)s %(message)s")
    spool = Path(a.spool)
    target = Target(a.bootstrap, Topics(a.decisions, a.rewards, a.joined, a.deadletter),
                    a.partitions, a.compression)
    status = StatusFile(spool / STATUS_FILE)
    tail = DiskTail(spool)
    shipper = Shipper(target, tail, spool.parent, a.drain_timeout, on_change=status.write)
    def stop(*_: Any) -> None:
        shipper.stop.set()
        shipper.wake.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the server, which stops us

    def watch_parent() -> None:
        while not shipper.stop.is_set():
            if os.getppid() != a.parent:
                os._exit(0)  # the server died: its successor adopts the spool
            time.sleep(0.2)

    threading.Thread(target=watch_parent, daemon=True).start()
    # the server closed its spool before the stop: what is on disk is all there is
    shipper.run(caught_up=lambda: not tail.records())
    shipper.counts.drained = not tail.records()
    shipper.close()
    tail.close()
    status.write(shipper.counts, idle=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

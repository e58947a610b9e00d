"""The Kafka event sink: write-ahead spool on the request path, shipping off it.

``decision``/``reward`` append one line to this process's spool (one ``write``;
nothing on the request path waits for the network). A :class:`~bandit.streaming.
shipper.Shipper` ships the spool to Kafka in batches, advancing the spool cursor only
after the broker acknowledged a batch, fsyncs the spool in batches, and adopts spools
left behind by processes that died. It runs in a child process (default,
``BANDIT_SHIPPER=process``: the server's interpreter spends nothing on an event after
its ``write``) or in a thread (``thread``). When the broker is down or slow the spool
simply grows and is shipped in order when it is back; ``health()`` reports its depth
and the producer errors, for ``/readyz`` and ``/metrics``.

Messages are keyed by event id. Re-shipping after a crash can duplicate a message;
consumers deduplicate by event id.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from typing import Any, Protocol

from bandit.config.settings import Settings
from bandit.core.events import dumps, encode_decision
from bandit.streaming.shipper import STATUS_FILE, Counts, MemoryTail, Shipper, StatusFile, Target
from bandit.streaming.spool import SpoolWriter
from bandit.streaming.topics import Topics

log = logging.getLogger("bandit.streaming.kafka_sink")


class Shipping(Protocol):
    """Where the shipper runs: its counts, and stopping it after a drain."""

    def counts(self) -> Counts: ...
    def close(self) -> Counts: ...  # drain (up to the sink's drain timeout) and stop


class ThreadShipping:
    """The shipper in a thread of this process, taking records from the writer's memory."""

    def __init__(self, target: Target, writer: SpoolWriter, drain_timeout: float) -> None:
        self.writer = writer
        self.drain_timeout = drain_timeout
        self.shipper = Shipper(target, MemoryTail(writer), writer.root, drain_timeout)
        self._thread = threading.Thread(target=self.shipper.run, name="kafka-sink",
                                        args=(self._caught_up,), daemon=True)
        self._thread.start()

    def _caught_up(self) -> bool:
        return self.writer.appended == self.shipper.counts.own_shipped

    def counts(self) -> Counts:
        return self.shipper.counts

    def close(self) -> Counts:
        self.shipper.stop.set()
        self.shipper.wake.set()
        self._thread.join(self.drain_timeout + 15)
        self.shipper.close()
        self.writer.close(release=False)
        c = self.shipper.counts
        c.drained = self._caught_up()
        return c


class ProcessShipping:
    """The shipper in a child process (``python -m bandit.streaming.shipper``) reading
    the spool files back; its counts come through a status file in the spool."""

    def __init__(self, target: Target, writer: SpoolWriter, drain_timeout: float) -> None:
        self.writer = writer
        self.drain_timeout = drain_timeout
        self.status = StatusFile(writer.dir / STATUS_FILE)
        self._counts = Counts(last_error="the shipper is starting")
        self._read_at = 0.0
        argv = [sys.executable, "-m", "bandit.streaming.shipper", "--spool", str(writer.dir),
                "--parent", str(os.getpid()), "--drain-timeout", str(drain_timeout),
                *target.argv()]
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, close_fds=True)

    def counts(self) -> Counts:
        now = time.monotonic()
        if now - self._read_at >= 0.02:  # health is polled; the file changes ~20×/s
            self._read_at = now
            counts = self.status.read()
            if counts is not None:
                self._counts = counts
            if self.proc.poll() is not None and not self._counts.drained:
                self._counts.connected = False
                self._counts.last_error = f"the shipper exited ({self.proc.returncode})"
        return self._counts

    def close(self) -> Counts:
        self.writer.close(release=False)  # everything appended is on disk: the child's to ship
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(self.drain_timeout + 15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._read_at = 0.0
        return self.counts()


class KafkaSink:
    def __init__(self, settings: Settings, *, drain_timeout: float = 5.0) -> None:
        self.topics = Topics.from_settings(settings)
        target = Target(settings.kafka_bootstrap, self.topics, settings.partitions,
                        settings.kafka_compression)
        in_thread = settings.shipper == "thread"
        self.writer = SpoolWriter(settings.spool_dir, keep_tail=in_thread)
        self.shipping: Shipping = (ThreadShipping if in_thread else ProcessShipping)(
            target, self.writer, drain_timeout)

    # -- request path -----------------------------------------------------------------
    def decision(self, event_id: str, event: dict[str, Any]) -> None:
        self.decision_encoded(event_id, *encode_decision(event))

    def decision_encoded(self, event_id: str, value: bytes, c_at: int | None) -> None:
        # c last and its offset in a header: the learner then decodes only the head
        self.writer.append("d", event_id, value, c_at)

    def reward(self, event_id: str, event: dict[str, Any]) -> None:
        self.writer.append("r", event_id, dumps(event))

    def health(self) -> dict[str, Any]:
        c = self.shipping.counts()
        error = self.writer.error or c.sync_error
        return {
            "ready": error is None,
            "kind": "kafka",
            "connected": c.connected,
            "spool_depth": max(0, self.writer.appended - c.own_shipped) + c.adopted_pending,
            "shipped": c.shipped,
            "producer_errors": c.producer_errors,
            "last_error": error or c.last_error,
        }

    def close(self) -> None:
        """Ship what is spooled (up to the drain timeout), then stop; the rest stays
        on disk and is shipped by the next process."""
        counts = self.shipping.close()
        if counts.drained:
            shutil.rmtree(self.writer.dir, ignore_errors=True)  # nothing left to adopt
        self.writer.release()

"""Where the server writes decision and reward events.

An :class:`EventSink` takes already-built event dicts keyed by event id. The file
sink is the default when no Kafka is configured; :mod:`bandit.streaming.kafka_sink` provides
the Kafka one behind the same interface.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Protocol

from bandit.config.settings import Settings
from bandit.core.events import dumps


class EventSink(Protocol):
    def decision(self, event_id: str, event: dict[str, Any]) -> None: ...

    def decision_encoded(self, event_id: str, value: bytes, c_at: int | None) -> None:
        """A decision already encoded by :func:`bandit.core.events.encode_decision` (or its
        fast twin ``encode_decision_event``): its JSON with ``c`` last, and the offset
        of ``,"c":`` (the server's path: it never builds the event as a dict)."""
        ...

    def reward(self, event_id: str, event: dict[str, Any]) -> None: ...

    def health(self) -> dict[str, Any]:
        """``{"ready": bool, ...}`` plus sink-specific figures (spool depth, errors)."""
        ...

    def close(self) -> None: ...


class NullSink:
    """Drops events (benchmarks, and ``BANDIT_EVENT_SINK=none``)."""

    def decision(self, event_id: str, event: dict[str, Any]) -> None:
        pass

    def decision_encoded(self, event_id: str, value: bytes, c_at: int | None) -> None:
        pass

    def reward(self, event_id: str, event: dict[str, Any]) -> None:
        pass

    def health(self) -> dict[str, Any]:
        return {"ready": True, "kind": "none"}

    def close(self) -> None:
        pass


class FileSink:
    """Append-only JSON lines: ``<dir>/decisions-<pid>.jsonl`` and ``rewards-<pid>.jsonl``.

    One file per process, so several workers never interleave partial lines; each
    event is one ``write`` on an ``O_APPEND`` descriptor, so a crash loses at most
    what the OS had not yet flushed, never a line's worth of structure.
    """

    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        pid = os.getpid()
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
        self._fds = {
            "decisions": os.open(self.dir / f"decisions-{pid}.jsonl", flags, 0o644),
            "rewards": os.open(self.dir / f"rewards-{pid}.jsonl", flags, 0o644),
        }
        self._lock = threading.Lock()
        self.errors = 0

    def _write(self, kind: str, event: dict[str, Any]) -> None:
        self._write_line(kind, dumps(event))

    def _write_line(self, kind: str, data: bytes) -> None:
        line = data + b"\n"
        with self._lock:
            os.write(self._fds[kind], line)

    def decision(self, event_id: str, event: dict[str, Any]) -> None:
        self._write("decisions", event)

    def decision_encoded(self, event_id: str, value: bytes, c_at: int | None) -> None:
        self._write_line("decisions", value)

    def reward(self, event_id: str, event: dict[str, Any]) -> None:
        self._write("rewards", event)

    def health(self) -> dict[str, Any]:
        return {"ready": True, "kind": "file", "dir": str(self.dir)}

    def close(self) -> None:
        with self._lock:
            for fd in self._fds.values():
                os.fsync(fd)
                os.close(fd)
            self._fds = {}


def make_sink(settings: Settings) -> EventSink:
    kind = settings.sink_kind
    if kind == "none":
        return NullSink()
    if kind == "file":
        return FileSink(settings.event_dir)
    from bandit.streaming.kafka_sink import KafkaSink

    sink: EventSink = KafkaSink(settings)
    return sink

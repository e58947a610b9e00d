"""A local write-ahead spool: every accepted event is on disk before it is shipped.

Layout: ``<spool_dir>/<owner>/seg-000001.log`` … plus ``cursor`` (the shipped
position) and ``lock`` (held with ``flock`` by the live owner process). A record is
one line: ``{"t": kind, "k": key, "c"?: offset}<TAB><value JSON>`` — orjson output
never holds a raw tab or newline, so the first tab splits header from value; ``c`` is
a decision's ``c_at`` offset (see :mod:`bandit.core.events`), shipped as a Kafka header.

* The request path appends one line with a single ``write`` (O_APPEND); a write cut
  short (a full disk) is cut off again, so no torn line is left for the next record to
  be glued to (a reader never takes an unterminated line, so it sees nothing of it); a
  background thread fsyncs in batches.
* A :class:`SpoolReader` reads records from the cursor on; once they are shipped
  the cursor advances and finished segments are deleted. The writer also keeps the
  records it appended since the shipper last took them (:meth:`SpoolWriter.take`, the
  fast twin of reading them back from disk: the same records, byte for byte, without
  the read and the parse), as long as there are fewer than ``TAIL_LIMIT``; past that
  (the broker away for long) the shipper reads from disk until it has caught up. A
  crash between shipping and advancing the cursor re-ships a few records: consumers
  deduplicate by event id.
* Spools whose owner died (their ``lock`` is free) are adopted by the next process
  and drained first, so a restart with a non-empty spool loses nothing.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import socket
import threading
import time
from pathlib import Path
from typing import NamedTuple

import orjson

SEGMENT_BYTES = 16 << 20
TAIL_LIMIT = 10_000  # records kept in memory for the shipper (~35 MB of 3.5 kB events)


class Record(NamedTuple):  # a tuple: built on the request path, so cheap to build
    kind: str
    key: str
    value: bytes
    end: tuple[int, int]  # (segment number, byte offset just after this record)
    c_at: int | None = None


def segments(directory: Path) -> list[int]:
    """The segment numbers in a spool directory, in order."""
    out = []
    for p in directory.glob("seg-*.log"):
        with contextlib.suppress(ValueError):
            out.append(int(p.stem[4:]))
    return sorted(out)


def _seg_path(directory: Path, n: int) -> Path:
    return directory / f"seg-{n:06d}.log"


def encode_record(kind: str, key: str, value: bytes, c_at: int | None = None) -> bytes:
    head = {"t": kind, "k": key} if c_at is None else {"t": kind, "k": key, "c": c_at}
    return orjson.dumps(head) + b"\t" + value + b"\n"


class SpoolWriter:
    """Appends records to this process's spool directory (thread-safe)."""

    def __init__(self, root: str | Path, *, keep_tail: bool = True) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        owner = f"{socket.gethostname()}-{os.getpid()}-{time.time_ns()}"
        self.dir = self.root / owner
        self.dir.mkdir()
        self._lock_fd = os.open(self.dir / "lock", os.O_CREAT | os.O_RDWR, 0o644)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        self._mutex = threading.Lock()
        self.segment = 1
        self._fd = self._open(self.segment)
        self._size = 0
        self._dirty = False
        self._retired: list[int] = []  # full segments' fds, fsynced and closed by sync()
        self.appended = 0
        self.error: str | None = None
        # the records appended since the last take(); None once it overflowed, until
        # the disk reader catches up (resume_tail)
        self._tail: list[Record] | None = [] if keep_tail else None
        self._keep_tail = keep_tail
        # a short write's bytes could not be cut off: the next write cuts them first (a
        # torn line left in place would be glued to the next record, which the reader
        # would then ship as one garbage event)
        self._torn = False

    def _open(self, n: int) -> int:
        return os.open(_seg_path(self.dir, n), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def append(self, kind: str, key: str, value: bytes, c_at: int | None = None) -> None:
        line = encode_record(kind, key, value, c_at)
        with self._mutex:
            try:
                if self._torn:
                    os.ftruncate(self._fd, self._size)
                    self._torn = False
                if self._size + len(line) > SEGMENT_BYTES and self._size:
                    fd = self._open(self.segment + 1)  # (first: a failure changes nothing)
                    self._retired.append(self._fd)
                    self.segment += 1
                    self._fd = fd
                    self._size = 0
                written = os.write(self._fd, line)
                if written != len(line):  # a full disk, a file size limit
                    self._torn = True
                    os.ftruncate(self._fd, self._size)
                    self._torn = False
                    raise OSError(errno.ENOSPC, f"short write ({written} of {len(line)} bytes)")
            except OSError as exc:
                self.error = f"spool write failed: {exc.strerror or exc}"
                raise
            self.error = None
            self._size += len(line)
            self._dirty = True
            self.appended += 1
            tail = self._tail
            if tail is not None:
                if len(tail) < TAIL_LIMIT:
                    tail.append(Record(kind, key, value, (self.segment, self._size), c_at))
                else:
                    self._tail = None  # the reader goes to disk until it has caught up

    def take(self) -> list[Record] | None:
        """The records appended since the last call, in order (the fast twin of
        ``SpoolReader.read`` from the position the last call ended at), or None if
        more than ``TAIL_LIMIT`` piled up: then read them from disk, and call
        :meth:`resume_tail` once caught up."""
        with self._mutex:
            tail = self._tail
            if tail is None:
                return None
            self._tail = []
        return tail

    def resume_tail(self, position: tuple[int, int]) -> bool:
        """Keep records in memory again if ``position`` (where the disk reader got to)
        is the end of the spool: True if so, and :meth:`take` goes on from there."""
        with self._mutex:
            if self._keep_tail and self._tail is None and \
                    position == (self.segment, self._size):
                self._tail = []
            return self._tail is not None

    def position(self) -> tuple[int, int]:
        with self._mutex:
            return self.segment, self._size

    def sync(self) -> None:
        """fsync what was appended since the last call (called in batches).

        The fsync runs on a duplicate descriptor *outside* the lock: a slow disk
        must never stall the request threads that append."""
        with self._mutex:
            retired, self._retired = self._retired, []
            fd = os.dup(self._fd) if self._dirty else None
            self._dirty = False
        try:
            for old in retired:
                try:
                    os.fsync(old)
                finally:
                    os.close(old)
            if fd is not None:
                os.fsync(fd)
        finally:
            if fd is not None:
                os.close(fd)

    def close(self, *, release: bool = True) -> None:
        """Close the segments (fsynced); ``release=False`` keeps holding the lock (so no
        one adopts the spool) until :meth:`release`."""
        with self._mutex:
            for old in self._retired:
                with contextlib.suppress(OSError):
                    os.fsync(old)
                os.close(old)
            self._retired = []
            with contextlib.suppress(OSError):
                os.fsync(self._fd)
            os.close(self._fd)
        if release:
            self.release()

    def release(self) -> None:
        """Release the flock: the spool may now be adopted."""
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1


class SpoolReader:
    """Reads a spool directory from its cursor; ``commit`` advances the cursor."""

    def __init__(self, directory: Path, *, owned: bool) -> None:
        self.dir = directory
        self.owned = owned
        if not owned:
            self._trim_torn_tail()
        self.cursor = self._load_cursor()
        self._persisted = self.cursor  # the cursor as on disk

    def persist(self) -> None:
        """Write the cursor if it moved since it was last written."""
        if self.cursor != self._persisted:
            self.commit(self.cursor)

    def _trim_torn_tail(self) -> None:
        """Cut an unterminated last line off an adopted spool's last segment: its writer
        died mid-write, so no one will finish it, and left in place it would keep the
        spool from ever counting as drained."""
        segs = segments(self.dir)
        if not segs:
            return
        path = _seg_path(self.dir, segs[-1])
        with open(path, "r+b") as f:
            size = f.seek(0, os.SEEK_END)
            end = size
            while end > 0:
                f.seek(max(0, end - 65536))
                chunk = f.read(end - max(0, end - 65536))
                nl = chunk.rfind(b"\n")
                if nl >= 0:
                    end = max(0, end - 65536) + nl + 1
                    break
                end = max(0, end - 65536)
            if end < size:
                f.truncate(end)

    def _load_cursor(self) -> tuple[int, int]:
        try:
            seg, off = (self.dir / "cursor").read_text().split()
            return int(seg), int(off)
        except (FileNotFoundError, ValueError):
            segs = segments(self.dir)
            return (segs[0] if segs else 1), 0

    def read(self, limit: int, writer_position: tuple[int, int] | None = None, *,
             live: bool = False) -> list[Record]:
        """Up to ``limit`` complete records after the cursor.

        A segment counts as finished (read on into the next) when the writer is past it:
        by ``writer_position`` (the writer in this process), or, with ``live`` (another
        process appending), when the next segment existed before this one was read (a
        writer starts a segment only after its last write to the one before, and numbers
        them one after another; so a poll that finds nothing new costs two ``stat`` calls
        and a read, not a listing of the directory)."""
        out: list[Record] = []
        seg, off = self.cursor
        while len(out) < limit:
            next_seen = live and os.path.exists(_seg_path(self.dir, seg + 1))
            path = _seg_path(self.dir, seg)
            if not path.exists():
                later = [s for s in segments(self.dir) if s > seg]
                if not later:
                    break
                seg, off = later[0], 0
                continue
            with open(path, "rb") as f:
                f.seek(off)
                data = f.read(8 << 20)
            pos = 0
            while len(out) < limit:
                nl = data.find(b"\n", pos)
                if nl < 0:
                    break
                line = data[pos:nl]
                tab = line.find(b"\t")
                if tab > 0:
                    try:
                        head = orjson.loads(line[:tab])
                        c_at = head.get("c")
                        out.append(Record(str(head["t"]), str(head["k"]), line[tab + 1:],
                                          (seg, off + nl + 1),
                                          c_at if type(c_at) is int else None))
                    except (orjson.JSONDecodeError, KeyError, TypeError):
                        pass  # a torn line from a crash mid-write: skip it
                pos = nl + 1
            if len(out) >= limit:
                break
            if live:
                finished = next_seen
            else:
                finished = writer_position is None or seg < writer_position[0]
            if pos < len(data) or not finished:
                break  # the writer may still be appending to this segment
            later = [s for s in segments(self.dir) if s > seg]
            if not later:
                break
            seg, off = later[0], 0
        return out

    def commit(self, position: tuple[int, int], *, persist: bool = True) -> None:
        """Everything up to ``position`` was shipped: move the cursor there, and (unless
        ``persist`` is false: the shipper persists a few times a second, so a crash
        re-ships at most that much) write it to disk and drop finished segments (the
        directory is listed only when the cursor moved to a later segment)."""
        moved_on = position[0] > self._persisted[0]
        self.cursor = position
        if not (persist or moved_on):
            return
        self._persisted = position
        tmp = self.dir / "cursor.tmp"
        tmp.write_text(f"{position[0]} {position[1]}")
        os.replace(tmp, self.dir / "cursor")
        if moved_on:
            for s in segments(self.dir):
                if s < position[0]:
                    _seg_path(self.dir, s).unlink(missing_ok=True)

    def pending_bytes(self) -> int:
        total = 0
        for s in segments(self.dir):
            size = _seg_path(self.dir, s).stat().st_size
            if s == self.cursor[0]:
                total += max(0, size - self.cursor[1])
            elif s > self.cursor[0]:
                total += size
        return total

    def drained(self) -> bool:
        return self.pending_bytes() == 0

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def adopt_orphans(root: Path, exclude: Path | None = None) -> list[tuple[Path, int]]:
    """Spool directories whose owner process is gone, oldest first.

    Each is renamed (so no one else adopts it) while its ``lock`` is held; the
    returned descriptor keeps holding it until the caller closes it after draining.
    """
    out: list[tuple[Path, int]] = []
    if not root.exists():
        return out
    for d in sorted(root.iterdir(), key=lambda p: p.stat().st_mtime):
        if not d.is_dir() or d == exclude:
            continue
        try:
            fd = os.open(d / "lock", os.O_CREAT | os.O_RDWR, 0o644)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue  # a live process owns it
        adopted = d if ".adopted-" in d.name else d.with_name(d.name + ".adopted")
        adopted = adopted.with_name(adopted.name.split(".adopted")[0] +
                                    f".adopted-{os.getpid()}-{time.time_ns()}")
        try:
            os.rename(d, adopted)
        except OSError:
            os.close(fd)
            continue
        out.append((adopted, fd))
    return out

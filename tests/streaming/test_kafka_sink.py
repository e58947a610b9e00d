"""The Kafka sink against a real Tansu broker: shipping, outages, restarts."""

import time

import httpx
import pytest

from bandit.config.settings import Settings
from bandit.streaming.kafka_sink import KafkaSink
from tests.server.conftest import offers
from tests.streaming.kafka_util import read_topic

pytestmark = pytest.mark.integration


def test_events_reach_their_topics_keyed_by_event_id(broker, prefix, tmp_path):
    s = Settings(kafka_bootstrap=broker.bootstrap, topic_prefix=prefix,
                 spool_dir=str(tmp_path / "spool"))
    sink = KafkaSink(s)
    for i in range(300):
        sink.decision(f"e{i}", {"EventId": f"e{i}", "n": i})
        sink.reward(f"e{i}", {"EventId": f"e{i}", "v": 1.0})
    deadline = time.monotonic() + 30
    while sink.health()["spool_depth"] and time.monotonic() < deadline:
        time.sleep(0.05)
    h = sink.health()
    assert h["spool_depth"] == 0 and h["connected"] and h["shipped"] == 600
    sink.close()
    decisions = read_topic(broker.bootstrap, prefix + "decisions", expect=300)
    rewards = read_topic(broker.bootstrap, prefix + "rewards", expect=300)
    assert sorted(d["n"] for d in decisions) == list(range(300))
    assert len(rewards) == 300
    assert not list((tmp_path / "spool").iterdir())  # fully shipped: spool removed


def test_broker_down_then_up_loses_nothing(own_broker, start_server, tmp_path):
    """2,000 decisions and 2,000 rewards while the broker is down: all answered,
    all delivered once it is up."""
    env = {"BANDIT_KAFKA_BOOTSTRAP": own_broker.bootstrap, "BANDIT_TOPIC_PREFIX": "down.",
           "BANDIT_SPOOL_DIR": str(tmp_path / "spool"),
           "BANDIT_MODEL_DIR": str(tmp_path / "models")}
    server = start_server(env)
    server.wait_ready(path="/readyz")
    n = 2000
    with httpx.Client(base_url=server.base, timeout=10) as c:
        for i in range(n):
            r = c.post("/v1/decide", json={"offers": offers(3), "event_id": f"d{i}"})
            assert r.status_code == 200
            assert c.post("/v1/rewards", json={"event_id": f"d{i}", "reward": 1}).status_code \
                == 202
        health = c.get("/readyz").json()
        assert health["ready"] and health["sink"]["spool_depth"] == 2 * n
        assert not health["sink"]["connected"] and health["sink"]["producer_errors"] > 0
        assert "bandit_spool_depth 4000.0" in c.get("/metrics").text
    own_broker.start()
    decisions = read_topic(own_broker.bootstrap, "down.decisions", expect=n, timeout=60)
    rewards = read_topic(own_broker.bootstrap, "down.rewards", expect=n, timeout=60)
    assert {d["EventId"] for d in decisions} == {f"d{i}" for i in range(n)}
    assert {r["EventId"] for r in rewards} == {f"d{i}" for i in range(n)}


def test_restart_with_a_full_spool_delivers_everything(own_broker, start_server, tmp_path):
    env = {"BANDIT_KAFKA_BOOTSTRAP": own_broker.bootstrap, "BANDIT_TOPIC_PREFIX": "rs.",
           "BANDIT_SPOOL_DIR": str(tmp_path / "spool"),
           "BANDIT_MODEL_DIR": str(tmp_path / "models")}
    first = start_server(env)
    first.wait_ready()
    with httpx.Client(base_url=first.base, timeout=10) as c:
        for i in range(300):
            assert c.post("/v1/decide", json={"offers": offers(2), "event_id": f"r{i}"}) \
                .status_code == 200
    # uvicorn re-raises SIGTERM after a graceful shutdown, so -15 is a clean exit too
    assert first.stop() in (0, -15)  # broker still down: the spool stays on disk
    assert any((tmp_path / "spool").iterdir())
    second = start_server(env)
    second.wait_ready()
    own_broker.start()
    got = read_topic(own_broker.bootstrap, "rs.decisions", expect=300, timeout=60)
    assert {d["EventId"] for d in got} == {f"r{i}" for i in range(300)}

"""Value-aware ranking against a real Tansu broker: the learner's heads (learned from
each decision's rewards by kind, calibrated, checkpointed with the model exactly once),
and the whole loop with real server and learner processes, where a new objective set
through the admin route re-ranks on every worker within one model poll, with no
relearning."""

from __future__ import annotations

import random
import time

import httpx
import pytest

from bandit.config.settings import Settings
from bandit.core.events import dumps
from bandit.demo.stack import Stack
from bandit.learner.daemon import Learner
from bandit.stores.modelstore import ModelStore
from bandit.value import head_files
from replay import calibration_cli
from tests.streaming.kafka_util import produce, read_topic
from tests.streaming.test_learner import decision, run_learner, wait_for
from tests.value.trained import OFFERS, WORLD

pytestmark = pytest.mark.integration


def head_states(store: ModelStore) -> dict[str, head_files.HeadState]:
    man = store.current()
    assert man is not None
    return head_files.decode(store.read_attachment(man.extra[head_files.HEADS_KEY]))


def kinds_for(i: int) -> list[dict]:
    """Event ``e{i}``'s rewards: every third clicked, every sixth converts."""
    out = []
    if i % 3 == 0:
        out.append({"EventId": f"e{i}", "v": 1.0, "kind": "click"})
    if i % 6 == 0:
        out.append({"EventId": f"e{i}", "v": 1.0, "kind": "conversion"})
    return out


def test_heads_learn_every_decision_once_and_resume_from_the_checkpoint(broker, prefix,
                                                                         tmp_path):
    s = Settings(kafka_bootstrap=broker.bootstrap, topic_prefix=prefix, reward_wait=1.0,
                 reward_function="sum", model_dir=str(tmp_path / "models"),
                 checkpoint_seconds=0.5, partitions=2, objective="click",
                 heads="click,conversion")
    store = ModelStore(s.model_dir)
    n = 1200
    produce(broker.bootstrap, prefix + "decisions",
            [(f"e{i}", dumps(decision(f"e{i}", i % 3))) for i in range(n)])
    produce(broker.bootstrap, prefix + "rewards",
            [(r["EventId"], dumps(r)) for i in range(n) for r in kinds_for(i)])
    learner = Learner(s)
    learner.connect()
    try:
        run_learner(learner, lambda: learner.state.counters.learned == n)
        man = learner.checkpoint()
    finally:
        learner.close()
    states = head_states(store)
    assert set(states) == {"click", "conversion"}
    assert states["click"].learned == states["conversion"].learned == n == man.events_learned
    # each head's held-out events: its own reward kind (a third clicked, a sixth converted)
    clicks = [y for _, y, _ in states["click"].window]
    conversions = [y for _, y, _ in states["conversion"].window]
    assert len(clicks) == n and sum(clicks) == n // 3 and sum(conversions) == n // 6
    assert states["click"].calibrator is not None  # fitted from 1,000 events on
    # more decisions after the checkpoint, learned by a learner that dies before its
    # next checkpoint: the restarted one learns them again, from the checkpoint, once
    more = 600
    produce(broker.bootstrap, prefix + "decisions",
            [(f"e{i}", dumps(decision(f"e{i}", i % 3))) for i in range(n, n + more)])
    produce(broker.bootstrap, prefix + "rewards",
            [(r["EventId"], dumps(r)) for i in range(n, n + more) for r in kinds_for(i)])
    doomed = Learner(s.with_overrides(checkpoint_seconds=3600.0, checkpoint_events=10**9,
                                      checkpoint_first_events=0))
    doomed.connect()
    try:
        run_learner(doomed, lambda: doomed.state.counters.learned >= n + more // 2)
        assert doomed.heads is not None and doomed.heads.heads.learned > n
    finally:
        doomed.close()  # no checkpoint: what it learned is lost with it
    assert head_states(store)["click"].learned == n
    again = Learner(s)
    assert again.heads is not None and again.heads.heads.learned == n  # resumed
    again.connect()
    try:
        run_learner(again, lambda: again.state.counters.learned == n + more)
        man = again.checkpoint()
    finally:
        again.close()
    states = head_states(store)
    assert states["click"].learned == states["conversion"].learned == n + more
    assert man.events_learned == n + more
    assert sum(y for _, y, _ in states["click"].window) == (n + more) // 3


def rewards_of(rng: random.Random, oid: str) -> list[tuple[str, float]]:
    pc, pv, payout = WORLD[oid]
    if rng.random() >= pc:
        return []
    out = [("click", 1.0)]
    if rng.random() < pv:
        out += [("conversion", 1.0), ("value", payout)]
    return out


def greedy_firsts(base: str, n: int = 40) -> set[str]:
    """The first offer of ``n`` greedy decisions, each on a new connection (so the
    kernel spreads them over the workers); deferred and never activated, so the
    learner drops them and learns nothing from these probes."""
    out = set()
    for _ in range(n):
        r = httpx.post(base + "/v1/decide", json={"offers": OFFERS, "explore": False,
                                                  "defer": True}, timeout=10)
        assert r.status_code == 200, r.text
        out.add(r.json()["slots"][0]["id"])
    return out


def test_a_new_objective_re_ranks_within_one_poll_without_relearning(broker, prefix,
                                                                      tmp_path):
    """Real server (2 workers) + learner + broker: the heads learn from traffic, then
    the objective changes from click to value through the admin route, and every
    worker's greedy choice moves from the most clicked offer to the most valuable one
    within one model poll, with the same heads (their predictions unchanged)."""
    poll = 0.3
    env = {"BANDIT_OBJECTIVE": "click", "BANDIT_REWARD_FUNCTION": "sum",
           "BANDIT_REWARD_MAX": "100", "BANDIT_VALUE_EXPLORATION": "epsilon:0.6"}
    with Stack(tmp_path, policy="epsilon:0.1", bootstrap=broker.bootstrap, prefix=prefix,
               reward_wait=1.0, checkpoint_seconds=0.5, model_poll=poll, workers=2,
               extra_env=env) as stack:
        rng = random.Random(3)
        n = 1500
        with httpx.Client(base_url=stack.base, timeout=10) as c:
            for i in range(n):
                r = c.post("/v1/decide", json={"offers": OFFERS, "event_id": f"v{i}"})
                assert r.status_code == 200, r.text
                for kind, v in rewards_of(rng, r.json()["slots"][0]["id"]):
                    assert c.post("/v1/rewards", json={"event_id": f"v{i}", "reward": v,
                                                       "kind": kind}).status_code == 202
        # every decision learned, and the heads of that model served by both workers
        wait_for(lambda: stack.model()["events_learned"] >= n, 90)
        time.sleep(4 * poll)
        store = ModelStore(tmp_path / "models")
        assert head_states(store)["value"].learned == n

        def predictions() -> dict:
            r = httpx.post(stack.base + "/v1/decide", timeout=10,
                           json={"offers": OFFERS, "explore": False, "predict": True,
                                 "defer": True})
            return r.json()["predictions"]

        before = [predictions() for _ in range(6)]
        assert all(p == before[0] for p in before)  # both workers serve the same heads
        assert greedy_firsts(stack.base) == {"a"}  # click: the most clicked
        version = stack.model()["version"]
        r = httpx.put(stack.base + "/v1/admin/objective", json={"objective": "value"})
        assert r.status_code == 200, r.text
        time.sleep(poll + 0.1)  # one model poll
        assert greedy_firsts(stack.base) == {"b"}  # value: the most valuable
        assert all(predictions() == before[0] for _ in range(6))  # the same heads
        assert stack.model()["version"] == version  # nothing relearned or published
        # the replay's calibration report reads the joined topic's served predictions
        joined = read_topic(broker.bootstrap, prefix + "joined", expect=n, raw=True)
        logs = tmp_path / "joined.dsjson"
        logs.write_bytes(b"\n".join(joined) + b"\n")
        preds, outs, _ = calibration_cli.read([str(logs)], "sum")
        assert "click" in preds and len(preds["click"]) >= n  # the objective's heads
        assert 0 < sum(outs["click"]) < len(outs["click"])

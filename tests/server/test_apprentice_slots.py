"""Apprentice mode with a baseline action per slot (Personalizer's multi-slot
``baselineAction``): each slot shows its own baseline, and the learned policy's agreement
with it is reported per slot, against a model taught the ranking a3 > a2 > the rest."""

from __future__ import annotations

import orjson
from prometheus_client import CollectorRegistry

from bandit.config.settings import Settings
from bandit.core.policy import SLOT_NAMESPACE, VWPolicy
from bandit.core.policy_spec import PolicySpec
from bandit.core.schema import RequestParser
from bandit.server.app import create_app
from bandit.streaming.sinks import FileSink
from tests.server.conftest import Client
from tests.server.test_app import logged

ACTIONS = [{"id": f"a{i}", "features": [{"kind": f"k{i}"}]} for i in range(4)]
PAYS = {3: 1.0, 2: 0.5}


def taught(settings: Settings) -> VWPolicy:
    """a3 always pays, a2 half, a0 and a1 never: at slot 1 and at slot 2."""
    policy = VWPolicy.fresh(PolicySpec.parse("epsilon:0.1"))
    req = RequestParser(settings).personalizer_rank(orjson.dumps(
        {"contextFeatures": [{"u": "x"}], "actions": ACTIONS}))
    lines = [o.line for o in req.offers]
    for i in range(400):
        shown = i % 4
        ctx = req.context if i % 2 else {**req.context, SLOT_NAMESPACE: {"k=2": 1.0}}
        policy.model.learn(ctx, lines, shown, PAYS.get(shown, 0.0), 0.25)
    return policy


def test_each_slot_shows_its_baseline_and_agreement_is_per_slot(tmp_path):
    s = Settings(model_dir=str(tmp_path / "m"), event_dir=str(tmp_path / "ev"),
                 event_sink="file", mode="apprentice")
    policy = taught(s)
    c = Client(create_app(s, policy, FileSink(s.event_dir), registry=CollectorRegistry()))
    # (hero baseline, side baseline) -> does the model's greedy choice agree, per slot:
    # slot 1 chooses among all four (a3), slot 2 among the three not shown in slot 1
    cases = [(("a2", "a3"), [False, True]), (("a3", "a2"), [True, True]),
             (("a0", "a1"), [False, False])]
    try:
        for (hero, side), _ in cases:
            r = c.post("/personalizer/v1.1-preview.3/multislot/rank", json={
                "contextFeatures": [{"u": "x"}], "actions": ACTIONS,
                "slots": [{"id": "hero", "baselineAction": hero},
                          {"id": "side", "baselineAction": side}]})
            assert r.status_code == 201, r.text
            assert [x["rewardActionId"] for x in r.json()["slots"]] == [hero, side]
        bad = c.post("/personalizer/v1.1-preview.3/multislot/rank", json={
            "actions": ACTIONS, "slots": [{"id": "hero", "baselineAction": "a9"}]})
        info = c.get("/v1/model").json()["apprentice"]
        page = c.get("/").text
    finally:
        c.close()
        policy.close()
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "slots[0].baselineAction"
    events = logged(s, "decisions")
    assert [e["agree_slots"] for e in events] == [agree for _, agree in cases]
    assert [e["agree"] for e in events] == [agree[0] for _, agree in cases]
    assert all(e["p"][:2] == [1.0, 1.0] for e in events)  # baselines shown with certainty
    assert info["decisions"] == 3 and info["agreement"] == 1 / 3
    assert info["slots"] == [{"slot": "hero", "decisions": 3, "agreement": 1 / 3},
                             {"slot": "side", "decisions": 3, "agreement": 2 / 3}]
    assert "agreement · slot hero" in page and "0.667 of 3" in page  # the status page


def test_agreement_per_slot_id_is_bounded(tmp_path):
    """Slot ids come from clients: past 100 distinct ones, agreement counts as ``other``."""
    from bandit.server import apprentice

    s = Settings(model_dir=str(tmp_path / "m"), event_dir=str(tmp_path / "ev"),
                 event_sink="none", mode="apprentice")
    policy = VWPolicy.fresh(PolicySpec.parse("epsilon:0.1"))
    c = Client(create_app(s, policy, FileSink(s.event_dir), registry=CollectorRegistry()))
    try:
        for i in range(apprentice.MAX_SLOT_IDS + 5):
            r = c.post("/personalizer/v1.1-preview.3/multislot/rank", json={
                "actions": ACTIONS, "slots": [{"id": f"s{i}"}, {"id": "side"}]})
            assert r.status_code == 201
        slots = {x["slot"]: x["decisions"] for x in c.get("/v1/model").json()
                 ["apprentice"]["slots"]}
    finally:
        c.close()
        policy.close()
    assert len(slots) == apprentice.MAX_SLOT_IDS + 1 and slots["side"] == 105
    assert slots["other"] == 6  # the ids after the 100th (side is the second)

"""Multi-slot decisions: native slots, Personalizer multislot routes, per-slot rewards
joined by slot id, per-slot exclusions, explanations and the response's path."""

from __future__ import annotations

import orjson
import pytest

from bandit.core.codec import slot_example
from bandit.core.events import parse_decision, parse_reward
from bandit.core.vw_adapter import VWModel
from bandit.learner.join import JoinState, slot_rewards
from tests.server.conftest import offers
from tests.server.test_app import logged

BASE = "/personalizer/v1.1-preview.3"


def test_native_three_slots(client, app_parts):
    r = client.post("/v1/decide", json={"offers": offers(6), "slots": 3,
                                        "context": {"u": {"a": "b"}}})
    body = r.json()
    assert r.status_code == 200 and len(body["slots"]) == 3
    assert len({s["id"] for s in body["slots"]}) == 3
    assert body["path"] == "model"
    # slot 2 was drawn among 5 offers, slot 3 among 4: each probability is conditional
    assert all(0 < s["probability"] <= 1 for s in body["slots"])


def test_personalizer_multislot_rank_and_reward_reach_the_right_slot(client, app_parts):
    settings, _, sink = app_parts
    actions = [{"id": f"a{i}", "features": [{"kind": f"k{i % 3}"}]} for i in range(5)]
    r = client.post(f"{BASE}/multislot/rank", json={
        "contextFeatures": [{"user": {"country": "FR"}}], "actions": actions,
        "slots": [{"id": "Main", "baselineAction": "a0"},
                  {"id": "Side", "excludedActions": ["a1", "a2", "a3"]}],
        "eventId": "ms-1"})
    assert r.status_code == 201
    body = r.json()
    assert body["eventId"] == "ms-1" and [s["id"] for s in body["slots"]] == ["Main", "Side"]
    main, side = (s["rewardActionId"] for s in body["slots"])
    assert main != side and side in ("a0", "a4")  # the side slot honours its exclusions
    assert client.post(f"{BASE}/multislot/events/ms-1/reward",
                       json={"reward": [{"slotId": "Side", "value": 1.0}]}).status_code == 204
    assert client.post(f"{BASE}/multislot/events/ms-1/activate").status_code == 204
    # the learner joins the reward to slot 2 by its id
    decision = next(e for e in logged(settings, "decisions") if e["EventId"] == "ms-1")
    rewards = [e for e in logged(settings, "rewards") if e["EventId"] == "ms-1" and "v" in e]
    assert decision["slot_ids"] == ["Main", "Side"]
    state = JoinState(0.0, "sum")
    state.add_decision(parse_decision(decision), 0.0)
    for rw in rewards:
        state.add_reward(parse_reward(rw), 0.0)
    joined = state.expire(1.0)
    assert joined[0].slot_rewards == [0.0, 1.0]
    # slot 2's learning example excludes what that slot could not show
    ex = slot_example(decision, 2, 1.0)
    allowed = {"a0", "a4"} - {main}
    assert len(ex["c"]["_multi"]) == len(allowed)
    assert ex["_label_probability"] == decision["p"][1]
    vw = VWModel("--cb_explore_adf -q co --quiet", json_input=True)
    vw.learn_dsjson(orjson.dumps(ex).decode())
    vw.close()


def test_multislot_bad_requests(client):
    actions = [{"id": "a"}, {"id": "b"}]
    cases = [({"actions": actions}, "slots"),
             ({"actions": actions, "slots": [{"id": "x"}, {"id": "x"}]}, "slots[1].id"),
             ({"actions": actions, "slots": [{"id": f"s{i}"} for i in range(3)]}, "slots"),
             ({"actions": actions, "slots": [{"id": "x", "excludedActions": "a"}]},
              "slots[0].excludedActions")]
    for body, field in cases:
        r = client.post(f"{BASE}/multislot/rank", json=body)
        assert r.status_code == 400 and r.json()["error"]["field"] == field, (body, r.json())
    r = client.post(f"{BASE}/multislot/events/e/reward", json={"reward": [{"value": 1}]})
    assert r.status_code == 400 and r.json()["error"]["field"] == "reward[0].slotId"


def test_reward_weights_combine_objectives():
    rewards = [{"v": 1.0, "kind": "click"}, {"v": 1.0, "kind": "conversion"},
               {"v": 1.0, "kind": "click", "slot": 2}, {"v": 0.5, "kind": "other"}]
    assert slot_rewards(rewards, 2, "max", 0.0, {"click": 1.0, "conversion": 4.0}) == \
        [5.0, 1.0]
    assert slot_rewards(rewards, 3, "sum", -1.0) == [2.5, 1.0, -1.0]


def test_explanations(app_parts, client):
    """A model taught that only o2 pays (shown uniformly, with context u) explains its
    choice of o2 by o2's features and their crossings with the context, each raising o2's
    predicted reward; the context's own features (the same for every offer) and a
    feature it never saw are not listed."""
    from bandit.core.schema import RequestParser

    settings, policy, _ = app_parts
    parse = RequestParser(settings).decide
    ctx = {"u": {"a": "b", "n": 2}}
    for i in range(400):
        req = parse(orjson.dumps({"offers": offers(4), "context": ctx}))
        policy.model.learn(req.context, [o.line for o in req.offers], i % 4,
                           1.0 if i % 4 == 2 else 0.0, 0.25)
    # the draw is seeded by the event id: a fixed id makes it the greedy one every run
    r = client.post("/v1/decide", json={"offers": offers(4), "explain": True,
                                        "event_id": "explain-1",
                                        "context": {"u": {**ctx["u"], "unseen": "x"}}})
    body = r.json()
    assert r.status_code == 200 and len(body["explain"]) == 1
    e = body["explain"][0]
    assert e["id"] == body["slots"][0]["id"] == "o2"
    assert e["probability"] == body["slots"][0]["probability"] == pytest.approx(0.925)
    got = {(c["namespace"], c["feature"]): c for c in e["contributions"]}
    assert len(got) == 5 and all(ns.startswith("o") or "*o" in ns for ns, _ in got)
    assert not any("unseen" in f for _, f in got)  # never learned
    assert all(c["contribution"] > 0 for c in got.values())  # each raises the winner
    mags = [abs(c["contribution"]) for c in e["contributions"]]
    assert mags == sorted(mags, reverse=True)
    for (ns, f), c in got.items():  # -weight × value, crossings included
        terms = tuple(zip(ns.split("*"), f.split("*"), strict=True))
        value = 1.0
        for _, name in terms:
            value *= 2.0 if name in ("price", "n") else 1.0
        assert c["interaction"] == (len(terms) == 2)
        assert c["contribution"] == pytest.approx(
            -policy.model.term_weights([terms])[0] * value, rel=1e-6)

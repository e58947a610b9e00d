"""Show-nothing as an action, holdouts, and safe exploration."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from bandit.core.policy import RankingOptions
from bandit.demo.simulator import World
from tests.ranking.harness import Loop
from tests.server.conftest import offers
from tests.server.test_app import logged
from tests.test_experiments import make


def test_show_nothing_is_an_action_with_its_probability(tmp_path):
    s, c = make(tmp_path)
    try:
        outs = [c.post("/v1/decide", json={"offers": offers(3), "allow_none": True}).json()
                for _ in range(200)]
        bad = c.post("/v1/decide", json={"offers": [{"id": "__none__"}]})
    finally:
        c.close()
    chosen = Counter(o["slots"][0]["id"] for o in outs)
    assert None in chosen  # the empty slot was chosen sometimes, and reported as null
    for o in outs:
        assert len(o["ranking"]) == 4 and sum(x["id"] is None for x in o["ranking"]) == 1
        assert 0 < o["slots"][0]["probability"] <= 1
    assert bad.status_code == 400 and "reserved" in bad.json()["error"]["message"]
    d = logged(s, "decisions")[0]
    assert "__none__" in d["ids"]  # learnable: the null offer is logged like any other


def test_holdout_share_and_treatment(tmp_path):
    s, c = make(tmp_path, holdout=0.2)
    try:
        outs = [c.post("/v1/decide", json={"offers": offers(3), "user_id": f"u{i}"}).json()
                for i in range(2000)]
    finally:
        c.close()
    held = [o for o in outs if o["slots"][0]["id"] is None]
    assert abs(len(held) / len(outs) - 0.2) < 0.03
    assert all(o["slots"][0]["probability"] == 1.0 for o in held)
    arms = Counter(d["arm"] for d in logged(s, "decisions"))
    assert arms["holdout"] == len(held) and arms["treatment"] == len(outs) - len(held)


def test_protected_segments_and_exploration_budget(tmp_path):
    s, c = make(tmp_path, protected="tier=vip", explore_budget=2,
                policy="epsilon:1.0")  # ε = 1: every decision explores unless prevented
    try:
        vip = [c.post("/v1/decide", json={"offers": offers(4), "context": {"u": {
            "tier": "vip"}}}).json() for _ in range(30)]
        user = [c.post("/v1/decide", json={"offers": offers(4), "user_id": "bob"}).json()
                for _ in range(30)]
    finally:
        c.close()
    assert all(o["slots"][0]["probability"] == 1.0 for o in vip)  # greedy, never explored
    explored = [o["slots"][0]["probability"] < 1.0 for o in user]
    assert sum(explored) <= 2 and all(not e for e in explored[2:])


@pytest.mark.slow
def test_safe_exploration_cuts_exploration_of_clearly_bad_offers(tmp_path):
    """Safe exploration (δ = 0.08) keeps the exploration mass on offers whose de-biased
    value is within δ of the best. Ground truth: the offers whose true CTR over all
    users is more than δ below the best offer's. Over the last 8,000 of 20,000
    decisions, the explored decisions (shown offer below the top probability) that
    show such an offer fall by at least 40% (46-89% on four world/seed pairs tried),
    and the value of what is shown does not fall (it rose 11-31% on the same pairs).
    The greedy choice is always kept, so an offer that is bad on average but best
    for some users is still shown to them."""
    world = World(seed=7)
    rng = np.random.default_rng(0)
    users = [world.user(rng) for _ in range(2000)]
    mean_ctr = {o.id: np.mean([world.click_probability(u, o) for u in users])
                for o in world.offers}
    best = max(mean_ctr.values())
    bad = {o for o, v in mean_ctr.items() if v < best - 0.08}
    assert 0 < len(bad) < len(mean_ctr)
    results = {}
    for name, delta in (("plain", 0.0), ("safe", 0.08)):
        loop = Loop(world, tmp_path / name, seed=5, policy_spec="epsilon:0.3",
                    options=RankingOptions(safe_delta=delta, new_offer_impressions=0))
        steps = loop.run(20_000)
        loop.close()
        last = steps[-8000:]
        explored_bad = sum(s.shown[0] in bad and s.event["p"][0] < max(s.event["p"])
                           for s in last)
        results[name] = (explored_bad, float(np.mean([s.expected for s in last])))
    print(results)
    (plain_bad, plain_value), (safe_bad, safe_value) = results["plain"], results["safe"]
    assert plain_bad > 500  # ε = 0.3 explores bad offers often without it
    # the README: "fall by 46–89% on four seeds, and the value shown rises 11–31%"
    from tests.readme_figures import figure, within

    fall = figure(r"below the best's fall by (\d+–\d+)% on four seeds").split("–")
    rise = figure(r"the value shown rises (\d+–\d+)%").split("–")
    assert within(1 - safe_bad / plain_bad, *fall, scale=0.01), (safe_bad, plain_bad)
    assert within(safe_value / plain_value - 1, *rise, scale=0.01), (safe_value, plain_value)


def test_long_horizon_rewards_name_the_user_by_its_hash(tmp_path):
    s, c = make(tmp_path)
    try:
        d = c.post("/v1/decide", json={"offers": offers(3), "user_id": "alice"}).json()
        r = c.post("/v1/rewards", json={"user_id": "alice", "reward": 1.0,
                                        "kind": "return_visit"})
        bad = c.post("/v1/rewards", json={"reward": 1.0})
    finally:
        c.close()
    assert r.status_code == 202 and r.json()["event_id"] is None
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "event_id"
    (rew,) = logged(s, "rewards")
    (dec,) = logged(s, "decisions")
    assert rew["User"] == dec["user"] != "alice" and rew["horizon"] == "long"
    assert "EventId" not in rew and d["event_id"] == dec["EventId"]


def test_the_arm_guard_switches_a_losing_model_arm_to_its_baseline(tmp_path):
    s, c = make(tmp_path, experiment="g:model=0.5,popularity=0.5", arm_guard_margin=0.02,
                arm_guard_min=100, user_salt="guard-test")
    svc = c.app.state.service
    rng = np.random.default_rng(3)
    try:
        arms_before, arms_after = Counter(), Counter()
        for i in range(1200):
            out = c.post("/v1/decide", json={"offers": offers(3), "user_id": f"u{i}"}).json()
            ev = out["event_id"]
            arm = svc.live.series_of[ev]
            # the truth: the model arm converts at 5%, the baseline at 20%
            if rng.random() < (0.05 if arm == "model" else 0.20):
                c.post("/v1/rewards", json={"event_id": ev, "reward": 1.0})
            svc.arm_guard.checked = 0.0  # check on every decision in this test
            (arms_after if svc.arm_guard_tripped else arms_before)[arm] += 1
        assert svc.arm_guard_tripped and arms_after["model"] > 0
        paths = [d["path"] for d in logged(s, "decisions") if d["arm"] == "model"]
        assert paths[0] == "model" and paths[-1] == "popularity"  # switched, still logged
        assert c.get("/v1/model").json()["arm_guard_tripped"] is True
        assert c.post("/v1/admin/arm-guard/reset").status_code == 200
        assert svc.arm_guard_tripped is False
    finally:
        c.close()


def test_the_arm_guard_leaves_a_winning_model_arm_alone(tmp_path):
    s, c = make(tmp_path, experiment="g:model=0.5,popularity=0.5", arm_guard_margin=0.02,
                arm_guard_min=100, user_salt="guard-test")
    svc = c.app.state.service
    rng = np.random.default_rng(4)
    try:
        for i in range(800):
            ev = c.post("/v1/decide", json={"offers": offers(3), "user_id": f"u{i}"}
                        ).json()["event_id"]
            arm = svc.live.series_of[ev]
            if rng.random() < (0.20 if arm == "model" else 0.18):
                c.post("/v1/rewards", json={"event_id": ev, "reward": 1.0})
            svc.arm_guard.checked = 0.0
        assert not svc.arm_guard_tripped
    finally:
        c.close()

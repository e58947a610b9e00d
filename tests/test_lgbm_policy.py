"""The LightGBM propensity policy: trained from joined logs, served behind decide(),
compared in replay, explained with pred_contrib."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from prometheus_client import CollectorRegistry

from bandit.config.settings import Settings
from bandit.core.errors import ConfigError
from bandit.core.lgbm_policy import LGBMPolicy, parse_lgbm_policy
from bandit.core.schema import RequestParser
from bandit.demo.simulator import World
from bandit.server.app import create_app
from bandit.streaming.sinks import NullSink
from replay.cli import main as replay_main
from replay.readers import read_dsjson
from tests.replay.simlogs import make_logs
from tests.server.conftest import Client


def test_train_serve_explain(tmp_path, capsys):
    world = World(seed=21)
    make_logs(tmp_path / "logs.dsjson", 6000, seed=21, world=world)
    out = tmp_path / "lgbm"
    assert replay_main(["train", str(tmp_path / "logs.dsjson"), "--out", str(out),
                        "--ips"]) == 0
    said = capsys.readouterr().out
    assert "auc=" in said and "ece=" in said and f"lgbm:{out}" in said
    meta = orjson.loads((out / "meta.json").read_bytes())
    assert meta["quality"]["auc"] > 0.65 and meta["quality"]["ece"] < 0.05
    # served behind decide(): greedy choices beat random on fresh users
    policy = LGBMPolicy(f"lgbm:{out},epsilon=0.1")
    parser = RequestParser(Settings())
    rng = np.random.default_rng(99)
    greedy = rand = 0.0
    for i in range(300):
        body, offers = world.request(rng, 10, explore=False, event_id=f"x{i}")
        d = policy.decide(parser.decide(orjson.dumps(body)))
        probs = world.probabilities(body["context"], offers)
        greedy += probs[d.order[0]]
        rand += probs.mean()
        assert d.probabilities[0] == 1.0
    assert greedy > 1.5 * rand
    # exploring: epsilon-greedy probabilities, logged as such
    body, _ = world.request(rng, 10, event_id="y")
    d = policy.decide(parser.decide(orjson.dumps(body)))
    assert sorted(round(p, 6) for p in d.probabilities) == sorted(
        [round(0.9 + 0.01, 6)] + [0.01] * 9)
    # through the HTTP app, with explanations from pred_contrib
    s = Settings(model_dir=str(tmp_path / "m"), event_sink="none", policy=f"lgbm:{out}")
    c = Client(create_app(s, policy, NullSink(), registry=CollectorRegistry()))
    try:
        r = c.post("/v1/decide", json={**body, "explain": True, "event_id": "z"})
    finally:
        c.close()
    assert r.status_code == 200 and r.json()["policy"] == f"lgbm:{out},epsilon=0.1"
    contrib = r.json()["explain"][0]["contributions"]
    assert contrib and all("feature" in x and "contribution" in x for x in contrib)
    # and it is evaluated in replay as it is served
    from replay.estimators import by_name
    from replay.evaluate import evaluate
    from replay.policies import Uniform, parse_policy

    logs = read_dsjson([tmp_path / "logs.dsjson"])
    ev = evaluate(logs, [Uniform(), parse_policy(f"lgbm:{out},epsilon=0.1")],
                  by_name("ips,snips"), n_bootstrap=100)
    lg = ev.policies[f"lgbm:{out},epsilon=0.1"].estimates["snips"]
    un = ev.policies["uniform"].estimates["snips"]
    assert lg.ci[0] > un.ci[1]  # clearly better than random, with intervals


def test_an_lgbm_arm_next_to_the_model_arm(tmp_path):
    world = World(seed=21)
    make_logs(tmp_path / "logs.dsjson", 2000, seed=21, world=world)
    out = tmp_path / "lgbm"
    assert replay_main(["train", str(tmp_path / "logs.dsjson"), "--out", str(out)]) == 0
    s = Settings(model_dir=str(tmp_path / "m"), event_sink="none", user_salt="arm-test",
                 experiment="x:model=0.5,lgbm=0.5", lgbm_arm=str(out))
    from bandit.core.policy import VWPolicy
    from bandit.core.policy_spec import PolicySpec

    app = create_app(s, VWPolicy.fresh(PolicySpec.parse("epsilon:0.05")), NullSink(),
                     registry=CollectorRegistry())
    c = Client(app)
    rng = np.random.default_rng(0)
    try:
        policies = set()
        for i in range(60):
            body, _ = world.request(rng, 5, user_id=f"u{i}")
            policies.add(c.post("/v1/decide", json=body).json()["policy"])
        metrics = c.get("/metrics").text
    finally:
        c.close()
    assert policies == {"epsilon:0.05", f"lgbm:{out}"}
    assert 'bandit_decisions_total{mode="explore",policy="lgbm"}' in metrics
    with pytest.raises(ConfigError, match="LGBM_ARM"):
        Settings.from_env({"BANDIT_EXPERIMENT": "x:model=0.5,lgbm=0.5"})


def test_bad_lgbm_policies_are_refused(tmp_path):
    with pytest.raises(ValueError):
        parse_lgbm_policy("lgbm:")
    with pytest.raises(ValueError):
        parse_lgbm_policy("lgbm:/x,gamma=2")
    with pytest.raises(ConfigError, match="BANDIT_POLICY"):
        Settings.from_env({"BANDIT_POLICY": "lgbm:/x,epsilon=3"})
    with pytest.raises(ValueError, match="not a model written by bandit-replay train"):
        LGBMPolicy(f"lgbm:{tmp_path}")

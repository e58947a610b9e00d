"""Policies evaluated on simulator logs whose every click probability is known, so
each policy's true value on the logged contexts is exact and the estimates can be
checked against it."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from bandit.core.policy_spec import PolicySpec
from bandit.core.vw_adapter import VWModel, action_line, shared_line
from bandit.demo.simulator import World
from replay.estimators import by_name
from replay.evaluate import evaluate
from replay.policies import BestConstant, LGBMRanker, Uniform, parse_policy
from replay.readers import read_dsjson
from tests.replay.simlogs import make_logs


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    d = tmp_path_factory.mktemp("sim")
    events, mu = make_logs(d / "logs.dsjson", 4000, seed=21)
    logs = read_dsjson([d / "logs.dsjson"], keep_rows=True)
    return d, events, mu, logs


def true_value(dist: np.ndarray, mu: np.ndarray) -> float:
    return float(np.mean((dist * mu).sum(axis=1)))


def test_saved_vw_model_estimates_cover_its_true_value(sim, tmp_path):
    d, _, mu, logs = sim
    # a model trained on other traffic of the same world
    train, _ = make_logs(tmp_path / "train.dsjson", 3000, seed=22, world=World(seed=21))
    spec = PolicySpec.parse("epsilon:0.1")
    model = VWModel(spec.vw_args())
    for e in train:
        ctx = {k: v for k, v in e["c"].items() if k != "_multi"}
        lines = [action_line(o) for o in e["c"]["_multi"]]
        model.learn(ctx, lines, e["a"][0] - 1, -e["_label_cost"], e["p"][0])
    model.save(tmp_path / "m.vw")
    model.close()
    assert shared_line({"cuser": {"x": 1.0}})  # the adapter renders what the server would
    pol = parse_policy(f"vw:{tmp_path / 'm.vw'}")
    dist, rows = pol.action_dist(logs)
    assert rows.all() and np.allclose(dist.sum(axis=1), 1.0)
    truth = true_value(dist, mu)
    uniform_truth = float(mu.mean())
    assert truth > 1.3 * uniform_truth  # the trained model is genuinely better
    ev = evaluate(logs, [pol], by_name("ips,snips,dr"), n_bootstrap=200, seed=1)
    for name, est in ev.policies[pol.name].estimates.items():
        assert est.ci[0] <= truth <= est.ci[1], (name, est, truth)


def test_progressive_spec_and_baselines(sim):
    _, _, mu, logs = sim
    spec = parse_policy("spec:epsilon:0.1")
    ev = evaluate(logs, [Uniform(), BestConstant(), spec, LGBMRanker()],
                  by_name("ips,dr"), n_bootstrap=100, seed=2)
    dist_u, _ = Uniform().action_dist(logs)
    dist_s, _ = spec.action_dist(logs)
    truth_u, truth_s = true_value(dist_u, mu), true_value(dist_s, mu)
    assert truth_s > 1.2 * truth_u  # it learned while replaying
    for est in ev.policies["spec:epsilon:0.1"].estimates.values():
        assert est.ci[0] <= truth_s <= est.ci[1]
    for est in ev.policies["uniform"].estimates.values():
        assert est.ci[0] <= truth_u <= est.ci[1]
    # the LightGBM ranker is evaluated on the later half only
    assert ev.policies["lgbm"].n == logs.n - logs.n // 2
    dist_l, rows = LGBMRanker().action_dist(logs)
    assert true_value(dist_l[rows], mu[rows]) > 1.3 * truth_u
    # popularity beats random in this world
    dist_b, _ = BestConstant().action_dist(logs)
    assert true_value(dist_b, mu) > truth_u
    # ranking metrics: the uniform policy ties every eligible offer, so a clicked offer's
    # rank is (K + 1) / 2 among K, and MRR and NDCG@3 follow in closed form
    u = ev.policies["uniform"].ranking
    clicked = logs.reward > 0
    rank = (logs.mask[clicked].sum(axis=1) + 1) / 2
    assert u["rows"] == int(clicked.sum()) > 0
    assert u["mrr"] == pytest.approx(float(np.mean(1 / rank)), rel=1e-12)
    assert u["ndcg@3"] == pytest.approx(
        float(np.mean(np.where(rank <= 3, 1 / np.log2(1 + rank), 0.0))), rel=1e-12)
    # and a policy that learned ranks the clicked offers higher than ties do
    assert ev.policies["spec:epsilon:0.1"].ranking["mrr"] > u["mrr"]


def test_policies_needing_features_say_so(sim):
    _, _, _, logs = sim
    bare = read_dsjson([sim[0] / "logs.dsjson"])
    with pytest.raises(ValueError, match="needs the logged features"):
        parse_policy("spec:bag:3").action_dist(bare)
    with pytest.raises(ValueError, match="unknown policy"):
        parse_policy("oracle")
    with pytest.raises(Exception, match="bag"):
        parse_policy("spec:bag:-1")


def test_foreign_dsjson_features_are_encoded_for_vw(tmp_path):
    """Personalizer-style logs (raw JSON features) can be replayed with a spec."""
    rng = np.random.default_rng(0)
    path = tmp_path / "p.dsjson"
    with open(path, "wb") as f:
        for i in range(300):
            weather = ["sunny", "rainy"][int(rng.integers(2))]
            best = 0 if weather == "sunny" else 1
            chosen = int(rng.integers(3))
            reward = float(rng.random() < (0.8 if chosen == best else 0.1))
            ev = {"EventId": f"p{i}", "Timestamp": "2023-01-01T00:00:00Z",
                  "_label_cost": -reward, "_label_probability": 1 / 3,
                  "_labelIndex": chosen, "a": [chosen + 1] + [j + 1 for j in range(3)
                                                               if j != chosen],
                  "p": [1 / 3] * 3,
                  "c": {"ctx": {"weather": weather},
                        "_multi": [{"_tag": t, "f": {"kind": t}} for t in ("ice", "hot",
                                                                          "tea")]}}
            f.write(orjson.dumps(ev) + b"\n")
    logs = read_dsjson([path], keep_rows=True)
    ev = evaluate(logs, [Uniform(), parse_policy("spec:epsilon:0.05")], by_name("ips"),
                  n_bootstrap=0)
    assert ev.policies["spec:epsilon:0.05"].estimates["ips"].value > \
        ev.policies["uniform"].estimates["ips"].value + 0.15

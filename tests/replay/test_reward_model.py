"""Cross-fitted reward models and the metrics computed on them."""

from __future__ import annotations

import numpy as np
import pytest

from replay.logs import CONTEXT_DIM, LogBuilder
from replay.metrics import auc, calibration, log_loss, ranking
from replay.reward_model import cross_fit


def synthetic(n: int, seed: int, signal: bool):
    """Four actions; the reward depends on context feature 0 and the action (or is
    pure noise when ``signal`` is False)."""
    rng = np.random.default_rng(seed)
    b = LogBuilder()
    gids = [b.action(f"a{i}", {"f": float(i)}) for i in range(4)]
    for i in range(n):
        ctx = np.zeros(CONTEXT_DIM, np.float32)
        ctx[0] = rng.normal()
        a = int(rng.integers(4))
        p = 1 / (1 + np.exp(-(2 * ctx[0] * (1 if a % 2 else -1) - 1))) if signal else 0.3
        r = float(rng.random() < p)
        b.add(f"e{i}", gids, a, 0, 0.25, r, float(i), ctx)
    return b.build()


@pytest.mark.parametrize("kind", ["lgbm", "logistic"])
def test_models_learn_the_signal(kind):
    logs = synthetic(4000, 0, True)
    q = cross_fit(logs, kind, folds=5, seed=0)
    assert np.isfinite(q.q).all() and q.q.shape == (4000, 4)
    assert auc(logs.reward, q.q_logged) > 0.75


def test_no_row_is_scored_by_a_model_that_saw_it():
    """Pure-noise rewards: an in-sample LightGBM fit memorises them (AUC far above
    0.5), but cross-fitted predictions know nothing (AUC ≈ 0.5)."""
    logs = synthetic(3000, 1, False)
    q = cross_fit(logs, "lgbm", folds=5, seed=0)
    assert 0.44 < auc(logs.reward, q.q_logged) < 0.56
    from replay.reward_model import LGBMModel, design

    rows = np.arange(logs.n)
    x = design(logs, rows, logs.chosen_action, logs.position)
    col = logs.context.shape[1] + logs.action_features.shape[1]
    in_sample = LGBMModel(True).fit(x, logs.reward, col).predict(x)
    assert auc(logs.reward, in_sample) > 0.7


def test_metrics_by_hand():
    y = np.array([0, 0, 1, 1, 1.0])
    s = np.array([0.1, 0.4, 0.35, 0.8, 0.4])
    # pairs (pos, neg): (0.35,0.1)=1 (0.35,0.4)=0 (0.8,*)=2 (0.4,0.1)=1 (0.4,0.4)=0.5
    assert auc(y, s) == pytest.approx(4.5 / 6)
    assert log_loss(np.array([1.0, 0.0]), np.array([0.5, 0.5])) == pytest.approx(np.log(2))
    cal = calibration(np.array([0, 1, 0, 1.0]), np.array([0.5, 0.5, 0.5, 0.5]))
    assert cal["ece"] == pytest.approx(0.0) and cal["curve"][0]["count"] == 4
    # one clicked row whose logged action the policy ranks 2nd of 3
    scores = np.array([[0.9, 0.5, 0.1]])
    r = ranking(scores, np.ones((1, 3), bool), np.array([1]), np.array([1.0]), ks=(1, 3))
    assert r["mrr"] == 0.5 and r["p@1"] == 0 and r["p@3"] == pytest.approx(1 / 3)
    assert r["ndcg@3"] == pytest.approx(1 / np.log2(3))

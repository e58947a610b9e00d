"""Metrics beside the policy values: rates, model quality and calibration, ranking.

Ranking metrics compare a policy's ordering of each row's candidates with the
logged clicks: on every row whose logged action was rewarded, that action is the
one relevant item, ranked *r* by the policy (ties share the average rank). Then
MRR = mean 1/r, NDCG@k = mean 1/log2(1+r) for r ≤ k (one relevant item: the ideal
DCG is 1), Precision@k = mean 1[r ≤ k] / k. Only shown items can be relevant, so
these favour policies that rank like the logger; read them beside the
counterfactual values, not instead of them.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def rates(reward: np.ndarray, kinds: dict[str, np.ndarray]) -> dict[str, float]:
    out = {"mean_reward": float(reward.mean()) if reward.size else float("nan")}
    if reward.size and np.isin(reward, (0.0, 1.0)).all():
        out["ctr"] = out["mean_reward"]
    for name, flags in kinds.items():
        out[f"rate_{name}"] = float(flags.mean()) if flags.size else float("nan")
    if "conversion" in kinds and "click" in kinds:
        clicks = float(kinds["click"].sum())
        out["conversion_per_click"] = float(kinds["conversion"].sum()) / clicks if clicks \
            else float("nan")
    return out


def auc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties count half)."""
    from scipy.stats import rankdata

    pos = y > 0
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def log_loss(y: np.ndarray, p: np.ndarray, eps: float = 1e-12) -> float:
    q = np.clip(p, eps, 1 - eps)
    return float(-np.mean(y * np.log(q) + (1 - y) * np.log(1 - q)))


def calibration(y: np.ndarray, p: np.ndarray, bins: int = 10) -> dict[str, Any]:
    """Expected calibration error and the reliability curve (equal-width bins)."""
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    curve = []
    ece = 0.0
    for b in range(bins):
        m = which == b
        if not m.any():
            continue
        pred, obs, cnt = float(p[m].mean()), float(y[m].mean()), int(m.sum())
        curve.append({"bin": [float(edges[b]), float(edges[b + 1])], "predicted": pred,
                      "observed": obs, "count": cnt})
        ece += cnt / len(y) * abs(pred - obs)
    return {"ece": ece, "curve": curve}


def model_quality(y: np.ndarray, p: np.ndarray) -> dict[str, Any]:
    ok = np.isfinite(p)
    y, p = y[ok], p[ok]
    out: dict[str, Any] = {"n": int(len(y))}
    if len(y) and np.isin(y, (0.0, 1.0)).all():
        out.update(auc=auc(y, p), log_loss=log_loss(y, p), **calibration(y, p))
    elif len(y):
        out["rmse"] = float(np.sqrt(np.mean((y - p) ** 2)))
    return out


def ranking(scores: np.ndarray, mask: np.ndarray, chosen: np.ndarray, reward: np.ndarray,
            ks: tuple[int, ...] = (1, 3, 5)) -> dict[str, float]:
    rel = np.flatnonzero(reward > 0)
    if not len(rel):
        return {}
    s = np.where(mask[rel], scores[rel], -np.inf)
    mine = s[np.arange(len(rel)), chosen[rel]][:, None]
    greater = (s > mine).sum(axis=1)
    ties = (s == mine).sum(axis=1) - 1
    r = 1 + greater + ties / 2.0
    out = {"mrr": float(np.mean(1 / r)), "rows": int(len(rel))}
    for k in ks:
        hit = r <= k
        out[f"ndcg@{k}"] = float(np.mean(np.where(hit, 1 / np.log2(1 + r), 0.0)))
        out[f"p@{k}"] = float(np.mean(hit) / k)
    return out

"""Evaluate policies on logs with several estimators; collect the metrics around them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from replay.estimators import Estimate, OPEData, _Base, bootstrap_many
from replay.logs import Logs
from replay.metrics import model_quality, ranking, rates
from replay.policies import action_values, rank_dist
from replay.reward_model import CrossFitted, cross_fit


@dataclass
class PolicyResult:
    name: str
    n: int
    estimates: dict[str, Estimate]
    ranking: dict[str, float] = field(default_factory=dict)
    over_time: list[tuple[float, float]] = field(default_factory=list)  # (t, IPS so far)


@dataclass
class Evaluation:
    n: int
    skipped: int
    policies: dict[str, PolicyResult]
    metrics: dict[str, Any]
    problems: list[str]

    def as_json(self) -> dict[str, Any]:
        return {"n": self.n, "skipped": self.skipped,
                "policies": {name: {e: est.as_dict() for e, est in r.estimates.items()}
                             for name, r in self.policies.items()},
                "ranking": {name: r.ranking for name, r in self.policies.items()},
                "metrics": self.metrics}


def opedata(logs: Logs, dist: np.ndarray, q: CrossFitted | None) -> OPEData:
    rows = np.arange(logs.n)
    pi = dist[rows, logs.chosen]
    if q is None:
        return OPEData(logs.reward, logs.pscore, pi)
    v_hat = np.nansum(dist * np.nan_to_num(q.q), axis=1)
    return OPEData(logs.reward, logs.pscore, pi, q.q_logged, v_hat)


def policy_scores(policy: Any, logs: Logs, dist: np.ndarray) -> np.ndarray:
    """A score per candidate for ranking metrics: rankers' own scores, otherwise the
    policy's probability of each candidate at the row's position."""
    if getattr(policy, "name", "") == "best-constant":
        return np.where(logs.mask, action_values(logs)[np.maximum(logs.candidates, 0)],
                        -np.inf)
    return np.where(logs.mask, dist, -np.inf)


def estimates(d: OPEData, estimators: list[_Base], n_bootstrap: int, seed: int,
              alpha: float, interval: str = "bootstrap") -> dict[str, Estimate]:
    """Every estimator's value with its interval (all bootstrap intervals from the same
    seeded resamples, so estimates of different policies are compared on equal draws)."""
    boots = bootstrap_many(estimators, d, n_bootstrap, seed, alpha) \
        if interval == "bootstrap" and n_bootstrap > 0 and d.n > 1 else {}
    out: dict[str, Estimate] = {}
    for e in estimators:
        normal = e.normal_interval(d, alpha)
        ci = boots.get(e.label, normal)
        out[e.label] = Estimate(e.value(d), ci, normal, d.n,
                                "bootstrap" if e.label in boots else "normal")
    return out


def evaluate(logs: Logs, policies: list[Any], estimators: list[_Base], *,
             reward_model: str = "lgbm", folds: int = 5, seed: int = 0,
             n_bootstrap: int = 200, alpha: float = 0.05, interval: str = "bootstrap",
             progress: bool = False) -> Evaluation:
    if logs.n == 0:
        raise ValueError("no usable rows in the logs")
    q = cross_fit(logs, reward_model, folds, seed) \
        if any(e.needs_model for e in estimators) else None
    results: dict[str, PolicyResult] = {}
    bar: Any = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(policies), desc="policies", unit=" policy", leave=False)
    try:
        for pol in policies:
            if hasattr(pol, "_model"):  # VW policies go row by row: show their progress
                dist, rows = _vw_dist(pol, logs, progress)
            else:
                dist, rows = pol.action_dist(logs)
            sub = logs.subset(rows) if not rows.all() else logs
            d = opedata(sub, dist[rows], None if q is None else
                        CrossFitted(q.q[rows], q.q_logged[rows]))
            ests = estimates(d, estimators, n_bootstrap, seed, alpha, interval)
            w = d.pi / d.pscore
            cum = np.cumsum(w * d.reward) / np.arange(1, d.n + 1)
            step = max(1, d.n // 50)
            over_time = [(float(sub.timestamp[i]), float(cum[i]))
                         for i in range(step - 1, d.n, step)]
            rank = ranking(policy_scores(pol, sub, dist[rows]), sub.mask, sub.chosen,
                           sub.reward)
            results[pol.name] = PolicyResult(pol.name, d.n, ests, rank, over_time)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    metrics: dict[str, Any] = {"rates": rates(logs.reward, logs.kinds),
                               "positions": int(logs.n_positions),
                               "actions": logs.n_actions}
    if q is not None:
        metrics["reward_model"] = {"kind": reward_model, "folds": folds,
                                   **model_quality(logs.reward, q.q_logged)}
    return Evaluation(logs.n, logs.skipped, results, metrics, logs.problems)


def _vw_dist(pol: Any, logs: Logs, progress: bool) -> tuple[np.ndarray, np.ndarray]:
    if not progress:
        dist, rows = pol.action_dist(logs)
        return dist, rows
    from tqdm import tqdm

    with tqdm(total=logs.n, desc=pol.name, unit=" rows", leave=False) as bar:
        dist, rows = pol.action_dist(logs, bar.update)
    return dist, rows


__all__ = ["Evaluation", "PolicyResult", "estimates", "evaluate", "opedata", "rank_dist"]

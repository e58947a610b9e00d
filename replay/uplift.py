"""Uplift: what each offer *causes*, estimated from randomised exploration and holdouts.

The control is the null offer (``__none__``: "show nothing", chosen by the policy or
forced for holdout users). For every offer *a* and every logged row where both *a* and
the null offer were candidates:

* **T-learner**: two LightGBM outcome models, μ_a on rows that showed *a* and μ_0 on
  rows that showed nothing (cross-fitted over ``folds``: no row is predicted by a model
  trained on it); τ_a(x) = μ_a(x) − μ_0(x).
* **DR-learner** (AIPW): ψ = μ_a(x) − μ_0(x) + 1[A=a](y − μ_a(x))/p(a|x)
  − 1[A=∅](y − μ_0(x))/p(∅|x), with the logged probabilities of both; its mean is the
  offer's average incremental effect, unbiased when either the models or the logged
  probabilities are right, with a normal interval.

Also reported: the Qini curve of each offer (rows ranked by the T-learner's τ_a(x);
incremental outcomes of the top k), and per-segment effects when ``segment`` names a
categorical context feature. ``export`` writes ``{offer: effect}`` for use as offer
priors or features.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from replay.logs import Logs
from replay.reward_model import LGBMModel

NONE = "__none__"


def _fit_predict(x: np.ndarray, y: np.ndarray, train: np.ndarray, pred: np.ndarray,
                 binary: bool, seed: int) -> np.ndarray:
    if train.sum() < 5:
        return np.full(pred.sum(), float(y[train].mean()) if train.any() else 0.0)
    model = LGBMModel(binary, num_rounds=60, min_data_in_leaf=20, seed=seed)
    model.fit(x[train], y[train], x.shape[1] - 1)
    return model.predict(x[pred])


def _cross_fit(x: np.ndarray, y: np.ndarray, mask: np.ndarray, folds: np.ndarray,
               k: int, binary: bool, seed: int) -> np.ndarray:
    """Out-of-fold predictions for every row of a model fit on rows in ``mask``."""
    out = np.empty(len(y))
    for f in range(k):
        test = folds == f
        out[test] = _fit_predict(x, y, mask & ~test, test, binary, seed + f)
    return out


def qini(score: np.ndarray, treated: np.ndarray, control: np.ndarray,
         y: np.ndarray, points: int = 20) -> list[tuple[float, float]]:
    """Qini curve: for the top fraction q of rows by ``score``, Y_T − Y_C · N_T / N_C."""
    order = np.argsort(-score, kind="stable")
    t, c, yy = treated[order], control[order], y[order]
    ct, cc = np.cumsum(t), np.cumsum(c)
    yt, yc = np.cumsum(yy * t), np.cumsum(yy * c)
    out = [(0.0, 0.0)]
    n = len(order)
    for q in np.linspace(1 / points, 1, points):
        i = max(0, int(q * n) - 1)
        gain = yt[i] - (yc[i] * ct[i] / cc[i] if cc[i] else 0.0)
        out.append((float(q), float(gain)))
    return out


def _effect(psi: np.ndarray, tau_t: np.ndarray, treated: np.ndarray, ctrl: np.ndarray,
            segments: np.ndarray | None, min_rows: int) -> dict[str, Any]:
    """One offer's estimates from its rows' doubly robust scores ``psi`` and T-learner
    effects ``tau_t``: the means, a normal 95% interval for the DR one, and the DR
    effect per segment with at least ``min_rows`` rows."""
    n = len(psi)
    sd = float(psi.std(ddof=1)) if n > 1 else float("nan")
    dr = float(psi.mean())
    row: dict[str, Any] = {"t_learner": float(tau_t.mean()), "dr": dr,
                           "ci": [float(dr - 1.96 * sd / np.sqrt(n)),
                                  float(dr + 1.96 * sd / np.sqrt(n))],
                           "rows": n, "treated": int(treated.sum()),
                           "control": int(ctrl.sum())}
    if segments is not None:
        segs: dict[str, float] = {}
        for v in sorted({str(s) for s in segments}):
            sel = segments.astype(str) == v
            if sel.sum() >= min_rows:
                segs[v] = float(psi[sel].mean())
        row["segments"] = segs
    return row


def uplift(logs: Logs, kind: str = "reward", folds: int = 5, seed: int = 0,
           segment: list[str | None] | None = None, min_rows: int = 30) -> dict[str, Any]:
    if NONE not in logs.action_names:
        raise ValueError("no row could show nothing: uplift needs the null offer "
                         "(allow_none or a holdout) among the logged candidates")
    if logs.logged_dist is None:
        raise ValueError("uplift needs each row's full logging distribution (single-slot "
                         "events of this service log it)")
    first = logs.position == 0
    lg = logs.subset(first)
    y = lg.reward if kind == "reward" else lg.kinds.get(kind, np.zeros(lg.n)).astype(float)
    binary = bool(np.isin(y, (0.0, 1.0)).all())
    none = lg.action_names.index(NONE)
    chosen = lg.chosen_action
    rows = np.arange(lg.n)
    x = np.hstack([lg.context, np.zeros((lg.n, 1), np.float32)])  # last column: unused id
    rng = np.random.default_rng(seed)
    k = max(2, folds)
    fold = rng.permutation(lg.n) % k
    assert lg.logged_dist is not None
    col_of = {(i, int(g)): c for i in rows for c, g in enumerate(lg.candidates[i]) if g >= 0}
    none_col = np.array([col_of.get((i, none), -1) for i in rows])
    mu0 = _cross_fit(x, y, chosen == none, fold, k, binary, seed)
    p0 = np.where(none_col >= 0, lg.logged_dist[rows, np.maximum(none_col, 0)], np.nan)
    out: dict[str, Any] = {"kind": kind, "rows": int(lg.n), "control_rows":
                           int((chosen == none).sum()), "offers": {}, "qini": {}}
    seg_values = None
    if segment:
        seg_values = np.array(segment, dtype=object)[first] if len(segment) == logs.n \
            else np.array(segment, dtype=object)
    for a, name in enumerate(lg.action_names):
        if a == none:
            continue
        a_col = np.array([col_of.get((i, a), -1) for i in rows])
        both = (a_col >= 0) & (none_col >= 0)
        treated = chosen == a
        if treated.sum() < min_rows or not both.any():
            continue
        mua = _cross_fit(x, y, treated, fold, k, binary, seed + 100 * (a + 1))
        pa = lg.logged_dist[rows, np.maximum(a_col, 0)]
        ctrl = chosen == none
        with np.errstate(divide="ignore", invalid="ignore"):
            psi = mua - mu0 + np.where(treated, (y - mua) / pa, 0.0) - \
                np.where(ctrl, (y - mu0) / p0, 0.0)
        out["offers"][name] = _effect(psi[both], (mua - mu0)[both], treated[both], ctrl[both],
                                      None if seg_values is None else seg_values[both],
                                      min_rows)
        out["qini"][name] = qini((mua - mu0)[both], treated[both], ctrl[both], y[both])
    return out

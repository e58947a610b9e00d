"""Reward models q̂(x, a) for DM and DR, cross-fitted.

Features of a (row, action) pair: the row's hashed context, the action's hashed
features, the action id (a LightGBM categorical) and the slot position. Binary
rewards get a classifier (probability of a positive reward), others a regressor.

Cross-fitting: rows are split into ``k`` folds; the model scoring fold *j* is
trained on the other folds only, so no row is scored by a model that saw its own
reward (otherwise DR's correction term would be biased towards zero).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from replay.logs import CONTEXT_DIM, Logs

CHUNK = 50_000
MAX_INTERACTION_ACTIONS = 64  # rows scored per batch (rows × candidates × features stays bounded)


def design(logs: Logs, rows: np.ndarray, actions: np.ndarray,
           positions: np.ndarray) -> np.ndarray:
    """Feature matrix for pairs (rows[j], actions[j]) at positions[j]."""
    ctx = logs.context[rows]
    af = logs.action_features[actions]
    return np.hstack([ctx, af, actions[:, None].astype(np.float32),
                      positions[:, None].astype(np.float32)]).astype(np.float32)


class Regressor(Protocol):
    def fit(self, x: np.ndarray, y: np.ndarray, action_col: int) -> Regressor: ...

    def predict(self, x: np.ndarray) -> np.ndarray: ...


@dataclass
class LGBMModel:
    """LightGBM through its native API (no scikit-learn needed)."""

    binary: bool
    num_rounds: int = 100
    learning_rate: float = 0.1
    num_leaves: int = 31
    min_data_in_leaf: int = 20
    seed: int = 0
    booster: Any = None

    def fit(self, x: np.ndarray, y: np.ndarray, action_col: int) -> LGBMModel:
        import lightgbm as lgb

        params = {"objective": "binary" if self.binary else "regression",
                  "learning_rate": self.learning_rate, "num_leaves": self.num_leaves,
                  "min_data_in_leaf": self.min_data_in_leaf, "verbosity": -1,
                  "seed": self.seed, "deterministic": True, "num_threads": 2,
                  "force_row_wise": True}
        if self.binary and len(np.unique(y)) < 2:
            self.booster = float(y.mean()) if y.size else 0.0  # degenerate fold: a constant
            return self
        data = lgb.Dataset(x, y, categorical_feature=[action_col], free_raw_data=True)
        self.booster = lgb.train(params, data, num_boost_round=self.num_rounds)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        if isinstance(self.booster, float):
            return np.full(x.shape[0], self.booster)
        return np.asarray(self.booster.predict(x), dtype=np.float64)


@dataclass
class LogisticModel:
    """L2-regularised logistic (or ridge, for non-binary rewards) regression on
    standardised features, one-hot action ids and context × action interactions
    (while there are at most ``MAX_INTERACTION_ACTIONS`` actions): the light fallback."""

    binary: bool
    l2: float = 1.0
    coef: np.ndarray | None = None
    mu: np.ndarray | None = None
    sd: np.ndarray | None = None
    n_actions: int = 0
    context_dim: int = CONTEXT_DIM

    def _features(self, x: np.ndarray) -> np.ndarray:
        assert self.mu is not None and self.sd is not None
        dense = (x[:, :-2] - self.mu) / self.sd
        onehot = np.zeros((x.shape[0], self.n_actions + 1), dtype=np.float64)
        ids = np.clip(x[:, -2].astype(int), 0, self.n_actions)
        onehot[np.arange(x.shape[0]), ids] = 1.0
        parts = [dense, onehot, x[:, -1:], np.ones((x.shape[0], 1))]
        if self.n_actions <= MAX_INTERACTION_ACTIONS:
            ctx = dense[:, :self.context_dim]
            parts.append((ctx[:, :, None] * onehot[:, None, :]).reshape(x.shape[0], -1))
        return np.hstack(parts)

    def fit(self, x: np.ndarray, y: np.ndarray, action_col: int) -> LogisticModel:
        from scipy.optimize import minimize

        self.mu = x[:, :-2].mean(axis=0)
        self.sd = x[:, :-2].std(axis=0) + 1e-6
        self.n_actions = int(x[:, -2].max()) + 1 if x.size else 1
        f = self._features(x)
        n = max(len(y), 1)
        if not self.binary:
            a = f.T @ f / n + self.l2 / n * np.eye(f.shape[1])
            self.coef = np.linalg.solve(a, f.T @ y / n)
            return self

        def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
            z = f @ w
            p = 1 / (1 + np.exp(-z))
            ll = np.logaddexp(0, z) - y * z
            return (float(ll.mean() + 0.5 * self.l2 / n * w @ w),
                    f.T @ (p - y) / n + self.l2 / n * w)

        res = minimize(loss, np.zeros(f.shape[1]), jac=True, method="L-BFGS-B",
                       options={"maxiter": 200})
        self.coef = res.x
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        assert self.coef is not None
        z: np.ndarray = self._features(x) @ self.coef
        return 1 / (1 + np.exp(-z)) if self.binary else z


def make_model(kind: str, binary: bool, seed: int = 0) -> Regressor:
    if kind == "lgbm":
        return LGBMModel(binary, seed=seed)
    if kind == "logistic":
        return LogisticModel(binary)
    raise ValueError(f"unknown reward model {kind!r} (lgbm, logistic)")


@dataclass
class CrossFitted:
    """Out-of-fold reward predictions for every candidate of every row."""

    q: np.ndarray         # (n, K) q̂ for each candidate column (NaN for padding)
    q_logged: np.ndarray  # (n,) q̂ of the logged action (out of fold)


def _chunks(idx: np.ndarray) -> Iterator[np.ndarray]:
    for s in range(0, len(idx), CHUNK):
        yield idx[s:s + CHUNK]


def cross_fit(logs: Logs, kind: str = "lgbm", folds: int = 5, seed: int = 0) -> CrossFitted:
    n, k = logs.candidates.shape
    binary = bool(np.isin(logs.reward, (0.0, 1.0)).all())
    rng = np.random.default_rng(seed)
    fold_of = rng.permutation(n) % max(2, folds) if n else np.zeros(0, int)
    q = np.full((n, k), np.nan)
    rows_all = np.arange(n)
    chosen = logs.chosen_action
    action_col = logs.context.shape[1] + logs.action_features.shape[1]
    for f in range(max(2, folds)):
        train = rows_all[fold_of != f]
        test = rows_all[fold_of == f]
        if not len(test):
            continue
        x = design(logs, train, chosen[train], logs.position[train])
        model = make_model(kind, binary, seed + f).fit(x, logs.reward[train], action_col)
        for part in _chunks(test):
            cands = logs.candidates[part]
            r_idx, c_idx = np.nonzero(cands >= 0)
            rows = part[r_idx]
            pred = model.predict(design(logs, rows, cands[r_idx, c_idx], logs.position[rows]))
            q[rows, c_idx] = pred
    q_logged = q[rows_all, logs.chosen] if n else np.zeros(0)
    return CrossFitted(q, q_logged)

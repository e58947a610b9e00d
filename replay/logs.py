"""Logged bandit feedback as numpy arrays (what every estimator and policy reads).

One row per shown slot: the chosen action, its slot position, the logging
probability and the reward. Candidate sets may differ per row (a request lists its
eligible offers), so candidates are a padded ``(n, K)`` matrix of global action ids
with ``-1`` for padding. Features for reward models are hashed into fixed-width
float32 vectors: ``context`` per row and ``action_features`` per global action.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bandit.core.hashing import hash_features

CONTEXT_DIM = 64
ACTION_DIM = 32


@dataclass
class Logs:
    """Logged feedback, one row per (decision, slot)."""

    event_ids: list[str]
    candidates: np.ndarray        # (n, K) int32 global action ids, -1 = padding
    chosen: np.ndarray            # (n,) int32 column of the chosen action in candidates
    position: np.ndarray          # (n,) int32 slot, 0-based
    pscore: np.ndarray            # (n,) float64 logging probability of the chosen action
    reward: np.ndarray            # (n,) float64
    timestamp: np.ndarray         # (n,) float64 epoch seconds (row order if unknown)
    context: np.ndarray           # (n, CONTEXT_DIM) float32 hashed context features
    action_features: np.ndarray   # (A, ACTION_DIM) float32 hashed features per action
    action_names: list[str]       # global action id -> offer id
    kinds: dict[str, np.ndarray] = field(default_factory=dict)  # reward kind -> (n,) 0/1
    logged_dist: np.ndarray | None = None  # (n, K) logging pmf when the log has it all
    rows: list[Any] | None = None  # per-row source for VW policies (canonical features)
    skipped: int = 0
    problems: list[str] = field(default_factory=list)
    arms: list[str] | None = None  # experiment arm of each row, when logged

    @property
    def n(self) -> int:
        return int(self.reward.shape[0])

    @property
    def n_actions(self) -> int:
        return len(self.action_names)

    @property
    def mask(self) -> np.ndarray:
        return self.candidates >= 0

    @property
    def chosen_action(self) -> np.ndarray:
        out: np.ndarray = self.candidates[np.arange(self.n), self.chosen]
        return out

    @property
    def n_positions(self) -> int:
        return int(self.position.max()) + 1 if self.n else 0

    def subset(self, rows: np.ndarray) -> Logs:
        idx = np.flatnonzero(rows) if rows.dtype == bool else rows
        return Logs(
            [self.event_ids[i] for i in idx], self.candidates[idx], self.chosen[idx],
            self.position[idx], self.pscore[idx], self.reward[idx], self.timestamp[idx],
            self.context[idx], self.action_features, self.action_names,
            {k: v[idx] for k, v in self.kinds.items()},
            None if self.logged_dist is None else self.logged_dist[idx],
            None if self.rows is None else [self.rows[i] for i in idx],
            self.skipped, self.problems,
            None if self.arms is None else [self.arms[i] for i in idx])


class LogBuilder:
    """Accumulates validated rows, then packs them into :class:`Logs`."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.cands: list[list[int]] = []
        self.chosen: list[int] = []
        self.position: list[int] = []
        self.pscore: list[float] = []
        self.reward: list[float] = []
        self.ts: list[float] = []
        self.ctx: list[np.ndarray] = []
        self.kinds: dict[str, list[int]] = {}
        self.dists: list[list[float] | None] = []
        self.rows: list[Any] = []
        self.arms: list[str] = []
        self.action_index: dict[str, int] = {}
        self.action_feats: list[np.ndarray] = []
        self.skipped = 0
        self.problems: list[str] = []

    def action(self, name: str, features: Any = None) -> int:
        idx = self.action_index.get(name)
        if idx is None:
            idx = self.action_index[name] = len(self.action_feats)
            self.action_feats.append(hash_features(features or {}, ACTION_DIM))
        return idx

    def add(self, event_id: str, candidates: list[int], chosen: int, position: int,
            pscore: float, reward: float, ts: float, context: np.ndarray,
            kinds: Iterable[str] = (), dist: list[float] | None = None,
            row: Any = None, arm: str = "") -> None:
        i = len(self.ids)
        self.ids.append(event_id)
        self.cands.append(candidates)
        self.chosen.append(chosen)
        self.position.append(position)
        self.pscore.append(pscore)
        self.reward.append(reward)
        self.ts.append(ts)
        self.ctx.append(context)
        for k in kinds:
            self.kinds.setdefault(k, [])
            self.kinds[k] += [0] * (i - len(self.kinds[k])) + [1]
        self.dists.append(dist)
        self.rows.append(row)
        self.arms.append(arm)

    def skip(self, where: str, reason: str, strict: bool) -> None:
        from replay.errors import LogError

        if strict:
            raise LogError(f"{where}: {reason}")
        self.skipped += 1
        if len(self.problems) < 1000:
            self.problems.append(f"{where}: {reason}")

    def build(self, keep_rows: bool = False) -> Logs:
        n = len(self.ids)
        k = max((len(c) for c in self.cands), default=1)
        cands = np.full((n, k), -1, dtype=np.int32)
        for i, c in enumerate(self.cands):
            cands[i, :len(c)] = c
        dist = None
        if n and all(d is not None for d in self.dists):
            dist = np.zeros((n, k))
            for i, d in enumerate(self.dists):
                dist[i, :len(d)] = d  # type: ignore[arg-type]
        kinds = {name: np.array(v + [0] * (n - len(v)), dtype=np.int8)
                 for name, v in self.kinds.items()}
        names = [""] * len(self.action_index)
        for name, idx in self.action_index.items():
            names[idx] = name
        ctx = np.vstack(self.ctx).astype(np.float32) if self.ctx else \
            np.zeros((0, CONTEXT_DIM), np.float32)
        af = np.vstack(self.action_feats) if self.action_feats else \
            np.zeros((0, ACTION_DIM), np.float32)
        order = np.argsort(np.array(self.ts, dtype=np.float64), kind="stable")
        logs = Logs(self.ids, cands, np.array(self.chosen, np.int32),
                    np.array(self.position, np.int32), np.array(self.pscore, np.float64),
                    np.array(self.reward, np.float64), np.array(self.ts, np.float64), ctx, af,
                    names, kinds, dist, self.rows if keep_rows else None, self.skipped,
                    self.problems, self.arms if any(self.arms) else None)
        if n and not np.all(order == np.arange(n)):
            logs = logs.subset(order)  # time order, for progressive policies
        return logs

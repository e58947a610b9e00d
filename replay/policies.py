"""Policies to evaluate on logs: each gives π(a | x_i, k_i) over every row's candidates.

``action_dist(logs)`` returns ``(dist, rows)``: ``dist`` is ``(n, K)`` with the
probability of each candidate column at the row's logged position, ``rows`` a
boolean mask of the rows the policy is evaluated on (a policy trained on the first
part of the logs is evaluated on the rest only).

Conventions for slots: a stochastic policy uses the same distribution at every
position (over that slot's remaining candidates); a deterministic ranker puts
probability 1 on the candidate it ranks at the row's position.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bandit.core.scaling import young_model
from replay.logs import Logs

Dist = tuple[np.ndarray, np.ndarray]


def _uniform(logs: Logs) -> np.ndarray:
    m = logs.mask.astype(np.float64)
    out: np.ndarray = m / m.sum(axis=1, keepdims=True)
    return out


def rank_dist(scores: np.ndarray, logs: Logs) -> np.ndarray:
    """Deterministic ranking by ``scores`` (n, K): probability 1 on the candidate
    ranked at each row's logged position."""
    s = np.where(logs.mask, scores, -np.inf)
    order = np.argsort(-s, axis=1, kind="stable")
    pos = np.minimum(logs.position, logs.mask.sum(axis=1) - 1)
    pick = order[np.arange(logs.n), pos]
    dist = np.zeros(s.shape)
    dist[np.arange(logs.n), pick] = 1.0
    return dist


@dataclass(frozen=True)
class Uniform:
    name: str = "uniform"

    def action_dist(self, logs: Logs) -> Dist:
        return _uniform(logs), np.ones(logs.n, bool)


@dataclass(frozen=True)
class Logged:
    """The logging policy itself: its estimate is the on-policy mean reward."""

    name: str = "logged"

    def action_dist(self, logs: Logs) -> Dist:
        if logs.logged_dist is not None:
            return logs.logged_dist, np.ones(logs.n, bool)
        # only the chosen action's probability is known: spread the rest evenly
        m = logs.mask.astype(np.float64)
        others = np.maximum(m.sum(axis=1) - 1, 1)
        dist = m * ((1 - logs.pscore) / others)[:, None]
        dist[np.arange(logs.n), logs.chosen] = logs.pscore
        return dist, np.ones(logs.n, bool)


def action_values(logs: Logs) -> np.ndarray:
    """Self-normalised IPS estimate of each action's mean reward (0 if never shown)."""
    a = logs.chosen_action
    w = 1.0 / logs.pscore
    num = np.bincount(a, weights=w * logs.reward, minlength=logs.n_actions)
    den = np.bincount(a, weights=w, minlength=logs.n_actions)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


@dataclass(frozen=True)
class BestConstant:
    """Popularity: every user gets the actions ranked by their de-biased (IPS) mean
    reward over the whole log. Chosen on the data it is evaluated on, so slightly
    optimistic: the baseline a contextual policy must beat."""

    name: str = "best-constant"

    def action_dist(self, logs: Logs) -> Dist:
        values = action_values(logs)
        scores = np.where(logs.mask, values[np.maximum(logs.candidates, 0)], -np.inf)
        return rank_dist(scores, logs), np.ones(logs.n, bool)


def _vw_lines(row: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Canonical namespaces for a row: this service's own events are canonical
    already; foreign DSJSON is encoded the way the server encodes requests."""
    from bandit.core.features import (
        CONTEXT_PREFIX,
        ID_NAMESPACE,
        OFFER_PREFIX,
        Limits,
        encode,
        merge,
        offer_id_feature,
    )

    context, multi, canonical, _ = row
    if canonical:
        return context, multi
    limits = Limits(10_000, 10_000, 16)
    ctx = encode(context, CONTEXT_PREFIX, "c", limits)
    offers = []
    for i, o in enumerate(multi):
        name = o.get("_tag", o.get("id", f"#{i + 1}")) if isinstance(o, dict) else f"#{i + 1}"
        feats = {k: v for k, v in o.items() if not str(k).startswith("_")} \
            if isinstance(o, dict) else {}
        offers.append(merge({ID_NAMESPACE: {offer_id_feature(str(name)): 1.0}},
                            encode(feats, OFFER_PREFIX, "c._multi", limits)))
    return ctx, offers


def vw_inputs(logs: Logs) -> Iterator[tuple[dict[str, Any], list[str]]]:
    """Per row, in order: the VW context and the action lines of the row's candidates
    (in candidate-column order), as the server would render them."""
    from bandit.core.vw_adapter import action_line

    if logs.rows is None:
        raise ValueError("the logged features are needed (DSJSON or Kafka logs of "
                         "decisions with their offers)")
    cache: dict[int, tuple[Any, list[str]]] = {}
    for i in range(logs.n):
        row = logs.rows[i]
        key = id(row)
        if key not in cache:  # the slots of one decision share its row
            cache.clear()
            ctx, offers = _vw_lines(row)
            cache[key] = (ctx, [action_line(o) for o in offers])
        ctx, lines = cache[key]
        lookup = row[3]  # offer id -> index in the decision's _multi
        cols = [lookup[logs.action_names[int(c)]] for c in logs.candidates[i] if c >= 0]
        yield ctx, [lines[j] for j in cols]


class _VWBase:
    name: str

    def _model(self) -> Any:
        raise NotImplementedError

    def _after(self, model: Any, ctx: Any, lines: list[str], chosen: int, reward: float,
               p: float, row: int) -> None:
        """Progressive policies learn the logged outcome (of 0-based ``row``) after
        predicting."""

    def _done(self, model: Any) -> None:
        """After the last row, before the model is closed."""

    def action_dist(self, logs: Logs, progress: Callable[[int], None] | None = None) -> Dist:
        if logs.rows is None:
            raise ValueError(f"policy {self.name} needs the logged features (DSJSON or "
                             "Kafka logs of decisions with their offers)")
        model = self._model()
        dist = np.zeros(logs.candidates.shape)
        try:
            for i, (ctx, sub) in enumerate(vw_inputs(logs)):
                # negative entries (VW's SquareCB with --elim) count 0, as when serving
                pmf = np.clip(np.asarray(model.predict(ctx, sub)), 0.0, None)
                total = pmf.sum()
                dist[i, :len(sub)] = pmf / total if total > 0 else 1.0 / len(sub)
                self._after(model, ctx, sub, int(logs.chosen[i]), float(logs.reward[i]),
                            float(logs.pscore[i]), i)
                if progress is not None:
                    progress(1)
            self._done(model)
        finally:
            model.close()
        return dist, np.ones(logs.n, bool)


@dataclass(frozen=True)
class VWSaved(_VWBase):
    """A saved model (e.g. from the model store) evaluated as it is; a model store's
    file is standardised as its servers do (its manifest names the snapshot)."""

    path: str
    name: str = ""

    def _model(self) -> Any:
        from bandit.core.scaling import served_snapshot
        from bandit.core.vw_adapter import VWModel
        from bandit.stores.modelstore import Manifest, ModelStore

        model = VWModel.load(self.path)
        path = Path(self.path)
        manifest = path.with_suffix(".json")  # model-000012.vw → model-000012.json
        if manifest.is_file():
            try:
                m = Manifest.from_json(manifest.read_bytes())
                if m.file == path.name:
                    model.set_scale(served_snapshot(ModelStore(path.parent).feature_scale(m)))
            except Exception:
                model.close()
                raise
        return model


@dataclass(frozen=True)
class VWProgressive(_VWBase):
    """A candidate policy spec learned from scratch over the logs in time order:
    each row is predicted before its logged outcome is learned (progressive
    validation), so its estimate answers "what would these settings have earned".
    Numeric features are standardised as the service's learner does, the snapshot
    refreshed where it publishes young models (after 32, 64, 128… rows)."""

    spec: str
    seed: int = 0
    name: str = ""
    standardize: bool = True
    save_to: str | None = None  # where the model learned over the logs is saved

    def _model(self) -> Any:
        from bandit.core.policy_spec import PolicySpec
        from bandit.core.scaling import Standardizer
        from bandit.core.vw_adapter import VWModel

        model = VWModel(PolicySpec.parse(self.spec).vw_args(self.seed))
        if self.standardize:  # as the service's learner does (BANDIT_STANDARDIZE)
            model.standardize(Standardizer())
        return model

    def _after(self, model: Any, ctx: Any, lines: list[str], chosen: int, reward: float,
               p: float, row: int) -> None:
        model.learn(ctx, lines, chosen, reward, p)
        if self.standardize and young_model(row + 1):
            model.refresh_scale()  # when the learner would publish a young model

    def _done(self, model: Any) -> None:
        if self.save_to is not None:
            model.save(self.save_to)


@dataclass(frozen=True)
class LGBMRanker:
    """A LightGBM reward model trained on the first ``train_fraction`` of the logs (in
    time order), ranking every later row's candidates greedily."""

    train_fraction: float = 0.5
    seed: int = 0
    name: str = "lgbm"

    def action_dist(self, logs: Logs) -> Dist:
        from replay.reward_model import LGBMModel, design

        n = logs.n
        cut = int(n * self.train_fraction)
        train = np.arange(cut)
        test = np.zeros(n, bool)
        test[cut:] = True
        binary = bool(np.isin(logs.reward, (0.0, 1.0)).all())
        action_col = logs.context.shape[1] + logs.action_features.shape[1]
        model = LGBMModel(binary, seed=self.seed).fit(
            design(logs, train, logs.chosen_action[train], logs.position[train]),
            logs.reward[train], action_col)
        scores = np.full(logs.candidates.shape, -np.inf)
        rows = np.flatnonzero(test)
        if len(rows):
            cands = logs.candidates[rows]
            r_idx, c_idx = np.nonzero(cands >= 0)
            # rank as if for the top slot: a ranker's order does not depend on the slot
            pred = model.predict(design(logs, rows[r_idx], cands[r_idx, c_idx],
                                        np.zeros(len(r_idx), np.int32)))
            scores[rows[r_idx], c_idx] = pred
        return rank_dist(scores, logs), test


@dataclass(frozen=True)
class LGBMSaved:
    """A model written by ``bandit-replay train`` (what ``lgbm:DIR`` serves), evaluated
    as served: epsilon-greedy on its scores."""

    spec: str
    name: str = ""

    def action_dist(self, logs: Logs) -> Dist:
        from bandit.core.lgbm_policy import LGBMRanker, parse_lgbm_policy

        path, eps = parse_lgbm_policy(self.spec)
        ranker = LGBMRanker(path)
        unknown = len(ranker.index)
        remap = np.array([ranker.index.get(n, unknown) for n in logs.action_names] or [0],
                         dtype=np.float32)
        r_idx, c_idx = np.nonzero(logs.mask)
        gids = logs.candidates[r_idx, c_idx]
        x = np.hstack([logs.context[r_idx], logs.action_features[gids],
                       remap[gids][:, None], logs.position[r_idx][:, None].astype(np.float32)])
        scores = np.full(logs.candidates.shape, -np.inf)
        scores[r_idx, c_idx] = ranker.booster.predict(x)
        best = np.argmax(scores, axis=1)
        n = logs.mask.sum(axis=1)
        dist = logs.mask * (eps / n)[:, None]
        dist[np.arange(logs.n), best] += 1 - eps
        return dist, np.ones(logs.n, bool)


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def parse_policy(text: str, seed: int = 0) -> Any:
    if text == "uniform":
        return Uniform()
    if text == "logged":
        return Logged()
    if text in ("best-constant", "popularity"):
        return BestConstant()
    if text.startswith("lgbm:") and not _is_number(text[5:]):
        return LGBMSaved(text, text)
    if text == "lgbm" or text.startswith("lgbm:"):
        frac = float(text.split(":", 1)[1]) if ":" in text else 0.5
        if not 0 < frac < 1:
            raise ValueError("lgbm:FRACTION needs a training fraction in (0, 1)")
        return LGBMRanker(frac, seed, text)
    if text.startswith("vw:"):
        return VWSaved(text[3:], text)
    if text.startswith("spec:"):
        from bandit.core.policy_spec import PolicySpec

        PolicySpec.parse(text[5:])  # fail early on a bad spec
        return VWProgressive(text[5:], seed, text)
    raise ValueError(f"unknown policy {text!r} (uniform, logged, best-constant, lgbm, "
                     "vw:PATH, spec:SPEC)")

"""A LightGBM propensity (click/conversion) model served behind the same ``decide()``.

``bandit-replay train`` fits it from joined logs with the replay featurizer (hashed
context, hashed offer features, the offer id as a category, the slot) and saves
``model.txt`` + ``meta.json`` in a directory. ``BANDIT_POLICY="lgbm:DIR"`` (optionally
``lgbm:DIR,epsilon=0.05``) serves it: every eligible offer is scored and the policy is
epsilon-greedy on the scores, so it explores, logs true probabilities, can be
compared in replay and split-tested against the VW policy. It does not learn online:
retrain it and restart (or run it as an experiment arm next to the learning VW model).
Explanations come from LightGBM's ``pred_contrib`` over the hashed feature groups.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from bandit.core.features import Namespaces
from bandit.core.hashing import hash_features
from bandit.core.offerstats import OfferStats
from bandit.core.policy import RankingOptions, Serving, compose
from bandit.core.policy_spec import PolicySpec
from bandit.core.types import DecideRequest, Decision, Offer
from bandit.core.vw_adapter import VWModel


def parse_lgbm_policy(text: str) -> tuple[str, float]:
    """``lgbm:DIR[,epsilon=E]`` → (DIR, E)."""
    if not text.startswith("lgbm:"):
        raise ValueError("expected lgbm:DIR[,epsilon=E]")
    body = text[5:]
    path, _, rest = body.partition(",")
    eps = 0.05
    if rest:
        key, eq, value = rest.partition("=")
        if key.strip() != "epsilon" or not eq:
            raise ValueError("the only option of an lgbm policy is epsilon=E")
        eps = float(value)
        if not 0 <= eps <= 1:
            raise ValueError("epsilon must be in [0, 1]")
    if not path:
        raise ValueError("lgbm:DIR needs the directory written by bandit-replay train")
    return path, eps


class LGBMRanker:
    """The trained artifact: a booster and the featurizer's vocabulary."""

    def __init__(self, directory: str | Path) -> None:
        import lightgbm as lgb

        d = Path(directory)
        try:
            self.meta: dict[str, Any] = orjson.loads((d / "meta.json").read_bytes())
            self.booster = lgb.Booster(model_file=str(d / "model.txt"))
        except (OSError, orjson.JSONDecodeError, lgb.basic.LightGBMError) as exc:
            raise ValueError(f"{d} is not a model written by bandit-replay train: {exc}") \
                from None
        self.index = {name: i for i, name in enumerate(self.meta["action_names"])}
        self.context_dim = int(self.meta["context_dim"])
        self.action_dim = int(self.meta["action_dim"])

    def features(self, context: Namespaces, offers: list[Offer], slot: int) -> np.ndarray:
        ctx = hash_features(context, self.context_dim)
        rows = []
        unknown = len(self.index)
        for o in offers:
            af = hash_features(o.features, self.action_dim)
            rows.append(np.concatenate([ctx, af, [float(self.index.get(o.id, unknown)),
                                                  float(slot)]]))
        return np.asarray(rows, dtype=np.float32)

    def scores(self, context: Namespaces, offers: list[Offer], slot: int) -> np.ndarray:
        return np.asarray(self.booster.predict(self.features(context, offers, slot)))

    def contributions(self, context: Namespaces, offer: Offer, slot: int,
                      top: int = 5) -> list[dict[str, object]]:
        c = np.asarray(self.booster.predict(self.features(context, [offer], slot),
                                            pred_contrib=True))[0]
        names = ([f"context#{i}" for i in range(self.context_dim)] +
                 [f"offer#{i}" for i in range(self.action_dim)] + ["offer_id", "slot"])
        groups = list(zip(names, c[:-1], strict=True))  # the last column is the bias
        groups.sort(key=lambda g: -abs(g[1]))
        return [{"feature": n, "contribution": float(v)} for n, v in groups[:top] if v != 0]


class LGBMScorer:
    """The booster's scores as a distribution: epsilon-greedy on the best score."""

    def __init__(self, ranker: LGBMRanker, epsilon: float) -> None:
        self.ranker = ranker
        self.epsilon = epsilon

    def pmf(self, context: Namespaces, offers: Sequence[Offer], slot: int) -> list[float]:
        s = self.ranker.scores(context, list(offers), slot)
        n = len(offers)
        best = int(np.argmax(s))
        return [self.epsilon / n + (1 - self.epsilon if j == best else 0.0) for j in range(n)]

    def contributions(self, request: DecideRequest, slot: int, offer: Offer,
                      top: int) -> list[dict[str, object]]:
        """``pred_contrib`` over the hashed feature groups (the request's context: the
        slot is a feature of its own)."""
        return self.ranker.contributions(request.context, offer, slot, top)


class LGBMPolicy:
    """A trained LightGBM model served by the same strategies as the VW policy (see
    :func:`bandit.core.policy.compose`); it never changes while serving."""

    def __init__(self, text: str, seed: int = 0, options: RankingOptions | None = None) -> None:
        path, eps = parse_lgbm_policy(text)
        self.ranker = LGBMRanker(path)
        self.epsilon = eps
        self.spec = PolicySpec.parse(f"epsilon:{eps}")
        self.name = text
        self.seed = seed
        self.options = options or RankingOptions()
        self._serving = Serving(LGBMScorer(self.ranker, eps), f"lgbm-{Path(path).name}")

    @property
    def version(self) -> str:
        return self._serving.version

    @property
    def model(self) -> None:
        """No VW model: nothing learns on a LightGBM policy while serving."""
        return None

    def decide(self, request: DecideRequest, mode: str = "model") -> Decision:
        return compose(request, mode, self._serving, self.options, self.seed, self.name)

    def swap(self, model: VWModel, version: str, stats: OfferStats | None = None,
             events_learned: int = 0) -> None:
        """A LightGBM policy is not hot-swapped from the VW model store."""

    def close(self) -> None:
        pass

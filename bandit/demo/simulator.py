"""A seeded offer world with known click and conversion probabilities.

Used by ``bandit-demo``, the benchmarks and the statistical tests: because every
probability is known, a policy's true expected CTR (and the best and random ones)
can be computed exactly for any request, with no need to wait for clicks.

The model of the world: a user has a device, a country, an age band and a few
interests; an offer has a category, a brand and a payout. The click probability is
``sigmoid(bias + offer_effect + Σ affinity[user feature][offer category])`` — the
offer's category matters differently to different users, so a context-free
(popularity) policy is clearly beaten by a contextual one, which is what a
contextual bandit is for. A click converts with an offer-specific probability.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

DEVICES = ("mobile", "desktop", "tablet")
COUNTRIES = ("de", "fr", "it", "es", "nl")
AGES = ("18-24", "25-34", "35-49", "50+")
INTERESTS = ("travel", "finance", "games", "fashion", "food", "sport", "tech", "home")
CATEGORIES = ("travel", "finance", "games", "fashion", "food", "tech")


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


@dataclass(frozen=True)
class SimOffer:
    id: str
    category: str
    brand: str
    payout: float
    effect: float       # context-free appeal (log-odds)
    conversion: float   # P(conversion | click)

    def features(self) -> dict[str, dict[str, Any]]:
        return {"offer": {"category": self.category, "brand": self.brand,
                          "payout": self.payout}}

    def as_request_offer(self) -> dict[str, Any]:
        return {"id": self.id, "features": self.features()}


@dataclass(frozen=True)
class World:
    """The catalogue and the true response model, fixed by ``seed``."""

    n_offers: int = 20
    seed: int = 0
    bias: float = -3.5
    strength: float = 1.6
    offers: tuple[SimOffer, ...] = field(init=False)
    affinity: dict[str, np.ndarray] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        offers = []
        for k in range(self.n_offers):
            cat = CATEGORIES[k % len(CATEGORIES)]
            offers.append(SimOffer(
                id=f"offer-{k:03d}", category=cat, brand=f"brand-{k % 7}",
                payout=round(float(rng.uniform(1, 20)), 2),
                effect=float(rng.normal(0, 0.3)),
                conversion=float(rng.uniform(0.05, 0.4))))
        object.__setattr__(self, "offers", tuple(offers))
        aff: dict[str, np.ndarray] = {}
        for value in (*(f"device={d}" for d in DEVICES), *(f"country={c}" for c in COUNTRIES),
                      *(f"age={a}" for a in AGES), *(f"interest={i}" for i in INTERESTS)):
            aff[value] = rng.normal(0, 0.5, len(CATEGORIES))
        for i in INTERESTS:  # an interest strongly favours its own category
            if i in CATEGORIES:
                aff[f"interest={i}"][CATEGORIES.index(i)] += 1.5
        object.__setattr__(self, "affinity", aff)

    # -- sampling ------------------------------------------------------------------------
    def user(self, rng: np.random.Generator) -> dict[str, dict[str, Any]]:
        k = int(rng.integers(1, 3))
        interests = sorted({INTERESTS[int(i)] for i in rng.integers(0, len(INTERESTS), k)})
        return {"user": {"device": DEVICES[int(rng.integers(len(DEVICES)))],
                         "country": COUNTRIES[int(rng.integers(len(COUNTRIES)))],
                         "age": AGES[int(rng.integers(len(AGES)))],
                         "interests": interests}}

    def eligible(self, rng: np.random.Generator, k: int = 10) -> list[SimOffer]:
        idx = rng.choice(len(self.offers), size=min(k, len(self.offers)), replace=False)
        return [self.offers[int(i)] for i in idx]

    def request(self, rng: np.random.Generator, k: int = 10,
                **extra: Any) -> tuple[dict[str, Any], list[SimOffer]]:
        """A native ``/v1/decide`` body and the offers it lists."""
        ctx = self.user(rng)
        offers = self.eligible(rng, k)
        return {"context": ctx, "offers": [o.as_request_offer() for o in offers], **extra}, offers

    # -- the truth -----------------------------------------------------------------------
    def _user_keys(self, context: dict[str, dict[str, Any]]) -> list[str]:
        u = context.get("user", {})
        keys = [f"device={u.get('device')}", f"country={u.get('country')}",
                f"age={u.get('age')}"]
        keys += [f"interest={i}" for i in u.get("interests", [])]
        return [k for k in keys if k in self.affinity]

    def click_probability(self, context: dict[str, dict[str, Any]], offer: SimOffer) -> float:
        c = CATEGORIES.index(offer.category)
        score = self.bias + offer.effect
        score += self.strength * sum(float(self.affinity[k][c]) for k in self._user_keys(context))
        return _sigmoid(score)

    def probabilities(self, context: dict[str, dict[str, Any]],
                      offers: Sequence[SimOffer]) -> np.ndarray:
        return np.array([self.click_probability(context, o) for o in offers])

    def by_id(self, offer_id: str) -> SimOffer:
        return self.offers[int(offer_id.rsplit("-", 1)[1])]

    def add_offer(self, category: str, effect: float, brand: str = "brand-new",
                  payout: float = 10.0, conversion: float = 0.3) -> SimOffer:
        """A new offer arriving mid-run (its id has never been seen)."""
        offer = SimOffer(f"offer-{len(self.offers):03d}", category, brand, payout, effect,
                         conversion)
        object.__setattr__(self, "offers", (*self.offers, offer))
        return offer


@dataclass
class Tally:
    """Running totals for a stretch of simulated traffic (expected values, not draws)."""

    n: int = 0
    clicks: int = 0
    expected: float = 0.0   # Σ true click probability of the shown offer
    random: float = 0.0     # Σ mean click probability over the eligible offers
    best: float = 0.0       # Σ best click probability among the eligible offers

    def add(self, shown_p: float, all_p: np.ndarray, clicked: bool) -> None:
        self.n += 1
        self.clicks += int(clicked)
        self.expected += float(shown_p)
        self.random += float(all_p.mean())
        self.best += float(all_p.max())

    def ctr(self) -> float:
        return self.expected / self.n if self.n else 0.0

    def as_dict(self) -> dict[str, float]:
        n = max(self.n, 1)
        return {"requests": self.n, "clicks": self.clicks, "ctr": self.expected / n,
                "observed_ctr": self.clicks / n, "random_ctr": self.random / n,
                "best_ctr": self.best / n}

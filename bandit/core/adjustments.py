"""Adjustments: changes to a slot's distribution made *before* the draw, so they are
part of the logged probabilities and replay stays unbiased.

Each is a callable ``(pmf, slot) -> pmf`` over ``slot.offers`` (see
:class:`bandit.core.pmfs.Slot`); :func:`bandit.core.policy.adjustments_for` picks those that
apply to a decision.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from bandit.core.features import Namespaces
from bandit.core.offerstats import OfferStats
from bandit.core.pmfs import Slot, normalise


class Adjustment(Protocol):
    def __call__(self, pmf: list[float], slot: Slot) -> list[float]: ...


def category_of(features: Namespaces, name: str) -> str | None:
    prefix = name + "="
    for feats in features.values():
        for key in feats:
            if key.startswith(prefix):
                return key[len(prefix):]
    return None


EXPOSED_EVIDENCE = 10  # impressions before an offer's exposure is trusted
EXPOSED_MARGIN = 2.0   # exposure this many times the floor: no floor needed


@dataclass(frozen=True, slots=True)
class NewOfferFloor:
    """Every new offer (fewer than ``impressions`` impressions) gets at least ``floor``
    probability, when some offers are known (all new: nothing to favour them over);
    one the policy already gives more keeps what it has.

    The floor is a minimum exposure, so it is not imposed on a new offer that already
    gets far more: one with at least ``EXPOSED_EVIDENCE`` impressions whose mean
    probability of being shown when eligible (:meth:`OfferStats.exposure`) is at
    least ``EXPOSED_MARGIN`` times the floor. An offer the policy stops showing falls
    back under the bar and gets the floor again until it has ``impressions``."""

    impressions: int
    floor: float
    stats: OfferStats

    def is_new(self, offer_id: str) -> bool:
        seen = self.stats.impressions(offer_id)
        if seen >= self.impressions:
            return False
        return not (seen >= EXPOSED_EVIDENCE
                    and self.stats.exposure(offer_id) >= EXPOSED_MARGIN * self.floor)

    def __call__(self, pmf: list[float], slot: Slot) -> list[float]:
        new = [self.is_new(o.id) for o in slot.offers]
        m = sum(new)
        if m == 0 or m == len(new):
            return pmf
        return lift_to_floor(pmf, new, min(self.floor, 0.5 / m))


def lift_to_floor(pmf: list[float], lift: list[bool], floor: float) -> list[float]:
    """``pmf`` with every ``lift`` entry at least ``floor``: those below it are raised
    to it and the others scaled down in proportion (again while that takes another
    below it). Entries already at or above the floor keep their relative weights."""
    fixed = [False] * len(pmf)
    while True:
        rest = sum(p for p, fx in zip(pmf, fixed, strict=True) if not fx)
        scale = (1.0 - floor * sum(fixed)) / rest if rest > 0 else 0.0
        out = [floor if fx else p * scale for p, fx in zip(pmf, fixed, strict=True)]
        below = [i for i, (q, up, fx) in enumerate(zip(out, lift, fixed, strict=True))
                 if up and not fx and q < floor]
        if not below:
            return out
        for i in below:
            fixed[i] = True


@dataclass(frozen=True, slots=True)
class SafeDelta:
    """Safe exploration: the exploration mass stays only on offers whose de-biased
    value estimate is within δ of the best offer's (the greedy choice is always kept),
    so clearly bad offers are never explored."""

    delta: float
    stats: OfferStats

    def __call__(self, pmf: list[float], slot: Slot) -> list[float]:
        best = max(range(len(pmf)), key=pmf.__getitem__)
        mean = self.stats.global_mean()
        values = [self.stats.value(o.id, mean) for o in slot.offers]
        bar = max(values) - self.delta
        w = [p if (values[j] >= bar or j == best) else 0.0 for j, p in enumerate(pmf)]
        return normalise(w)


@dataclass(frozen=True, slots=True)
class Diversity:
    """Multiplicative maximal-marginal-relevance for slots 2-3: an offer whose category
    is already shown keeps (1 - λ) of its probability (none at λ = 1, unless every
    remaining offer shares a shown category)."""

    lam: float
    feature: str

    def __call__(self, pmf: list[float], slot: Slot) -> list[float]:
        if slot.k == 0:
            return pmf
        offers, name = slot.request.offers, self.feature
        shown = {category_of(offers[i].features, name) for i in slot.shown}
        w = [p * (1 - self.lam) if (c := category_of(o.features, name)) is not None
             and c in shown else p for p, o in zip(pmf, slot.offers, strict=True)]
        return normalise(w) if sum(w) > 0 else pmf

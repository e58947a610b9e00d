"""Pmf providers: where a slot's probability distribution over its eligible offers
comes from, before any adjustment (:mod:`bandit.core.adjustments`) and the draw.

A provider sees one :class:`Slot` at a time and returns a distribution aligned with
``slot.offers``. The providers: :class:`ModelPmf` (a learned model, through a
:class:`Scorer`: VW's or LightGBM's), :class:`PopularityPmf` (the offers' de-biased
mean rewards, epsilon-greedy), :class:`UniformPmf`, :class:`FixedPmf` (the client's
order, with certainty) and :class:`ApprenticePmf` (the client's baseline, with
certainty, while measuring how often the model would have agreed).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from bandit.core.features import Namespaces
from bandit.core.offerstats import OfferStats
from bandit.core.slots import slot_context
from bandit.core.types import DecideRequest, Offer
from bandit.core.vw_adapter import VWModel


@dataclass(slots=True)
class Slot:
    """What a provider or an adjustment sees of one slot. ``offers`` are the offers
    this slot may show, in request order, at positions ``indices`` of
    ``request.offers``; ``shown`` holds the positions shown in the slots above."""

    request: DecideRequest
    k: int  # 0-based
    offers: Sequence[Offer]
    indices: list[int]
    shown: list[int]

    @property
    def context(self) -> Namespaces:
        """The slot's shared features (:func:`bandit.core.slots.slot_context`)."""
        return slot_context(self.request.context, self.k + 1)


def normalise(w: list[float]) -> list[float]:
    """A distribution from the model's scores: ``w`` scaled to sum to 1, negative
    entries counting 0 (VW's SquareCB with ``--elim`` can return some, e.g. ``[-8, 1,
    1, …]`` from a fresh model; drawing from such a list would not draw with the
    probabilities it logs); uniform when there is no mass, or NaN."""
    if min(w) < 0:
        w = [x if x > 0 else 0.0 for x in w]
    total = sum(w)
    if total <= 0 or total != total:
        return [1.0 / len(w)] * len(w)
    return [x / total for x in w]


def epsilon_greedy(pmf: list[float], epsilon: float) -> list[float]:
    """The model's best offer with probability 1 - ε, any offer uniformly with ε (the
    1 - ε shared among offers tied for best, as VW's ``--epsilon`` does)."""
    top = max(pmf)
    best = [p == top for p in pmf]
    share, lead = epsilon / len(pmf), (1.0 - epsilon) / sum(best)
    return [share + (lead if b else 0.0) for b in best]


class Scorer(Protocol):
    """A learned model as the providers use it."""

    def pmf(self, context: Namespaces, offers: Sequence[Offer], slot: int) -> list[float]:
        """The model's distribution over ``offers`` for 0-based ``slot`` (``context`` is
        the slot's, see :attr:`Slot.context`)."""

    def contributions(self, request: DecideRequest, slot: int, offer: Offer,
                      top: int) -> list[dict[str, object]]:
        """The largest terms of ``offer``'s predicted reward in 0-based ``slot``."""


class VWScorer:
    """A VW model's exploration policy."""

    __slots__ = ("model",)

    def __init__(self, model: VWModel) -> None:
        self.model = model

    def pmf(self, context: Namespaces, offers: Sequence[Offer], slot: int) -> list[float]:
        return self.model.predict(context, [o.line for o in offers])

    def contributions(self, request: DecideRequest, slot: int, offer: Offer,
                      top: int) -> list[dict[str, object]]:
        """Crossings included (see :mod:`bandit.core.explain`), on the values as the model
        sees them (standardised), with the slot's context."""
        from bandit.core.explain import contributions

        model = self.model
        context = model.standardized(slot_context(request.context, slot + 1))
        return contributions(model, context, model.standardized(offer.features), top)


class PmfProvider:
    """A slot's distribution before adjustments. ``adjustable``: the exploration
    adjustments apply, and with ``explore=false`` the best offer is taken greedily
    (otherwise the distribution is always sampled: a baseline is logged as it is)."""

    adjustable = False
    path = ""  # what the decision reports as its ``path``

    def pmf(self, slot: Slot) -> list[float]:
        raise NotImplementedError

    def report(self, request: DecideRequest, info: dict[str, object]) -> None:
        """Add what this provider measured to the decision's ``info``."""


class ModelPmf(PmfProvider):
    """The model's distribution, normalised; epsilon-greedy around its best offer when
    the request sets an exploration rate (the live ``explorationPercentage``)."""

    def __init__(self, scorer: Scorer, path: str = "model", adjustable: bool = True) -> None:
        self.scorer = scorer
        self.path = path
        self.adjustable = adjustable

    def pmf(self, slot: Slot) -> list[float]:
        pmf = normalise(self.scorer.pmf(slot.context, slot.offers, slot.k))
        exploration = slot.request.exploration
        return pmf if exploration is None else epsilon_greedy(pmf, exploration)


class PopularityPmf(PmfProvider):
    """The offer with the best de-biased mean reward with probability 1 - ε (the cold
    start fallback while the model is young, and a baseline arm)."""

    adjustable = True
    path = "popularity"

    def __init__(self, stats: OfferStats, epsilon: float) -> None:
        self.stats = stats
        self.mean = stats.global_mean()
        self.epsilon = epsilon

    def pmf(self, slot: Slot) -> list[float]:
        vals = [self.stats.value(o.id, self.mean) for o in slot.offers]
        best = vals.index(max(vals))
        eps = self.epsilon
        pmf = [eps / len(vals)] * len(vals)
        pmf[best] += 1 - eps
        return pmf


class UniformPmf(PmfProvider):
    path = "uniform"

    def pmf(self, slot: Slot) -> list[float]:
        n = len(slot.indices)
        return [1.0 / n] * n


def _one_hot(n: int, j: int) -> list[float]:
    pmf = [0.0] * n
    pmf[j] = 1.0
    return pmf


class FixedPmf(PmfProvider):
    """The client's order, with certainty (logging only, the holdout)."""

    path = "fixed"

    def pmf(self, slot: Slot) -> list[float]:
        return _one_hot(len(slot.indices), 0)


class ApprenticePmf(PmfProvider):
    """The client's baseline offer with certainty; reports whether the model's greedy
    choice agreed, for slot 1 (``agree``) and per slot (``agree_slots``)."""

    path = "apprentice"

    def __init__(self, scorer: Scorer) -> None:
        self.scorer = scorer
        self.agree: list[bool] = []

    def pmf(self, slot: Slot) -> list[float]:
        choice = default_index(slot.request, slot.indices, slot.k)
        model_pmf = self.scorer.pmf(slot.context, slot.offers, slot.k)
        self.agree.append(model_pmf.index(max(model_pmf)) == choice)
        return _one_hot(len(slot.indices), choice)

    def report(self, request: DecideRequest, info: dict[str, object]) -> None:
        if self.agree:  # slot 1 was decided
            info["agree"] = self.agree[0]
            if request.slots > 1:
                info["agree_slots"] = self.agree


def default_index(request: DecideRequest, remaining: list[int], slot: int = 0) -> int:
    """Position in ``remaining`` of the client's baseline offer for 0-based ``slot``
    (``slot_defaults``, or ``default_id`` for slot 1); the first remaining offer when
    there is none or it is not available to the slot (excluded, or shown above)."""
    defaults = request.slot_defaults
    wanted = defaults[slot] if slot < len(defaults) else None
    if wanted is None and slot == 0:
        wanted = request.default_id
    if wanted is not None:
        for j, i in enumerate(remaining):
            if request.offers[i].id == wanted:
                return j
    return 0

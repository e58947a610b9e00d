"""Policies: ``decide(request) -> Decision``, always with probabilities.

:class:`VWPolicy` asks the VW model for a probability mass function over the
eligible offers and samples from it. Sampling uses a generator seeded by the
event id, so a decision can be reproduced from its log.

Slots (a conditional contextual bandit built on the CB model): slot 1 is drawn
from the model's pmf over the eligible offers; slot *k* ≥ 2 from a second prediction
over the offers not yet shown, with the slot position as a shared feature
(namespace ``cslot``), so position effects are learned. The learner learns each
shown slot the same way. Each slot's logged probability is the conditional
probability with which its offer was drawn. With ``explore=false`` offers are taken
greedily and the logged probability of each shown offer is 1.

A decision is composed of strategies: a pmf provider (:mod:`bandit.core.pmfs`: the model,
popularity, uniform, fixed, apprentice; LightGBM's model in
:mod:`bandit.core.lgbm_policy`) gives each slot's distribution and adjustments
(:mod:`bandit.core.adjustments`: the new-offer floor, safe δ, diversity) change it, all
*before* sampling, so they are part of the distribution that is logged and replay
stays unbiased. :func:`strategy` picks them from the serving mode and the options;
:func:`rank` draws the slots. Offers removed by constraints (exclusions, frequency
and budget caps) never enter the distribution.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from bandit.core.adjustments import Adjustment, Diversity, NewOfferFloor, SafeDelta, category_of
from bandit.core.draws import EventDraws, Uniform, event_rng
from bandit.core.draws import draw as _draw
from bandit.core.offerstats import OfferStats
from bandit.core.pmfs import (
    ApprenticePmf,
    FixedPmf,
    ModelPmf,
    PmfProvider,
    PopularityPmf,
    Scorer,
    Slot,
    UniformPmf,
    VWScorer,
)
from bandit.core.pmfs import epsilon_greedy as _epsilon_greedy
from bandit.core.pmfs import normalise as _normalise
from bandit.core.policy_spec import PolicySpec
from bandit.core.slots import SLOT_NAMESPACE, slot_split
from bandit.core.types import DecideRequest, Decision
from bandit.core.vw_adapter import VWModel

# what other modules import from here (the slot namespace, the draws, the pmf helpers)
__all__ = ["SLOT_NAMESPACE", "EventDraws", "Policy", "RankingOptions", "Serving",
           "VWPolicy", "_draw", "_epsilon_greedy", "_normalise", "adjustments_for",
           "category_of", "compose", "event_rng", "rank", "strategy"]


@dataclass(frozen=True)
class RankingOptions:
    """Cold start and diversity settings (see :class:`bandit.config.settings.Settings`)."""

    warmup_events: int = 0           # popularity fallback until the model learned this many
    popularity_epsilon: float = 0.2  # exploration of the popularity fallback
    new_offer_impressions: int = 100  # an offer is new until it has this many impressions
    new_offer_floor: float = 0.02    # minimum probability of each new offer per slot
    diversity: float = 0.0           # λ: 0 = off, 1 = never repeat a category in slots 2-3
    diversity_feature: str = "category"
    safe_delta: float = 0.0          # explore only offers within δ of the best (0 = off)


S = TypeVar("S", bound=Scorer)


@dataclass(frozen=True, slots=True)
class Serving(Generic[S]):
    """What a policy serves at one moment, replaced as a whole (one reference read per
    decision: a swap mid-request cannot mix models)."""

    scorer: S
    version: str
    stats: OfferStats | None = None  # the offers' de-biased rewards (from the checkpoint)
    events_learned: int = 0


class Policy(Protocol):
    """What the service serves: ``decide(request, mode) -> Decision``, always with
    probabilities (``mode`` as in :func:`strategy`)."""

    spec: PolicySpec
    name: str

    @property
    def version(self) -> str: ...

    @property
    def model(self) -> VWModel | None:
        """The VW model served (None: not a VW policy), which may learn at once."""

    def decide(self, request: DecideRequest, mode: str = "model") -> Decision: ...

    def swap(self, model: VWModel, version: str, stats: OfferStats | None = None,
             events_learned: int = 0) -> None: ...

    def close(self) -> None: ...


_BASELINES: dict[str, PmfProvider] = {"uniform": UniformPmf(), "fixed": FixedPmf()}


def strategy(mode: str, serving: Serving[S], options: RankingOptions,
             request: DecideRequest) -> tuple[PmfProvider, list[Adjustment]]:
    """The pmf provider and the adjustments of a decision in ``mode``: ``model`` (the
    learned policy, or popularity while it has learned fewer than ``warmup_events``),
    ``popularity``, ``uniform``, ``fixed`` (the client's order, probability 1) or
    ``apprentice`` (the client's default offer first, probability 1; the model's
    agreement is reported). Another name serves the model's distribution as it is."""
    stats = serving.stats
    provider: PmfProvider
    if mode == "model":
        if stats is not None and serving.events_learned < options.warmup_events:
            provider = PopularityPmf(stats, options.popularity_epsilon)
        else:
            provider = ModelPmf(serving.scorer)
    elif mode == "popularity":
        stats = stats if stats is not None else OfferStats()
        provider = PopularityPmf(stats, options.popularity_epsilon)
    elif mode == "apprentice":
        provider = ApprenticePmf(serving.scorer)
    else:
        provider = _BASELINES.get(mode) or ModelPmf(serving.scorer, mode, adjustable=False)
    return provider, adjustments_for(options, stats, request.explore, provider.adjustable)


def adjustments_for(options: RankingOptions, stats: OfferStats | None, explore: bool,
                    adjustable: bool) -> list[Adjustment]:
    """The floor and safe δ change exploring decisions only (they need the offers'
    statistics); diversity changes every decision of an adjustable provider."""
    out: list[Adjustment] = []
    if not adjustable:
        return out
    if explore and stats is not None:
        if options.new_offer_floor > 0:
            out.append(NewOfferFloor(options.new_offer_impressions, options.new_offer_floor,
                                     stats))
        if options.safe_delta > 0:
            out.append(SafeDelta(options.safe_delta, stats))
    if options.diversity > 0:
        out.append(Diversity(options.diversity, options.diversity_feature))
    return out


def compose(request: DecideRequest, mode: str, serving: Serving[S], options: RankingOptions,
            seed: int, name: str) -> Decision:
    """The one decide: the strategy of ``mode``, the slots drawn with the event's
    draws, what the provider measured and the explanation added to ``info``."""
    provider, adjustments = strategy(mode, serving, options, request)
    order, probs, shown, explored = rank(request, provider, adjustments,
                                         event_rng(request.event_id, seed))
    info: dict[str, object] = {"path": provider.path}
    provider.report(request, info)
    if request.explain:
        info["explain"] = explain(serving.scorer, request, order, probs)
    return Decision(request.event_id, tuple(order), tuple(probs), shown, serving.version,
                    name, explored, info)


def rank(request: DecideRequest, provider: PmfProvider, adjustments: list[Adjustment],
         rng: Uniform) -> tuple[list[int], list[float], int, bool]:
    """Draw the slots one by one: (the ranking, its probabilities, the number of slots
    shown, whether slot 1 was explored). Each slot's pmf is the provider's, adjusted,
    over the offers it may show; with ``explore=false`` an adjustable provider's best
    offer is taken with probability 1."""
    offers = request.offers
    n = len(offers)
    sample = request.explore or not provider.adjustable  # else greedy, with probability 1
    remaining = list(range(n))
    order: list[int] = []
    probs: list[float] = []
    first: dict[int, float] = {}  # slot-1 probability of each offer it could show
    whole_first = True  # every offer could be shown in slot 1 (none was excluded)
    explored = False
    slot_exclude = request.slot_exclude
    for k in range(min(request.slots, n)):
        excluded = slot_exclude[k] if k < len(slot_exclude) else None
        allowed, blocked = slot_split(remaining, excluded, lambda i: offers[i].id)
        if not allowed:
            break  # nothing this slot may show: it stays empty
        remaining = allowed
        if k == 0:
            whole_first = not blocked
        eligible = offers if k == 0 and whole_first else [offers[i] for i in remaining]
        slot = Slot(request, k, eligible, remaining, order)
        pmf = provider.pmf(slot)
        for adjust in adjustments:
            pmf = adjust(pmf, slot)
        j, p = _draw(pmf, sample, rng)
        if k == 0:
            first = dict(zip(remaining, pmf, strict=True))
            explored = request.explore and j != pmf.index(max(pmf))
        chosen = remaining.pop(j)
        if blocked:
            remaining += blocked
        order.append(chosen)
        probs.append(p)
    shown = len(order)
    _follow(order, probs, remaining, first, whole_first, request.explore)
    return order, probs, shown, explored


def _follow(order: list[int], probs: list[float], remaining: list[int],
            first: dict[int, float], whole_first: bool, explore: bool) -> None:
    """The offers not shown follow by their slot-1 probability (ties in their order);
    an offer slot 1 could not show has probability 0."""
    if whole_first and first:  # each of them had one
        tail = sorted(remaining, key=first.__getitem__, reverse=True)
        rest = first
    else:
        rest = {i: first.get(i, 0.0) for i in remaining}
        tail = sorted(remaining, key=rest.__getitem__, reverse=True)
    order += tail
    probs += map(rest.__getitem__, tail) if explore else [0.0] * len(tail)


def explain(scorer: Scorer, request: DecideRequest, order: list[int], probs: list[float],
            top: int = 5) -> list[dict[str, object]]:
    """Per shown offer: its probability and the largest terms of its predicted reward
    in its slot (see :meth:`bandit.core.pmfs.Scorer.contributions`)."""
    out = []
    for pos in range(min(request.slots, len(order))):
        offer = request.offers[order[pos]]
        out.append({"id": offer.id, "probability": probs[pos],
                    "contributions": scorer.contributions(request, pos, offer, top)})
    return out


class VWPolicy:
    """A VW contextual-bandit policy whose model can be swapped while serving."""

    # what the strategies see of the served model; a subclass may watch or change it
    scorer_type: type[VWScorer] = VWScorer

    def __init__(self, spec: PolicySpec, model: VWModel, version: str = "0",
                 seed: int = 0, options: RankingOptions | None = None,
                 stats: OfferStats | None = None, events_learned: int = 0) -> None:
        self.spec = spec
        self.name = str(spec)
        self.seed = seed
        self.options = options or RankingOptions()
        self._current = Serving(self.scorer_type(model), version, stats, events_learned)
        self._retired: list[VWModel] = []
        self._swap_lock = threading.Lock()

    @classmethod
    def fresh(cls, spec: PolicySpec, seed: int = 0,
              options: RankingOptions | None = None) -> VWPolicy:
        return cls(spec, VWModel(spec.vw_args(seed)), "0", seed, options)

    @property
    def version(self) -> str:
        return self._current.version

    @property
    def model(self) -> VWModel:
        return self._current.scorer.model

    def decide(self, request: DecideRequest, mode: str = "model") -> Decision:
        """A decision in serving ``mode`` (see :func:`strategy`)."""
        return compose(request, mode, self._current, self.options, self.seed, self.name)

    def swap(self, model: VWModel, version: str, stats: OfferStats | None = None,
             events_learned: int = 0) -> None:
        """Serve ``model`` from now on. The previous model is closed one swap later,
        when no request can still be using it."""
        with self._swap_lock:
            old = self._current.scorer.model
            self._current = Serving(self.scorer_type(model), version, stats, events_learned)
            for retired in self._retired:
                retired.close()
            self._retired = [old]

    def close(self) -> None:
        with self._swap_lock:
            for m in [*self._retired, self._current.scorer.model]:
                m.close()
            self._retired = []

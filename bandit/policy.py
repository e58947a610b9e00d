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

Every adjustment happens *before* sampling and is part of the distribution that is
logged, so replay stays unbiased: the exploration floor for new offers, the
popularity fallback while the model is young, and the diversity penalty for slots
2-3. Offers removed by constraints (exclusions, frequency and budget caps) never
enter the distribution.
"""

from __future__ import annotations

import hashlib
import threading
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate

from bandit.features import Namespaces
from bandit.offerstats import OfferStats
from bandit.policy_spec import PolicySpec
from bandit.types import DecideRequest, Decision, Offer
from bandit.vw_adapter import VWModel

SLOT_NAMESPACE = "cslot"


@dataclass(frozen=True)
class RankingOptions:
    """Cold start and diversity settings (see :class:`bandit.settings.Settings`)."""

    warmup_events: int = 0           # popularity fallback until the model learned this many
    popularity_epsilon: float = 0.2  # exploration of the popularity fallback
    new_offer_impressions: int = 100  # an offer is new until it has this many impressions
    new_offer_floor: float = 0.02    # minimum probability of each new offer per slot
    diversity: float = 0.0           # λ: 0 = off, 1 = never repeat a category in slots 2-3
    diversity_feature: str = "category"
    safe_delta: float = 0.0          # explore only offers within δ of the best (0 = off)


def category_of(features: Namespaces, name: str) -> str | None:
    prefix = name + "="
    for feats in features.values():
        for key in feats:
            if key.startswith(prefix):
                return key[len(prefix):]
    return None


def _normalise(w: list[float]) -> list[float]:
    """A distribution from the model's scores: negative entries count 0 (VW's SquareCB
    with ``--elim`` can return some, e.g. ``[-8, 1, 1, …]`` from a fresh model; drawing
    from such a list would not draw with the probabilities it logs)."""
    if min(w) < 0:
        w = [x if x > 0 else 0.0 for x in w]
    total = sum(w)
    if total <= 0 or total != total:
        return [1.0 / len(w)] * len(w)
    return [x / total for x in w]


def _epsilon_greedy(pmf: list[float], epsilon: float) -> list[float]:
    """The model's best offer with probability 1 - ε, any offer uniformly with ε (the
    1 - ε shared among offers tied for best, as VW's ``--epsilon`` does)."""
    top = max(pmf)
    best = [p == top for p in pmf]
    share, lead = epsilon / len(pmf), (1.0 - epsilon) / sum(best)
    return [share + (lead if b else 0.0) for b in best]


def _draw(pmf: list[float], explore: bool, rng: EventDraws) -> tuple[int, float]:
    """Index drawn from ``pmf`` and its probability (greedy with probability 1 when
    not exploring)."""
    if not explore:
        return pmf.index(max(pmf)), 1.0
    i = bisect_right(list(accumulate(pmf)), rng.random())  # the first i with u < Σ p[:i+1]
    if i < len(pmf):
        return i, pmf[i]
    last = max(i for i, p in enumerate(pmf) if p > 0)  # u beyond a sum rounded below 1
    return last, pmf[last]


class EventDraws:
    """The uniform draws of one decision, fixed by its event id and the seed: draw *k*
    is 53 bits of ``blake2b(event id, key=seed, salt=k // 4)`` (four draws per digest),
    so a decision can be reproduced from its log. Nothing is hashed until the first
    draw: greedy decisions cost nothing. Cheaper than seeding a Mersenne Twister per
    decision (~1 µs against ~5 µs)."""

    __slots__ = ("_event", "_key", "_buf", "_next")

    def __init__(self, event_id: str, seed: int) -> None:
        self._event = event_id
        self._key = seed.to_bytes(8, "little")
        self._buf = b""
        self._next = 0

    def random(self) -> float:
        """The next draw, uniform on [0, 1)."""
        k = self._next
        self._next = k + 1
        i = (k % 4) * 8
        if i == 0:
            self._buf = hashlib.blake2b(self._event.encode("utf-8"), digest_size=32,
                                        key=self._key, salt=(k // 4).to_bytes(16, "little")
                                        ).digest()
        return (int.from_bytes(self._buf[i:i + 8], "little") >> 11) * _TO_UNIT


_TO_UNIT = 2.0 ** -53


def event_rng(event_id: str, seed: int) -> EventDraws:
    """The draws of one decision (see :class:`EventDraws`)."""
    return EventDraws(event_id, seed)


@dataclass
class _Current:
    model: VWModel
    version: str
    stats: OfferStats | None = None
    events_learned: int = 0


class VWPolicy:
    """A VW contextual-bandit policy whose model can be swapped while serving."""

    def __init__(self, spec: PolicySpec, model: VWModel, version: str = "0",
                 seed: int = 0, options: RankingOptions | None = None,
                 stats: OfferStats | None = None, events_learned: int = 0) -> None:
        self.spec = spec
        self.name = str(spec)
        self.seed = seed
        self.options = options or RankingOptions()
        self._current = _Current(model, version, stats, events_learned)
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
        return self._current.model

    def decide(self, request: DecideRequest, mode: str = "model") -> Decision:
        """``mode``: ``model`` (the learned policy), ``popularity``, ``uniform``,
        ``fixed`` (the client's order, probability 1) or ``apprentice`` (the client's
        default offer first, probability 1; the model's agreement is reported)."""
        current = self._current  # one read: a swap mid-request cannot mix models
        opts, stats = self.options, current.stats
        offers = request.offers
        n = len(offers)
        popularity = mode == "popularity" or (
            mode == "model" and stats is not None and current.events_learned < opts.warmup_events)
        if mode == "popularity" and stats is None:
            stats = OfferStats()
        adjustable = mode == "model" or mode == "popularity"
        sample = request.explore or not adjustable  # else greedy, with probability 1
        adjusted = adjustable and request.explore and stats is not None
        floor = adjusted and opts.new_offer_floor > 0
        safe = adjusted and opts.safe_delta > 0
        diversify = adjustable and opts.diversity > 0
        agree: bool | None = None
        agree_slots: list[bool] = []  # apprentice: the model's greedy choice is the baseline
        mean = stats.global_mean() if stats is not None else 0.0
        rng = event_rng(request.event_id, self.seed)
        remaining = list(range(n))
        order: list[int] = []
        probs: list[float] = []
        first: dict[int, float] = {}  # slot-1 probability of each offer it could show
        whole_first = True  # every offer could be shown in slot 1 (none was excluded)
        explored = False
        categories: set[str | None] = set()
        slot_exclude = request.slot_exclude
        for k in range(min(request.slots, n)):
            excluded = slot_exclude[k] if k < len(slot_exclude) else None
            blocked: list[int] = []
            if excluded:
                allowed = [i for i in remaining if offers[i].id not in excluded]
                if not allowed:
                    break  # nothing this slot may show: it stays empty
                blocked = [i for i in remaining if offers[i].id in excluded]
                remaining = allowed
                if k == 0:
                    whole_first = not blocked
            eligible = offers if k == 0 and whole_first else [offers[i] for i in remaining]
            if mode == "fixed" or mode == "apprentice":
                first_choice = 0
                if mode == "apprentice":
                    first_choice = self._default_index(request, remaining, k)
                    context = request.context if k == 0 else \
                        {**request.context, SLOT_NAMESPACE: {f"k={k + 1}": 1.0}}
                    model_pmf = self._pmf(current, context, eligible, k)
                    agreed = model_pmf.index(max(model_pmf)) == first_choice
                    agree_slots.append(agreed)
                    if k == 0:
                        agree = agreed
                pmf = [0.0] * len(remaining)
                pmf[first_choice] = 1.0
            elif mode == "uniform":
                pmf = [1.0 / len(remaining)] * len(remaining)
            elif popularity:
                assert stats is not None
                vals = [stats.value(o.id, mean) for o in eligible]
                best = vals.index(max(vals))
                eps = opts.popularity_epsilon
                pmf = [eps / len(vals)] * len(vals)
                pmf[best] += 1 - eps
            else:
                context = request.context if k == 0 else \
                    {**request.context, SLOT_NAMESPACE: {f"k={k + 1}": 1.0}}
                pmf = _normalise(self._pmf(current, context, eligible, k))
                if request.exploration is not None:
                    pmf = _epsilon_greedy(pmf, request.exploration)
            if floor:
                assert stats is not None
                pmf = self._floor(pmf, [o.id for o in eligible], stats)
            if safe:
                assert stats is not None
                pmf = self._safe(pmf, [o.id for o in eligible], stats, mean)
            if diversify and k > 0:
                pmf = self._diversify(pmf, [o.features for o in eligible], categories)
            j, p = _draw(pmf, sample, rng)
            if k == 0:
                first = dict(zip(remaining, pmf, strict=True))
                explored = request.explore and j != pmf.index(max(pmf))
            chosen = remaining.pop(j)
            if blocked:
                remaining += blocked
            order.append(chosen)
            probs.append(p)
            if diversify:
                categories.add(category_of(offers[chosen].features, opts.diversity_feature))
        shown_slots = len(order)
        # the offers not shown follow by their slot-1 probability (ties in their order)
        if whole_first and first:  # each of them had one
            tail = sorted(remaining, key=first.__getitem__, reverse=True)
            rest = first
        else:
            rest = {i: first.get(i, 0.0) for i in remaining}
            tail = sorted(remaining, key=rest.__getitem__, reverse=True)
        order += tail
        probs += map(rest.__getitem__, tail) if request.explore else [0.0] * len(tail)
        info: dict[str, object] = {"path": "popularity" if popularity else
                                   ("model" if mode == "model" else mode)}
        if agree is not None:
            info["agree"] = agree
            if request.slots > 1:
                info["agree_slots"] = agree_slots
        if request.explain:
            info["explain"] = self._explain(current.model, request, order, probs)
        return Decision(request.event_id, tuple(order), tuple(probs), shown_slots,
                        current.version, self.name, explored, info)

    def _pmf(self, current: _Current, context: Namespaces, offers: Sequence[Offer],
             slot: int) -> list[float]:
        """The model's distribution over ``offers`` for 0-based ``slot``."""
        return current.model.predict(context, [o.line for o in offers])

    @staticmethod
    def _default_index(request: DecideRequest, remaining: list[int], slot: int = 0) -> int:
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

    def _safe(self, pmf: list[float], ids: list[str], stats: OfferStats,
              mean: float) -> list[float]:
        """Safe exploration: keep the exploration mass only on offers whose de-biased
        value estimate is within δ of the best offer's (the policy's greedy choice is
        always kept), so clearly bad offers are never explored."""
        best = max(range(len(pmf)), key=pmf.__getitem__)
        values = [stats.value(i, mean) for i in ids]
        bar = max(values) - self.options.safe_delta
        w = [p if (values[j] >= bar or j == best) else 0.0 for j, p in enumerate(pmf)]
        return _normalise(w)

    def _floor(self, pmf: list[float], ids: list[str], stats: OfferStats) -> list[float]:
        """Give every new offer at least the floor probability (when some are known)."""
        n_min = self.options.new_offer_impressions
        new = [stats.impressions(i) < n_min for i in ids]
        m = sum(new)
        if m == 0 or m == len(ids):
            return pmf
        f = min(self.options.new_offer_floor, 0.5 / m)
        return [(1 - m * f) * p + (f if is_new else 0.0) for p, is_new in zip(pmf, new,
                                                                            strict=True)]

    def _diversify(self, pmf: list[float], features: list[Namespaces],
                   shown: set[str | None]) -> list[float]:
        """Multiplicative maximal-marginal-relevance: an offer whose category is
        already shown keeps (1 - λ) of its probability (none at λ = 1, unless every
        remaining offer shares a shown category)."""
        lam = self.options.diversity
        name = self.options.diversity_feature
        w = [p * (1 - lam) if (c := category_of(f, name)) is not None and c in shown else p
             for p, f in zip(pmf, features, strict=True)]
        return _normalise(w) if sum(w) > 0 else pmf

    def _explain(self, model: VWModel, request: DecideRequest, order: list[int],
                 probs: list[float], top: int = 5) -> list[dict[str, object]]:
        """Per shown offer: its probability and the largest terms of its predicted
        reward, crossings included (see :mod:`bandit.explain`), with the slot's
        context (slot *k* ≥ 2 carries its slot feature)."""
        from bandit.explain import contributions

        out = []
        for pos in range(min(request.slots, len(order))):
            offer = request.offers[order[pos]]
            context = model.standardized(request.context if pos == 0 else {
                **request.context, SLOT_NAMESPACE: {f"k={pos + 1}": 1.0}})  # as the model sees
            out.append({"id": offer.id, "probability": probs[pos],
                        "contributions": contributions(model, context,
                                                      model.standardized(offer.features), top)})
        return out

    def swap(self, model: VWModel, version: str, stats: OfferStats | None = None,
             events_learned: int = 0) -> None:
        """Serve ``model`` from now on. The previous model is closed one swap later,
        when no request can still be using it."""
        with self._swap_lock:
            old = self._current.model
            self._current = _Current(model, version, stats, events_learned)
            for retired in self._retired:
                retired.close()
            self._retired = [old]

    def close(self) -> None:
        with self._swap_lock:
            for m in [*self._retired, self._current.model]:
                m.close()
            self._retired = []

"""A seeded simulator loop for the value-aware tests: requests from
:class:`bandit.demo.simulator.World`, decisions by a :class:`ValuePolicy`, clicks and
conversions drawn from the world's true probabilities, every head learning each
decision at its logged probability."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from bandit.core.features import ID_NAMESPACE, OFFER_PREFIX, Limits, encode, merge, offer_id_feature
from bandit.core.types import DecideRequest, Offer
from bandit.core.vw_adapter import action_line
from bandit.demo.simulator import SimOffer, World
from bandit.value.heads import Adjust, ValuePolicy

LIMITS = Limits()


def encode_offer(o: SimOffer) -> Offer:
    ns = merge({ID_NAMESPACE: {offer_id_feature(o.id): 1.0}},
               encode(o.features(), OFFER_PREFIX, "offers", LIMITS))
    return Offer(o.id, ns, action_line(ns))


def encode_context(ctx: dict) -> dict[str, dict[str, float]]:
    return encode(ctx, "c", "context", LIMITS)


def true_value(world: World, ctx: dict, o: SimOffer) -> float:
    """P(click) × P(convert | click) × payout: the expected value of showing ``o``."""
    return world.click_probability(ctx, o) * o.conversion * o.payout


@dataclass
class Log:
    """What a run logged and what it truly earned."""

    value: list[float] = field(default_factory=list)     # true value of the shown offer
    click_p: list[float] = field(default_factory=list)   # true P(click) of the shown offer
    best_value: list[float] = field(default_factory=list)
    probability: list[float] = field(default_factory=list)
    chosen: list[str] = field(default_factory=list)
    eligible: list[list[str]] = field(default_factory=list)
    shown_pmf: list[dict[str, float]] = field(default_factory=list)  # slot-1 pmf by id
    contexts: list[dict] = field(default_factory=list)
    predicted_click: list[float] = field(default_factory=list)  # raw, before learning
    clicked: list[int] = field(default_factory=list)
    reward_value: list[float] = field(default_factory=list)  # realised payout (0 if none)


def run(world: World, policy: ValuePolicy, n: int, seed: int, *, k: int = 10,
        learn: bool = True, adjust_for: Callable[[list[SimOffer]], Adjust | None] | None = None,
        on_shown: Callable[[SimOffer, float], None] | None = None) -> Log:
    rng = np.random.default_rng(seed)
    offers_enc = {o.id: encode_offer(o) for o in world.offers}
    log = Log()
    click_head = policy.heads.by_kind.get("click")
    for t in range(n):
        ctx = world.user(rng)
        eligible = world.eligible(rng, k)
        offers = tuple(offers_enc[o.id] for o in eligible)
        context = encode_context(ctx)
        req = DecideRequest(f"e{seed}-{t}", context, offers)
        adjust = adjust_for(eligible) if adjust_for is not None else None
        d = policy.decide(req, adjust=adjust)
        if d.slots == 0:
            continue
        i, p = d.order[0], d.probabilities[0]
        shown = eligible[i]
        pc = world.click_probability(ctx, shown)
        clicked = bool(rng.random() < pc)
        converted = clicked and bool(rng.random() < shown.conversion)
        if click_head is not None:
            log.predicted_click.append(float(click_head.predict_raw(
                context, [offers[i].line])[0]))
        vals = [true_value(world, ctx, o) for o in eligible]
        log.value.append(true_value(world, ctx, shown))
        log.best_value.append(max(vals))
        log.click_p.append(pc)
        log.probability.append(p)
        log.chosen.append(shown.id)
        log.eligible.append([o.id for o in eligible])
        log.shown_pmf.append(_slot1(d.order, d.probabilities, offers))
        log.contexts.append(ctx)
        log.clicked.append(int(clicked))
        log.reward_value.append(shown.payout if converted else 0.0)
        if on_shown is not None:
            on_shown(shown, float(t))
        if learn:
            policy.learn(context, offers, i, {"click": float(clicked),
                                              "conversion": float(converted),
                                              "value": shown.payout if converted else 0.0}, p)
    return log


def _slot1(order, probs, offers) -> dict[str, float]:
    """The slot-1 pmf by offer id (one slot: every entry of the ranking is one)."""
    return {offers[j].id: q for j, q in zip(order, probs, strict=True)}

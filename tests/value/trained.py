"""Heads trained on a small seeded world and published to a model store, as the
learner publishes them (through :class:`bandit.learner.heads.HeadLearner`)."""

from __future__ import annotations

import random

import orjson

from bandit.config.settings import Settings
from bandit.core.policy_spec import PolicySpec
from bandit.core.schema import RequestParser
from bandit.core.types import DecideRequest
from bandit.core.vw_adapter import VWModel
from bandit.learner.heads import HeadLearner, new_window
from bandit.learner.join import Joined
from bandit.stores.modelstore import Manifest, ModelStore
from bandit.value.head_files import HEAD_SPEC
from bandit.value.heads import Heads

KINDS = ("click", "conversion", "value")
# offer → (P(click), P(conversion | click), payout): "a" wins clicks, "b" wins value
WORLD = {"a": (0.6, 0.1, 1.0), "b": (0.2, 0.5, 10.0), "c": (0.3, 0.2, 2.0)}
OFFERS = [{"id": k, "features": {"payout": v[2]}} for k, v in WORLD.items()]


def request(parser: RequestParser | None = None, **extra: object) -> DecideRequest:
    parser = parser or RequestParser(Settings())
    return parser.decide(orjson.dumps({"offers": OFFERS, "event_id": "x", **extra}))


def outcome(rng: random.Random, oid: str,
            world: dict[str, tuple[float, float, float]] = WORLD) -> list[dict[str, object]]:
    """The rewards one impression of ``oid`` brings, by kind."""
    pc, pv, payout = world[oid]
    if rng.random() >= pc:
        return []
    out: list[dict[str, object]] = [{"v": 1.0, "kind": "click"}]
    if rng.random() < pv:
        out += [{"v": 1.0, "kind": "conversion"}, {"v": payout, "kind": "value"}]
    return out


def train(n: int = 3000, seed: int = 7, req: DecideRequest | None = None,
          world: dict[str, tuple[float, float, float]] = WORLD) -> HeadLearner:
    """Heads learned from ``n`` uniformly logged decisions over ``req``'s offers (by
    default those of :data:`OFFERS`)."""
    rng = random.Random(seed)
    req = req or request()
    learner = HeadLearner(Heads.fresh(KINDS, HEAD_SPEC, seed=0),
                          {k: new_window() for k in KINDS}, "sum")
    ids = [o.id for o in req.offers]
    for i in range(n):
        chosen = rng.randrange(len(ids))
        order = [chosen] + [j for j in range(len(ids)) if j != chosen]
        d = {"EventId": f"e{i}", "a": [j + 1 for j in order], "p": [1 / len(ids)] * len(ids),
             "c": {**req.context, "_multi": [o.features for o in req.offers]}}
        learner.learn(Joined(d, 0.0, outcome(rng, ids[chosen], world)))
    return learner


def publish(store: ModelStore, learner: HeadLearner | None = None,
            offer_stats: dict[str, list[float]] | None = None) -> Manifest:
    """A main model and the heads of ``learner`` (trained ones by default), with
    ``offer_stats`` (an :class:`OfferStats` snapshot), as the store's current version."""
    learner = learner or train()
    extra: dict[str, object] = {**learner.save(store), "offer_stats": offer_stats}
    model = VWModel(PolicySpec.parse("epsilon:0.1").vw_args(0))
    try:
        return store.publish(model, "epsilon:0.1", learner.heads.learned, extra=extra)
    finally:
        model.close()

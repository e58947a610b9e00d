"""The serving and learning loop in one process, for seeded statistical tests.

The same pieces as production (request parser, VW policy with its ranking options,
decision events, the learner's join and per-slot learning, offer statistics, the
model store and hot swap), minus the broker: events go straight from the policy to
the join. Users click with the simulator's known probabilities times a position
bias, so every figure can be compared with ground truth.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from bandit.config.settings import Settings
from bandit.core.events import decision_event, joined_event
from bandit.core.offerstats import OfferStats
from bandit.core.policy import RankingOptions, VWPolicy
from bandit.core.policy_spec import PolicySpec
from bandit.core.schema import RequestParser
from bandit.core.vw_adapter import VWModel
from bandit.demo.simulator import World
from bandit.learner.join import Joined, slot_rewards
from bandit.learner.learning import learn_joined
from bandit.stores.modelstore import ModelStore

POSITION_BIAS = (1.0, 0.6, 0.4)


@dataclass
class Step:
    event: dict[str, Any]
    shown: list[str]          # offer ids, slot order
    mu: dict[str, float]      # true click probability of every eligible offer
    clicks: list[bool]
    expected: float           # Σ over slots of μ × position bias of the shown offers


@dataclass
class Loop:
    world: World
    tmp: Path
    policy_spec: str = "epsilon:0.05"
    options: RankingOptions = field(default_factory=RankingOptions)
    swap_every: int = 1000
    seed: int = 0
    log: Path | None = None

    def __post_init__(self) -> None:
        spec = PolicySpec.parse(self.policy_spec)
        self.spec = spec
        self.parser = RequestParser(Settings(max_slots=3))
        self.learner = VWModel(spec.vw_args(self.seed), json_input=True)
        self.stats = OfferStats()
        self.store = ModelStore(self.tmp / "models", keep=3)
        self.policy = VWPolicy(spec, VWModel(spec.vw_args(self.seed)), "0", self.seed,
                               self.options, OfferStats(), 0)
        self.rng = np.random.default_rng(self.seed)
        self.learned = 0
        self.n = 0
        self._log = open(self.log, "wb") if self.log else None  # noqa: SIM115

    def step(self, k: int = 10, slots: int = 1, exclude: list[str] | None = None,
             offers: list | None = None, mode: str = "model",
             order: Callable[[list], list] | None = None) -> Step:
        body, eligible = self.world.request(self.rng, k, slots=slots, event_id=f"e{self.n}")
        if offers is not None:
            eligible = offers
        if order is not None:  # the client's own ordering (its default comes first)
            eligible = order(list(eligible))
        if offers is not None or order is not None:
            body["offers"] = [o.as_request_offer() for o in eligible]
        if exclude:
            body["exclude"] = exclude
        req = self.parser.decide(orjson.dumps(body))
        decision = self.policy.decide(req, mode)
        event = decision_event(req, decision, **({"agree": decision.info["agree"]}
                                                 if "agree" in decision.info else {}))
        ids = [o.id for o in req.offers]
        shown = [ids[i] for i in decision.order[:slots]]
        mu = {o.id: self.world.click_probability(body["context"], o) for o in eligible}
        clicks, rewards = [], []
        for s, oid in enumerate(shown):
            c = bool(self.rng.random() < mu[oid] * POSITION_BIAS[s])
            clicks.append(c)
            if c:
                rewards.append({"EventId": req.event_id, "v": 1.0, "kind": "click",
                                "slot": s + 1})
        self._learn(event, rewards, slots)
        self.n += 1
        if self.n % self.swap_every == 0:
            self.swap()
        expected = sum(mu[o] * POSITION_BIAS[s] for s, o in enumerate(shown))
        return Step(event, shown, mu, clicks, expected)

    def _learn(self, event: dict[str, Any], rewards: list[dict[str, Any]], slots: int) -> None:
        per_slot = slot_rewards(rewards, slots, "sum", 0.0)
        line = orjson.dumps(joined_event(event, per_slot[0], rewards))
        learn_joined(self.learner, self.stats, Joined(event, per_slot[0], rewards, per_slot),
                     line)
        self.learned += 1
        if self._log is not None:
            self._log.write(line + b"\n")

    def swap(self) -> None:
        man = self.store.publish(self.learner, str(self.spec), self.learned,
                                 extra={"offer_stats": self.stats.snapshot()})
        self.policy.swap(self.store.load(man), man.version,
                         OfferStats.restore(man.extra["offer_stats"]), self.learned)

    def run(self, n: int, on_step: Callable[[int, Step], None] | None = None,
            **kw: Any) -> list[Step]:
        out = []
        for i in range(n):
            st = self.step(**kw)
            out.append(st)
            if on_step is not None:
                on_step(i, st)
        return out

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
        self.learner.close()
        self.policy.close()

"""Policies: ``decide(request) -> Decision``, always with probabilities.

:class:`VWPolicy` asks the VW model for a probability mass function over the
eligible offers and samples from it. Sampling uses a generator seeded by the
event id, so a decision can be reproduced from its log.

Slots: slot 1 is drawn from the pmf; each later slot is drawn from the pmf
renormalised over the offers not yet shown, and its logged probability is that
conditional probability (what a conditional contextual bandit logs per slot).
With ``explore=false`` the offers are taken greedily, and the logged probability
of each shown offer is 1: that is the probability with which it was shown.
"""

from __future__ import annotations

import hashlib
import random
import threading
from dataclasses import dataclass
from typing import Protocol

from bandit.policy_spec import PolicySpec
from bandit.types import DecideRequest, Decision
from bandit.vw_adapter import VWModel


class Policy(Protocol):
    name: str

    def decide(self, request: DecideRequest) -> Decision: ...

    @property
    def version(self) -> str: ...


def event_rng(event_id: str, seed: int) -> random.Random:
    digest = hashlib.blake2b(event_id.encode("utf-8"), digest_size=8,
                             key=seed.to_bytes(8, "little")).digest()
    return random.Random(int.from_bytes(digest, "little"))


def sample_slots(pmf: list[float], slots: int, explore: bool,
                 rng: random.Random) -> tuple[list[int], list[float]]:
    """Choose ``slots`` distinct indices; return (order of all indices, probabilities).

    The first ``slots`` entries of the order are the shown offers with their
    (conditional) probabilities; the rest follow by decreasing pmf with their pmf.
    """
    n = len(pmf)
    total = sum(pmf)
    weights = [p / total for p in pmf] if total > 0 else [1.0 / n] * n
    remaining = list(range(n))
    order: list[int] = []
    probs: list[float] = []
    for _ in range(min(slots, n)):
        if explore:
            mass = sum(weights[i] for i in remaining)
            if mass <= 0.0:
                k = rng.randrange(len(remaining))
                choice, p = remaining[k], 1.0 / len(remaining)
            else:
                u = rng.random() * mass
                acc = 0.0
                choice = remaining[-1]
                for i in remaining:
                    acc += weights[i]
                    if u < acc:
                        choice = i
                        break
                p = weights[choice] / mass
        else:
            choice = max(remaining, key=lambda i: weights[i])
            p = 1.0
        remaining.remove(choice)
        order.append(choice)
        probs.append(p)
    rest = sorted(remaining, key=lambda i: -weights[i])
    order.extend(rest)
    probs.extend(weights[i] if explore else 0.0 for i in rest)
    return order, probs


@dataclass
class _Current:
    model: VWModel
    version: str


class VWPolicy:
    """A VW contextual-bandit policy whose model can be swapped while serving."""

    def __init__(self, spec: PolicySpec, model: VWModel, version: str = "0",
                 seed: int = 0) -> None:
        self.spec = spec
        self.name = str(spec)
        self.seed = seed
        self._current = _Current(model, version)
        self._retired: list[VWModel] = []
        self._swap_lock = threading.Lock()

    @classmethod
    def fresh(cls, spec: PolicySpec, seed: int = 0) -> VWPolicy:
        return cls(spec, VWModel(spec.vw_args(seed)), "0", seed)

    @property
    def version(self) -> str:
        return self._current.version

    @property
    def model(self) -> VWModel:
        return self._current.model

    def decide(self, request: DecideRequest) -> Decision:
        current = self._current  # one read: a swap mid-request cannot mix models
        pmf = current.model.predict(request.context, [o.line for o in request.offers])
        rng = event_rng(request.event_id, self.seed)
        order, probs = sample_slots(pmf, request.slots, request.explore, rng)
        explored = request.explore and order[0] != max(range(len(pmf)), key=pmf.__getitem__)
        return Decision(request.event_id, tuple(order), tuple(probs), request.slots,
                        current.version, self.name, explored)

    def swap(self, model: VWModel, version: str) -> None:
        """Serve ``model`` from now on. The previous model is closed one swap later,
        when no request can still be using it."""
        with self._swap_lock:
            old = self._current.model
            self._current = _Current(model, version)
            for retired in self._retired:
                retired.close()
            self._retired = [old]

    def close(self) -> None:
        with self._swap_lock:
            for m in [*self._retired, self._current.model]:
                m.close()
            self._retired = []

"""A/B splits: a named experiment divides traffic between arms by a stable hash.

``BANDIT_EXPERIMENT="homepage-2026:model=0.8,popularity=0.1,fixed=0.1"`` gives every
user (its salted id hash; the event id when there is no user) one arm for the life of
the experiment: the hash of ``experiment:unit`` is a number in [0, 1) that falls in one
arm's share. Renaming the experiment reshuffles everyone; changing shares moves only
the users on the boundaries that moved.

Arm kinds (each logs its true probabilities, so the learner learns from every arm and
replay can compare them):

* ``model`` — the learned VW policy with its exploration;
* ``popularity`` — the de-biased popularity ranking (the baseline to beat);
* ``fixed`` — the client's own order, as sent (a business ranking), probability 1;
* ``uniform`` — uniformly random offers;
* ``lgbm`` — the LightGBM propensity model in ``BANDIT_LGBM_ARM`` (epsilon-greedy).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

ARM_KINDS = ("model", "popularity", "fixed", "uniform", "lgbm")


@dataclass(frozen=True)
class Arm:
    name: str
    share: float


@dataclass(frozen=True)
class Experiment:
    name: str
    arms: tuple[Arm, ...]

    @classmethod
    def parse(cls, text: str) -> Experiment:
        name, sep, rest = text.partition(":")
        if not sep or not name.strip():
            raise ValueError("expected NAME:ARM=SHARE,ARM=SHARE")
        arms = []
        for part in filter(None, (p.strip() for p in rest.split(","))):
            arm, eq, share = part.partition("=")
            if not eq or arm.strip() not in ARM_KINDS:
                raise ValueError(f"arm {arm.strip()!r} must be one of {', '.join(ARM_KINDS)} "
                                 "with =SHARE")
            try:
                s = float(share)
            except ValueError:
                raise ValueError(f"share of {arm.strip()!r} is not a number") from None
            if not 0 < s <= 1:
                raise ValueError(f"share of {arm.strip()!r} must be in (0, 1]")
            arms.append(Arm(arm.strip(), s))
        if len(arms) < 1 or len({a.name for a in arms}) != len(arms):
            raise ValueError("an experiment needs distinct arms")
        total = sum(a.share for a in arms)
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"arm shares must add up to 1 (they add up to {total:g})")
        return cls(name.strip(), tuple(arms))

    def point(self, unit: str) -> float:
        digest = hashlib.blake2b(f"{self.name}:{unit}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "little") / 2.0**64

    def assign(self, unit: str) -> str:
        u = self.point(unit)
        acc = 0.0
        for arm in self.arms:
            acc += arm.share
            if u < acc:
                return arm.name
        return self.arms[-1].name

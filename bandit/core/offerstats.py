"""Per-offer exposure and de-biased popularity, learned by the learner, used by servers.

The learner counts, for every offer it learns, the impressions (shown slots) and the
inverse-propensity-weighted reward: ``num = Σ r/p``, ``den = Σ 1/p`` over the slots
that showed it. ``num/den`` is the self-normalised IPS estimate of the offer's mean
reward: the exposure bias of the logging policy (popular offers shown more) is divided
out, which raw click counts would not do. The counts travel in the checkpoint's
manifest, so servers read them with each model swap and a restarted learner resumes
them exactly.

Servers use them for cold start: an offer with fewer than N impressions gets an
exploration floor, and while the model has learned little the ranking falls back to
these popularity estimates, shrunk towards the global mean (``prior`` pseudo-
observations) so an offer seen twice and clicked once is not ranked first.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

MAX_OFFERS = 20_000  # offers remembered (least recently learned are forgotten first)


@dataclass
class OfferStats:
    rows: OrderedDict[str, list[float]] = field(default_factory=OrderedDict)
    prior: float = 10.0
    _mean: float | None = None  # cached global mean; servers never change their stats

    def add(self, offer_id: str, reward: float, probability: float) -> None:
        w = 1.0 / probability
        row = self.rows.get(offer_id)
        if row is None:
            row = self.rows[offer_id] = [0.0, 0.0, 0.0]
        else:
            self.rows.move_to_end(offer_id)
        row[0] += 1
        row[1] += w * reward
        row[2] += w
        self._mean = None
        if len(self.rows) > MAX_OFFERS:
            self.rows.popitem(last=False)

    def impressions(self, offer_id: str) -> int:
        row = self.rows.get(offer_id)
        return int(row[0]) if row else 0

    def exposure(self, offer_id: str) -> float:
        """The offer's mean probability of being shown when it was eligible: impressions
        over ``Σ 1/p`` (each impression at probability p stands for 1/p eligible slots),
        a ratio estimate that needs no count of the slots that did not show it. 0 for an
        offer never shown."""
        row = self.rows.get(offer_id)
        return row[0] / row[2] if row and row[2] > 0 else 0.0

    def global_mean(self) -> float:
        """The de-biased mean reward over all offers (computed once per change)."""
        if self._mean is None:
            den = sum(r[2] for r in self.rows.values())
            self._mean = sum(r[1] for r in self.rows.values()) / den if den else 0.0
        return self._mean

    def value(self, offer_id: str, mean: float) -> float:
        """De-biased mean reward, shrunk towards ``mean``."""
        row = self.rows.get(offer_id)
        if row is None:
            return mean
        return (row[1] + self.prior * mean) / (row[2] + self.prior)

    def snapshot(self) -> dict[str, list[float]]:
        return {k: list(v) for k, v in self.rows.items()}

    @classmethod
    def restore(cls, snap: Any) -> OfferStats:
        s = cls()
        if isinstance(snap, dict):
            for k, v in snap.items():
                if isinstance(v, list) and len(v) == 3:
                    s.rows[str(k)] = [float(x) for x in v]
        return s

"""Cold-start priors inside decisions: a catalogue offer the heads have seen little of
borrows, head by head, the predictions of the catalogue offers nearest to it in
meaning (:mod:`bandit.value.embeddings`; the optional ``embeddings`` extra).

An offer is *new* while it has fewer than ``new_below`` impressions in the offer
statistics of the heads' checkpoint; the offers it borrows from are the catalogue
entries with text and at least that many. An offer's typical value for head *k* is
the head's prediction for it without context, computed once per heads and entry.

The prior is a transfer, not a replacement: the head's own prediction *ĥ(x)* for the
new offer in this request's context, shifted by how much more its neighbours are
typically worth than it is, ``prior(x) = ĥ(x) + Σ_j w_j (typical_j − typical_new) /
Σ_j w_j`` (``w_j`` the similarities). What the head already carries over through shared
features and context stays; what only the neighbours' own ids learned is borrowed. For
a new offer with *m* impressions the decision uses ``blend(prior, ĥ, m, strength)`` =
``(m · ĥ + s · prior) / (m + s)``, which fades to the head's own as impressions come.
(Replacing ĥ by the neighbours' context-free mean instead made a near-copy of the best
offer win later, not sooner: ``docs/value.md``.)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import numpy.typing as npt

from bandit.core.offerstats import OfferStats
from bandit.core.types import Offer
from bandit.value.catalogue import CatalogueEntry
from bandit.value.embeddings import OfferEmbeddings, blend
from bandit.value.heads import Heads
from bandit.value.objective import Array

STRENGTH = 50.0  # a prior's weight, in impressions


class ColdStart:
    """Blends new catalogue offers' head predictions with their neighbours' values."""

    def __init__(self, embeddings: OfferEmbeddings,
                 entries: Callable[[], Mapping[str, CatalogueEntry]],
                 offer_of: Callable[[CatalogueEntry], Offer],
                 revision: Callable[[], int], new_below: int = 100,
                 strength: float = STRENGTH, k: int = 5, min_similarity: float = 0.2) -> None:
        self.embeddings = embeddings
        self.entries = entries
        self.offer_of = offer_of
        self.revision = revision  # the catalogue's: the known offers change with it
        self.new_below = new_below
        self.strength = strength
        self.k = k
        self.min_similarity = min_similarity
        self.stats = OfferStats()  # impressions as of the heads' checkpoint
        # caches, for the heads object and the statistics object they were made with
        # (held, so a freed object's id reused by a new one can never match)
        self._typical: dict[tuple[str, float], dict[str, float]] = {}
        self._typical_for: Heads | None = None
        self._matrix: tuple[int, list[str], npt.NDArray[np.float32]] | None = None
        self._matrix_for: OfferStats | None = None
        self.blended = 0  # offers given a prior

    def typical(self, heads: Heads, entry: CatalogueEntry) -> dict[str, float]:
        """Each head's prediction for ``entry``'s offer without context (cached)."""
        if heads is not self._typical_for:
            self._typical.clear()
            self._typical_for = heads
        key = (entry.id, entry.updated)
        hit = self._typical.get(key)
        if hit is None:
            if len(self._typical) > 100_000:
                self._typical.clear()
            preds = heads.predict({}, [self.offer_of(entry).line])
            hit = self._typical[key] = {k: float(v[0]) for k, v in preds.items()}
        return hit

    def __call__(self, heads: Heads, offers: Sequence[Offer],
                 preds: dict[str, Array]) -> dict[str, Array]:
        """``preds`` (by head, one value per offer) with each new offer's blended."""
        catalogue = self.entries()
        impressions = self.stats.impressions
        new = [i for i, o in enumerate(offers)
               if (e := catalogue.get(o.id)) is not None and e.text
               and impressions(o.id) < self.new_below]
        if not new:
            return preds
        known, matrix = self._known(catalogue)
        if not known:
            return preds
        out = {kind: np.array(v, dtype=np.float64) for kind, v in preds.items()}
        entries = [catalogue[offers[i].id] for i in new]
        sims = np.stack([self.embeddings.embedding(e) for e in entries]) @ matrix.T
        for row, i in enumerate(new):
            near = self._nearest(known, sims[row])
            if not near:
                continue
            self.blended += 1
            m = float(impressions(offers[i].id))
            values = {j: self.typical(heads, catalogue[j]) for j, _ in near}
            own = self.typical(heads, catalogue[offers[i].id])
            for kind, col in out.items():
                lift = _weighted(near, {j: v[kind] - own[kind] for j, v in values.items()})
                if lift is not None:
                    col[i] = blend(float(col[i]) + lift, float(col[i]), m, self.strength)
        return out

    def _known(self, catalogue: Mapping[str, CatalogueEntry]
               ) -> tuple[list[str], npt.NDArray[np.float32]]:
        """The known entries' ids and their embeddings as one matrix (kept while the
        catalogue and the statistics are the same)."""
        key = self.revision()
        if self._matrix is not None and self._matrix[0] == key and \
                self._matrix_for is self.stats:
            return self._matrix[1], self._matrix[2]
        impressions = self.stats.impressions
        known = [e for e in catalogue.values()
                 if e.text and impressions(e.id) >= self.new_below]
        matrix = np.stack([self.embeddings.embedding(e) for e in known]) if known else \
            np.zeros((0, 1), dtype=np.float32)
        self._matrix = (key, [e.id for e in known], matrix)
        self._matrix_for = self.stats
        return self._matrix[1], matrix

    def _nearest(self, known: list[str], sims: npt.NDArray[np.float32]
                 ) -> list[tuple[str, float]]:
        """Up to ``k`` known offers by similarity, best first, those at or above
        ``min_similarity`` only."""
        order = np.argsort(-sims, kind="stable")[:self.k]
        return [(known[j], float(sims[j])) for j in order if sims[j] >= self.min_similarity]


def _weighted(near: Sequence[tuple[str, float]], values: Mapping[str, float]) -> float | None:
    """``Σ max(c_j, 0) v_j / Σ max(c_j, 0)`` over the neighbours (None: no weight)."""
    total = sum(max(c, 0.0) for _, c in near)
    if total <= 0:
        return None
    return sum(max(c, 0.0) * values[j] for j, c in near) / total

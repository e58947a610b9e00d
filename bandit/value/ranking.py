"""A worker's value-aware decisions: the heads the learner published (loaded with the
model, calibrated), the objective (``BANDIT_OBJECTIVE``, or the live one of
:mod:`bandit.value.live_objective`), the constraints at inference and the optional
cold-start prior, around :class:`bandit.value.heads.ValuePolicy`.

A decision: each offer's fields (its numeric features, overridden by its catalogue
entry's ``payout``, ``cost``, ``margin``, ``price``) and facts (its entry's) → the
constraints' ``adjust`` → ``ValuePolicy.decide`` (exploration on the combined score,
constraints before the draw, the drawn probabilities logged). The constraints record
the shown offers only once the decision's event is accepted (:meth:`record`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from bandit.core.errors import BadRequest, Unprocessable
from bandit.core.offerstats import OfferStats
from bandit.core.types import NONE_ID, DecideRequest, Decision, Offer
from bandit.stores.checkpoint import Checkpoint
from bandit.stores.modelstore import ModelStore, ModelStoreError
from bandit.value import head_files
from bandit.value.catalogue import CatalogueEntry
from bandit.value.cold_start import ColdStart
from bandit.value.constraints import ConstraintSet, OfferFacts
from bandit.value.heads import Exploration, Heads, ValuePolicy, numeric_fields
from bandit.value.live_objective import LiveObjective
from bandit.value.objective import Objective
from bandit.value.value_settings import parse_objective

log = logging.getLogger("bandit.server")
Entries = Mapping[str, CatalogueEntry]


def offer_fields(offer: Offer, entry: CatalogueEntry | None, names: Sequence[str]
                 ) -> dict[str, float]:
    """The objective's fields ``names`` of one offer; a :class:`BadRequest` names an
    offer without one (the null offer has every field 0)."""
    if offer.id == NONE_ID:
        return dict.fromkeys(names, 0.0)
    if entry is not None:
        given = entry.fields()
        if all(n in given for n in names):
            return given
        given = {**numeric_fields(offer.features), **given}
    else:
        given = numeric_fields(offer.features)
    missing = [n for n in names if n not in given]
    if missing:
        raise BadRequest(f"offer {offer.id!r} has no numeric field {missing[0]!r}, which "
                         "the objective uses (send it as a feature or in its catalogue "
                         "entry)", field="offers")
    return given


class ValueRanking:
    """The value-aware side of a worker's decisions."""

    def __init__(self, objective: Objective, kinds: Sequence[str], exploration: Exploration,
                 store: ModelStore | None, constraints: ConstraintSet | None = None,
                 seed: int = 0, cold_start: ColdStart | None = None) -> None:
        self.default = objective
        self.cold_start = cold_start
        self.kinds = tuple(kinds)
        self.store = store
        self.constraints = constraints
        self.seed = seed
        self.live = LiveObjective(store.dir, kinds) if store is not None else None
        self.heads_ref: dict[str, str] | None = None
        heads = self._stored_heads() or head_files.heads_of({}, kinds, head_files.HEAD_SPEC,
                                                            seed)
        self.policy = ValuePolicy(heads, self._objective(), exploration, seed)
        self.policy.priors = cold_start

    # -- the objective -----------------------------------------------------------------
    def _objective(self) -> Objective:
        live = self.live.read() if self.live is not None else None
        return live if live is not None else self.default

    @property
    def objective(self) -> Objective:
        return self.policy.objective

    def refresh_objective(self) -> bool:
        """Take the live objective if its file changed; True if it did."""
        if self.live is None or not self.live.changed():
            return False
        self.policy.set_objective(self._objective())
        return True

    def set_objective(self, text: Any) -> Objective:
        """Rank by ``text`` from now on, here and (through the store) on every worker;
        a :class:`BadRequest` names what is wrong with it."""
        if not isinstance(text, str):
            raise BadRequest("objective must be a string, e.g. 'click + 5 * conversion * "
                             "payout'", field="objective")
        try:
            obj = parse_objective(text, self.kinds)
        except ValueError as exc:
            raise BadRequest(str(exc), field="objective") from None
        if self.live is not None:
            self.live.write(obj)
            self.live.changed()  # (this worker has it already)
        self.policy.set_objective(obj)
        return obj

    # -- the heads -----------------------------------------------------------------------
    def _ref(self) -> dict[str, str] | None:
        """The served model's heads attachment (its offer statistics go to the cold
        start: the heads learned exactly those impressions)."""
        if self.store is None:
            return None
        try:
            man = self.store.serving()
        except ModelStoreError:
            return None
        ref = man.extra.get(head_files.HEADS_KEY) if man is not None else None
        if not isinstance(ref, dict):
            return None
        if self.cold_start is not None and ref != self.heads_ref:
            self.cold_start.stats = OfferStats.restore(Checkpoint.of(man).offer_stats)
        return ref

    def _load(self, ref: dict[str, str]) -> Heads:
        assert self.store is not None
        states = head_files.decode(self.store.read_attachment(ref))
        return head_files.heads_of(states, self.kinds, head_files.HEAD_SPEC, self.seed)

    def _stored_heads(self) -> Heads | None:
        ref = self._ref()
        if ref is None:
            return None
        try:
            heads = self._load(ref)
        except (ModelStoreError, ValueError) as exc:
            log.warning("not serving the stored heads: %s", exc)
            return None
        self.heads_ref = ref
        return heads

    async def refresh_heads(self) -> bool:
        """Load the heads of the served model if they are new (in a thread), then swap
        them in; True when a swap happened. Heads that fail to load are skipped and the
        current ones keep serving."""
        ref = self._ref()
        if ref is None or ref == self.heads_ref:
            return False
        try:
            heads = await asyncio.to_thread(self._load, ref)
        except (ModelStoreError, ValueError) as exc:
            log.warning("heads %s refused: %s", ref.get("file"), exc)
            self.heads_ref = ref
            return False
        old, self.policy.heads = self.policy.heads, heads
        self.heads_ref = ref
        old.close()
        return True

    # -- deciding ------------------------------------------------------------------------
    def decide(self, request: DecideRequest, entries: Entries, version: str,
               now: float) -> Decision:
        """The value-aware decision (constraints before the draw); a 422 when the
        constraints leave no offer to show."""
        obj = self.policy.objective
        fields = [offer_fields(o, entries.get(o.id), obj.fields) for o in request.offers]
        adjust = None
        if self.constraints is not None:
            facts = [self.facts(o, entries) for o in request.offers]
            adjust = self.constraints.adjuster(facts, now)
        self.policy.version = version
        decision = self.policy.decide(request, fields, adjust)
        if decision.slots == 0:
            raise Unprocessable("the constraints leave no offer to show", field="offers")
        return decision

    @staticmethod
    def facts(offer: Offer, entries: Entries) -> OfferFacts:
        entry = entries.get(offer.id)
        return entry.facts() if entry is not None else OfferFacts(offer.id)

    def record(self, request: DecideRequest, decision: Decision, entries: Entries,
               now: float) -> None:
        """The shown offers count against the constraints (after the event is
        accepted)."""
        if self.constraints is not None:
            shown = [self.facts(request.offers[i], entries)
                     for i in decision.order[:decision.slots]]
            self.constraints.record(shown, now)

    def predictions(self, request: DecideRequest) -> dict[str, dict[str, float]]:
        """Each offer's calibrated prediction by every head."""
        offers = [o for o in request.offers if o.id != NONE_ID]
        heads = self.policy.heads
        preds = heads.predict(request.context, [o.line for o in offers])
        if self.cold_start is not None:
            preds = self.cold_start(heads, offers, preds)
        return {o.id: {k: float(v[i]) for k, v in preds.items()}
                for i, o in enumerate(offers)}

    def state(self) -> dict[str, Any]:
        """For the status page: the objective, the heads and each constraint's state."""
        return {"objective": self.policy.objective.text,
                "heads": {k: {"learned": h.learned, "calibrated": h.calibrate is not None}
                          for k, h in self.policy.heads.by_kind.items()},
                "constraints": self.constraints.state() if self.constraints else {},
                "cold_start": ({"offers_given_a_prior": self.cold_start.blended}
                               if self.cold_start is not None else "off")}

    def close(self) -> None:
        self.policy.heads.close()

"""The catalogue's and value-aware ranking's steps of a decision, for
:class:`bandit.server.service.Service`: *resolve* (before assignment: the offers named
by catalogue id, inactive ones left out, each offer's entry), *decide* (the ``model``
arm's decisions, when ``BANDIT_OBJECTIVE`` is set), the event's ``info``, *record*
(the constraints count what was shown once the event is accepted) and the model
poll's part (the live objective, new heads)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bandit.core.errors import BadRequest, Conflict
from bandit.core.schema import is_catalogue_ref
from bandit.core.types import DecideRequest, Decision
from bandit.server.arms import Assignment
from bandit.value.catalogue import CatalogueEntry
from bandit.value.catalogue_view import CatalogueView
from bandit.value.ranking import ValueRanking

Entries = dict[str, CatalogueEntry]


@dataclass
class ValueAware:
    """The offer catalogue (None: a service built without one) and value-aware ranking
    (None: ``BANDIT_OBJECTIVE`` unset)."""

    offers: CatalogueView | None = None
    ranking: ValueRanking | None = None

    def resolve(self, request: DecideRequest, now: float) -> tuple[DecideRequest, Entries]:
        """The request with its catalogue offers filled in, and their entries by id."""
        if request.predict and self.ranking is None:
            raise Conflict("predictions need value-aware ranking: set BANDIT_OBJECTIVE",
                           field="predict", code="Conflict")
        if self.offers is not None:
            return self.offers.resolve(request, now)
        if any(is_catalogue_ref(o) for o in request.offers):
            raise BadRequest("this server has no offer catalogue: send offers with their "
                             "features", field="offers")
        return request, {}

    def decides(self, assignment: Assignment) -> bool:
        """Whether the value-aware policy decides for this assignment (the ``model``
        arm, not the holdout)."""
        return self.ranking is not None and assignment.mode == "model" and \
            not assignment.holdout

    def decide(self, request: DecideRequest, entries: Entries, version: str,
               now: float) -> Decision:
        assert self.ranking is not None
        return self.ranking.decide(request, entries, version, now)

    def predict(self, request: DecideRequest, decision: Decision) -> None:
        """The calibrated predictions the request asked for, in ``decision.info``."""
        if request.predict and self.ranking is not None:
            decision.info["predictions"] = self.ranking.predictions(request)

    @staticmethod
    def event_fields(decision: Decision) -> dict[str, Any]:
        """The objective and the head scores, in the decision event's ``info``."""
        if decision.info.get("path") != "value":
            return {}
        return {"info": {k: decision.info[k] for k in ("objective", "scores", "heads")
                         if k in decision.info}}

    def record(self, request: DecideRequest, decision: Decision, entries: Entries,
               now: float) -> None:
        if self.ranking is not None and decision.info.get("path") == "value":
            self.ranking.record(request, decision, entries, now)

    async def poll(self) -> None:
        """The live objective and the served model's heads, if new."""
        if self.ranking is not None:
            self.ranking.refresh_objective()
            await self.ranking.refresh_heads()

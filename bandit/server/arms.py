"""Assignment: which arm of the experiment (or the holdout) a decision belongs to, and
the serving mode it is decided in."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bandit.config.settings import Settings
from bandit.core.experiments import Experiment
from bandit.core.types import DecideRequest
from bandit.server.arm_guard import ArmGuard

HOLDOUT = Experiment("holdout", ())  # its hash decides who is held out


@dataclass(frozen=True, slots=True)
class Assignment:
    arm: str | None  # None: no experiment and no holdout
    mode: str  # the serving mode (see bandit.core.policy.strategy), or "lgbm"
    holdout: bool = False


class Arms:
    """Assigns a decision's unit (the user's salted hash, else the event id) to the
    holdout (``BANDIT_HOLDOUT``: the client's order), else to an experiment arm (the
    ``model`` arm on its baseline while the arm guard is switched), else to the live
    serving mode."""

    def __init__(self, settings: Settings, experiment: Experiment | None,
                 guard: ArmGuard) -> None:
        self.holdout = settings.holdout
        self.baseline = settings.arm_guard_baseline
        self.experiment = experiment
        self.guard = guard

    def assign(self, request: DecideRequest, mode: str) -> Assignment:
        unit = request.user_id or request.event_id
        if self.holdout > 0 and HOLDOUT.point(unit) < self.holdout:
            return Assignment("holdout", "fixed", holdout=True)
        if self.experiment is not None:
            arm = self.experiment.assign(unit)
            if arm == "model" and self.guard.switched():
                return Assignment(arm, self.baseline)  # the arm is back on its baseline
            return Assignment(arm, arm)
        return Assignment("treatment" if self.holdout > 0 else None, mode)

    def event_fields(self, a: Assignment) -> dict[str, Any]:
        """What the decision event says of its arm."""
        if a.arm is None:
            return {}
        return {"experiment": self.experiment.name if self.experiment else "holdout",
                "arm": a.arm}

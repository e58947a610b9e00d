"""The loop's live configuration: Personalizer's service configuration and learning
settings, changed over HTTP while servers and the learner run.

It is one JSON document, ``config.json`` in the model store (written atomically), read
by every server worker and by the learner each time they poll the store. Until it is
first written, every value comes from :class:`~bandit.config.settings.Settings`.

Fields (Personalizer's names, validated as Personalizer documents them):

* ``rewardWaitTime`` — ISO-8601 (``PT10M``) or TimeSpan (``00:10:00``), 5 s to 2 days:
  the learner's reward window for decisions it reads from then on.
* ``defaultReward`` in [-1, 1] — learned for a decision with no reward in its window.
* ``rewardAggregation`` — ``earliest``, ``sum`` or ``average`` (also ``max``, ``last``).
* ``explorationPercentage`` in [0, 1] — once set, the served policy is epsilon-greedy
  around the model's best action with this epsilon (logged probabilities included).
* ``modelExportFrequency`` — 1 s to 1 day: how often the learner publishes a model.
* ``logRetentionDays`` — -1 (forever) or at least the reward wait plus one day.
* ``learningMode`` — ``Online`` (the model decides), ``Apprentice`` (the baseline
  action is shown; the model learns to imitate it and its agreement is reported) or
  ``LoggingOnly`` (the baseline action is shown and logged; the model does not learn).
* ``modelRetrainDays``, ``logMirrorEnabled``, ``logMirrorSasUri``,
  ``isAutoOptimizationEnabled``, ``autoOptimizationFrequency``,
  ``autoOptimizationStartDate`` — kept and returned; they change nothing here.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from typing import Any

from bandit.config.settings import Settings
from bandit.core.errors import BadRequest
from bandit.learner.join import REWARD_FUNCTIONS

LEARNING_MODES = ("Online", "Apprentice", "LoggingOnly")
MIN_WAIT, MAX_WAIT = 5.0, 2 * 86400.0
MIN_EXPORT, MAX_EXPORT = 1.0, 86400.0
_ISO = re.compile(r"^P(?:(\d+(?:\.\d+)?)D)?(?:T(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?"
                  r"(?:(\d+(?:\.\d+)?)S)?)?$")
_SPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2}(?:\.\d+)?)$")


def parse_duration(value: Any, field_name: str, code: str = "InvalidServiceConfiguration"
                   ) -> float:
    """Seconds in an ISO-8601 duration (``PT10M``, ``P1D``) or a .NET TimeSpan
    (``00:10:00``, ``1.00:00:00``), as the two Personalizer generations write them."""
    if isinstance(value, str):
        m = _ISO.match(value)
        if m and value not in ("P", "PT") and not value.endswith("T"):
            d, h, mi, s = (float(x) if x else 0.0 for x in m.groups())
            return d * 86400 + h * 3600 + mi * 60 + s
        m = _SPAN.match(value)
        if m:
            d, h, mi = (int(x) if x else 0 for x in m.groups()[:3])
            s = float(m.group(4))
            if h < 24 and mi < 60 and s < 60:
                return d * 86400 + h * 3600 + mi * 60 + s
    raise BadRequest(f"{field_name} must be a duration such as PT10M or 00:10:00",
                     field=field_name, code=code)


def format_duration(seconds: float, iso: bool) -> str:
    """``PT10M`` (v1.1-preview.3, 2022-09-01-preview) or ``00:10:00`` (v1.0)."""
    total = round(seconds, 3)
    d, rest = divmod(total, 86400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    sec = f"{s:g}" if s != int(s) else str(int(s))
    if not iso:
        span = f"{int(h):02d}:{int(m):02d}:{int(s):02d}" + (f"{s - int(s):.3f}"[1:]
                                                            if s != int(s) else "")
        return f"{int(d)}.{span}" if d else span
    out = "P" + (f"{int(d)}D" if d else "")
    clock = (f"{int(h)}H" if h else "") + (f"{int(m)}M" if m else "") + \
        (f"{sec}S" if s else "")
    return out + ("T" + clock if clock else ("" if d else "T0S"))


@dataclass(frozen=True)
class LearningSettings:
    """Personalizer's ``PolicyContract``: a name and VW arguments."""

    name: str
    arguments: str


@dataclass(frozen=True)
class LoopConfig:
    reward_wait: float
    default_reward: float
    reward_aggregation: str
    exploration: float | None  # None: the policy's own exploration
    model_export: float
    log_retention_days: int
    learning_mode: str
    model_retrain_days: int = 0
    extras: dict[str, Any] = field(default_factory=dict)  # kept, returned, not used
    edited_at: str | None = None
    policy: LearningSettings | None = None  # None: BANDIT_POLICY
    generation: int = 0  # bumped when the served model is replaced (reset, import, policy)
    generation_version: str | None = None  # the store version of that model
    generation_at: str | None = None
    logs_cleared_at: str | None = None  # DELETE logs: events before this are not used

    @classmethod
    def from_settings(cls, s: Settings) -> LoopConfig:
        return cls(s.reward_wait, s.default_reward, s.reward_function, None,
                   s.checkpoint_seconds, -1,
                   "Apprentice" if s.mode == "apprentice" else "Online")

    # -- persistence --------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {"rewardWaitTime": self.reward_wait, "defaultReward": self.default_reward,
                "rewardAggregation": self.reward_aggregation,
                "explorationPercentage": self.exploration,
                "modelExportFrequency": self.model_export,
                "logRetentionDays": self.log_retention_days,
                "learningMode": self.learning_mode,
                "modelRetrainDays": self.model_retrain_days, "extras": self.extras,
                "lastConfigurationEditDate": self.edited_at,
                "policy": None if self.policy is None else
                {"name": self.policy.name, "arguments": self.policy.arguments},
                "generation": self.generation, "generationVersion": self.generation_version,
                "generationAt": self.generation_at, "logsClearedAt": self.logs_cleared_at}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> LoopConfig:
        """The stored document (written by :meth:`to_json`); raises ValueError."""
        try:
            pol = obj.get("policy")
            return cls(float(obj["rewardWaitTime"]), float(obj["defaultReward"]),
                       str(obj["rewardAggregation"]),
                       None if obj.get("explorationPercentage") is None
                       else float(obj["explorationPercentage"]),
                       float(obj["modelExportFrequency"]), int(obj["logRetentionDays"]),
                       str(obj["learningMode"]), int(obj.get("modelRetrainDays", 0)),
                       dict(obj.get("extras") or {}), obj.get("lastConfigurationEditDate"),
                       None if not isinstance(pol, dict) else
                       LearningSettings(str(pol["name"]), str(pol["arguments"])),
                       int(obj.get("generation", 0)), obj.get("generationVersion"),
                       obj.get("generationAt"), obj.get("logsClearedAt"))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"unreadable loop configuration: {exc}") from None

    # -- Personalizer's ServiceConfiguration --------------------------------------------
    def service_json(self, iso: bool, default_exploration: float) -> dict[str, Any]:
        out: dict[str, Any] = {
            "rewardWaitTime": format_duration(self.reward_wait, iso),
            "defaultReward": self.default_reward,
            "rewardAggregation": self.reward_aggregation,
            "explorationPercentage": default_exploration if self.exploration is None
            else self.exploration,
            "modelExportFrequency": format_duration(self.model_export, iso),
            "logRetentionDays": self.log_retention_days,
            "learningMode": self.learning_mode,
            "modelRetrainDays": self.model_retrain_days,
            **self.extras,
        }
        if self.edited_at is not None:
            out["lastConfigurationEditDate"] = self.edited_at
        return out

    def updated(self, body: Any, now: str) -> LoopConfig:
        """This configuration with a PUT body applied (Personalizer's rules); raises
        :class:`BadRequest` naming the field."""
        if not isinstance(body, dict):
            raise BadRequest("the service configuration must be a JSON object",
                             code="InvalidServiceConfiguration")
        for key in ("rewardWaitTime", "defaultReward", "rewardAggregation",
                    "explorationPercentage", "modelExportFrequency", "logRetentionDays"):
            if body.get(key) is None:
                raise BadRequest(f"{key} is required", field=key,
                                 code="InvalidServiceConfiguration")
        wait = parse_duration(body["rewardWaitTime"], "rewardWaitTime", "InvalidRewardWaitTime")
        # (a value the server itself reported stands, so GET then PUT always works)
        if not MIN_WAIT <= wait <= MAX_WAIT and not _same(wait, self.reward_wait):
            raise BadRequest("rewardWaitTime must be between 5 seconds and 2 days",
                             field="rewardWaitTime", code="InvalidRewardWaitTime")
        export = parse_duration(body["modelExportFrequency"], "modelExportFrequency")
        if not MIN_EXPORT <= export <= MAX_EXPORT and not _same(export, self.model_export):
            raise BadRequest("modelExportFrequency must be between 1 second and 1 day",
                             field="modelExportFrequency", code="InvalidServiceConfiguration")
        new = replace(
            self, reward_wait=wait, model_export=export,
            default_reward=_number(body["defaultReward"], "defaultReward", -1.0, 1.0),
            exploration=_number(body["explorationPercentage"], "explorationPercentage",
                                0.0, 1.0),
            reward_aggregation=_aggregation(body["rewardAggregation"]),
            log_retention_days=_retention(body["logRetentionDays"], wait),
            learning_mode=_mode(_given(body, "learningMode", self.learning_mode)),
            model_retrain_days=_retrain(_given(body, "modelRetrainDays", 0)),
            extras=_extras(body), edited_at=now)
        _check_mode_change(self, new)
        return new

    @property
    def serving_mode(self) -> str:
        """What the servers do: ``model``, ``apprentice`` or ``fixed`` (logging only)."""
        return {"Online": "model", "Apprentice": "apprentice"}.get(self.learning_mode, "fixed")


def _given(body: dict[str, Any], key: str, default: Any) -> Any:
    value = body.get(key)
    return default if value is None else value  # null is an absent optional field


def _same(a: float, b: float) -> bool:
    return abs(a - b) < 5e-4  # durations are written with millisecond precision


def _number(value: Any, name: str, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not math.isfinite(value) or not lo <= value <= hi:
        raise BadRequest(f"{name} must be a number between {lo:g} and {hi:g}", field=name,
                         code="InvalidServiceConfiguration")
    return float(value)


def _aggregation(value: Any) -> str:
    if not isinstance(value, str) or value.lower() not in REWARD_FUNCTIONS:
        raise BadRequest(f"rewardAggregation must be one of {', '.join(REWARD_FUNCTIONS)}",
                         field="rewardAggregation", code="InvalidServiceConfiguration")
    return value.lower()


def _retention(value: Any, wait: float) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest("logRetentionDays must be an integer", field="logRetentionDays",
                         code="InvalidLogRetentionDays")
    if value != -1 and value < math.ceil(wait / 86400) + 1:
        raise BadRequest("logRetentionDays must be -1 to store indefinitely or at least the "
                         "reward wait time plus 1 day (rounded up)",
                         field="logRetentionDays", code="InvalidLogRetentionDays")
    return value


def _mode(value: Any) -> str:
    if value not in LEARNING_MODES:
        raise BadRequest(f"learningMode must be one of {', '.join(LEARNING_MODES)}",
                         field="learningMode", code="InvalidServiceConfiguration")
    return str(value)


def _retrain(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BadRequest("modelRetrainDays must be a non-negative integer",
                         field="modelRetrainDays", code="InvalidModelRetrainDays")
    return value


_KEPT = {"logMirrorEnabled": bool, "logMirrorSasUri": str, "isAutoOptimizationEnabled": bool,
         "autoOptimizationFrequency": str, "autoOptimizationStartDate": str}


def _extras(body: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, kind in _KEPT.items():
        value = body.get(key)
        if value is None:
            continue
        if not isinstance(value, kind) or (isinstance(value, str) and len(value) > 2048):
            raise BadRequest(f"{key} must be a {'boolean' if kind is bool else 'string'}",
                             field=key, code="InvalidServiceConfiguration")
        if key == "autoOptimizationFrequency":
            parse_duration(value, key)
        out[key] = value
    return out


def _check_mode_change(old: LoopConfig, new: LoopConfig) -> None:
    """Personalizer refuses a change between Online and Apprentice that also changes the
    reward settings: the mode first, the rest in a second call."""
    if {old.learning_mode, new.learning_mode} != {"Online", "Apprentice"}:
        return
    if (old.default_reward, old.reward_wait, old.reward_aggregation) != \
            (new.default_reward, new.reward_wait, new.reward_aggregation):
        raise BadRequest("Updating defaultReward, rewardWaitTime and rewardAggregation when "
                         "changing learning mode from Online to Apprentice mode and vice "
                         "versa is not allowed. Make the mode change and then change the "
                         "additional settings with an additional API call.",
                         field="learningMode", code="InvalidLearningModeServiceConfiguration")

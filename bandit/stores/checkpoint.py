"""What a learner checkpoint stores beside the model file and the consumer offsets.

A manifest's ``extra`` is this record as JSON. The learner writes it at every
checkpoint and reads it to resume; servers read the offer statistics and the lag from
it; the Personalizer ``logs/properties`` route reads the range of learned decisions.
Unknown keys (those another tool wrote, such as ``imported_from``) are kept as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bandit.stores.modelstore import Manifest

_KNOWN = ("join_state", "counters", "dead_letters", "sizes", "offer_stats", "logs", "lag",
          "feature_scale")


def _dict(value: Any) -> dict[str, Any] | None:
    return value if isinstance(value, dict) else None


def _int(value: Any) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


@dataclass(frozen=True)
class Checkpoint:
    """The learner's state in a manifest (everything but the model and the offsets)."""

    join_state: dict[str, Any] | None = None  # the attachment holding the join state
    counters: dict[str, int] = field(default_factory=dict)
    dead_letters: int = 0
    sizes: dict[str, int] = field(default_factory=dict)
    offer_stats: dict[str, Any] | None = None
    # the first and last decision timestamps learned, the latest reward timestamp read
    # and the decisions rewarded but not learned yet (bandit.learner.live_config.LogRange)
    logs: dict[str, Any] | None = None
    lag: int | None = None  # messages not yet consumed when it was written
    feature_scale: dict[str, Any] | None = None  # the attachment of the model's scaling
    other: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, manifest: Manifest | None) -> Checkpoint:
        """The record in ``manifest`` (an empty one for None or a model without one)."""
        extra = manifest.extra if manifest is not None else {}
        return cls(_dict(extra.get("join_state")), dict(_dict(extra.get("counters")) or {}),
                   _int(extra.get("dead_letters")), dict(_dict(extra.get("sizes")) or {}),
                   _dict(extra.get("offer_stats")), _dict(extra.get("logs")),
                   _int(extra["lag"]) if "lag" in extra else None,
                   _dict(extra.get("feature_scale")),
                   {k: v for k, v in extra.items() if k not in _KNOWN})

    def to_extra(self) -> dict[str, Any]:
        out = {**self.other, "join_state": self.join_state, "counters": self.counters,
               "dead_letters": self.dead_letters, "sizes": self.sizes,
               "offer_stats": self.offer_stats, "logs": self.logs, "lag": self.lag}
        if self.feature_scale is not None:
            out["feature_scale"] = self.feature_scale
        return out

    def rewards_through(self) -> str | None:
        """The latest reward timestamp the learner had read when it wrote this model."""
        value = (self.logs or {}).get("rewards_to")
        return value if isinstance(value, str) else None

    def rewards_pending(self) -> frozenset[str]:
        """Decisions whose rewards the learner had read but not learned (their decision
        not read yet) when it wrote this model."""
        value = (self.logs or {}).get("rewards_pending")
        return frozenset(e for e in value if isinstance(e, str)) \
            if isinstance(value, list) else frozenset()

    def log_range(self) -> tuple[str, str] | None:
        logs = self.logs or {}
        start, end = logs.get("from"), logs.get("to")
        return (start, end) if isinstance(start, str) and isinstance(end, str) else None

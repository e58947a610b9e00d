"""Apprentice mode's measure: how often the learned policy's greedy choice is the
client's baseline."""

from __future__ import annotations

from typing import Any

from bandit.core.types import DecideRequest

MAX_SLOT_IDS = 100  # slot ids whose apprentice agreement is counted apart


class Agreement:
    """Decisions and agreements over slot 1 of every decision, and per slot of
    multi-slot decisions (by slot id, or 1-based position; client-given slot ids are
    bounded: beyond ``MAX_SLOT_IDS`` they count as ``other``)."""

    def __init__(self) -> None:
        self.counts = [0, 0]  # decisions, agreements
        self.slots: dict[str, list[int]] = {}

    def count(self, request: DecideRequest, info: dict[str, object]) -> dict[str, Any]:
        """Count a decision's ``agree`` (and ``agree_slots``); what its event says."""
        self.counts[0] += 1
        self.counts[1] += int(bool(info["agree"]))
        fields: dict[str, Any] = {"agree": info["agree"]}
        slots = info.get("agree_slots")
        if isinstance(slots, list):
            fields["agree_slots"] = slots
            for k, agreed in enumerate(slots):
                key = request.slot_ids[k] if k < len(request.slot_ids) else str(k + 1)
                if key not in self.slots and len(self.slots) >= MAX_SLOT_IDS:
                    key = "other"
                counts = self.slots.setdefault(key, [0, 0])
                counts[0] += 1
                counts[1] += int(bool(agreed))
        return fields

    def summary(self) -> dict[str, Any]:
        n, agreed = self.counts
        out: dict[str, Any] = {"decisions": n, "agreement": agreed / n if n else None}
        if self.slots:
            out["slots"] = [{"slot": key, "decisions": c[0], "agreement": c[1] / c[0]}
                            for key, c in self.slots.items()]
        return out

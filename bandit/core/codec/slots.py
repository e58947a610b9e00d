"""The CB examples of a multi-slot decision's slots after the first (slot 1's is the
joined line itself), built by the slot rule the server decided with
(:mod:`bandit.core.slots`)."""

from __future__ import annotations

from typing import Any

import orjson

from bandit.core.slots import slot_candidates, slot_context


def slot_example(decision: dict[str, Any], k: int, reward: float) -> dict[str, Any]:
    """The CB example of shown slot ``k`` ≥ 2 of a multi-slot decision (the whole
    event): the offers the earlier slots left, in the order the server listed them,
    the slot position as a shared feature, the slot's chosen offer with its
    conditional probability and reward (what the server predicted from). Raises
    ValueError when the slot's offer is not among them (a malformed log)."""
    a, p, c = decision["a"], decision["p"], decision["c"]
    ids = decision.get("ids") or []
    per_slot = decision.get("slot_exclude")
    remaining = slot_candidates(len(c["_multi"]), [x - 1 for x in a[:k - 1]],
                                per_slot if isinstance(per_slot, list) else None,
                                lambda i: ids[i] if i < len(ids) else None)
    idx = remaining.index(a[k - 1] - 1)
    shared = slot_context({key: v for key, v in c.items() if key != "_multi"}, k)
    return {"_label_cost": -reward, "_label_probability": p[k - 1], "_label_Action": idx + 1,
            "_labelIndex": idx, "a": [idx + 1], "p": [p[k - 1]],
            "c": {**shared, "_multi": [c["_multi"][i] for i in remaining]}}


def slot_lines(decision: dict[str, Any], slot_rewards: list[float]) -> list[bytes]:
    """The CB DSJSON lines of slots 2, 3, … of a decision (the whole event) shown with
    ``slot_rewards`` (slot 1's first)."""
    return [orjson.dumps(slot_example(decision, k, slot_rewards[k - 1]))
            for k in range(2, len(slot_rewards) + 1)]

"""Long-horizon rewards: rewards that name a user rather than a decision (a purchase
a week later), given to that user's decisions within the long window.

While it is on (``long_wait`` > 0) every decision waits the long window before it is
learned; a user's reward goes all to the last of the user's decisions before it
(``last``) or in equal parts to each (``split``), and is learned on slot 1 with weight
``weight``.
"""

from __future__ import annotations

from collections.abc import Container
from typing import Any

from bandit.core.events import LoggedReward


class LongHorizon:
    def __init__(self, wait: float = 0.0, weight: float = 1.0,
                 attribution: str = "last") -> None:
        self.wait = wait
        self.weight = weight
        self.attribution = attribution
        self.by_user: dict[str, list[tuple[float, str]]] = {}  # user → (when, event id)

    def add(self, user: Any, now: float, event_id: str) -> None:
        """A decision made for ``user`` (if it names one) at ``now``."""
        if self.wait > 0 and isinstance(user, str):
            self.by_user.setdefault(user, []).append((now, event_id))

    def attribute(self, r: LoggedReward, now: float, pending: Container[str]
                  ) -> list[tuple[str, dict[str, Any]]]:
        """The (decision, reward) pairs a user's reward ``r`` gives to the decisions
        still ``pending`` that preceded it within the long window (none: unmatched)."""
        assert r.user is not None
        touches = [(t, e) for t, e in self.by_user.get(r.user, ())
                   if t <= now and t >= now - self.wait and e in pending]
        if not touches:
            return []
        chosen = touches[-1:] if self.attribution == "last" else touches
        share = r.value / len(chosen)
        return [(e, {"v": share, "horizon": "long", **({"kind": r.kind} if r.kind else {})})
                for _, e in chosen]

    def prune(self, pending: Container[str]) -> None:
        """Forget the decisions no longer pending."""
        for user in list(self.by_user):
            kept = [(t, e) for t, e in self.by_user[user] if e in pending]
            if kept:
                self.by_user[user] = kept
            else:
                del self.by_user[user]

    def snapshot(self) -> dict[str, list[tuple[float, str]]]:
        return self.by_user

    def restore(self, snap: dict[str, Any]) -> None:
        self.by_user = {u: [(float(t), str(e)) for t, e in v] for u, v in snap.items()}


def long_total(rewards: list[dict[str, Any]]) -> float:
    """The sum of a decision's long-horizon rewards."""
    return sum(float(r["v"]) for r in rewards if r.get("horizon") == "long")

"""The promotion guard-rail: a new model that looks worse than the one being served
is written to the store but not promoted.

A share of joined events (``BANDIT_GUARD_HOLDOUT``, chosen by a hash of the event id)
is held out: joined, written to ``offers.joined`` and counted, but never learned. At
each checkpoint that publishes a new version, the new model and the last promoted one
are both evaluated on the most recent held-out events with the replay estimator SNIPS
(their probabilities of the logged actions over the logged probabilities). If the new
value is below the promoted one by more than ``BANDIT_GUARD_MARGIN``, the store is
pinned to the promoted version (``reason: guard``) so servers keep serving it; the
learner keeps learning, and the first later version that passes lifts the pin. Pins set
by people (``bandit-learn models pin``) are never lifted by the learner. The held-out
events are checkpointed with the join state, so after a restart the first new version
is checked like every other.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from bandit.core.vw_adapter import VWModel, action_line
from bandit.stores.modelstore import Manifest, ModelStore, ModelStoreError

log = logging.getLogger("bandit.learner")


@dataclass
class Held:
    context: dict[str, Any]
    lines: list[str]
    chosen: int
    reward: float
    probability: float


@dataclass
class PromotionGuard:
    margin: float
    share: float = 0.1
    size: int = 2000
    events: deque[Held] = field(default_factory=deque)
    blocked: int = 0

    def held_out(self, event_id: str) -> bool:
        digest = hashlib.blake2b(f"guard:{event_id}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "little") / 2.0**64 < self.share

    def add(self, decision: dict[str, Any], reward: float) -> None:
        c = decision["c"]
        ctx = {k: v for k, v in c.items() if k != "_multi"}
        self.events.append(Held(ctx, [action_line(o) for o in c["_multi"]],
                                decision["a"][0] - 1, reward, float(decision["p"][0])))
        while len(self.events) > self.size:
            self.events.popleft()

    def snapshot(self) -> dict[str, Any]:
        """The held-out events and the blocked count, JSON-ready (checkpointed with the
        join state, so a restarted learner checks its first new model like any other)."""
        return {"events": [[e.context, e.lines, e.chosen, e.reward, e.probability]
                           for e in self.events], "blocked": self.blocked}

    def restore(self, snap: Any) -> None:
        if not isinstance(snap, dict):
            return
        self.events = deque((Held(dict(c), [str(x) for x in lines], int(k), float(r), float(p))
                             for c, lines, k, r, p in snap.get("events", [])),
                            maxlen=None)
        while len(self.events) > self.size:
            self.events.popleft()
        self.blocked = int(snap.get("blocked", 0))

    def value(self, model: VWModel) -> float:
        """SNIPS value of ``model``'s exploration policy on the held-out events."""
        num = den = 0.0
        for e in self.events:
            pmf = model.predict(e.context, e.lines)
            total = sum(pmf) or 1.0
            w = pmf[e.chosen] / total / e.probability
            num += w * e.reward
            den += w
        return num / den if den else float("nan")

    def passes(self, candidate: VWModel, promoted: VWModel) -> tuple[bool, float, float]:
        new, old = self.value(candidate), self.value(promoted)
        ok = not (new == new and old == old and new < old - self.margin)
        if not ok:
            self.blocked += 1
        return ok, new, old


class Promoter:
    """Promotes each published version through ``guard``: pins the store to the last
    promoted version while a new one is worse (see the module's description)."""

    def __init__(self, store: ModelStore, guard: PromotionGuard) -> None:
        self.store = store
        self.guard = guard
        self.promoted: Manifest | None = None

    def resume(self, snap: Any) -> None:
        """The guard's held-out events (``snap``), and the version it last promoted."""
        self.guard.restore(snap)
        # what the guard let through last is what is served: the version it pinned, or
        # the latest one when nothing is pinned (a version is checked as it is published)
        with contextlib.suppress(ModelStoreError):
            self.promoted = self.store.serving()

    def consider(self, candidate: Manifest) -> None:
        """Promote ``candidate`` only if it is not worse than the promoted model."""
        if self.store.pin_reason() not in (None, "guard"):
            return  # a person pinned a version: leave serving alone
        promoted = self.promoted
        if promoted is None or not self.guard.events:
            self.promoted = candidate
            return
        new = self.store.load(candidate)
        try:
            old = self.store.load(promoted)
        except ModelStoreError:  # the promoted version was pruned: nothing to protect
            new.close()
            self.promoted = candidate
            return
        try:
            ok, v_new, v_old = self.guard.passes(new, old)
        finally:
            new.close()
            old.close()
        if ok:
            if self.store.pin_reason() == "guard":
                self.store.unpin()
            self.promoted = candidate
        else:
            log.warning("guard: version %s (%.4f) is worse than %s (%.4f) on %d held-out "
                        "events; servers keep %s", candidate.version, v_new,
                        promoted.version, v_old, len(self.guard.events), promoted.version)
            self.store.pin(promoted.version, reason="guard")

"""Rewards learned at once by the server that made the decision (the learner's model
stays the authority).

A learner's model reaches the servers one publish after the events it learned: at 100
decisions a second that is hundreds of decisions during which the service serves a
model that has not seen them, and on a small or fast-changing problem most of its early
reward is lost to that delay. A worker knows the decisions it made, and the rewards
that reach it; so it makes, on the model it serves, the update the learner will make
when it joins the reward (the same example, the same logged probability, the reward
the reward function gives it) the moment the reward arrives. The next decision
already uses it.

These updates are a worker's own and short-lived: when the learner publishes a model,
the worker loads it, applies again the updates for rewards the learner had not read
when it wrote that model (the checkpoint's ``rewards_to``, the latest reward timestamp
read; a reward stamped after it is applied again, and so is one whose decision the
learner had not read yet, the checkpoint's ``rewards_pending``) and serves that. Timestamps have
milliseconds: a reward stamped in the very millisecond of the latest one read counts
as read (if it was not, this worker's copy lacks it until the learner's next model). The logged
decisions, and so the learner, the joined logs and the replay, are unchanged; the
logged probabilities are those the decision was drawn with.

An update is made only where the learner's reward for the decision is known when the
first reward arrives: a one-slot decision, not deferred, under the ``earliest``
reward function, without long-horizon rewards, while the service learns (``Online``);
decisions without a reward are learned by the learner alone (with the default reward,
when their window closes). With several workers each learns the rewards that reach the
worker that decided.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from dataclasses import dataclass

from bandit.core.features import Namespaces
from bandit.core.scaling import young_model
from bandit.core.types import DecideRequest, Decision, Offer
from bandit.core.vw_adapter import VWModel


@dataclass(frozen=True, slots=True)
class Made:
    """A decision as the learner will learn it: its context and offers (raw, as logged),
    the offer shown and its probability. The offers are kept as the request held them
    (an immutable tuple, usually the catalogue's own): their lines are read only for
    the few decisions that are learned."""

    context: Namespaces
    offers: tuple[Offer, ...]
    chosen: int
    probability: float
    at: float  # monotonic time it was made

    @property
    def offer_lines(self) -> list[str]:
        return [o.line for o in self.offers]


@dataclass(frozen=True, slots=True)
class Update:
    event_id: str
    made: Made
    reward: float
    stamp: str  # the reward event's timestamp (ISO-8601 UTC, sortable as text)
    seq: int


class InstantLearner:
    """One worker's decisions awaiting their first reward, and the updates it made.

    ``capacity`` bounds both (oldest forgotten first); a decision older than ``window``
    seconds (the reward window) is forgotten: the learner would learn it with the
    default reward.
    """

    def __init__(self, capacity: int, window: float,
                 weights: dict[str, float] | None = None, first_events: int = 32) -> None:
        self.capacity = capacity
        self.window = window
        self.weights = weights
        self.first_events = first_events  # a standardising model's young-model points
        self._made: OrderedDict[str, Made] = OrderedDict()
        self._updates: deque[Update] = deque(maxlen=capacity)
        self._seq = 0
        self.learned = 0  # updates made on the model served now
        self.replayed = 0  # updates applied again on models from the learner

    def remember(self, request: DecideRequest, decision: Decision) -> None:
        """Keep a decision the learner will learn from its first reward."""
        if decision.slots != 1 or request.slots != 1 or request.defer:
            return
        now = time.monotonic()
        made = self._made
        made[request.event_id] = Made(request.context, request.offers,
                                      decision.order[0], decision.probabilities[0], now)
        if len(made) > self.capacity:
            made.popitem(last=False)
        oldest = next(iter(made.values()))
        if now - oldest.at > self.window:
            self._forget_before(now - self.window)

    def _forget_before(self, cutoff: float) -> None:
        made = self._made
        while made:
            key, first = next(iter(made.items()))
            if first.at >= cutoff:
                return
            del made[key]

    def value(self, reward: float, kind: str | None) -> float:
        """The reward the learner learns for a decision whose first reward is this one."""
        if self.weights is None:
            return reward
        return self.weights.get(kind or "reward", 0.0) * reward

    def learn(self, event_id: str, reward: float, kind: str | None, stamp: str,
              model: VWModel) -> bool:
        """Learn the first reward of a remembered decision on ``model``; False if the
        decision is unknown here (another worker's, forgotten, or rewarded already)."""
        made = self._made.pop(event_id, None)
        if made is None:
            return False
        value = self.value(reward, kind)
        model.learn(made.context, made.offer_lines, made.chosen, value, made.probability)
        self._seq += 1
        self._updates.append(Update(event_id, made, value, stamp, self._seq))
        self.learned += 1
        if model.standardizer is not None and young_model(self.learned, self.first_events):
            model.refresh_scale()  # as the learner does when it publishes a young model
        return True

    def unread(self, through: str | None,
               pending: frozenset[str] = frozenset()) -> list[Update]:
        """The updates a model the learner wrote with ``rewards_to == through`` lacks:
        rewards stamped after it, and those of the decisions it had rewards for but had
        not read (``pending``); the others are forgotten (that model, and every later
        one, has them). ``None`` (a model not from the learner's stream: imported,
        reset, or written before any reward was read) lacks nothing that can be told
        apart: every update is forgotten."""
        updates = self._updates
        if through is None:
            updates.clear()
            return []
        kept = [u for u in updates if u.stamp > through or u.event_id in pending]
        updates.clear()
        updates.extend(kept)
        return kept

    def since(self, seq: int) -> list[Update]:
        """Updates made after the one numbered ``seq`` (while a model was loading)."""
        return [u for u in self._updates if u.seq > seq]

    @property
    def last_seq(self) -> int:
        """The number of the latest update (see :meth:`since`)."""
        return self._seq

    def apply(self, updates: list[Update], model: VWModel) -> None:
        """Apply ``updates`` again on ``model``, one the worker does not serve yet."""
        for u in updates:
            m = u.made
            model.learn(m.context, m.offer_lines, m.chosen, u.reward, m.probability)
        self.replayed += len(updates)

    def swapped(self) -> None:
        self.learned = 0

    def clear(self) -> None:
        """Forget every decision and update (a model the service must serve as it is)."""
        self._made.clear()
        self._updates.clear()

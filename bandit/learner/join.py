"""Joining decisions with their rewards inside a wait window (no I/O here).

A decision waits ``wait`` seconds for rewards. The reward function decides what is
learned: ``earliest`` finalises on the first reward (so feedback reaches the model
fast), ``sum``/``max``/``last``/``average`` finalise when the window closes. A decision with no
reward by then is learned with the default reward. A deferred decision is learned
only if it was activated before its window closed; otherwise it is dropped.

Rewards may arrive before their decision (two topics are consumed independently):
they wait as *orphans* for ``wait`` seconds (and until the decisions made before them
have been read, see below), then count as unmatched. A reward
for a decision that was already learned counts as late and is not learned again. A
decision id seen again (a re-shipped duplicate) is ignored.

A window is timed by the learner's clock from when the decision was read, and it
closes only once the learner has read the other topic far enough to know nothing more
can come for it: :meth:`JoinState.expire` is told how far each topic has been read in
event time (``inf`` when read to its end). So a learner catching up on a backlog, or
restarted after longer than a window, still joins the rewards waiting unread in the
topic instead of learning their decisions with the default reward (and an orphan
reward waits until the decisions made before it have been read). Long-horizon rewards
are matched with a user's decisions by event time too.

The whole state is a plain dict snapshot, written with each checkpoint, so that a
restarted learner resumes with exactly the joins it had at the checkpoint.
"""

from __future__ import annotations

import hashlib
import heapq
import math
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from bandit.core.events import LoggedDecision, LoggedReward, reward_fields
from bandit.learner.long_horizon import LongHorizon, long_total

REWARD_FUNCTIONS = ("earliest", "sum", "max", "last", "average")
INF = math.inf


def event_time(timestamp: str) -> float:
    """Seconds since the epoch of an event's ISO-8601 ``Timestamp`` (UTC when it names
    no zone); ``-inf`` when it is not one (such an event never holds a window open)."""
    try:
        t = datetime.fromisoformat(timestamp)
    except (TypeError, ValueError):
        return -INF
    return (t if t.tzinfo is not None else t.replace(tzinfo=timezone.utc)).timestamp()


def combine(values: list[float], function: str) -> float:
    if function == "earliest":
        return values[0]
    if function == "sum":
        return sum(values)
    if function == "max":
        return max(values)
    if function == "average":  # Personalizer's rewardAggregation "average"
        return sum(values) / len(values)
    return values[-1]


def slot_rewards(rewards: list[dict[str, Any]], slots: int, function: str, default: float,
                 weights: dict[str, float] | None = None) -> list[float]:
    """The reward learned for each shown slot (1-based slot k is entry k-1).

    Without ``weights`` the reward function combines every reward of the slot. With
    weights (multiple objectives, e.g. ``{"click": 1, "conversion": 5}``) it combines
    the rewards of each kind separately and the slot's reward is Σ weight × value;
    kinds without a weight count 0, rewards without a kind count as ``reward``.
    A slot with no reward gets ``default``."""
    out = []
    for k in range(1, slots + 1):
        mine = [r for r in rewards if (r.get("slot") or 1) == k]
        if not mine:
            out.append(default)
        elif weights is None:
            out.append(combine([float(r["v"]) for r in mine], function))
        else:
            total = 0.0
            kinds: dict[str, list[float]] = {}
            for r in mine:
                kinds.setdefault(str(r.get("kind") or "reward"), []).append(float(r["v"]))
            for kind, values in kinds.items():
                total += weights.get(kind, 0.0) * combine(values, function)
            out.append(total)
    return out


def learned_rewards(decision: dict[str, Any], rewards: list[dict[str, Any]], function: str,
                    default: float, weights: dict[str, float] | None,
                    long: LongHorizon) -> list[float]:
    """The reward learned for each shown slot of a decision whose window closed with
    ``rewards`` (the long-horizon ones, weighted, go to slot 1)."""
    slots = decision.get("slots", 1)
    slots = slots if isinstance(slots, int) and not isinstance(slots, bool) and \
        slots >= 1 else 1
    if slots == 1 and weights is None and long.wait <= 0 and \
            not any(map(_names_slot, rewards)):
        # the common case: one slot, and no reward names a slot (what slot_rewards
        # would give, without its per-slot filtering)
        if len(rewards) == 1 and function != "sum":
            return [rewards[0]["v"]]  # (what the others make of one value)
        return [combine([r["v"] for r in rewards], function) if rewards else default]
    short = [r for r in rewards if r.get("horizon") != "long"]
    per_slot = slot_rewards(_resolve_slot_ids(decision, short), slots, function, default,
                            weights)
    total = long_total(rewards)
    if total:
        per_slot[0] += long.weight * total  # the long horizon: slot 1
    return per_slot


@dataclass(slots=True)
class Pending:
    decision: dict[str, Any]  # the whole event, or only its head when ``body`` is set
    deadline: float
    deferred: bool
    activated: bool = False
    rewards: list[dict[str, Any]] = field(default_factory=list)
    body: bytes | None = None
    c_at: int = 0
    # (partition, offset) of the decision in its topic: a checkpoint stores this
    # instead of the event, and a restarted learner reads the event back
    ref: tuple[int, int] | None = None
    ends: float = -INF  # the window's end in event time (the decision's Timestamp + wait)

    def dump(self) -> list[Any]:
        """JSON-ready: by reference when it was read from a topic (ten fields), else whole
        (eight); the window's end comes last, where a version that did not store it
        reads nothing (it takes fields 7 and 8 as the reference only when there are more
        than eight), so a checkpoint of this one also loads there."""
        ends = self.ends if self.ends > -INF else None
        if self.ref is not None:
            return [None, self.deadline, self.deferred, self.activated, self.rewards, None, 0,
                    self.ref[0], self.ref[1], ends]
        return [self.decision, self.deadline, self.deferred, self.activated, self.rewards,
                None if self.body is None else self.body.decode(), self.c_at, ends]

    @classmethod
    def load(cls, v: list[Any]) -> Pending:
        """What :meth:`dump` wrote, or an older version (whole: seven fields; by
        reference: nine; neither with the window's end). A decision stored by reference
        has an empty one."""
        ref = (int(v[7]), int(v[8])) if len(v) > 8 else None
        ends = v[9] if len(v) > 9 else (v[7] if len(v) == 8 else None)
        return cls(v[0] if v[0] is not None else {}, float(v[1]), bool(v[2]), bool(v[3]),
                   list(v[4]), v[5].encode() if len(v) > 5 and v[5] is not None else None,
                   int(v[6]) if len(v) > 6 else 0, ref,
                   float(ends) if ends is not None else -INF)


@dataclass(slots=True)
class Orphan:
    deadline: float
    rewards: list[dict[str, Any]] = field(default_factory=list)
    activated: bool = False
    at: float = -INF  # the latest of its rewards' times (event time)


@dataclass(slots=True)
class Joined:
    """A decision ready to learn with the reward the reward function gave it."""

    decision: dict[str, Any]
    reward: float
    rewards: list[dict[str, Any]]
    slot_rewards: list[float] = field(default_factory=list)
    body: bytes | None = None  # the event's JSON when ``decision`` is only its head
    c_at: int = 0  # where ``,"c":`` starts in ``body``


def id_digest(event_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(event_id.encode("utf-8"), digest_size=8).digest(),
                          "little")


@dataclass(slots=True)
class Counters:
    learned: int = 0
    defaulted: int = 0
    duplicates: int = 0
    late_rewards: int = 0
    unmatched_rewards: int = 0
    not_activated: int = 0
    lost: int = 0  # pending decisions the topic no longer held after a restart
    digest: int = 0  # sum of id_digest over learned event ids, mod 2**64

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


MAX_WINDOWS = 16  # reward windows remembered for decisions made before a change


class JoinState:
    def __init__(self, wait: float, reward_function: str = "earliest",
                 default_reward: float = 0.0, retention: float | None = None,
                 weights: dict[str, float] | None = None, long_wait: float = 0.0,
                 long_weight: float = 1.0, attribution: str = "last") -> None:
        if reward_function not in REWARD_FUNCTIONS:
            raise ValueError(f"reward function must be one of {', '.join(REWARD_FUNCTIONS)}")
        self.wait = wait
        self.reward_function = reward_function
        self.default_reward = default_reward
        self.weights = weights
        # long-horizon rewards (by user): decisions wait the long window before they are
        # learned, and rewards naming a user are attributed to that user's decisions
        self.long = LongHorizon(long_wait, long_weight, attribution)
        # finished ids are remembered this long to drop duplicates and late rewards
        self.retention = retention if retention is not None else max(2 * wait, 60.0)
        self.pending: dict[str, Pending] = {}
        self.orphans: dict[str, Orphan] = {}
        # finished ids: (when to forget them by the clock, their window's end in event
        # time); forgotten once both have passed (see expire)
        self.done: dict[str, tuple[float, float]] = {}
        self._by_clock: deque[str] = deque()  # done ids in clock-deadline order
        self._held: list[tuple[float, str]] = []  # past the clock, by window end (a heap)
        self.counters = Counters()
        self._ordered = True  # pending decisions' deadlines are in insertion order
        self._latest = 0.0  # the latest deadline given to a pending decision
        # earlier reward windows, oldest first: (when it was replaced, its wait)
        self.windows: list[tuple[str, float]] = []

    def set_window(self, wait: float, since: str | None = None) -> None:
        """A new reward window for the decisions made from ``since`` on (an ISO-8601 UTC
        time, compared with each decision's ``Timestamp``; None: every decision read from
        now on). Decisions made before it keep the window in force when they were made,
        however late the learner reads them; those waiting keep theirs. A shorter window
        makes a new decision's deadline come before older ones': until those are gone,
        :meth:`expire` scans every pending decision."""
        if since is not None and wait != self.wait:
            self.windows = [*self.windows[-(MAX_WINDOWS - 1):], (since, self.wait)]
        self.wait = wait
        self.retention = max(2 * wait, 60.0)

    def _window(self, timestamp: str) -> float:
        """The reward window of a decision made at ``timestamp``: the wait in force then
        (``windows`` holds when each earlier one ended)."""
        for until, wait in self.windows:
            if timestamp < until:
                return wait
        return self.wait

    def _held_for(self, timestamp: str) -> float:
        """How long a decision made at ``timestamp`` waits: its reward window, or the
        long window when that is longer."""
        return max(self._window(timestamp) if self.windows else self.wait, self.long.wait)

    # -- events ----------------------------------------------------------------------
    def add_decision(self, d: LoggedDecision, now: float,
                     ref: tuple[int, int] | None = None) -> list[Joined]:
        """A decision; ``ref`` is where it can be read again (see :class:`Pending`)."""
        eid = d.event_id
        if eid in self.pending or eid in self.done:
            self.counters.duplicates += 1
            return []
        orphan = self.orphans.pop(eid, None)
        wait, made = self._held_for(d.timestamp), event_time(d.timestamp)
        p = Pending(d.raw, now + wait, d.deferred, orphan is not None and orphan.activated,
                    orphan.rewards if orphan is not None else [], d.body, d.c_at, ref,
                    made + wait)
        if self.long.wait > 0:  # by event time, like the rewards it is matched with
            self.long.add(d.raw.get("user"), made if made > -INF else now, eid)
        self.pending[eid] = p
        if p.deadline < self._latest:
            self._ordered = False
        else:
            self._latest = p.deadline
        return self._maybe_early(eid, p, now)

    def add_reward(self, r: LoggedReward, now: float) -> list[Joined]:
        if r.user is not None and not r.event_id:
            t = event_time(r.timestamp)
            given = self.long.attribute(r, t if t > -INF else now, self.pending)
            for e, reward in given:
                self.pending[e].rewards.append(reward)
            if not given:
                self.counters.unmatched_rewards += 1
            return []
        eid = r.event_id
        if eid in self.done:
            if not r.activate:
                self.counters.late_rewards += 1
            return []
        p = self.pending.get(eid)
        if p is None:
            o = self.orphans.get(eid)
            if o is None:
                o = self.orphans[eid] = Orphan(now + self.wait)
            o.at = max(o.at, event_time(r.timestamp))
            if r.activate:
                o.activated = True
            else:
                o.rewards.append(_reward_dict(r))
            return []
        if r.activate:
            p.activated = True
        else:
            p.rewards.append(_reward_dict(r))
        return self._maybe_early(eid, p, now)

    def expire(self, now: float, rewards_to: float = INF,
               decisions_to: float = INF) -> list[Joined]:
        """Close every window that has ended; forget old finished ids and orphans.

        ``rewards_to``/``decisions_to``: how far each topic has been read, in event time
        (``inf``: to its end). A decision's window closes once its time is up by the
        learner's clock *and* the rewards have been read past its end in event time; an
        orphan goes once its time is up and the decisions have been read past its
        rewards' time (its decision was made before them); a finished id is remembered
        (to know a re-shipped duplicate or a late reward) for ``retention`` by the clock
        and until the decisions have been read ``retention`` past its window's end, so a
        restart after longer than that still knows the ids it had learned."""
        out: list[Joined] = []

        def read_past(p: Pending) -> bool:
            return p.ends <= rewards_to

        if self._ordered:
            due = _due(self.pending, lambda p: p.deadline <= now, read_past)
        else:
            due = [e for e, p in self.pending.items() if p.deadline <= now and read_past(p)]
        for eid in due:
            p = self.pending.pop(eid)
            if p.deferred and not p.activated:
                self.counters.not_activated += 1
                self._remember(eid, now, p.ends)
                continue
            out.append(self._finish(eid, p, now))
        if not self._ordered:
            self._ordered = _in_order([p.deadline for p in self.pending.values()])
        self._latest = max((p.deadline for p in self.pending.values()), default=0.0)
        for eid in _due(self.orphans, lambda o: o.deadline <= now,
                        lambda o: o.at <= decisions_to):
            o = self.orphans.pop(eid)
            self.counters.unmatched_rewards += len(o.rewards)
        while self._by_clock and self.done[self._by_clock[0]][0] <= now:
            eid = self._by_clock.popleft()
            heapq.heappush(self._held, (self.done[eid][1], eid))
        while self._held and self._held[0][0] + self.retention <= decisions_to:
            del self.done[heapq.heappop(self._held)[1]]
        if self.long.by_user:
            self.long.prune(self.pending)
        return out

    def _maybe_early(self, eid: str, p: Pending, now: float) -> list[Joined]:
        if self.long.wait > 0:
            return []  # long-horizon rewards may still come: learn when the window ends
        if self.reward_function != "earliest" or not p.rewards:
            return []
        if p.deferred and not p.activated:
            return []
        slots = p.decision.get("slots", 1)
        if isinstance(slots, int) and slots > 1:
            # a multi-slot decision is final once every shown slot has a reward
            got = {r.get("slot") or 1 for r in _resolve_slot_ids(p.decision, p.rewards)}
            if not all(k in got for k in range(1, slots + 1)):
                return []
        del self.pending[eid]
        return [self._finish(eid, p, now)]

    def _finish(self, eid: str, p: Pending, now: float) -> Joined:
        if not p.rewards:
            self.counters.defaulted += 1
        per_slot = learned_rewards(p.decision, p.rewards, self.reward_function,
                                   self.default_reward, self.weights, self.long)
        reward = per_slot[0]
        self.counters.learned += 1
        self.counters.digest = (self.counters.digest + id_digest(eid)) % (1 << 64)
        self._remember(eid, now, p.ends)
        return Joined(p.decision, reward, p.rewards, per_slot, p.body, p.c_at)

    def _remember(self, eid: str, now: float, ends: float) -> None:
        self.done[eid] = (now + self.retention, ends)
        self._by_clock.append(eid)

    # -- snapshot --------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """The state as JSON-ready data. A pending decision read from a topic is stored
        as its (partition, offset), not as its event (~3 kB each, and a ten-minute
        window can hold hundreds of thousands): :meth:`unloaded` lists them after a
        restore, to be read back and given to :meth:`reload`."""
        return {
            "pending": {e: p.dump() for e, p in self.pending.items()},
            "orphans": {e: [o.deadline, o.rewards, o.activated, o.at if o.at > -INF else None]
                        for e, o in self.orphans.items()},
            "done": {e: t for e, (t, _) in self.done.items()},  # as before: a rollback loads it
            "done_ends": {e: ends for e, (_, ends) in self.done.items() if ends > -INF},
            "counters": self.counters.as_dict(),
            "by_user": self.long.snapshot(),
            "windows": self.windows,
        }

    def restore(self, snap: dict[str, Any]) -> None:
        self.pending = {e: Pending.load(v) for e, v in snap.get("pending", {}).items()}
        self.orphans = {e: Orphan(float(v[0]), list(v[1]), bool(v[2]),
                                  float(v[3]) if len(v) > 3 and v[3] is not None else -INF)
                        for e, v in snap.get("orphans", {}).items()}
        ends = snap.get("done_ends", {})
        self.done = {e: _done_entry(v, ends.get(e)) for e, v in snap.get("done", {}).items()}
        self._by_clock = deque(self.done)
        self._held = []
        self.long.restore(snap.get("by_user", {}))
        self.counters = Counters(**{k: int(v) for k, v in snap.get("counters", {}).items()})
        self.windows = [(str(t), float(w)) for t, w in snap.get("windows", [])]
        self._ordered = _in_order([p.deadline for p in self.pending.values()])
        self._latest = max((p.deadline for p in self.pending.values()), default=0.0)

    def unloaded(self) -> dict[int, dict[int, str]]:
        """Restored pending decisions stored by reference: partition → offset → id."""
        out: dict[int, dict[int, str]] = {}
        for eid, p in self.pending.items():
            if not p.decision and p.ref is not None:
                out.setdefault(p.ref[0], {})[p.ref[1]] = eid
        return out

    def reload(self, eid: str, d: LoggedDecision) -> None:
        """Give a restored pending decision its event back (read again from its topic)."""
        p = self.pending[eid]
        if d.event_id != eid:
            raise ValueError(f"offset {p.ref} holds {d.event_id!r}, not {eid!r}")
        p.decision, p.body, p.c_at = d.raw, d.body, d.c_at
        if p.ends == -INF:  # from a checkpoint of a version that did not store it
            p.ends = event_time(d.timestamp) + self._held_for(d.timestamp)

    def forget(self, eid: str) -> None:
        """Drop a pending decision that cannot be read back (counted as lost)."""
        if self.pending.pop(eid, None) is not None:
            self.counters.lost += 1

    @property
    def sizes(self) -> dict[str, int]:
        return {"pending": len(self.pending), "orphans": len(self.orphans),
                "done": len(self.done)}


def rewarded_unread(state: JoinState, most: int = 1000) -> list[str]:
    """The latest decisions rewarded but not read yet (at most ``most``, latest first):
    a server that learned their rewards at once applies them again on a model a
    checkpoint names them in."""
    out = []
    for eid, orphan in reversed(state.orphans.items()):
        if orphan.rewards:
            out.append(eid)
            if len(out) >= most:
                break
    return out


def _names_slot(r: dict[str, Any]) -> bool:
    return "slot" in r or "slot_id" in r


def _reward_dict(r: LoggedReward) -> dict[str, Any]:
    out: dict[str, Any] = {"v": r.value, "EventId": r.event_id}
    if r.timestamp:
        out["Timestamp"] = r.timestamp
    return reward_fields(out, r.slot, r.kind, r.slot_id)


def _resolve_slot_ids(decision: dict[str, Any],
                      rewards: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rewards that name their slot by id (Personalizer multi-slot) get its position."""
    ids = decision.get("slot_ids")
    if not isinstance(ids, list) or not any("slot_id" in r for r in rewards):
        return rewards
    out = []
    for r in rewards:
        sid = r.get("slot_id")
        if sid is not None and sid in ids:
            r = {**r, "slot": ids.index(sid) + 1}
        elif sid is not None:
            continue  # a reward for a slot the decision did not have
        out.append(r)
    return out


def _done_entry(v: Any, ends: Any) -> tuple[float, float]:
    """A finished id as a snapshot keeps it: its clock time under ``done`` (as every
    version wrote it, so a rollback loads it) and its window end under ``done_ends``."""
    return float(v), float(ends) if ends is not None else -INF


def _due(entries: dict[str, Any], by_clock: Callable[[Any], bool],
         ready: Callable[[Any], bool]) -> list[str]:
    """The ids due ``by_clock`` and ``ready`` (the other topic read past them). Deadlines
    are set as now + a fixed delay, so insertion order is deadline order and the scan
    stops at the first one not due by the clock (if the wall clock steps back, entries
    may expire late, never early); one not ready is passed over (event times need not be
    in order: one decision stamped by a skewed host must not hold those after it)."""
    out = []
    for eid, entry in entries.items():
        if not by_clock(entry):
            break
        if ready(entry):
            out.append(eid)
    return out


def _in_order(deadlines: list[float]) -> bool:
    return all(a <= b for a, b in zip(deadlines, deadlines[1:], strict=False))


def digest_of(event_ids: Iterable[str]) -> int:
    """The digest a learner reports after learning exactly these ids once each."""
    total = 0
    for e in event_ids:
        total = (total + id_digest(e)) % (1 << 64)
    return total

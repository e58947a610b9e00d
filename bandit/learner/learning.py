"""What becomes of a joined decision: learned (by VW here, or by a VW child that also
writes it), held out for the promotion guard, or only logged (``LoggingOnly``), and
written to ``offers.joined`` — as CB DSJSON, or VW's CCB DSJSON for a multi-slot
decision. An event VW refuses is counted, logged and not written.

Lines are spliced from the decision's own bytes (:mod:`bandit.core.codec`) and decoded
whole only when a multi-slot or held-out decision needs its context.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

import orjson

from bandit.core import codec
from bandit.core.offerstats import OfferStats
from bandit.learner.backend import BackendDied, LearnerBackend
from bandit.learner.guard import PromotionGuard
from bandit.learner.join import Joined
from bandit.learner.live_config import LogRange
from bandit.learner.outputs import Outputs

log = logging.getLogger("bandit.learner")


def whole(j: Joined) -> dict[str, Any]:
    """The joined decision's whole event (decoded here when only its head was)."""
    return j.decision if j.body is None else {**j.decision, "c": orjson.loads(j.body)["c"]}


def slot_lines(j: Joined, line: bytes, full: dict[str, Any] | None = None) -> list[bytes]:
    """The CB DSJSON lines of a joined decision's shown slots: ``line`` (slot 1's),
    then one example per further slot (``full``: its whole event if already decoded)."""
    if len(j.slot_rewards) <= 1:
        return [line]
    return [line, *codec.slot_lines(full if full is not None else whole(j), j.slot_rewards)]


def learn_joined(model: LearnerBackend, stats: OfferStats, j: Joined,
                 line: bytes, full: dict[str, Any] | None = None) -> None:
    """Learn every shown slot of a joined decision (``line``: its CB DSJSON, which is
    slot 1's example; ``full``: its whole event if already decoded) and count each
    shown offer in the offer statistics."""
    for example in slot_lines(j, line, full):
        model.learn_dsjson(example)
    count_offers(stats, j)


def count_offers(stats: OfferStats, j: Joined) -> None:
    """Count each shown offer of a joined decision in the offer statistics."""
    d = j.decision
    ids = d.get("ids") or []
    if len(j.slot_rewards) <= 1:  # one slot (ids and a are validated: strings, 1..n)
        if ids:
            stats.add(ids[d["a"][0] - 1], j.reward, float(d["p"][0]))
        return
    for k, reward in enumerate(j.slot_rewards):
        if k < len(d["a"]) and d["a"][k] - 1 < len(ids):
            stats.add(str(ids[d["a"][k] - 1]), reward, float(d["p"][k]))


def _lines(j: Joined) -> tuple[bytes, bytes]:
    """A single decision's joined line and the (shorter) line VW learns the same from:
    spliced from the body's bytes when only the head was decoded."""
    d = j.decision
    if j.body is None:
        line = orjson.dumps(codec.joined_event(d, j.reward, j.rewards))
        return line, line
    label = codec.open_label(d, j.reward)
    return (codec.joined_line(d, j.body, j.reward, j.rewards, label),
            codec.learn_line(d, j.body, j.c_at, j.reward, label))


class HeadsLearner(Protocol):
    def learn(self, j: Joined) -> None: ...


class JoinedHandler:
    """Learns and writes joined decisions with ``model``, counting shown offers in
    ``stats`` and the decisions' time range in ``logs`` (the daemon replaces ``model``
    and ``stats`` when it adopts another model). ``heads``: the value-aware heads,
    which learn every decision the model learns (:mod:`bandit.learner.heads`)."""

    def __init__(self, model: LearnerBackend, outputs: Outputs,
                 guard: PromotionGuard | None, stats: OfferStats, logs: LogRange,
                 heads: HeadsLearner | None = None) -> None:
        self.model = model
        self.outputs = outputs
        self.guard = guard
        self.stats = stats
        self.logs = logs
        self.heads = heads
        self.errors = 0  # decisions VW refused here (a child counts its own)

    def handle(self, j: Joined, logging_only: bool = False) -> None:
        d = j.decision
        self.logs.add(d.get("Timestamp"))
        if logging_only:  # joined and logged, not learned
            self._log_only(j)
            return
        multi = len(j.slot_rewards) > 1
        held = self.guard is not None and self.guard.held_out(str(d["EventId"]))
        if self.model.emits and not multi and not held:
            self._child_learns(j)
        else:
            self._learn(j, multi, held)
        if self.heads is not None and not held:
            self.heads.learn(j)

    def _log_only(self, j: Joined) -> None:
        d = j.decision
        if len(j.slot_rewards) > 1:
            out = orjson.dumps(codec.ccb_joined_event(whole(j), j.slot_rewards, j.rewards))
        else:
            out = _lines(j)[0]
        self.outputs.joined(str(d["EventId"]).encode(), out)

    def _child_learns(self, j: Joined) -> None:
        """The usual event, VW in a child: it learns the whole joined line (reading only
        the label and ``c``) and writes it to offers.joined; spliced from the body's
        bytes, which go to the child as they are."""
        d = j.decision
        key = str(d["EventId"]).encode()
        if j.body is None:
            self.model.learn_and_emit(key, orjson.dumps(codec.joined_event(d, j.reward,
                                                                           j.rewards)))
        else:
            self.model.learn_and_emit(key, codec.joined_head(codec.open_label(d, j.reward),
                                                             j.rewards), j.body)
        count_offers(self.stats, j)

    def _learn(self, j: Joined, multi: bool, held: bool) -> None:
        """Learn here (or, for a multi-slot decision, in a child that writes it), or
        hold out for the guard; then write it."""
        d = j.decision
        line, learn = _lines(j)
        full = whole(j) if multi or held else None  # decoded once, only when needed
        # the topic gets VW's CCB DSJSON for multi-slot decisions, CB DSJSON otherwise
        out = orjson.dumps(codec.ccb_joined_event(full, j.slot_rewards, j.rewards)) \
            if full is not None and multi else line
        if held:
            assert self.guard is not None and full is not None
            self.guard.add(full, j.reward)  # held out for the promotion guard, not learned
        elif self.model.emits and multi:  # the child learns every slot, then writes it
            try:
                lines = slot_lines(j, learn, full)
            except Exception as exc:  # no example for a slot: keep going, as VW refusing
                self.errors += 1
                log.warning("could not make the slots of event %s: %s", d.get("EventId"), exc)
                return
            self.model.learn_group_and_emit(str(d["EventId"]).encode(), lines, out)
            count_offers(self.stats, j)
            return
        else:
            try:
                learn_joined(self.model, self.stats, j, learn, full)
            except BackendDied:
                raise  # the child learning VW died: stop (a restart resumes exactly-once)
            except Exception as exc:  # VW refused this example: keep the model, keep going
                self.errors += 1
                log.warning("VW could not learn event %s: %s", d.get("EventId"), exc)
                return
        self.outputs.joined(str(d["EventId"]).encode(), out)

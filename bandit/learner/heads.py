"""The learner's per-objective heads (value-aware ranking, :mod:`bandit.value.heads`).

Every joined decision the main model learns is learned by every head too: head *k*
learns the chosen offer's reward of kind *k* (the rewards of the decision's ``o`` list
whose ``kind`` is *k*, on slot 1, combined by the reward function; 0 when none came)
at the logged probability, which keeps each head's regression IPS-correct whatever
policy logged the decision. Before it learns, each head predicts the chosen offer;
that out-of-sample prediction and the reward go to the head's
:class:`~bandit.value.calibration.CalibrationWindow`, whose fitted map the servers apply.

The heads, their events learned and their calibration windows are saved in the same
checkpoint as the main model (:mod:`bandit.value.head_files`, one attachment named in
the manifest), captured when the checkpoint begins, after exactly the events it
records; a restarted learner resumes them from it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import orjson

from bandit.core import codec
from bandit.core.vw_text import action_line
from bandit.learner.join import Joined, combine
from bandit.learner.learning import whole
from bandit.stores.modelstore import Manifest, ModelStore, ModelStoreError
from bandit.value import head_files
from bandit.value.calibration import CalibrationWindow
from bandit.value.head_files import HEAD_SPEC
from bandit.value.heads import Head, Heads

log = logging.getLogger("bandit.learner")


def rewards_by_kind(rewards: list[dict[str, Any]], function: str) -> dict[str, float]:
    """Slot 1's rewards by ``kind``, each kind's combined by the reward function."""
    kinds: dict[str, list[float]] = {}
    for r in rewards:
        kind = r.get("kind")
        if isinstance(kind, str) and (r.get("slot") or 1) == 1:
            kinds.setdefault(kind, []).append(float(r["v"]))
    return {k: combine(v, function) for k, v in kinds.items()}


def chosen_example(d: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """A whole decision's context and its chosen offer's line."""
    c = d["c"]
    context = {k: v for k, v in c.items() if k != "_multi" and isinstance(v, dict)}
    return context, action_line(c["_multi"][int(d["a"][0]) - 1])


def learn_line(j: Joined, d: dict[str, Any], reward: float) -> bytes:
    """The DSJSON a head learns a joined decision from, with ``reward`` (spliced from
    the event's bytes when the learner kept them)."""
    if j.body is not None:
        return codec.learn_line(j.decision, j.body, j.c_at, reward)
    return orjson.dumps(codec.learn_event(d, reward))


class HeadLearner:
    """The heads of ``kinds``, learned from joined decisions and checkpointed."""

    def __init__(self, heads: Heads, windows: dict[str, CalibrationWindow],
                 reward_function: str = "earliest") -> None:
        self.heads = heads
        self.windows = windows
        self.reward_function = reward_function
        self.errors = 0
        # (store directory, events learned, the attachment written for them)
        self._saved: tuple[str, int, dict[str, str]] | None = None

    @classmethod
    def start(cls, kinds: Sequence[str], store: ModelStore, manifest: Manifest | None,
              seed: int = 0, reward_function: str = "earliest") -> HeadLearner:
        """The heads of the checkpoint ``manifest`` (those it lacks fresh)."""
        states: dict[str, head_files.HeadState] = {}
        ref = manifest.extra.get(head_files.HEADS_KEY) if manifest is not None else None
        if isinstance(ref, dict):
            try:
                states = head_files.decode(store.read_attachment(ref))
            except (ModelStoreError, ValueError) as exc:
                raise SystemExit(f"bandit-learn: cannot resume the heads of "
                                 f"{manifest.version if manifest else '?'}: {exc}") from None
        heads: dict[str, Head] = {}
        windows: dict[str, CalibrationWindow] = {}
        for kind in kinds:
            w = windows[kind] = new_window()
            state = states.get(kind)
            if state is None:
                heads[kind] = Head.fresh(kind, HEAD_SPEC, seed)
            else:
                heads[kind] = head_files.load_head(kind, state, calibrated=False)
                w.restore(state.window, state.calibrator)
        out = cls(Heads(heads), windows, reward_function)
        if isinstance(ref, dict):
            out._saved = (str(store.dir), out.heads.learned, ref)
        return out

    def learn(self, j: Joined) -> None:
        """Every head learns one joined decision (a decision VW cannot take is counted
        and skipped). Each head first predicts the chosen offer (a head scores each
        offer on its own) for its calibration window, then learns the decision's
        DSJSON with its own reward, through VW's cached offer examples."""
        try:
            d = whole(j)
            context, chosen = chosen_example(d)
            rewards = rewards_by_kind(j.rewards, self.reward_function)
            for kind, head in self.heads.by_kind.items():
                before = float(head.predict_raw(context, [chosen])[0])
                self.windows[kind].add(before, rewards.get(kind, 0.0))
            for head in self.heads.by_kind.values():
                if head.given is not None and not rewards.get(head.given, 0.0) > 0:
                    continue
                head.model.learn_dsjson(learn_line(j, d, rewards.get(head.reward, 0.0)))
                head.learned += 1
        except Exception as exc:  # (the main model may have refused it too)
            self.errors += 1
            log.warning("heads could not learn event %s: %s",
                        j.decision.get("EventId"), exc)

    def save(self, store: ModelStore) -> dict[str, dict[str, str]]:
        """The checkpoint's ``extra`` entry naming the heads as learned now (written
        once per distinct number of events learned)."""
        key = (str(store.dir), self.heads.learned)
        if self._saved is None or self._saved[:2] != key:
            data = head_files.encode(self.heads, self.windows)
            self._saved = (*key, store.write_attachment("state", data))
        return {head_files.HEADS_KEY: self._saved[2]}

    def summary(self) -> dict[str, Any]:
        return {kind: {"learned": h.learned, **self.windows[kind].state()}
                for kind, h in self.heads.by_kind.items()}

    def close(self) -> None:
        self.heads.close()


def new_window() -> CalibrationWindow:
    """A head's calibration window: the last 10,000 held-out events, refitted every 500
    from 1,000 on (isotonic; as measured on the simulator, docs/value.md)."""
    return CalibrationWindow("isotonic", size=10_000, min_events=1_000, refresh_every=500)


"""Writing and reading the learner's checkpoint: the model file, the join state, the
consumer offsets, the guard's held-out events and the offer statistics, published
together through the model store (one atomically replaced manifest), so a restarted
learner resumes exactly where the last checkpoint left off.

A checkpoint is begun (the join state, offsets and counters captured, the model asked
to save after exactly the events learned so far) and finished once the model file is
on disk: a VW child saves while the daemon goes on. Before a checkpoint is published,
every joined and dead-letter message before it must be in Kafka, and the model must
still be the one learned on (a server may have replaced it meanwhile): the daemon
answers both through :class:`Hooks`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

import orjson

from bandit.config.settings import Settings
from bandit.core.offerstats import OfferStats
from bandit.learner import backend
from bandit.learner.backend import Emit, LearnerBackend
from bandit.learner.guard import Promoter
from bandit.learner.join import JoinState
from bandit.learner.live_config import LogRange
from bandit.stores.checkpoint import Checkpoint
from bandit.stores.modelstore import Manifest, ModelStore, ModelStoreError, Slot

log = logging.getLogger("bandit.learner")


@dataclass
class Hooks:
    """What publishing a checkpoint asks of the daemon."""

    flush: Callable[[], None]  # every joined/dead-letter message so far is in Kafka
    still_current: Callable[[], bool]  # no server replaced the model being saved
    published: Callable[[Manifest, dict[str, int], bool], None]  # (manifest, offsets, new
    # model): promote it, commit the offsets


class Saving(NamedTuple):
    """A checkpoint whose model is being saved: the rest was captured when begun."""

    slot: Slot
    learned: int
    offsets: dict[str, int]
    extra: dict[str, Any]


@dataclass
class Resumed:
    """What a learner resumes with besides the model and the join state."""

    offsets: dict[str, int] = field(default_factory=dict)
    dead_letters: int = 0
    offer_stats: OfferStats = field(default_factory=OfferStats)
    logs: LogRange = field(default_factory=LogRange)


class Checkpointer:
    """The checkpoints of one learner in ``store``: ``manifest`` is the last one
    written, ``policy`` the policy its model learns."""

    def __init__(self, store: ModelStore, settings: Settings, emit: Emit | None) -> None:
        """``emit``: where a VW child writes the joined events it learns."""
        self.store = store
        self.settings = settings  # (VW in a child process, standardisation, policy)
        self.emit = emit
        self.policy = settings.policy
        self.manifest: Manifest | None = None
        self.published_learned = 0  # events learned by the last model published
        self.saving: Saving | None = None  # begun, its model still being saved
        self.last = time.monotonic()  # when the last checkpoint was begun

    # -- reading -----------------------------------------------------------------------
    def resume(self, state: JoinState, promoter: Promoter | None
               ) -> tuple[LearnerBackend, Resumed] | None:
        """The model of the last checkpoint, with the join state (and the guard's)
        loaded from it; None for an empty store."""
        man = self.store.current()
        if man is None:
            return None
        try:
            model = self.load(man)
        except ModelStoreError as exc:
            raise SystemExit(f"bandit-learn: cannot resume from {man.version}: {exc}") \
                from None
        self.manifest, self.policy = man, man.policy
        ck = Checkpoint.of(man)
        resumed = Resumed(logs=LogRange.restore(ck.logs))
        if ck.join_state is not None:
            snap = orjson.loads(self.store.read_attachment(ck.join_state))
            state.restore(snap)
            if promoter is not None:
                promoter.resume(snap.get("guard"))
            resumed = Resumed(dict(man.offsets), ck.dead_letters,
                              OfferStats.restore(ck.offer_stats), resumed.logs)
        log.info("resuming from model %s (%d events learned)", man.version,
                 state.counters.learned)
        return model, resumed

    def fresh(self, vw_args: str) -> LearnerBackend:
        """A new model with VW arguments ``vw_args``."""
        model = backend.fresh(vw_args, child=self.settings.learner_process, emit=self.emit)
        return self._standardized(model, None)

    def load(self, man: Manifest) -> LearnerBackend:
        """A stored model to learn on from (VW in a child process, or in-process)."""
        path = self.store.verify(man)
        try:
            model = backend.load(path, child=self.settings.learner_process, emit=self.emit)
        except Exception as exc:  # VW raises plain RuntimeError on a corrupt file
            raise ModelStoreError(f"VW could not load {path}: {exc}") from None
        return self._standardized(model, man)

    def adopt(self, version: str, model: LearnerBackend) -> tuple[LearnerBackend, Manifest]:
        """The stored ``version`` to learn on from, in place of ``model`` (a checkpoint
        being saved is dropped: it holds the replaced model). Raises
        :class:`ModelStoreError` if it cannot be loaded."""
        self.drop(model)
        man = self.store.version(version)
        new = self.load(man)
        self.manifest, self.policy = man, man.policy
        return new, man

    def _standardized(self, model: LearnerBackend, man: Manifest | None) -> LearnerBackend:
        """Learn with standardised numeric features (``BANDIT_STANDARDIZE``),
        from the statistics of the checkpoint ``man`` (see :mod:`bandit.core.scaling`)."""
        if self.settings.standardize:
            model.standardize(self.store.feature_scale(man) if man is not None else {})
        return model

    # -- writing -----------------------------------------------------------------------
    def write_state(self, snapshot: dict[str, Any]) -> dict[str, str]:
        """Store the join state (and the guard's) for the next checkpoint to name."""
        return self.store.write_attachment("state", orjson.dumps(snapshot))

    def begin(self, model: LearnerBackend, record: Checkpoint, learned: int,
              offsets: dict[str, int], hooks: Hooks) -> Manifest | None:
        """Ask for the model saved after exactly the ``learned`` events so far; a VW
        child saves while the daemon goes on (the lines it is sent later come after the
        save in its pipe). Returns the manifest when it is written at once (nothing new
        learned, or VW in-process), else None until :meth:`finish` writes it."""
        extra = record.to_extra()
        self.last = time.monotonic()
        if self.manifest is not None and learned == self.published_learned:
            scale = Checkpoint.of(self.manifest).feature_scale  # the same model, same scale
            if scale is not None:
                extra = replace(record, feature_scale=scale).to_extra()
            hooks.flush()
            self.manifest = self.store.update(self.manifest, offsets, extra)
            hooks.published(self.manifest, offsets, False)
            return self.manifest
        slot = self.store.reserve()
        self.saving = Saving(slot, learned, offsets, extra)
        try:
            model.save_begin(slot.tmp)
        except BaseException:
            self.saving = None
            slot.discard()
            raise
        return self.finish(model, hooks, wait=False)

    def finish(self, model: LearnerBackend, hooks: Hooks, wait: bool) -> Manifest | None:
        """Publish the checkpoint begun last, once its model is saved (None until then,
        unless ``wait``)."""
        ck = self.saving
        assert ck is not None
        try:
            if not model.save_done(wait=wait):
                return None
        except BaseException:
            self.saving = None
            ck.slot.discard()
            raise
        self.saving = None
        if model.saved_scale is not None:  # what the saved model is served with
            ck.extra["feature_scale"] = self.store.write_attachment(
                "state", orjson.dumps(model.saved_scale))
        if not hooks.still_current():  # a server replaced the model meanwhile:
            ck.slot.discard()  # this checkpoint holds the replaced one
            return self.manifest
        hooks.flush()  # the joined events up to this point are in Kafka
        self.manifest = self.store.publish_file(ck.slot, self.policy, ck.learned, ck.offsets,
                                                ck.extra)
        self.published_learned = ck.learned
        hooks.published(self.manifest, ck.offsets, True)
        return self.manifest

    def drop(self, model: LearnerBackend, wait: bool = True) -> None:
        """Give up the checkpoint being saved, if any (its file is not a version)."""
        if self.saving is not None:
            if wait:
                with contextlib.suppress(backend.BackendDied):
                    model.save_done(wait=True)
            self.saving.slot.discard()
            self.saving = None


class Schedule:
    """When the next checkpoint is due: after ``events`` events learned, after the
    publishing interval, or sooner for a young model (see :meth:`young_model_due`)."""

    def __init__(self, events: int, first_events: int) -> None:
        self.events = events
        self.first_events = first_events
        self.since = 0  # events learned since the last checkpoint
        self.dirty = False  # offsets moved (or the model changed) since then

    def add(self, learned: int, moved: bool) -> None:
        self.since += learned
        self.dirty = self.dirty or moved

    def reset(self) -> None:
        self.since = 0
        self.dirty = False

    def due(self, ck: Checkpointer, interval: float) -> bool:
        if not self.dirty and self.since == 0:
            return False
        return (self.since >= self.events or self.young_model_due(ck) or
                time.monotonic() - ck.last >= interval)

    def young_model_due(self, ck: Checkpointer) -> bool:
        """A young model is published when the events it learned since the last one
        reach ``first_events`` and the events the last one had learned (after 32, 64,
        128, … events): the first models, which change most, reach the servers in a
        fraction of the interval; a mature one waits for the interval."""
        if self.first_events <= 0 or ck.saving is not None:
            return False
        return self.since >= max(self.first_events, ck.published_learned)

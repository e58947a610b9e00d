"""The learner daemon: consume → join → learn → emit joined → checkpoint.

Exactly-once learning across crashes: a checkpoint stores, atomically through the
model store, the model, the join state (pending decisions, orphan rewards and the
recently finished ids) and the next offset of every consumed partition. On start
the learner loads the last checkpoint and seeks every partition to its stored
offset, so the messages after the checkpoint are consumed again from the same
state, and every decision is learned once: what was learned after the checkpoint
was lost with the process, and is learned again, once. Kafka's committed offsets
are updated after each checkpoint for monitoring only; the manifest is the truth.

The joined output (``offers.joined``) is at-least-once: decisions finalised after
the last checkpoint are written again after a crash. Readers deduplicate by
``EventId`` (``bandit-replay`` does). A checkpoint is published only once the broker
has taken every joined and dead-letter message before it (the producers never give
one up). With VW in a child process the child produces the joined events it learns
itself once it has learned them (a multi-slot decision's CCB event once it has learned
every slot), and waits for them before answering a save; the daemon produces the
held-out ones, which are not learned. An event VW refuses is not written.

The daemon wires the pieces, each with one concept: :class:`~bandit.learner.intake.Intake`
(read and decode), :class:`~bandit.learner.join.JoinState` (join),
:class:`~bandit.learner.learning.JoinedHandler` (learn and emit),
:class:`~bandit.learner.outputs.Outputs` (Kafka writes) and
:class:`~bandit.learner.checkpointer.Checkpointer` (write and read checkpoints); it
decides when to checkpoint and follows the live configuration.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable
from typing import Any

from bandit.config.loop_admin import LoopAdmin
from bandit.config.loop_config import LoopConfig
from bandit.config.settings import Settings
from bandit.core.offerstats import OfferStats
from bandit.learner.backend import Emit, LearnerBackend
from bandit.learner.checkpointer import Checkpointer, Hooks, Resumed, Schedule
from bandit.learner.guard import Promoter, PromotionGuard
from bandit.learner.heads import HeadLearner
from bandit.learner.intake import Intake
from bandit.learner.join import JoinState, rewarded_unread
from bandit.learner.learning import JoinedHandler
from bandit.learner.live_config import ConfigFollower, apply_to_join
from bandit.learner.outputs import Outputs
from bandit.stores.checkpoint import Checkpoint
from bandit.stores.modelstore import Manifest, ModelStore, ModelStoreError
from bandit.streaming.topics import Topics

log = logging.getLogger("bandit.learner")


class Learner:
    def __init__(self, settings: Settings, *, group: str = "bandit-learner",
                 clock: Callable[[], float] = time.time) -> None:
        s = self.s = settings
        self.clock = clock
        self.topics = Topics.from_settings(settings)
        self.store = ModelStore(settings.model_dir, settings.model_keep)
        self.state = JoinState(s.reward_wait, s.reward_function, s.default_reward,
                               weights=s.weights(), long_wait=s.long_wait,
                               long_weight=s.long_weight, attribution=s.attribution)
        self.guard = PromotionGuard(s.guard_margin, s.guard_holdout) \
            if s.guard_margin > 0 else None
        self.promoter = Promoter(self.store, self.guard) if self.guard is not None else None
        self.outputs = Outputs(self.topics)
        self.follower = ConfigFollower(self.store, settings)
        self.loop = self.follower.config
        apply_to_join(self.state, self.loop)
        self._generation = self.loop.generation
        self.checkpointer = Checkpointer(self.store, settings, self._emit_to())
        model, resumed = self._restore()
        self.intake = Intake(s.kafka_bootstrap, self.topics, group, self.state, self.outputs,
                             resumed.logs)
        self.intake.offsets, self.intake.dead_letters = resumed.offsets, resumed.dead_letters
        self.heads = HeadLearner.start(s.head_kinds, self.store, self.checkpointer.manifest,
                                       s.seed, s.reward_function) \
            if s.objective_spec is not None else None
        self.handler = JoinedHandler(model, self.outputs, self.guard, resumed.offer_stats,
                                     resumed.logs, self.heads)
        self.checkpointer.published_learned = self.state.counters.learned
        self._hooks = Hooks(self.outputs.flush, self._still_current, self._published)
        self.schedule = Schedule(s.checkpoint_events, s.checkpoint_first_events)

    @property
    def model(self) -> LearnerBackend:
        """The model being learned (the handler's: replaced when another is adopted)."""
        return self.handler.model

    # -- restore and the live configuration ----------------------------------------
    def _restore(self) -> tuple[LearnerBackend, Resumed]:
        resumed = self.checkpointer.resume(self.state, self.promoter)
        if resumed is not None:
            return resumed
        # a server may serve a LightGBM model; the learner always learns a VW policy
        spec = LoopAdmin(self.s, self.store).spec(self.loop)
        self.checkpointer.policy = str(spec)
        return self.checkpointer.fresh(spec.vw_args(self.s.seed)), Resumed()

    def _emit_to(self) -> Emit | None:
        s = self.s
        return (s.kafka_bootstrap, self.topics.joined, s.kafka_compression) \
            if s.kafka_bootstrap else None

    def follow_config(self) -> None:
        """Apply a changed configuration: the join's reward settings, the publishing
        interval, and a model generation a server published (adopted, to learn on)."""
        config = self.follower.poll()
        if config is None:
            return
        self.loop = config
        apply_to_join(self.state, config)
        log.info("configuration: reward wait %gs, default reward %g, %s, models every %gs, "
                 "%s", config.reward_wait, config.default_reward, config.reward_aggregation,
                 config.model_export, config.learning_mode)
        if config.generation != self._generation and config.generation_version:
            self._adopt(config)

    def _adopt(self, config: LoopConfig) -> None:
        """Learn on from the model a server put in place (reset, import, new learning
        settings). A checkpoint being saved is dropped: it holds the replaced model."""
        assert config.generation_version is not None
        self._generation = config.generation
        try:
            model, man = self.checkpointer.adopt(config.generation_version, self.model)
        except ModelStoreError as exc:
            log.error("cannot adopt model %s: %s; learning on with the current one",
                      config.generation_version, exc)
            return
        old, self.handler.model = self.handler.model, model
        old.close()
        self.handler.stats = OfferStats.restore(Checkpoint.of(man).offer_stats)
        self.checkpointer.published_learned = self.state.counters.learned
        self.schedule.dirty = True  # the next checkpoint records this learner's offsets on it
        log.info("learning on from model %s (%s), as the configuration says", man.version,
                 man.policy)

    # -- Kafka -------------------------------------------------------------------------
    def connect(self, timeout: float = 30.0) -> None:
        self.intake.connect(self.s.partitions, timeout)
        # The join state holds many long-lived objects and every message allocates a
        # few: collect young objects less often, and never rescan what restore loaded.
        gc.freeze()
        gc.set_threshold(50_000, 20, 20)
        self.outputs.connect(self.s.kafka_bootstrap, self.s.kafka_compression)

    def close(self) -> None:
        self.intake.close()
        self.outputs.close()
        self.model.close()
        if self.heads is not None:
            self.heads.close()
        self.checkpointer.drop(self.model, wait=False)  # begun, never published

    def lag(self) -> int:
        return self.intake.lag()

    # -- the loop ----------------------------------------------------------------------
    def step(self, timeout_ms: int = 200) -> int:
        """Poll once, learn what joined, checkpoint when due. Returns events learned."""
        self.follow_config()  # before the messages: decisions read now get its window
        messages = self.intake.fetch(timeout_ms)
        now = self.clock()
        joined, moved = self.intake.handle(messages, now, self.model.pump)
        topics = self.intake.topics
        joined += self.state.expire(now, self.intake.read_to(topics.rewards),
                                    self.intake.read_to(topics.decisions))
        logging_only = self.loop.learning_mode == "LoggingOnly"
        for j in joined:
            self.handler.handle(j, logging_only)
        self.model.pump()
        self.schedule.add(len(joined), moved)
        self.outputs.poll()
        if self.checkpointer.saving is not None:
            self.checkpointer.finish(self.model, self._hooks, wait=False)
        elif self.schedule.due(self.checkpointer, self.loop.model_export):
            self._begin_checkpoint()
        return len(joined)

    def checkpoint(self) -> Manifest:
        """Model + join state + offsets, atomically; then commit offsets for monitoring.
        Waits until it is written (``step`` starts checkpoints without waiting)."""
        if self.checkpointer.saving is not None:
            self.checkpointer.finish(self.model, self._hooks, wait=True)
        manifest = self._begin_checkpoint()
        if manifest is None:
            manifest = self.checkpointer.finish(self.model, self._hooks, wait=True)
        assert manifest is not None
        return manifest

    def _begin_checkpoint(self) -> Manifest | None:
        """Capture the join state, offsets and counters now, and begin the checkpoint
        (see :meth:`Checkpointer.begin`)."""
        snap = self.state.snapshot()
        if self.guard is not None:
            snap["guard"] = self.guard.snapshot()
        self.handler.logs.rewards_pending = rewarded_unread(self.state)
        record = Checkpoint(self.checkpointer.write_state(snap), self.state.counters.as_dict(),
                            self.intake.dead_letters, self.state.sizes,
                            self.handler.stats.snapshot(),
                            self.handler.logs.snapshot(), self.lag(),
                            other=self.heads.save(self.store) if self.heads else {})
        self.schedule.reset()
        return self.checkpointer.begin(self.model, record, self.state.counters.learned,
                                       dict(self.intake.offsets), self._hooks)

    def _still_current(self) -> bool:
        """Whether the model being saved is still the one to publish (no server put
        another in place meanwhile)."""
        generation = self._generation
        self.follow_config()
        return self._generation == generation

    def _published(self, manifest: Manifest, offsets: dict[str, int], new: bool) -> None:
        if new and self.promoter is not None:
            self.promoter.consider(manifest)
        self.intake.commit(offsets)

    def status(self) -> dict[str, Any]:
        manifest = self.checkpointer.manifest
        return {"version": manifest.version if manifest else None,
                **self.state.counters.as_dict(), **self.state.sizes,
                "dead_letters": self.intake.dead_letters,
                "offset_gaps": self.intake.offset_gaps,
                "gaps_skipped": self.intake.gaps_skipped,
                "learn_errors": self.handler.errors + self.model.errors,
                "output_errors": self.outputs.errors + self.model.refused,
                "guard_blocked": self.guard.blocked if self.guard else 0,
                **({"heads": self.heads.summary()} if self.heads else {})}

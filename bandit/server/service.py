"""The request handlers' collaborators in one place.

A decision is **resolve → assign → constrain → decide → record**: the offers named by
catalogue id (:mod:`bandit.server.value_step`), the unit's arm and serving mode
(:mod:`bandit.server.arms`), the user's constraints and the arm's offers
(:mod:`bandit.server.constraints`), the arm's policy (:mod:`bandit.core.policy`, or
value-aware ranking), then the event, the metrics, the user store and the live
counts. The model and the live configuration are kept current by
:mod:`bandit.server.refresher`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any

from bandit.config.loop_config import LoopConfig
from bandit.config.settings import Settings
from bandit.core.events import activation_event, reward_event, utc_now
from bandit.core.experiments import Experiment
from bandit.core.policy import Policy
from bandit.core.schema import NULL_OFFER, RequestParser
from bandit.core.types import DecideRequest, Decision, Reward
from bandit.core.vw_adapter import VWModel
from bandit.server.apprentice import Agreement
from bandit.server.arm_guard import ArmGuard
from bandit.server.arms import Arms, Assignment
from bandit.server.constraints import UserConstraints
from bandit.server.emitter import Emitter, SinkUnavailable
from bandit.server.instant import InstantLearner
from bandit.server.live_counts import LiveCounts
from bandit.server.livestats import LiveStats
from bandit.server.metrics import Metrics
from bandit.server.refresher import Refresher
from bandit.server.shared_live import SharedLive
from bandit.server.value_step import ValueAware
from bandit.stores.modelstore import Manifest, ModelStore
from bandit.stores.userstore import UserStore, hash_user
from bandit.streaming.sinks import EventSink, NullSink

log = logging.getLogger("bandit.server")
__all__ = ["Service", "SinkUnavailable"]


@dataclass
class Service:
    """What the request handlers share. The entry points (``decide``, ``reward``,
    ``activate``, ``refresh_model``, ``refresh_config``, ``model_info``) delegate to one
    collaborator per concern."""

    settings: Settings
    policy: Policy
    sink: EventSink
    metrics: Metrics
    store: ModelStore | None = None
    manifest_at_start: Manifest | None = None  # the store's, when it is the served model
    users: UserStore | None = None
    salt: bytes = b""
    experiment: Experiment | None = None
    shadow: tuple[Policy, str] | None = None
    lgbm_arm: Policy | None = None
    live: LiveStats = field(default_factory=LiveStats)
    shared: SharedLive | None = None  # the host's workers' counts and arm guard switch
    instant: InstantLearner | None = None  # rewards learned at once (bandit.server.instant)
    value_aware: ValueAware = field(default_factory=ValueAware)  # catalogue, objective
    parser: RequestParser = field(init=False)
    apprentice: Agreement = field(default_factory=Agreement)
    counts: LiveCounts = field(init=False)  # the live counts, this worker's or the host's
    arm_guard: ArmGuard = field(init=False)
    arms: Arms = field(init=False)
    constraints: UserConstraints = field(init=False)
    models: Refresher = field(init=False)
    events: Emitter = field(init=False)

    def __post_init__(self) -> None:
        self.parser = RequestParser(self.settings)
        self.events = Emitter(self.sink, self.metrics)
        self.counts = LiveCounts(self.live, self.shared)
        self.arm_guard = ArmGuard(self.settings, self.counts.window, self.shared)
        self.arms = Arms(self.settings, self.experiment, self.arm_guard)
        self.constraints = UserConstraints(self.settings, self.users)
        self.metrics.set_model(self.policy.version, self.policy.name)
        if self.settings.instant_learning and not isinstance(self.sink, NullSink):
            # (without logged decisions there is no learner to take over from it)
            self.instant = InstantLearner(self.settings.instant_memory,
                                          self.settings.reward_wait, self.settings.weights(),
                                          self.settings.checkpoint_first_events)
        self.models = Refresher(self.settings, self.policy, self.metrics, self.store,
                                self.manifest_at_start, self.instant)
        if isinstance(self.policy.model, VWModel):
            self.models.standardizing(self.policy.model)

    # -- the decision path ----------------------------------------------------------------
    def decide(self, request: DecideRequest) -> tuple[DecideRequest, Decision]:
        """Decide; returns the request as ranked (catalogue offers in, user signals
        added, capped offers out, the user id its salted hash) and the decision."""
        t0, now, value = time.perf_counter(), time.time(), self.value_aware
        request, entries = value.resolve(request, now)
        request, assignment = self.assign(request)
        request = self.constrain(request, assignment)
        if assignment.mode == "lgbm" and self.lgbm_arm is not None:
            decision = self.lgbm_arm.decide(request)
        elif value.decides(assignment):
            decision = value.decide(request, entries, self.policy.version, now)
        else:
            decision = self.policy.decide(request, assignment.mode)
        value.predict(request, decision)
        self.record(request, assignment, decision, t0)
        value.record(request, decision, entries, now)
        return request, decision

    def assign(self, request: DecideRequest) -> tuple[DecideRequest, Assignment]:
        """The user id replaced by its salted hash (the unit of assignment); the arm."""
        if request.user_id is not None:
            request = replace(request, user_id=hash_user(request.user_id, self.salt))
        return request, self.arms.assign(request, self.loop.serving_mode)

    def constrain(self, request: DecideRequest, assignment: Assignment) -> DecideRequest:
        """The user's constraints, the live exploration rate and the arm's offers: the
        holdout shows nothing with certainty (or the client's order), the other arms
        may show nothing (``allow_none``) and may be kept from exploring."""
        request = self.constraints.apply(request)
        exploration = self.loop.exploration
        if exploration is not None and request.explore:
            request = replace(request, exploration=exploration)
        if assignment.holdout:
            if self.settings.holdout_treatment == "none":  # show nothing, with certainty
                request = replace(request, offers=(NULL_OFFER,), slots=1)
            return request
        if request.allow_none:
            request = replace(request, offers=(*request.offers, NULL_OFFER))
        return self.constraints.limit_exploration(request)

    def record(self, request: DecideRequest, assignment: Assignment, decision: Decision,
               t0: float) -> None:
        """The decision event, the metrics, the user store and the live counts."""
        extra = {**self.arms.event_fields(assignment), **ValueAware.event_fields(decision)}
        if "agree" in decision.info:
            extra.update(self.apprentice.count(request, decision.info))
        if self.shadow is not None:
            extra["shadow"] = self._shadow(request)
        self.events.decision(request, decision, **extra)
        if self.instant is not None:
            self.instant.remember(request, decision)
        arm = assignment.arm
        self.metrics.decided(arm or decision.policy, "explore" if request.explore else "exploit")
        self.constraints.record_shown(request, decision)
        self.metrics.decide_latency.observe(time.perf_counter() - t0)
        self.constraints.record_explored(request, decision)
        self.live.decision(arm if arm is not None else decision.policy,
                           decision.explored, request.event_id)

    def _shadow(self, request: DecideRequest) -> dict[str, Any]:
        assert self.shadow is not None
        return shadow_fields(self.shadow, self.settings.shadow_policy, request)

    # -- rewards and activations ------------------------------------------------------------
    def reward(self, reward: Reward) -> None:
        if reward.user_id is not None and not reward.event_id:
            reward = replace(reward, user_id=hash_user(reward.user_id, self.salt))
            self.events.reward("reward", reward.user_id or "", reward_event(reward))
            self.metrics.rewards.labels(reward.kind or "long").inc()
            return
        if self.users is not None and reward.slot_id is None:
            self.users.record_reward(reward.event_id, reward.slot or 1, reward.value,
                                     time.time())
        stamp = utc_now()
        self.events.reward("reward", reward.event_id, reward_event(reward, stamp))
        self.metrics.rewards.labels(reward.kind or "default").inc()
        self.live.reward(reward.event_id, reward.value)
        if self.instant is not None and self._learns_at_once(reward):
            model = self.policy.model
            if isinstance(model, VWModel):
                self.instant.learn(reward.event_id, reward.value, reward.kind, stamp, model)

    def _learns_at_once(self, reward: Reward) -> bool:
        """Whether the learner's reward for the decision is this first one (see
        bandit.server.instant), and the served model may learn."""
        return ((reward.slot or 1) == 1 and reward.slot_id is None
                and self.loop.reward_aggregation == "earliest"
                and self.settings.long_wait <= 0 and self.mode == "online"
                and not self.models.serving_pinned)

    def activate(self, event_id: str) -> None:
        self.events.reward("activation", event_id, activation_event(event_id))
        self.metrics.activations.inc()

    @property
    def arm_guard_tripped(self) -> bool:
        return self.arm_guard.tripped

    # -- model information, live configuration and hot swap ---------------------------------
    @property
    def manifest(self) -> Manifest | None:
        """The served model's manifest (None: not from the store)."""
        return self.models.manifest

    @property
    def loop(self) -> LoopConfig:
        """The live configuration (:mod:`bandit.config.loop_config`)."""
        return self.models.loop

    @property
    def mode(self) -> str:
        """``online``, ``apprentice`` or ``logging_only`` (the live learning mode)."""
        return {"Online": "online", "Apprentice": "apprentice"}.get(self.loop.learning_mode,
                                                                     "logging_only")

    def model_info(self) -> dict[str, Any]:
        m = self.manifest
        return {
            "version": self.policy.version,
            "checksum": m.sha256 if m else None,
            "policy": m.policy if m else self.policy.name,
            "events_learned": m.events_learned if m else 0,
            "created_at": m.created_at if m else None,
            "pinned": self.models.pinned(),
            "arm_guard_tripped": self.arm_guard.tripped,
            **({"instant": {"learned": self.instant.learned,
                            "replayed": self.instant.replayed}}
               if self.instant is not None else {}),
            "mode": self.mode,
            **({"apprentice": self.apprentice.summary()} if self.mode == "apprentice" else {}),
            **({"experiment": {"name": self.experiment.name,
                               "arms": {a.name: a.share for a in self.experiment.arms}}}
               if self.experiment is not None else {}),
        }

    def refresh_config(self, force: bool = False) -> bool:
        """Read the live configuration again if its file changed; True if it did."""
        return self.models.refresh_config(force)

    async def refresh_model(self) -> bool:
        """Load the store's current model if it is new; True when a swap happened."""
        return await self.models.refresh_model()

    async def poll_models(self) -> None:
        while True:
            await asyncio.sleep(self.settings.model_poll)
            try:
                self.refresh_config()
                await self.refresh_model()
                await self.value_aware.poll()
            except Exception:  # keep polling whatever happens; the old model keeps serving
                log.exception("model poll failed")


def shadow_fields(shadow: tuple[Policy, str], name: str, request: DecideRequest
                  ) -> dict[str, Any]:
    """The shadow policy's decision on the same request: logged, never shown."""
    policy, mode = shadow
    d = policy.decide(replace(request, explain=False), mode)
    return {"policy": name, "a": [i + 1 for i in d.order], "p": list(d.probabilities)}

"""The request handlers' collaborators in one place: parse → decide → emit → reply."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass, field, replace
from typing import Any

from bandit.checkpoint import Checkpoint
from bandit.errors import Unavailable, Unprocessable
from bandit.events import activation_event, encode_decision_event, reward_event, utc_now
from bandit.experiments import Experiment
from bandit.livestats import Counts, LiveStats
from bandit.loop_admin import load_config
from bandit.loop_config import LoopConfig
from bandit.metrics import Metrics
from bandit.modelstore import Manifest, ModelStore, ModelStoreError
from bandit.offerstats import OfferStats
from bandit.policy import VWPolicy, category_of
from bandit.policy_spec import PolicySpec
from bandit.scaling import Standardizer
from bandit.schema import NULL_OFFER, RequestParser
from bandit.server.instant import InstantLearner, Update
from bandit.server.shared_live import SharedLive
from bandit.settings import Settings
from bandit.sinks import EventSink, NullSink
from bandit.types import DecideRequest, Decision, Reward
from bandit.userstore import UserStore, hash_user
from bandit.vw_adapter import VWModel

log = logging.getLogger("bandit.server")
HOLDOUT = Experiment("holdout", ())  # its hash decides who is held out
MAX_SLOT_IDS = 100  # slot ids whose apprentice agreement is counted apart


class SinkUnavailable(Unavailable):
    def __init__(self, what: str) -> None:
        super().__init__(f"the {what} could not be recorded; retry later")


@dataclass
class Service:
    settings: Settings
    policy: VWPolicy
    sink: EventSink
    metrics: Metrics
    store: ModelStore | None = None
    manifest: Manifest | None = None
    users: UserStore | None = None
    salt: bytes = b""
    experiment: Experiment | None = None
    shadow: tuple[VWPolicy, str] | None = None
    lgbm_arm: VWPolicy | None = None
    parser: RequestParser = field(init=False)
    apprentice: list[int] = field(default_factory=lambda: [0, 0])  # decisions, agreements
    # multi-slot apprentice decisions: slot id (or 1-based position) -> decisions, agreements
    apprentice_slots: dict[str, list[int]] = field(default_factory=dict)
    _explored: dict[str, list[float]] = field(default_factory=dict)
    arm_guard_tripped: bool = False
    _arm_guard_checked: float = 0.0
    _protected: frozenset[str] = field(init=False)
    _limits_exploration: bool = field(init=False)  # protected segments or a budget
    _budgets: bool = field(init=False)  # offer budgets need the user store
    live: LiveStats = field(default_factory=LiveStats)
    shared: SharedLive | None = None  # the host's workers' counts and arm guard switch
    _refused: set[tuple[str, str]] = field(default_factory=set)
    loop: LoopConfig = field(init=False)  # the live configuration (bandit.loop_config)
    _config_stamp: tuple[int, int] | None = None
    instant: InstantLearner | None = None  # rewards learned at once (bandit.server.instant)
    _serving_pinned: bool = False

    def __post_init__(self) -> None:
        self.parser = RequestParser(self.settings)
        self._protected = frozenset(p.strip() for p in self.settings.protected.split(",")
                                    if p.strip())
        self._limits_exploration = bool(self._protected) or self.settings.explore_budget > 0
        self._budgets = self.users is not None and bool(self.settings.offer_budgets)
        self.metrics.set_model(self.policy.version, self.policy.name)
        self.loop = load_config(self.store, self.settings)
        self._config_stamp = self._stamp()
        self.live.shared = self.shared is not None
        if self.settings.instant_learning and not isinstance(self.sink, NullSink):
            # (without logged decisions there is no learner to take over from it)
            self.instant = InstantLearner(self.settings.instant_memory,
                                          self.settings.reward_wait, self.settings.weights(),
                                          self.settings.checkpoint_first_events)
            model = self.policy.model
            if isinstance(model, VWModel):
                self._standardizing(model)

    # -- the decision path ----------------------------------------------------------------
    def decide(self, request: DecideRequest) -> tuple[DecideRequest, Decision]:
        """Decide; returns the request as ranked (user signals added, capped offers
        removed, the user id replaced by its salted hash) and the decision."""
        t0 = time.perf_counter()
        if request.user_id is not None or self._budgets:
            request = self._with_user(request)
        loop = self.loop
        mode = loop.serving_mode
        if loop.exploration is not None and request.explore:
            request = replace(request, exploration=loop.exploration)
        arm: str | None = None
        if self.settings.holdout > 0 and self._in_holdout(request):
            arm, mode = "holdout", "fixed"
            if self.settings.holdout_treatment == "none":  # show nothing, with certainty
                request = replace(request, offers=(NULL_OFFER,), slots=1)
        else:
            if request.allow_none:
                request = replace(request, offers=(*request.offers, NULL_OFFER))
            if self.experiment is not None:
                mode = arm = self.experiment.assign(request.user_id or request.event_id)
                if arm == "model" and self._model_arm_guarded():
                    mode = self.settings.arm_guard_baseline  # the arm is back on its baseline
            elif self.settings.holdout > 0:
                arm = "treatment"
            if request.explore and self._limits_exploration and not self._may_explore(request):
                request = replace(request, explore=False)
        if mode == "lgbm" and self.lgbm_arm is not None:
            decision = self.lgbm_arm.decide(request)
        else:
            decision = self.policy.decide(request, mode)
        extra: dict[str, Any] = {}
        if arm is not None:
            extra.update(experiment=self.experiment.name if self.experiment else "holdout",
                         arm=arm)
        if "agree" in decision.info:
            self.apprentice[0] += 1
            self.apprentice[1] += int(bool(decision.info["agree"]))
            extra["agree"] = decision.info["agree"]
            slots = decision.info.get("agree_slots")
            if isinstance(slots, list):
                extra["agree_slots"] = slots
                for k, agreed in enumerate(slots):
                    key = request.slot_ids[k] if k < len(request.slot_ids) else str(k + 1)
                    if key not in self.apprentice_slots and \
                            len(self.apprentice_slots) >= MAX_SLOT_IDS:
                        key = "other"  # slot ids come from clients: bounded
                    counts = self.apprentice_slots.setdefault(key, [0, 0])
                    counts[0] += 1
                    counts[1] += int(bool(agreed))
        if self.shadow is not None:
            extra["shadow"] = self._shadow(request)
        if not isinstance(self.sink, NullSink):  # no sink: no event to encode
            self._emit_decision(request.event_id,
                                *encode_decision_event(request, decision, **extra))
        if self.instant is not None:
            self.instant.remember(request, decision)
        self.metrics.decided(arm or decision.policy, "explore" if request.explore else "exploit")
        if self.users is not None and (request.user_id is not None or
                                       self.settings.offer_budgets):
            name = self.settings.diversity_feature
            shown = [(request.offers[i].id, category_of(request.offers[i].features, name))
                     for i in decision.order[:decision.slots]]
            self.users.record_decision(request.user_id, request.event_id, shown, time.time())
        self.metrics.decide_latency.observe(time.perf_counter() - t0)
        # the budget counts decisions made at random (any shown probability below 1)
        if (self.settings.explore_budget and request.user_id is not None and request.explore
                and decision.slots and min(decision.probabilities[:decision.slots]) < 1.0):
            if self.users is not None:  # shared by the workers (unless memory, one worker)
                self.users.record_explored(request.user_id, time.time())
            else:
                self._explored.setdefault(request.user_id, []).append(time.time())
        self.live.decision(arm if arm is not None else decision.policy,
                           decision.explored, request.event_id)
        return request, decision

    def _emit_decision(self, key: str, value: bytes, c_at: int | None) -> None:
        """Hand an encoded decision to the sink; a refusal is a 503 the client can retry."""
        try:
            self.sink.decision_encoded(key, value, c_at)
        except Exception:
            log.exception("event sink refused the decision")
            self.metrics.sink_errors.inc()
            raise SinkUnavailable("decision") from None

    def _emit(self, what: str, key: str, event: dict[str, Any]) -> None:
        """Hand a reward or activation to the sink's reward stream; a refusal is a 503
        the client can retry."""
        try:
            self.sink.reward(key, event)
        except Exception:
            log.exception("event sink refused the %s", what)
            self.metrics.sink_errors.inc()
            raise SinkUnavailable(what) from None

    def _model_arm_guarded(self) -> bool:
        """The arm guard: the ``model`` arm serves its baseline arm's policy once its
        reward over the last 10 minutes is below the baseline's by more than the
        margin, with 95% one-sided confidence (checked every 10 s; it stays switched
        until ``POST /v1/admin/arm-guard/reset``). Both arms are measured on their own
        traffic, so the comparison is on-policy and unbiased."""
        margin = self.settings.arm_guard_margin
        if margin <= 0 or self.arm_guard_tripped:
            return self.arm_guard_tripped
        now = time.monotonic()
        if now - self._arm_guard_checked < 10.0:
            return False
        self._arm_guard_checked = now
        w = self.live_window(600)
        m, b = w.get("model"), w.get(self.settings.arm_guard_baseline)
        if m is None or b is None or min(m.decisions, b.decisions) < self.settings.arm_guard_min:
            return False
        vm, vb = m.reward_sum / m.decisions, b.reward_sum / b.decisions
        se = math.sqrt(max(vm * (1 - vm), 1e-9) / m.decisions +
                       max(vb * (1 - vb), 1e-9) / b.decisions)
        if vm - vb + margin < -1.645 * se:
            self.arm_guard_tripped = True
            if self.shared is not None:  # every worker switches
                self.shared.set_flag("arm_guard", True)
            log.warning("arm guard: the model arm (%.4f) is below %s (%.4f) by more than "
                        "%.4f; serving %s to it", vm, self.settings.arm_guard_baseline, vb,
                        margin, self.settings.arm_guard_baseline)
        return self.arm_guard_tripped

    def reset_arm_guard(self) -> None:
        self.arm_guard_tripped = False
        if self.shared is not None:
            self.shared.set_flag("arm_guard", False)

    # -- live counts: this worker's, or the host's when workers share them ---------------
    def live_window(self, seconds: float) -> dict[str, Counts]:
        return (self.shared or self.live).window(seconds)

    def live_timeline(self) -> list[tuple[float, dict[str, Counts]]]:
        return (self.shared or self.live).timeline()

    def share_live(self) -> None:
        """Publish this worker's counts and pick up the arm guard's switch."""
        assert self.shared is not None
        self.shared.flush(self.live)
        self.arm_guard_tripped = self.shared.flag("arm_guard")

    async def share_live_forever(self, every: float = 1.0) -> None:
        while True:
            await asyncio.sleep(every)
            try:
                await asyncio.to_thread(self.share_live)
            except Exception:  # the status page goes stale; serving goes on
                log.exception("sharing live counts failed")

    def _in_holdout(self, request: DecideRequest) -> bool:
        if self.settings.holdout <= 0:
            return False
        unit = request.user_id or request.event_id
        return HOLDOUT.point(unit) < self.settings.holdout

    def _may_explore(self, request: DecideRequest) -> bool:
        """Safe exploration: never for protected segments, and at most
        ``BANDIT_EXPLORE_BUDGET`` explored decisions per user within the signal TTL
        (counted in the user store, so across the workers that share it)."""
        if self._protected and any(key in feats for feats in request.context.values()
                                   for key in self._protected):
            return False
        budget = self.settings.explore_budget
        if budget and request.user_id is not None and self.users is not None:
            since = time.time() - self.settings.signal_ttl
            return self.users.explored(request.user_id, since) < budget
        if budget and request.user_id is not None:
            now = time.time()
            recent = [t for t in self._explored.get(request.user_id, [])
                      if t > now - self.settings.signal_ttl]
            self._explored[request.user_id] = recent
            if len(self._explored) > self.settings.max_users:
                self._explored.clear()  # bounded; forgetting only allows exploration again
            if len(recent) >= budget:
                return False
        return True

    def _shadow(self, request: DecideRequest) -> dict[str, Any]:
        """The shadow policy's decision on the same request: logged, never shown."""
        assert self.shadow is not None
        policy, mode = self.shadow
        d = policy.decide(replace(request, explain=False), mode)
        return {"policy": self.settings.shadow_policy, "a": [i + 1 for i in d.order],
                "p": list(d.probabilities)}

    def _with_user(self, request: DecideRequest) -> DecideRequest:
        if request.user_id is None and (self.users is None or not self.settings.offer_budgets):
            return request
        user = hash_user(request.user_id, self.salt) if request.user_id is not None else None
        if self.users is None:
            return replace(request, user_id=user)
        now = time.time()
        capped = self.users.capped(user, [o.id for o in request.offers], now)
        offers = request.offers
        if capped:
            offers = tuple(o for o in offers if o.id not in capped)
            if not offers:
                raise Unprocessable("every eligible offer is capped for this user or out of "
                                 "budget", code="NoEligibleOffer", field="offers")
        context = request.context
        if user is not None:
            sig = self.users.signals(user, now)
            if sig:
                context = {**context, **sig}
        return replace(request, user_id=user, offers=offers, context=context,
                       slots=min(request.slots, len(offers)))

    def reward(self, reward: Reward) -> None:
        if reward.user_id is not None and not reward.event_id:
            reward = replace(reward, user_id=hash_user(reward.user_id, self.salt))
            self._emit("reward", reward.user_id or "", reward_event(reward))
            self.metrics.rewards.labels(reward.kind or "long").inc()
            return
        if self.users is not None and reward.slot_id is None:
            self.users.record_reward(reward.event_id, reward.slot or 1, reward.value,
                                     time.time())
        stamp = utc_now()
        self._emit("reward", reward.event_id, reward_event(reward, stamp))
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
                and not self._serving_pinned)

    def activate(self, event_id: str) -> None:
        self._emit("activation", event_id, activation_event(event_id))
        self.metrics.activations.inc()

    # -- model information and hot swap ---------------------------------------------------
    def model_info(self) -> dict[str, Any]:
        m = self.manifest
        return {
            "version": self.policy.version,
            "checksum": m.sha256 if m else None,
            "policy": m.policy if m else self.policy.name,
            "events_learned": m.events_learned if m else 0,
            "created_at": m.created_at if m else None,
            "pinned": bool(self.store is not None and self._pinned()),
            "arm_guard_tripped": self.arm_guard_tripped,
            **({"instant": {"learned": self.instant.learned,
                            "replayed": self.instant.replayed}}
               if self.instant is not None else {}),
            "mode": self.mode,
            **({"apprentice": self._apprentice_info()} if self.mode == "apprentice" else {}),
            **({"experiment": {"name": self.experiment.name,
                               "arms": {a.name: a.share for a in self.experiment.arms}}}
               if self.experiment is not None else {}),
        }

    def _apprentice_info(self) -> dict[str, Any]:
        """How often the learned policy's greedy choice is the baseline: over slot 1 of
        every decision, and per slot of multi-slot decisions (by slot id)."""
        n, agreed = self.apprentice
        out: dict[str, Any] = {"decisions": n, "agreement": agreed / n if n else None}
        if self.apprentice_slots:
            out["slots"] = [{"slot": key, "decisions": c[0], "agreement": c[1] / c[0]}
                            for key, c in self.apprentice_slots.items()]
        return out

    @property
    def mode(self) -> str:
        """``online``, ``apprentice`` or ``logging_only`` (the live learning mode)."""
        return {"Online": "online", "Apprentice": "apprentice"}.get(self.loop.learning_mode,
                                                                     "logging_only")

    def _stamp(self) -> tuple[int, int] | None:
        if self.store is None:
            return None
        try:
            st = self.store.config_path.stat()
        except FileNotFoundError:
            return None
        return st.st_mtime_ns, st.st_size

    def refresh_config(self, force: bool = False) -> bool:
        """Read the live configuration again if its file changed; True if it did."""
        stamp = self._stamp()
        if not force and stamp == self._config_stamp:
            return False
        self._config_stamp = stamp
        self.loop = load_config(self.store, self.settings)
        return True

    def _pinned(self) -> bool:
        assert self.store is not None
        try:
            return self.store.pinned() is not None
        except ModelStoreError:
            return False

    async def refresh_model(self) -> bool:
        """Load the store's current model if it is new; True when a swap happened.

        Loading and checksum verification run in a thread; the swap itself is one
        reference assignment on the event loop, so no request sees a half-loaded model.
        """
        if self.store is None:
            return False
        try:
            manifest = self.store.serving()  # a pinned version wins (rollback)
        except ModelStoreError as exc:
            self._refuse(("manifest", str(exc)), f"manifest refused: {exc}")
            return False
        if manifest is None or manifest.version == self.policy.version:
            return False
        key = (manifest.version, manifest.sha256)
        if key in self._refused:
            return False
        instant = self.instant
        updates: list[Update] = [] if instant is None else self._unread(instant, manifest)
        seq = 0 if instant is None else instant.last_seq
        try:
            model = await asyncio.to_thread(self._load, manifest, updates)
        except ModelStoreError as exc:
            self._refuse(key, f"model {manifest.version} refused, keeping "
                              f"{self.policy.version}: {exc}")
            return False
        if instant is not None:  # rewards learned at once while it loaded
            instant.apply(instant.since(seq), model)
            instant.swapped()
        previous = self.policy.version
        self.policy.swap(model, manifest.version,
                         OfferStats.restore(Checkpoint.of(manifest).offer_stats),
                         manifest.events_learned)
        self.manifest = manifest
        if manifest.policy != self.policy.name:  # new learning settings
            try:
                self.policy.spec = PolicySpec.parse(manifest.policy)
                self.policy.name = str(self.policy.spec)
            except ValueError:
                pass
        self.metrics.model_swaps.labels("ok").inc()
        self.metrics.set_model(manifest.version, self.policy.name, previous)
        log.info("serving model %s (was %s)", manifest.version, previous)
        return True

    def _unread(self, instant: InstantLearner, manifest: Manifest) -> list[Update]:
        """The updates learned at once that ``manifest``'s model lacks; none for a
        pinned model (a rollback serves the model as it is, and nothing is learned on
        it until the pin goes)."""
        self._serving_pinned = self._pinned()
        if self._serving_pinned:
            instant.clear()
            return []
        ck = Checkpoint.of(manifest)
        return instant.unread(ck.rewards_through(), ck.rewards_pending())

    def _load(self, manifest: Manifest, updates: list[Update]) -> VWModel:
        """Load (in a thread) a model to serve, with the updates it lacks applied."""
        assert self.store is not None
        model = self.store.load(manifest)
        self._standardizing(model, self.store.feature_scale(manifest))
        if updates and self.instant is not None:
            self.instant.apply(updates, model)
        return model

    def _standardizing(self, model: VWModel, scale: dict[str, Any] | None = None) -> None:
        """A model that learns rewards at once standardises as the learner goes on
        learning it (bandit.scaling): a model of the learner's with the snapshot of the
        statistics it was saved with (the one the learner learns on with after that
        save, not the one before it), a fresh or reset one with running statistics
        frozen at the young-model points."""
        if not self.settings.standardize or self.instant is None:
            return
        if scale:
            model.set_scale(Standardizer.restore(scale).current)
        elif not model.scale and model.standardizer is None:
            model.standardize(Standardizer())

    def _refuse(self, key: tuple[str, str], message: str) -> None:
        if key not in self._refused:  # count and log each bad model once, not every poll
            self._refused.add(key)
            log.warning(message)
            self.metrics.model_swaps.labels("refused").inc()

    async def poll_models(self) -> None:
        while True:
            await asyncio.sleep(self.settings.model_poll)
            try:
                self.refresh_config()
                await self.refresh_model()
            except Exception:  # keep polling whatever happens; the old model keeps serving
                log.exception("model poll failed")

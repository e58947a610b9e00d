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
"""

from __future__ import annotations

import contextlib
import gc
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import orjson

from bandit import kafka_client
from bandit.checkpoint import Checkpoint
from bandit.errors import BadRequest
from bandit.events import (
    C_AT,
    LoggedDecision,
    ccb_joined_event,
    decode,
    joined_event,
    joined_head,
    joined_line,
    learn_line,
    open_label,
    parse_decision,
    parse_decision_head,
    parse_reward,
)
from bandit.learner import backend
from bandit.learner.backend import BackendDied, LearnerBackend
from bandit.learner.guard import PromotionGuard
from bandit.learner.join import Joined, JoinState
from bandit.learner.live_config import ConfigFollower, LogRange, apply_to_join
from bandit.loop_admin import LoopAdmin
from bandit.loop_config import LoopConfig
from bandit.modelstore import Manifest, ModelStore, ModelStoreError, Slot
from bandit.offerstats import OfferStats
from bandit.policy import SLOT_NAMESPACE
from bandit.settings import Settings
from bandit.topics import Topics, ensure_topics

log = logging.getLogger("bandit.learner")

POLL_RECORDS = 5000


def _decision(m: Any) -> LoggedDecision:
    """The decision in a message: from its head alone when the server's ``c_at``
    header says where its context starts, else decoded whole."""
    value = m.value() or b""
    d = None
    for name, at in m.headers() or ():
        if name == C_AT and at and at.isdigit():
            d = parse_decision_head(value, int(at))
    return d or parse_decision(decode(value))


def slot_example(decision: dict[str, Any], k: int, reward: float) -> dict[str, Any]:
    """The CB example of shown slot ``k`` ≥ 2 of a multi-slot decision: the offers the
    earlier slots left, the slot position as a shared feature, the slot's chosen offer
    with its conditional probability and reward (what the server predicted from)."""
    a, p, c = decision["a"], decision["p"], decision["c"]
    shown = {x - 1 for x in a[:k - 1]}
    excluded: set[str] = set()
    per_slot = decision.get("slot_exclude")
    if isinstance(per_slot, list) and k - 1 < len(per_slot):
        excluded = set(per_slot[k - 1])
    ids = decision.get("ids") or []
    remaining = [i for i in range(len(c["_multi"])) if i not in shown and
                 not (i < len(ids) and ids[i] in excluded)]
    idx = remaining.index(a[k - 1] - 1)
    shared = {key: v for key, v in c.items() if key != "_multi"}
    return {"_label_cost": -reward, "_label_probability": p[k - 1], "_label_Action": idx + 1,
            "_labelIndex": idx, "a": [idx + 1], "p": [p[k - 1]],
            "c": {**shared, SLOT_NAMESPACE: {f"k={k}": 1.0},
                  "_multi": [c["_multi"][i] for i in remaining]}}


def whole(j: Joined) -> dict[str, Any]:
    """The joined decision's whole event (decoded here when only its head was)."""
    return j.decision if j.body is None else {**j.decision, "c": orjson.loads(j.body)["c"]}


def learn_joined(model: LearnerBackend, stats: OfferStats, j: Joined,
                 line: bytes, full: dict[str, Any] | None = None) -> None:
    """Learn every shown slot of a joined decision (``line``: its CB DSJSON, which is
    slot 1's example; ``full``: its whole event if already decoded) and count each
    shown offer in the offer statistics."""
    for example in slot_lines(j, line, full):
        model.learn_dsjson(example)
    count_offers(stats, j)


def slot_lines(j: Joined, line: bytes, full: dict[str, Any] | None = None) -> list[bytes]:
    """The CB DSJSON lines of a joined decision's shown slots: ``line`` (slot 1's),
    then one example per further slot (``full``: its whole event if already decoded)."""
    lines = [line]
    if len(j.slot_rewards) > 1:
        full = full if full is not None else whole(j)
        for k in range(2, len(j.slot_rewards) + 1):
            lines.append(orjson.dumps(slot_example(full, k, j.slot_rewards[k - 1])))
    return lines


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


@dataclass
class _Checkpoint:
    """A checkpoint whose model is being saved: the rest was captured when begun."""

    slot: Slot
    learned: int
    offsets: dict[str, int]
    extra: dict[str, Any]


class Learner:
    def __init__(self, settings: Settings, *, group: str = "bandit-learner",
                 clock: Callable[[], float] = time.time) -> None:
        self.s = settings
        self.group = group
        self.clock = clock
        self.topics = Topics.from_settings(settings)
        self.store = ModelStore(settings.model_dir, settings.model_keep)
        self.state = JoinState(settings.reward_wait, settings.reward_function,
                               settings.default_reward, weights=settings.weights(),
                               long_wait=settings.long_wait, long_weight=settings.long_weight,
                               attribution=settings.attribution)
        self.offer_stats = OfferStats()
        self.guard = PromotionGuard(settings.guard_margin, settings.guard_holdout) \
            if settings.guard_margin > 0 else None
        self._promoted: Manifest | None = None
        self.policy = settings.policy
        self.offsets: dict[str, int] = {}
        self.dead_letters = 0
        self.learn_errors = 0
        self.output_errors = 0  # joined/dead-letter messages Kafka refused for good
        self.manifest: Manifest | None = None
        self.logs = LogRange()
        self.follower = ConfigFollower(self.store, settings)
        self.loop = self.follower.config
        apply_to_join(self.state, self.loop)
        self._generation = self.loop.generation
        self.model: LearnerBackend = self._restore()
        self._published_learned = self.state.counters.learned
        self._last_checkpoint = time.monotonic()
        self._since_checkpoint = 0
        self._dirty = False
        self._ckpt: _Checkpoint | None = None  # begun, its model still being saved
        self.consumer: Any = None
        self.producer: Any = None

    # -- restore -----------------------------------------------------------------------
    def _restore(self) -> LearnerBackend:
        man = self.store.current()
        if man is not None:
            try:
                model = self._load(man)
            except ModelStoreError as exc:
                raise SystemExit(f"bandit-learn: cannot resume from {man.version}: {exc}") \
                    from None
            self.manifest = man
            self.policy = man.policy
            ck = Checkpoint.of(man)
            if ck.join_state is not None:
                snap = orjson.loads(self.store.read_attachment(ck.join_state))
                self.state.restore(snap)
                self._restore_guard(snap)
                self.offsets = dict(man.offsets)
                self.dead_letters = ck.dead_letters
                self.offer_stats = OfferStats.restore(ck.offer_stats)
            self.logs = LogRange.restore(ck.logs)
            log.info("resuming from model %s (%d events learned)", man.version,
                     self.state.counters.learned)
            return model
        # a server may serve a LightGBM model; the learner always learns a VW policy
        spec = LoopAdmin(self.s, self.store).spec(self.loop)
        self.policy = str(spec)
        fresh = backend.fresh(spec.vw_args(self.s.seed), child=self.s.learner_process,
                              emit=self._emit_to())
        return self._standardize(fresh, None)

    def _restore_guard(self, snap: dict[str, Any]) -> None:
        """The promotion guard's held-out events, and the version it last promoted."""
        if self.guard is None:
            return
        self.guard.restore(snap.get("guard"))
        # what the guard let through last is what is served: the version it pinned, or
        # the latest one when nothing is pinned (a version is checked as it is published)
        with contextlib.suppress(ModelStoreError):
            self._promoted = self.store.serving()

    def _load(self, man: Manifest) -> LearnerBackend:
        """A stored model to learn on from (VW in a child process, or in-process)."""
        path = self.store.verify(man)
        try:
            model = backend.load(path, child=self.s.learner_process, emit=self._emit_to())
        except Exception as exc:  # VW raises plain RuntimeError on a corrupt file
            raise ModelStoreError(f"VW could not load {path}: {exc}") from None
        return self._standardize(model, man)

    def _standardize(self, model: LearnerBackend, man: Manifest | None) -> LearnerBackend:
        """Learn with standardised numeric features (``BANDIT_STANDARDIZE``),
        from the statistics of the checkpoint ``man`` (see :mod:`bandit.scaling`)."""
        if self.s.standardize:
            model.standardize(self.store.feature_scale(man) if man is not None else {})
        return model

    # -- the live configuration ------------------------------------------------------
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
        if self._ckpt is not None:
            with contextlib.suppress(BackendDied):
                self.model.save_done(wait=True)
            self._ckpt.slot.discard()
            self._ckpt = None
        assert config.generation_version is not None
        try:
            man = self.store.version(config.generation_version)
            model = self._load(man)
        except ModelStoreError as exc:
            log.error("cannot adopt model %s: %s; learning on with the current one",
                      config.generation_version, exc)
            self._generation = config.generation
            return
        old, self.model = self.model, model
        old.close()
        self._generation = config.generation
        self.manifest, self.policy = man, man.policy
        self.offer_stats = OfferStats.restore(Checkpoint.of(man).offer_stats)
        self._published_learned = self.state.counters.learned
        self._dirty = True  # the next checkpoint records this learner's offsets on it
        log.info("learning on from model %s (%s), as the configuration says", man.version,
                 man.policy)

    def _emit_to(self) -> tuple[str, str, str] | None:
        s = self.s
        return (s.kafka_bootstrap, self.topics.joined, s.kafka_compression) \
            if s.kafka_bootstrap else None

    # -- Kafka -------------------------------------------------------------------------
    def connect(self, timeout: float = 30.0) -> None:
        ensure_topics(self.s.kafka_bootstrap, self.topics, self.s.partitions)
        consumer = kafka_client.consumer(self.s.kafka_bootstrap, self.group)
        tps = []
        deadline = time.monotonic() + timeout
        for topic in (self.topics.decisions, self.topics.rewards):
            parts = kafka_client.topic_partitions(consumer, topic)
            while not parts and time.monotonic() < deadline:
                time.sleep(0.2)
                parts = kafka_client.topic_partitions(consumer, topic)
            if not parts:
                raise RuntimeError(f"topic {topic} has no partitions")
            for p in parts:
                # the checkpoint's offsets are the truth; a new learner starts at the start
                off = self.offsets.get(f"{topic}:{p}", kafka_client.OFFSET_BEGINNING)
                tps.append(kafka_client.TopicPartition(topic, p, off))
        consumer.assign(tps)  # manual assignment: no group rebalance delay
        self._reload_pending(timeout)
        # The join state holds many long-lived objects and every message allocates a
        # few: collect young objects less often, and never rescan what restore loaded.
        gc.freeze()
        gc.set_threshold(50_000, 20, 20)
        self.consumer = consumer
        self.producer = kafka_client.producer(
            self.s.kafka_bootstrap, self.s.kafka_compression,
            **{"linger.ms": 20, **kafka_client.keep_trying(self._refused)})

    def _reload_pending(self, timeout: float) -> None:
        """Read back the pending decisions the checkpoint stored by offset. One the
        topic no longer holds (its retention is shorter than the reward window) is
        logged and counted as lost. If reading makes no progress for ``timeout``
        seconds, or an offset holds another event, the start fails: learning without
        those decisions would break exactly-once."""
        want = self.state.unloaded()
        if not want:
            return
        topic = self.topics.decisions
        reader = kafka_client.consumer(self.s.kafka_bootstrap, self.group + "-reload")
        try:
            left: dict[int, set[int]] = {}
            lost = self.state.counters.lost
            for part, offsets in want.items():
                low, _ = reader.get_watermark_offsets(
                    kafka_client.TopicPartition(topic, part), timeout=timeout)
                for off in [o for o in offsets if o < low]:
                    self.state.forget(offsets.pop(off))
                if offsets:
                    left[part] = set(offsets)
            if self.state.counters.lost > lost:
                log.error("%d pending decisions were no longer in %s (retention shorter "
                          "than the reward window?): they are not learned",
                          self.state.counters.lost - lost, topic)
            reader.assign([kafka_client.TopicPartition(topic, p, min(o)) for p, o in left.items()])
            deadline = time.monotonic() + timeout
            while any(left.values()):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"could not read back {sum(map(len, left.values()))} "
                                       f"pending decisions from {topic}")
                for m in reader.consume(POLL_RECORDS, 0.5):
                    mp, mo = m.partition(), m.offset()
                    if (m.error() is None and mp is not None and mo is not None
                            and mo in left.get(mp, ())):
                        left[mp].discard(mo)
                        try:
                            d = _decision(m)
                        except BadRequest as exc:  # valid when read first, not any more
                            log.error("pending decision %s (%s partition %d offset %d) no "
                                      "longer passes validation, not learned: %s",
                                      want[mp][mo], topic, mp, mo, exc.message)
                            self.state.forget(want[mp][mo])
                            continue
                        try:
                            self.state.reload(want[mp][mo], d)
                        except ValueError as exc:
                            raise RuntimeError(f"{topic} partition {mp} offset {mo} does not "
                                               f"hold the pending decision: {exc}") from None
                        deadline = time.monotonic() + timeout  # progress: wait again
        finally:
            reader.close()
        log.info("read back %d pending decisions", sum(map(len, want.values())))

    def close(self) -> None:
        if self.consumer is not None:
            self.consumer.close()
            self.consumer = None
        if self.producer is not None:
            self.producer.flush(5)
            self.producer = None
        self.model.close()
        if self._ckpt is not None:  # begun, never published: its file is not a version
            self._ckpt.slot.discard()
            self._ckpt = None

    # -- the loop ----------------------------------------------------------------------
    def step(self, timeout_ms: int = 200) -> int:
        """Poll once, learn what joined, checkpoint when due. Returns events learned."""
        # what the client has fetched already; wait only when it has nothing (a batch
        # with a timeout waits until it is full, though messages are there to work on)
        self.follow_config()  # before the messages: decisions read now get its window
        messages = self.consumer.consume(POLL_RECORDS, 0) or \
            self.consumer.consume(POLL_RECORDS, timeout_ms / 1000)
        now = self.clock()
        joined: list[Joined] = []
        last: dict[tuple[str, int], Any] = {}  # the last message of each partition
        feed = self.model.pump
        for i, m in enumerate(messages):
            if i % 128 == 0:
                feed()  # keep a VW child busy while this batch is decoded and joined
            err = m.error()
            if err is not None:  # a transient client condition, not a message
                log.warning("consumer: %s", err)
                continue
            topic = m.topic()
            joined += self._handle(topic, m, now)
            last[topic, m.partition()] = m
        if last:
            for (topic, part), m in last.items():
                self.offsets[f"{topic}:{part}"] = m.offset() + 1
            self._dirty = True
        joined += self.state.expire(now)
        for j in joined:
            self._learn(j)
        feed()
        self._since_checkpoint += len(joined)
        self.producer.poll(0)  # serve delivery reports
        if self._ckpt is not None:
            self._finish_checkpoint(wait=False)
        elif self._checkpoint_due():
            self._begin_checkpoint()
        return len(joined)

    def _handle(self, topic: str, m: Any, now: float) -> list[Joined]:
        try:
            if topic == self.topics.decisions:
                part, off = m.partition(), m.offset()
                ref = (part, off) if part is not None and off is not None else None
                return self.state.add_decision(_decision(m), now, ref)
            reward = parse_reward(decode(m.value() or b""))
            self.logs.reward(reward.timestamp)
            return self.state.add_reward(reward, now)
        except BadRequest as exc:
            self._dead_letter(topic, m, exc.message + (f" ({exc.field})" if exc.field else ""))
            return []

    def _dead_letter(self, topic: str, m: Any, reason: str) -> None:
        self.dead_letters += 1
        log.warning("dead-lettering %s[%d]@%d: %s", topic, m.partition(), m.offset(), reason)
        self._produce(self.topics.deadletter, m.key(), m.value() or b"",
                      [("source", f"{topic}:{m.partition()}:{m.offset()}".encode()),
                       ("error", reason.encode("utf-8", "replace")[:1000])])

    def _produce(self, topic: str, key: bytes | None, value: bytes,
                 headers: list[tuple[str, str | bytes | None]] | None = None) -> None:
        if not kafka_client.send(self.producer, topic, key, value, headers):
            self.output_errors += 1

    def _refused(self, err: Any, msg: Any) -> None:
        self.output_errors += 1
        log.error("Kafka refused a message for %s: %s", msg.topic(), err)

    def _learn(self, j: Joined) -> None:
        d = j.decision
        self.logs.add(d.get("Timestamp"))
        multi = len(j.slot_rewards) > 1
        if self.loop.learning_mode == "LoggingOnly":  # joined and logged, not learned
            full = whole(j) if multi else None
            out = orjson.dumps(ccb_joined_event(full, j.slot_rewards, j.rewards)) \
                if full is not None else (
                    orjson.dumps(joined_event(d, j.reward, j.rewards)) if j.body is None
                    else joined_line(d, j.body, j.reward, j.rewards, open_label(d, j.reward)))
            self._produce(self.topics.joined, str(d["EventId"]).encode(), out)
            return
        held = self.guard is not None and self.guard.held_out(str(d["EventId"]))
        if self.model.emits and not multi and not held:
            # the usual event, VW in a child: it learns the whole joined line (reading
            # only the label and ``c``) and writes it to offers.joined; spliced from the
            # body's bytes, which go to the child as they are
            key = str(d["EventId"]).encode()
            if j.body is None:
                self.model.learn_and_emit(key, orjson.dumps(joined_event(d, j.reward,
                                                                         j.rewards)))
            else:
                self.model.learn_and_emit(key, joined_head(open_label(d, j.reward), j.rewards),
                                          j.body)
            count_offers(self.offer_stats, j)
            return
        if j.body is None:
            line = learn = orjson.dumps(joined_event(d, j.reward, j.rewards))
        else:  # spliced from the body's bytes; VW gets the short line it learns the same from
            label = open_label(d, j.reward)
            line = joined_line(d, j.body, j.reward, j.rewards, label)
            learn = learn_line(d, j.body, j.c_at, j.reward, label)
        full = whole(j) if multi or held else None  # decoded once, only when needed
        # the topic gets VW's CCB DSJSON for multi-slot decisions, CB DSJSON otherwise
        out = orjson.dumps(ccb_joined_event(full, j.slot_rewards, j.rewards)) \
            if full is not None and multi else line
        if held:
            assert self.guard is not None and full is not None
            self.guard.add(full, j.reward)  # held out for the promotion guard, not learned
        elif self.model.emits and multi:  # the child learns every slot, then writes it
            try:
                lines = slot_lines(j, learn, full)
            except Exception as exc:  # no example for a slot: keep going, as VW refusing
                self.learn_errors += 1
                log.warning("could not make the slots of event %s: %s", d.get("EventId"), exc)
                return
            self.model.learn_group_and_emit(str(d["EventId"]).encode(), lines, out)
            count_offers(self.offer_stats, j)
            return
        else:
            try:
                learn_joined(self.model, self.offer_stats, j, learn, full)
            except BackendDied:
                raise  # the child learning VW died: stop (a restart resumes exactly-once)
            except Exception as exc:  # VW refused this example: keep the model, keep going
                self.learn_errors += 1
                log.warning("VW could not learn event %s: %s", d.get("EventId"), exc)
                return
        self._produce(self.topics.joined, str(d["EventId"]).encode(), out)

    def _checkpoint_due(self) -> bool:
        if not self._dirty and self._since_checkpoint == 0:
            return False
        return (self._since_checkpoint >= self.s.checkpoint_events or
                self._young_model_due() or
                time.monotonic() - self._last_checkpoint >= self.loop.model_export)

    def _young_model_due(self) -> bool:
        """A young model is published when the events it learned since the last one
        reach ``checkpoint_first_events`` and the events the last one had learned
        (after 32, 64, 128, … events): the first models, which change most, reach the
        servers in a fraction of the interval; a mature one waits for the interval."""
        first = self.s.checkpoint_first_events
        if first <= 0 or self._ckpt is not None:
            return False
        return self._since_checkpoint >= max(first, self._published_learned)

    def checkpoint(self) -> Manifest:
        """Model + join state + offsets, atomically; then commit offsets for monitoring.
        Waits until it is written (``step`` starts checkpoints without waiting)."""
        if self._ckpt is not None:
            self._finish_checkpoint(wait=True)
        manifest = self._begin_checkpoint()
        if manifest is None:
            manifest = self._finish_checkpoint(wait=True)
        assert manifest is not None
        return manifest

    def _begin_checkpoint(self) -> Manifest | None:
        """Capture the join state, offsets and counters now and ask for the model saved
        after exactly the events learned so far. A VW child saves while the daemon goes
        on (the lines it is sent later come after the save in its pipe); the manifest
        is written by :meth:`_finish_checkpoint` once the file is on disk. Returns the
        manifest when it is written at once (nothing new learned, or VW in-process)."""
        snap = self.state.snapshot()
        if self.guard is not None:
            snap["guard"] = self.guard.snapshot()
        ref = self.store.write_attachment("state", orjson.dumps(snap))
        self.logs.rewards_pending = self._rewards_pending()
        record = Checkpoint(ref, self.state.counters.as_dict(), self.dead_letters,
                            self.state.sizes, self.offer_stats.snapshot(), self.logs.snapshot(),
                            self.lag())
        extra = record.to_extra()
        learned = self.state.counters.learned
        offsets = dict(self.offsets)
        self._since_checkpoint = 0
        self._dirty = False
        self._last_checkpoint = time.monotonic()
        if self.manifest is not None and learned == self._published_learned:
            scale = Checkpoint.of(self.manifest).feature_scale  # the same model, same scale
            if scale is not None:
                extra = replace(record, feature_scale=scale).to_extra()
            self._flush_outputs()
            self.manifest = self.store.update(self.manifest, offsets, extra)
            self._commit_offsets(offsets)
            return self.manifest
        slot = self.store.reserve()
        self._ckpt = _Checkpoint(slot, learned, offsets, extra)
        try:
            self.model.save_begin(slot.tmp)  # VW in a child saves while the daemon goes on
        except BaseException:
            self._ckpt = None
            slot.discard()
            raise
        return self._finish_checkpoint(wait=False)

    def _rewards_pending(self, most: int = 1000) -> list[str]:
        """The latest decisions rewarded but not read yet (at most ``most``): a server
        that learned their rewards at once applies them again on this model."""
        out = []
        for eid, orphan in reversed(self.state.orphans.items()):
            if orphan.rewards:
                out.append(eid)
                if len(out) >= most:
                    break
        return out

    def _finish_checkpoint(self, wait: bool) -> Manifest | None:
        """Publish the checkpoint begun last, once its model is saved (None until then,
        unless ``wait``)."""
        ck = self._ckpt
        assert ck is not None
        try:
            if not self.model.save_done(wait=wait):
                return None
        except BaseException:
            self._ckpt = None
            ck.slot.discard()
            raise
        self._ckpt = None
        if self.model.saved_scale is not None:  # what the saved model is served with
            ck.extra["feature_scale"] = self.store.write_attachment(
                "state", orjson.dumps(self.model.saved_scale))
        generation = self._generation
        self.follow_config()
        if self._generation != generation:  # a server replaced the model meanwhile:
            ck.slot.discard()  # this checkpoint holds the replaced one
            return self.manifest
        self._flush_outputs()  # the joined events up to this point are in Kafka
        self.manifest = self.store.publish_file(ck.slot, self.policy, ck.learned, ck.offsets,
                                                ck.extra)
        self._published_learned = ck.learned
        if self.guard is not None:
            self._guard(self.manifest)
        self._commit_offsets(ck.offsets)
        return self.manifest

    def _flush_outputs(self) -> None:
        """Every joined and dead-letter message so far is in Kafka (a checkpoint waits
        for it: its offsets must not pass an output that could still be lost)."""
        kafka_client.flush_all(self.producer, "joined/dead-letter messages")

    def _guard(self, candidate: Manifest) -> None:
        """Promote ``candidate`` only if it is not worse than the promoted model."""
        assert self.guard is not None
        if self.store.pin_reason() not in (None, "guard"):
            return  # a person pinned a version: leave serving alone
        promoted = self._promoted
        if promoted is None or not self.guard.events:
            self._promoted = candidate
            return
        new = self.store.load(candidate)
        try:
            old = self.store.load(promoted)
        except ModelStoreError:  # the promoted version was pruned: nothing to protect
            new.close()
            self._promoted = candidate
            return
        try:
            ok, v_new, v_old = self.guard.passes(new, old)
        finally:
            new.close()
            old.close()
        if ok:
            if self.store.pin_reason() == "guard":
                self.store.unpin()
            self._promoted = candidate
        else:
            log.warning("guard: version %s (%.4f) is worse than %s (%.4f) on %d held-out "
                        "events; servers keep %s", candidate.version, v_new,
                        promoted.version, v_old, len(self.guard.events), promoted.version)
            self.store.pin(promoted.version, reason="guard")

    def _commit_offsets(self, offsets: dict[str, int]) -> None:
        tps = []
        for key, off in offsets.items():
            topic, _, part = key.rpartition(":")
            tps.append(kafka_client.TopicPartition(topic, int(part), off))
        try:
            self.consumer.commit(offsets=tps, asynchronous=True)
        except Exception as exc:  # monitoring only: the manifest holds the real offsets
            log.debug("offset commit failed: %s", exc)

    def lag(self) -> int:
        """Messages not yet consumed, from the high-water marks of the last fetch
        responses (a ListOffsets answer can under-report on some brokers)."""
        total = 0
        for tp in self.consumer.assignment():
            try:
                _, high = self.consumer.get_watermark_offsets(tp, cached=True)
            except Exception as exc:  # lag is informational: skip a partition that times out
                log.debug("no high-water mark for %s: %s", tp, exc)
                continue
            pos = self.offsets.get(f"{tp.topic}:{tp.partition}", 0)
            total += max(0, high - pos)
        return total

    def status(self) -> dict[str, Any]:
        return {"version": self.manifest.version if self.manifest else None,
                **self.state.counters.as_dict(), **self.state.sizes,
                "dead_letters": self.dead_letters,
                "learn_errors": self.learn_errors + self.model.errors,
                "output_errors": self.output_errors + self.model.refused,
                "guard_blocked": self.guard.blocked if self.guard else 0}

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
``EventId`` (``bandit-replay`` does).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import orjson

from bandit.errors import BadRequest
from bandit.events import decode, joined_event, parse_decision, parse_reward
from bandit.kafka_sink import make_producer
from bandit.learner.join import Joined, JoinState
from bandit.modelstore import Manifest, ModelStore, ModelStoreError
from bandit.policy_spec import PolicySpec
from bandit.settings import Settings
from bandit.topics import Topics, ensure_topics
from bandit.vw_adapter import VWModel

log = logging.getLogger("bandit.learner")

POLL_RECORDS = 5000


class Learner:
    def __init__(self, settings: Settings, *, group: str = "bandit-learner",
                 clock: Callable[[], float] = time.time) -> None:
        self.s = settings
        self.group = group
        self.clock = clock
        self.topics = Topics.from_settings(settings)
        self.store = ModelStore(settings.model_dir, settings.model_keep)
        self.state = JoinState(settings.reward_wait, settings.reward_function,
                               settings.default_reward)
        self.policy = settings.policy
        self.offsets: dict[str, int] = {}
        self.dead_letters = 0
        self.learn_errors = 0
        self.manifest: Manifest | None = None
        self.model = self._restore()
        self._published_learned = self.state.counters.learned
        self._last_checkpoint = time.monotonic()
        self._since_checkpoint = 0
        self._dirty = False
        self.consumer: Any = None
        self.producer: Any = None

    # -- restore -----------------------------------------------------------------------
    def _restore(self) -> VWModel:
        man = self.store.current()
        if man is not None:
            try:
                model = self.store.load(man, json_input=True)
            except ModelStoreError as exc:
                raise SystemExit(f"bandit-learn: cannot resume from {man.version}: {exc}") \
                    from None
            self.manifest = man
            self.policy = man.policy
            ref = man.extra.get("join_state")
            if isinstance(ref, dict):
                self.state.restore(orjson.loads(self.store.read_attachment(ref)))
                self.offsets = dict(man.offsets)
                self.dead_letters = int(man.extra.get("dead_letters", 0))
            log.info("resuming from model %s (%d events learned)", man.version,
                     self.state.counters.learned)
            return model
        spec = PolicySpec.parse(self.s.policy)
        self.policy = str(spec)
        return VWModel(spec.vw_args(self.s.seed), json_input=True)

    # -- Kafka -------------------------------------------------------------------------
    def connect(self, timeout: float = 30.0) -> None:
        from kafka import KafkaConsumer, TopicPartition

        ensure_topics(self.s.kafka_bootstrap, self.topics, self.s.partitions)
        consumer = KafkaConsumer(bootstrap_servers=self.s.kafka_bootstrap, group_id=self.group,
                                 enable_auto_commit=False, auto_offset_reset="earliest",
                                 max_poll_records=POLL_RECORDS, fetch_max_wait_ms=100)
        tps = []
        deadline = time.monotonic() + timeout
        for topic in (self.topics.decisions, self.topics.rewards):
            parts = consumer.partitions_for_topic(topic)
            while not parts and time.monotonic() < deadline:
                time.sleep(0.2)
                parts = consumer.partitions_for_topic(topic)
            if not parts:
                raise RuntimeError(f"topic {topic} has no partitions")
            tps += [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)  # manual assignment: no group rebalance delay
        for tp in tps:
            off = self.offsets.get(f"{tp.topic}:{tp.partition}")
            if off is None:
                consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, off)
        self.consumer = consumer
        self.producer = make_producer(self.s.kafka_bootstrap)

    def close(self) -> None:
        if self.consumer is not None:
            self.consumer.close()
        if self.producer is not None:
            self.producer.close(timeout=5)
        self.model.close()

    # -- the loop ----------------------------------------------------------------------
    def step(self, timeout_ms: int = 200) -> int:
        """Poll once, learn what joined, checkpoint when due. Returns events learned."""
        batch = self.consumer.poll(timeout_ms=timeout_ms, max_records=POLL_RECORDS)
        now = self.clock()
        joined: list[Joined] = []
        for tp, messages in batch.items():
            key = f"{tp.topic}:{tp.partition}"
            for m in messages:
                joined += self._handle(tp.topic, m, now)
                self.offsets[key] = m.offset + 1
            self._dirty = True
        joined += self.state.expire(now)
        for j in joined:
            self._learn(j)
        self._since_checkpoint += len(joined)
        if self._checkpoint_due():
            self.checkpoint()
        return len(joined)

    def _handle(self, topic: str, m: Any, now: float) -> list[Joined]:
        try:
            obj = decode(m.value)
            if topic == self.topics.decisions:
                return self.state.add_decision(parse_decision(obj), now)
            return self.state.add_reward(parse_reward(obj), now)
        except BadRequest as exc:
            self._dead_letter(topic, m, exc.message + (f" ({exc.field})" if exc.field else ""))
            return []

    def _dead_letter(self, topic: str, m: Any, reason: str) -> None:
        self.dead_letters += 1
        log.warning("dead-lettering %s[%d]@%d: %s", topic, m.partition, m.offset, reason)
        value = m.value if isinstance(m.value, bytes) else b""
        self.producer.send(self.topics.deadletter, key=m.key, value=value,
                           headers=[("source", f"{topic}:{m.partition}:{m.offset}".encode()),
                                    ("error", reason.encode("utf-8", "replace")[:1000])])

    def _learn(self, j: Joined) -> None:
        line = orjson.dumps(joined_event(j.decision, j.reward, j.rewards))
        try:
            self.model.learn_dsjson(line.decode())
        except Exception as exc:  # VW refused this example: keep the model, keep going
            self.learn_errors += 1
            log.warning("VW could not learn event %s: %s", j.decision.get("EventId"), exc)
            return
        self.producer.send(self.topics.joined, key=str(j.decision["EventId"]).encode(),
                           value=line)

    def _checkpoint_due(self) -> bool:
        if not self._dirty and self._since_checkpoint == 0:
            return False
        return (self._since_checkpoint >= self.s.checkpoint_events or
                time.monotonic() - self._last_checkpoint >= self.s.checkpoint_seconds)

    def checkpoint(self) -> Manifest:
        """Model + join state + offsets, atomically; then commit offsets for monitoring."""
        self.producer.flush(timeout=30)
        ref = self.store.write_attachment("state", orjson.dumps(self.state.snapshot()))
        extra: dict[str, Any] = {"join_state": ref, "counters": self.state.counters.as_dict(),
                                 "dead_letters": self.dead_letters, "sizes": self.state.sizes}
        learned = self.state.counters.learned
        if self.manifest is None or learned != self._published_learned:
            self.manifest = self.store.publish(self.model, self.policy, learned,
                                               self.offsets, extra)
            self._published_learned = learned
        else:
            self.manifest = self.store.update(self.manifest, self.offsets, extra)
        self._commit_offsets()
        self._since_checkpoint = 0
        self._dirty = False
        self._last_checkpoint = time.monotonic()
        return self.manifest

    def _commit_offsets(self) -> None:
        from kafka import TopicPartition
        from kafka.structs import OffsetAndMetadata

        offsets = {}
        for key, off in self.offsets.items():
            topic, _, part = key.rpartition(":")
            offsets[TopicPartition(topic, int(part))] = OffsetAndMetadata(off, "", -1)
        try:
            self.consumer.commit(offsets)
        except Exception as exc:  # monitoring only: the manifest holds the real offsets
            log.debug("offset commit failed: %s", exc)

    def lag(self) -> int:
        """Messages not yet consumed (from the fetch high-water marks)."""
        total = 0
        for tp in self.consumer.assignment():
            hw = self.consumer.highwater(tp)
            if hw is not None:
                total += max(0, hw - self.consumer.position(tp))
        return total

    def status(self) -> dict[str, Any]:
        return {"version": self.manifest.version if self.manifest else None,
                **self.state.counters.as_dict(), **self.state.sizes,
                "dead_letters": self.dead_letters, "learn_errors": self.learn_errors}

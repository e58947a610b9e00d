"""The learner against a real Tansu broker: joins, exactly-once across kill -9,
poison messages, and the whole loop with real server and learner processes."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

from bandit.config.settings import Settings
from bandit.core.events import C_AT, dumps, encode_decision
from bandit.core.policy_spec import PolicySpec
from bandit.core.vw_adapter import VWModel
from bandit.demo.simulator import World
from bandit.demo.stack import Child, Stack
from bandit.demo.traffic import TrafficDriver
from bandit.learner.daemon import Learner
from bandit.learner.join import digest_of
from bandit.stores.checkpoint import Checkpoint
from bandit.stores.modelstore import Manifest, ModelStore, atomic_write
from bandit.streaming import kafka_client
from tests.streaming.kafka_util import produce, read_topic

pytestmark = pytest.mark.integration


def decision(eid: str, chosen: int, n: int = 3, deferred: bool = False) -> dict:
    order = [chosen] + [i for i in range(n) if i != chosen]
    return {"EventId": eid, "Timestamp": "2026-01-01T00:00:00.000Z", "Version": "1",
            "a": [i + 1 for i in order], "p": [0.8] + [0.2 / (n - 1)] * (n - 1),
            "c": {"user": {"device=mobile": 1.0},  # canonical features, as the server logs
                  "_multi": [{"offer": {f"id=o{i}": 1.0}} for i in range(n)]},
            "VWState": {"m": "0"}, "ids": [f"o{i}" for i in range(n)], "slots": 1,
            "DeferredAction": deferred}


def wait_for(predicate, timeout: float, step: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise TimeoutError("condition not reached")


def leave_pending(learner: Learner, bootstrap: str, prefix: str, ids: list[str]) -> None:
    """``learner`` reads decisions ``ids`` (no rewards), checkpoints them pending, stops."""
    learner.connect()
    try:
        produce(bootstrap, prefix + "decisions", [(e, dumps(decision(e, 0))) for e in ids])
        run_learner(learner, lambda: learner.state.sizes["pending"] == len(ids))
        learner.checkpoint()
    finally:
        learner.close()


def run_learner(learner: Learner, until, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not until() and time.monotonic() < deadline:
        learner.step(timeout_ms=100)
    assert until(), "learner did not reach the expected state in time"


def test_join_learn_and_emit_vw_readable_dsjson(broker, prefix, tmp_path):
    s = Settings(kafka_bootstrap=broker.bootstrap, topic_prefix=prefix, reward_wait=1.0,
                 model_dir=str(tmp_path / "models"), checkpoint_seconds=0.5, partitions=2)
    learner = Learner(s)
    learner.connect()
    try:
        n = 200
        produce(broker.bootstrap, prefix + "decisions",
                [(f"e{i}", dumps(decision(f"e{i}", i % 3, deferred=(i % 10 == 0))))
                 for i in range(n)])
        # offer 1 is clicked whenever chosen; a deferred decision is activated only if i%20==0
        rewards = [(f"e{i}", dumps({"EventId": f"e{i}", "v": 1.0})) for i in range(n)
                   if i % 3 == 1]
        rewards += [(f"e{i}", dumps({"EventId": f"e{i}", "activate": True}))
                    for i in range(0, n, 20)]
        produce(broker.bootstrap, prefix + "rewards", rewards)
        deferred_not_activated = [i for i in range(0, n, 10) if i % 20 != 0]
        expect = n - len(deferred_not_activated)
        run_learner(learner, lambda: learner.state.counters.learned == expect and
                    learner.state.counters.not_activated == len(deferred_not_activated))
        learner.checkpoint()
        c = learner.state.counters
        assert c.learned == expect and c.duplicates == 0 and c.unmatched_rewards == 0
        learned_ids = [f"e{i}" for i in range(n) if i not in deferred_not_activated]
        assert c.digest == digest_of(learned_ids)
        assert c.defaulted == sum(1 for i in range(n)
                                  if i % 3 != 1 and i not in deferred_not_activated)
        # a late reward for a learned event is counted, never learned again
        produce(broker.bootstrap, prefix + "rewards",
                [("e1", dumps({"EventId": "e1", "v": 1.0}))])
        run_learner(learner, lambda: learner.state.counters.late_rewards == 1)
        assert learner.state.counters.learned == expect
        assert learner.intake.offset_gaps == 0  # a real broker's offsets run on
        learner.checkpoint()
    finally:
        learner.close()
    joined = read_topic(broker.bootstrap, prefix + "joined", expect=expect)
    assert sorted(j["EventId"] for j in joined) == sorted(learned_ids)
    for j in joined:
        clicked = j["a"][0] == 2  # action index 2 is offer o1
        assert j["_label_cost"] == (-1.0 if clicked else 0.0)
        assert j["_label_probability"] == j["p"][0]
    # VW's own DSJSON parser learns the joined topic as it is
    vw = VWModel("--cb_explore_adf --quiet", json_input=True)
    for j in joined:
        vw.learn_dsjson(orjson.dumps(j).decode())
    vw.close()
    man = ModelStore(s.model_dir).current()
    assert man is not None and man.events_learned == expect


def _gap_intake(log_start: int = 0) -> tuple[Any, Any]:
    """An Intake reading, through Gapless, a consumer that gives the fetches it is told
    to (tests/streaming/test_gaps.py) from offset 10 of ``t[3]``."""
    from bandit.learner.intake import Intake
    from bandit.streaming.gaps import Gapless
    from tests.streaming.test_gaps import _Consumer

    consumer = _Consumer(log_start=log_start)
    intake = Intake.__new__(Intake)
    intake.gaps_skipped, intake.gapless = 0, Gapless(consumer, budget=0.0)
    intake.gapless.start("t", 3, 10)
    return intake, consumer


def test_a_gap_given_up_is_counted_and_logged(caplog):
    """Past the budget (here 0 s) a gap is taken as it is: the learner goes on with the
    messages past it, counts it in ``gaps_skipped`` and logs it as an error."""
    intake, consumer = _gap_intake()
    consumer.fetches.append([13, 14])
    assert [m.offset() for m in intake.fetch(0)] == [13, 14]
    assert intake.offset_gaps == 1 and intake.gaps_skipped == 1
    assert "t[3] offsets 10-12 still not returned after 3 s: skipped (1 so far)" in caplog.text
    assert intake.gapless.given_up == []  # each is counted once


def test_a_gap_below_the_partition_s_first_offset_is_counted_as_retention(caplog):
    intake, consumer = _gap_intake(log_start=12)
    consumer.fetches.append([12, 13])
    assert [m.offset() for m in intake.fetch(0)] == [12, 13] and intake.gaps_skipped == 1
    assert "t[3] offsets 10-11 are no longer in the topic (retention)" in caplog.text


def test_a_partition_read_again_does_not_wait_long_enough_to_count_as_stalled():
    """While a gap is read again the partition's later messages wait, and the join's
    windows wait for the partition; past STALL_SECONDS they would stop waiting."""
    from bandit.learner.intake import GAP_SECONDS, STALL_SECONDS

    assert GAP_SECONDS < STALL_SECONDS


class _SeekRefusedOnce:
    """A real consumer whose first fetch holding offset 3 comes back without 3-5 (see
    tests/replay/test_readers.py) and whose first seek is refused."""

    def __init__(self, consumer: Any) -> None:
        from tests.replay.test_readers import _FetchWithAGap

        self.gappy, self.refused = _FetchWithAGap(consumer), 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.gappy, name)

    def seek(self, tp: Any) -> None:
        if not self.refused:
            self.refused += 1
            raise kafka_client.KafkaException("Local: Erroneous state")
        self.gappy.seek(tp)


@pytest.mark.parametrize("refuse_first_seek", [False, True])
def test_a_fetch_missing_records_is_read_again_from_a_real_broker(broker, prefix, tmp_path,
                                                                   refuse_first_seek):
    """A fetch that did not return offsets 3-5 of a partition (as the embedded broker
    did once in a 10-minute soak under two producers): the learner goes back to 3 on the
    real consumer and reads each of the 10 decisions once. With the first seek refused,
    the real consumer's position is past the messages held back (6-9): the seek is
    tried again rather than leaving them stranded."""
    from tests.replay.test_readers import _FetchWithAGap

    s = Settings(kafka_bootstrap=broker.bootstrap, topic_prefix=prefix, reward_wait=300.0,
                 model_dir=str(tmp_path / "models"), partitions=1)
    learner = Learner(s)
    learner.connect()
    try:
        ids = [f"g{i}" for i in range(10)]
        produce(broker.bootstrap, prefix + "decisions", [(e, dumps(decision(e, 0))) for e in ids])
        gapless = learner.intake.gapless
        assert gapless is not None
        wrapped = (_SeekRefusedOnce if refuse_first_seek else _FetchWithAGap)(gapless.consumer)
        gapless.consumer = wrapped  # the real consumer, wrapped
        run_learner(learner, lambda: learner.state.sizes["pending"] == 10, timeout=20.0)
        gappy = wrapped.gappy if isinstance(wrapped, _SeekRefusedOnce) else wrapped
        assert gappy.dropped == 3 and learner.intake.offset_gaps == 1
        assert getattr(wrapped, "refused", 1) == 1
        assert learner.state.counters.duplicates == 0 and learner.intake.gaps_skipped == 0
        assert sorted(learner.state.pending) == sorted(ids)
        assert learner.intake.offsets[prefix + "decisions:0"] == 10
    finally:
        learner.close()


def test_a_gap_right_after_a_restart_at_the_checkpoint_is_read_again(broker, prefix,
                                                                     tmp_path):
    """A learner restarted at its checkpoint's offset (3) whose first fetch comes back
    without offsets 3-5 knows where the partition starts, sees the gap and goes back."""
    from tests.replay.test_readers import _FetchWithAGap

    s = Settings(kafka_bootstrap=broker.bootstrap, topic_prefix=prefix, reward_wait=300.0,
                 model_dir=str(tmp_path / "models"), partitions=1)
    first = [f"a{i}" for i in range(3)]
    leave_pending(Learner(s), broker.bootstrap, prefix, first)  # checkpoint at offset 3
    later = [f"b{i}" for i in range(7)]  # offsets 3-9
    produce(broker.bootstrap, prefix + "decisions", [(e, dumps(decision(e, 0))) for e in later])
    learner = Learner(s)
    assert learner.intake.offsets[prefix + "decisions:0"] == 3
    learner.connect()
    try:
        gapless = learner.intake.gapless
        assert gapless is not None
        gapless.consumer = gappy = _FetchWithAGap(gapless.consumer)
        run_learner(learner, lambda: learner.state.sizes["pending"] == 10, timeout=20.0)
        assert gappy.dropped == 3 and learner.intake.offset_gaps == 1
        assert learner.intake.gaps_skipped == 0 and learner.state.counters.duplicates == 0
        assert learner.intake.offsets[prefix + "decisions:0"] == 10
    finally:
        learner.close()


def test_how_far_a_topic_was_read_in_event_time():
    """``Intake.read_to``, by the consumer's high-water marks (as librdkafka caches them
    from fetch responses; -1001 before the first) and the partitions' positions."""
    from bandit.learner.intake import STALL_SECONDS, Intake
    from bandit.learner.join import event_time
    from bandit.streaming.kafka_client import TopicPartition

    class Consumer:
        def __init__(self, highs: dict[int, int]) -> None:
            self.highs = highs

        def assignment(self) -> list:
            return [TopicPartition("r", p) for p in self.highs] + [TopicPartition("d", 0)]

        def get_watermark_offsets(self, tp, cached: bool = False) -> tuple[int, int]:
            assert cached  # no broker round trip in the learner's step
            return (-1001, 0) if tp.topic == "d" else (0, self.highs[tp.partition])

    intake = Intake.__new__(Intake)
    intake.progress, intake.assigned_at = {}, time.monotonic()  # every partition is moving
    intake.offsets = {"r:0": 50, "r:1": 70, "d:0": 5}
    intake.times = {"r:0": "2026-01-01T00:00:03.000Z", "r:1": "2026-01-01T00:00:09.000Z"}
    intake.consumer = Consumer({0: 50, 1: 80})  # r:0 read to its end, r:1 behind
    assert intake.read_to("r") == event_time("2026-01-01T00:00:09.000Z")
    intake.consumer = Consumer({0: 60, 1: 80})  # both behind: the earlier one
    assert intake.read_to("r") == event_time("2026-01-01T00:00:03.000Z")
    intake.consumer = Consumer({0: 50, 1: 70})
    assert intake.read_to("r") == float("inf") and intake.read_to("d") == float("inf")
    intake.consumer = Consumer({0: -1001, 1: 70})  # no fetch answered for r:0 yet
    del intake.times["r:0"]  # (a restarted learner: nothing read since)
    assert intake.read_to("r") == float("-inf")
    del intake.offsets["r:0"]  # no checkpoint, nothing read: at its beginning (low: 0)
    assert intake.read_to("r") == float("-inf")
    intake.consumer = Consumer({0: 0, 1: 70})  # ...of an empty partition: read to the end
    assert intake.read_to("r") == float("inf")
    intake.offsets["r:0"] = 50
    intake.consumer = Consumer({0: 60, 1: 80})
    intake.times = {"r:0": "2026-01-01T00:00:03.000Z", "r:1": ""}  # r:1: an unstamped
    assert intake.read_to("r") == event_time("2026-01-01T00:00:03.000Z")  # one tells nothing
    intake.consumer = Consumer({0: 60, 1: 80})
    intake.progress["r:1"] = time.monotonic() - STALL_SECONDS - 1  # r:1 yields nothing
    assert intake.read_to("r") == event_time("2026-01-01T00:00:03.000Z")  # r:0 still is
    intake.assigned_at -= STALL_SECONDS + 1  # nor has r:0 since the consumer was assigned
    assert intake.read_to("r") == float("inf")


def test_poison_messages_go_to_the_dead_letter_topic(broker, prefix, tmp_path):
    s = Settings(kafka_bootstrap=broker.bootstrap, topic_prefix=prefix, reward_wait=0.5,
                 model_dir=str(tmp_path / "models"), partitions=1)
    learner = Learner(s)
    learner.connect()
    bad = [b"\xff\xfe not json", b'{"EventId": "x1", "a": [1], "p": [2.0]}',
           b'[1, 2, 3]', b'{"EventId": "x2", "a": "one", "p": [1.0], "c": {}}']
    try:
        produce(broker.bootstrap, prefix + "decisions",
                [(f"bad{i}", b) for i, b in enumerate(bad)] +
                [(f"ok{i}", dumps(decision(f"ok{i}", 0))) for i in range(20)])
        produce(broker.bootstrap, prefix + "rewards",
                [("r", b'{"EventId": "ok1", "v": "NaN"}'),
                 ("r", b'{"EventId": "ok2", "v": 1e400}')])
        run_learner(learner, lambda: learner.state.counters.learned == 20 and
                    learner.intake.dead_letters == len(bad) + 2)
        learner.checkpoint()
        assert learner.handler.errors == 0
    finally:
        learner.close()
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False)
    try:
        tp = TopicPartition(prefix + "deadletter", 0)
        c.assign([tp])
        c.seek_to_beginning(tp)
        got = []
        deadline = time.monotonic() + 20
        while len(got) < len(bad) + 2 and time.monotonic() < deadline:
            for msgs in c.poll(timeout_ms=300).values():
                got += msgs
    finally:
        c.close()
    assert len(got) == len(bad) + 2
    assert sorted(m.value for m in got if m.value in bad) == sorted(bad)
    for m in got:
        headers = dict(m.headers)
        assert headers["source"].startswith(prefix.encode())
        assert headers["error"]  # says why


def test_exactly_once_across_kill_9(broker, prefix, tmp_path):
    """20,000 events; kill -9 the learner at 5 random points: every decision is learned
    exactly once (count and digest of learned ids match), none twice, none lost."""
    n = 20_000
    ids = [f"k{i}" for i in range(n)]

    def traffic() -> None:  # ~15 s of traffic, so the kills land mid-stream
        for start in range(0, n, 500):
            chunk = list(enumerate(ids))[start:start + 500]
            produce(broker.bootstrap, prefix + "decisions",
                    [(e, dumps(decision(e, i % 3))) for i, e in chunk])
            produce(broker.bootstrap, prefix + "rewards",
                    [(e, dumps({"EventId": e, "v": 1.0})) for i, e in chunk if i % 2 == 0])
            time.sleep(0.35)

    producer = threading.Thread(target=traffic)
    env = {"BANDIT_KAFKA_BOOTSTRAP": broker.bootstrap, "BANDIT_TOPIC_PREFIX": prefix,
           "BANDIT_MODEL_DIR": str(tmp_path / "models"), "BANDIT_REWARD_WAIT": "1",
           "BANDIT_CHECKPOINT_EVENTS": "1000", "BANDIT_CHECKPOINT_SECONDS": "0.5",
           "BANDIT_PARTITIONS": "4"}
    store = ModelStore(tmp_path / "models")

    def learned() -> int:
        m = store.current()
        return m.events_learned if m else 0

    rng = np.random.default_rng(11)
    # each learner runs until it has published progress, then for a uniformly random
    # 0–1.5 s (three checkpoint periods), so the kills land anywhere in the cycle of
    # learning, saving and publishing, not just after a manifest appeared
    delays = rng.uniform(0.0, 1.5, 5)
    restarts_seen = []
    producer.start()
    for delay in delays:
        child = Child("learner", "bandit.cli.learn", [], env, tmp_path / "learner.log")
        try:
            last = learned()
            wait_for(lambda last=last: learned() > last, 120, 0.02)
            time.sleep(float(delay))
        finally:
            child.kill()  # SIGKILL: whatever was learned after the checkpoint is lost
        restarts_seen.append(learned())
    assert restarts_seen[-1] < n
    child = Child("learner", "bandit.cli.learn", [], env, tmp_path / "learner.log")
    producer.join(120)
    try:
        wait_for(lambda: learned() == n, 120)
        time.sleep(1.5)  # nothing more arrives, nothing is learned twice
    finally:
        assert child.stop() == 0
    man = store.current()
    assert man is not None and len(restarts_seen) == 5
    counters = man.extra["counters"]
    assert man.events_learned == n == counters["learned"]
    assert counters["digest"] == digest_of(ids)  # each id exactly once
    assert counters["duplicates"] == 0
    assert counters["defaulted"] == n // 2
    assert counters["lost"] == 0
    assert store.load(man) is not None  # the final model is a valid VW model
    # the checkpoints held the pending decisions by offset, and the restarts read
    # them back from the topic
    log = (tmp_path / "learner.log").read_text()
    read_back = [int(x.split("read back ")[1].split()[0]) for x in log.splitlines()
                 if "read back " in x]
    assert len(read_back) >= 3 and sum(read_back) > 0, read_back


def test_whole_loop_learns_and_hot_swaps_under_load(broker, prefix, tmp_path):
    """Real server (2 workers) + learner: simulated users, models published and
    swapped in while traffic flows, no request fails, CTR beats random."""
    world = World(n_offers=20, seed=3)
    with Stack(tmp_path, policy="epsilon:0.1", bootstrap=broker.bootstrap, prefix=prefix,
               reward_wait=1.0, checkpoint_seconds=0.5, model_poll=0.3, workers=2) as stack:
        driver = TrafficDriver(stack.base, world, seed=5)
        versions = set()
        windows = list(driver.windows(1000, 6))
        for w in windows:
            versions.add(w.model_version)
        driver.close()
        first, last = windows[0].tally.as_dict(), windows[-1].tally.as_dict()
        # every decision learned (after its 1 s reward window) and served
        info = wait_for(lambda: (m := stack.model())["events_learned"] >= 5500 and m, 60)
        assert driver.errors == 0
        assert len(versions) >= 3, versions  # several hot swaps happened under load
        # seeded world: random CTR ≈ 0.07; the learned policy must clearly beat it
        assert last["ctr"] > 1.6 * last["random_ctr"], last
        assert last["ctr"] > first["ctr"], (first, last)
        assert info["policy"].startswith("epsilon")
        assert httpx.get(stack.base + "/readyz").status_code == 200
        # exploit requests: the greedy choice is (close to) the truly best offer
        rng = np.random.default_rng(99)
        greedy = best = rand = 0.0
        with httpx.Client(base_url=stack.base) as c:
            for _ in range(300):
                body, offers = world.request(rng, 10, explore=False)
                out = c.post("/v1/decide", json=body).json()
                probs = world.probabilities(body["context"], offers)
                chosen = [o.id for o in offers].index(out["slots"][0]["id"])
                assert out["slots"][0]["probability"] == 1.0
                greedy += probs[chosen]
                best += probs.max()
                rand += probs.mean()
        # timing decides how much was learned before each swap: a margin for that
        assert greedy > 0.65 * best and greedy > 2 * rand, (greedy, best, rand)


def test_twenty_swaps_and_a_corrupt_model_under_load(start_server, tmp_path):
    """Two uvicorn workers under steady load from four clients; the store publishes 20
    good models with a corrupt one in the middle. No request fails, the corrupt model
    is never served, every worker ends on the last good version."""
    store = ModelStore(tmp_path / "models", keep=30)
    spec = PolicySpec.parse("epsilon:0.1")
    srv = start_server({"BANDIT_MODEL_DIR": str(tmp_path / "models"), "BANDIT_MODEL_POLL":
                        "0.1", "BANDIT_EVENT_SINK": "none", "BANDIT_POLICY": str(spec)},
                       workers=2)
    srv.wait_ready()
    stop = threading.Event()
    seen: list[str] = []
    failures: list[object] = []

    def load(seed: int) -> None:
        rng = np.random.default_rng(seed)
        world = World(seed=1)
        with httpx.Client(base_url=srv.base, timeout=10) as c:
            end = time.monotonic() + 90
            while not stop.is_set() and time.monotonic() < end:
                body, _ = world.request(rng, 10)
                try:
                    r = c.post("/v1/decide", json=body)
                except httpx.HTTPError as exc:
                    failures.append(exc)
                    continue
                if r.status_code != 200:
                    failures.append(r.status_code)
                else:
                    seen.append(r.json()["model_version"])

    threads = [threading.Thread(target=load, args=(k,)) for k in range(4)]
    started = time.monotonic()
    for t in threads:
        t.start()
    published = []
    try:
        model = VWModel(spec.vw_args())
        for i in range(21):
            if i == 10:
                # a manifest that names a corrupt file (its checksum cannot match)
                bad = Manifest(f"{int(published[-1]) + 1:06d}", "model-corrupt.vw",
                               "0" * 64, str(spec), i, "2026-01-01T00:00:00Z", {}, {})
                (store.dir / bad.file).write_bytes(b"\x00" * 100)
                atomic_write(store.manifest_path, bad.to_json())
            else:
                published.append(store.publish(model, str(spec), i).version)
            time.sleep(0.4)  # four polls per worker per version
        model.close()
        last = published[-1]
        wait_for(lambda: seen[-40:].count(last) == 40, 20, 0.05)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    elapsed = time.monotonic() - started
    assert not failures, failures[:5]
    assert bad.version not in seen
    served = set(seen)
    assert len(served & set(published)) >= 15  # nearly every version was served
    assert len(seen) / elapsed > 100  # real load, not a trickle (rate printed below)
    print(f"{len(seen)} requests in {elapsed:.1f}s = {len(seen) / elapsed:.0f} req/s, "
          f"{len(served & set(published))} versions served")
    metrics = httpx.get(srv.base + "/metrics").text
    assert 'bandit_model_swaps_total{result="refused"}' in metrics
    assert json.loads(httpx.get(srv.base + "/v1/model").text)["version"] == last


def test_the_guard_rail_keeps_a_worse_model_from_being_served(broker, prefix, tmp_path):
    """A published version that does worse than the promoted one on held-out events is
    not served (the store is pinned to the promoted one) until a later one passes."""
    from bandit.core.events import joined_event

    s = Settings(kafka_bootstrap=broker.bootstrap, topic_prefix=prefix, reward_wait=0.5,
                 model_dir=str(tmp_path / "models"), checkpoint_seconds=3600,
                 checkpoint_events=10**9, guard_margin=0.02, guard_holdout=0.2,
                 policy="epsilon:0.2")
    learner = Learner(s)
    learner.connect()
    store = ModelStore(s.model_dir)
    rng = np.random.default_rng(0)

    def stream(tag: str, n: int) -> None:
        # offer 1 is always clicked, the others never
        chosen = rng.integers(0, 3, n)
        produce(broker.bootstrap, prefix + "decisions",
                [(f"{tag}{i}", dumps(decision(f"{tag}{i}", int(c)))) for i, c in
                 enumerate(chosen)])
        produce(broker.bootstrap, prefix + "rewards",
                [(f"{tag}{i}", dumps({"EventId": f"{tag}{i}", "v": 1.0}))
                 for i, c in enumerate(chosen) if c == 1])

    try:
        stream("a", 1500)
        run_learner(learner, lambda: learner.state.counters.learned >= 1500)
        good = learner.checkpoint()
        assert store.serving().version == good.version and len(learner.guard.events) > 100
        stream("b", 600)  # the second round promotes over the first
        run_learner(learner, lambda: learner.state.counters.learned >= 2100)
        better = learner.checkpoint()
        assert store.pinned() is None and store.serving().version == better.version
        held = len(learner.guard.events)
        learner.close()  # a restart keeps the guard's held-out events and promoted version
        learner = Learner(s)
        learner.connect()
        assert len(learner.guard.events) == held
        # now the model goes wrong (say, a bug teaches it the opposite of the truth)
        for i in range(3000):
            wrong = decision(f"x{i}", i % 2)  # offer 1 never clicked, offer 0 always
            learner.model.learn_dsjson(orjson.dumps(joined_event(wrong, float(i % 2 == 0),
                                                                 [])).decode())
        stream("c", 30)
        run_learner(learner, lambda: learner.state.counters.learned >= 2130)
        worse = learner.checkpoint()
        assert store.current().version == worse.version  # written, so the learner resumes
        assert store.pinned().version == better.version  # but not served
        assert store.pin_reason() == "guard" and learner.guard.blocked == 1
        assert learner.status()["guard_blocked"] == 1
    finally:
        learner.close()


def test_multi_slot_decisions_are_joined_as_ccb_dsjson(broker, prefix, tmp_path):
    """Two-slot decisions: the learner learns each slot and writes VW's CCB DSJSON,
    which vw --ccb_explore_adf reads and the replay reader evaluates per slot."""
    import vowpalwabbit

    from replay.readers import read_kafka

    s = Settings(kafka_bootstrap=broker.bootstrap, topic_prefix=prefix, reward_wait=0.5,
                 model_dir=str(tmp_path / "models"), partitions=1)
    learner = Learner(s)
    learner.connect()
    n = 60
    events = []
    for i in range(n):
        d = decision(f"m{i}", i % 3, n=4)
        d["slots"] = 2
        d["p"] = [0.7, 0.5, 0.1, 0.1]
        events.append(d)
    # valid, but its slot 2 cannot be made (the ranking repeats an action): counted as
    # not learnable, not written, and the learner goes on
    bad = {**decision("mbad", 0, n=4), "slots": 2, "a": [1, 1, 3, 4]}
    try:
        produce(broker.bootstrap, prefix + "decisions",
                [(e["EventId"], dumps(e)) for e in [*events[:30], bad, *events[30:]]])
        produce(broker.bootstrap, prefix + "rewards",
                [(e["EventId"], dumps({"EventId": e["EventId"], "v": 1.0, "slot": 2,
                                       "kind": "click"})) for e in events[::2]])
        run_learner(learner, lambda: learner.state.counters.learned == n + 1)
        learner.checkpoint()
        assert learner.handler.errors == 1
    finally:
        learner.close()
    joined = read_topic(broker.bootstrap, prefix + "joined", expect=n)
    assert len(joined) == n and "mbad" not in {j["EventId"] for j in joined}
    assert all("_outcomes" in j and len(j["_outcomes"]) == 2 for j in joined)
    ws = vowpalwabbit.Workspace("--ccb_explore_adf --dsjson --quiet -q co")
    for j in joined:
        exs = ws.parse(orjson.dumps(j).decode())
        ws.learn(exs)
        ws.finish_example(exs)
    assert ws.get_weighted_examples() == n
    ws.finish()
    logs = read_kafka(f"kafka://{broker.bootstrap}/{prefix}joined")
    assert logs.n == 2 * n and sorted(set(logs.position.tolist())) == [0, 1]
    assert logs.reward[logs.position == 1].sum() == n // 2  # slot-2 clicks, per slot
    assert logs.reward[logs.position == 0].sum() == 0
    assert (logs.pscore[logs.position == 1] == 0.5).all()


def test_server_encoded_decisions_learn_like_whole_ones(broker, tmp_path):
    """Decisions with the server's ``c_at`` header (only their head decoded, the label
    spliced onto their bytes) give the same joined events and the same model as the
    same decisions without it (decoded whole), learned in-process or in a child."""
    n = 300
    events = [decision(f"h{i}", i % 3, n=4, deferred=(i % 50 == 0)) for i in range(n)]
    for i, e in enumerate(events):
        e["Timestamp"] = f"2026-01-01T00:00:{i % 60:02d}.000Z"
    out = {}
    for tag, with_header, child in (("whole", False, False), ("head", True, True),
                                    ("head_here", True, False)):
        prefix = f"cat{tag}{time.time_ns()}."
        s = Settings(kafka_bootstrap=broker.bootstrap, topic_prefix=prefix, reward_wait=0.5,
                     model_dir=str(tmp_path / tag), partitions=1, learner_process=child)
        learner = Learner(s)
        learner.connect()
        try:
            encoded = [encode_decision(e) for e in events]
            produce(broker.bootstrap, prefix + "decisions",
                    [(e["EventId"], v if with_header else dumps(e))
                     for e, (v, _) in zip(events, encoded, strict=True)],
                    headers=[[(C_AT, b"%d" % at)] if with_header else None
                             for _, at in encoded])
            produce(broker.bootstrap, prefix + "rewards",
                    [(f"h{i}", dumps({"EventId": f"h{i}", "v": 1.0}))
                     for i in range(n) if i % 3 == 1] +
                    [(f"h{i}", dumps({"EventId": f"h{i}", "activate": True}))
                     for i in range(0, n, 100)])
            expect = n - 3  # h50, h150, h250 are deferred and never activated

            def done(lrn: Learner = learner, want: int = expect) -> bool:
                return lrn.state.counters.learned == want and \
                    lrn.state.counters.not_activated == 3

            run_learner(learner, done)
            man = learner.checkpoint()
            joined = read_topic(broker.bootstrap, prefix + "joined", expect=expect, raw=True)
            out[tag] = (sorted(joined, key=lambda b: orjson.loads(b)["EventId"]),
                        (tmp_path / tag / man.file).read_bytes(),
                        learner.state.counters.digest, man.extra["offer_stats"])
            # every learned decision counted its shown offer once, whatever the path
            rows = learner.handler.stats.rows
            assert sum(r[0] for r in rows.values()) == expect
            assert rows.keys() == {e["ids"][e["a"][0] - 1] for e in events}
        finally:
            learner.close()
    assert len(out["whole"][0]) == n - 3
    # the same events (c is last on the head path) and byte-identical models
    assert [orjson.loads(b) for b in out["head"][0]] == \
        [orjson.loads(b) for b in out["whole"][0]]
    assert out["head"][0] == out["head_here"][0]
    assert out["head"][1:] == out["whole"][1:] == out["head_here"][1:]


def test_a_pending_decision_that_no_longer_validates_is_forgotten_on_restart(
        broker, prefix, tmp_path, monkeypatch, caplog):
    """A decision a checkpoint references by offset, valid when first read, that this
    version's checks refuse when it is read back: forgotten, logged and counted as
    lost; the learner starts, and the other pending decisions are read back."""
    import bandit.learner.intake as intake
    from bandit.core.errors import BadRequest

    s = Settings(kafka_bootstrap=broker.bootstrap, topic_prefix=prefix, reward_wait=600.0,
                 model_dir=str(tmp_path / "models"), partitions=1)
    leave_pending(Learner(s), broker.bootstrap, prefix, [f"p{i}" for i in range(3)])
    real = intake.decision_of

    def stricter(m):
        d = real(m)
        if d.event_id == "p1":
            raise BadRequest("refused by a newer check", field="x")
        return d

    monkeypatch.setattr(intake, "decision_of", stricter)
    second = Learner(s)
    try:
        with caplog.at_level("ERROR", logger="bandit.learner"):
            second.connect()
        assert set(second.state.pending) == {"p0", "p2"}
        assert all(p.decision for p in second.state.pending.values())  # read back whole
        assert second.state.counters.lost == 1
        assert "no longer passes validation" in caplog.text
    finally:
        second.close()


def test_a_checkpoint_names_the_rewards_read_and_those_not_learned_yet(broker, prefix,
                                                                       tmp_path):
    """What a server learning rewards at once needs to apply again on a model: the
    latest reward timestamp read, and the decisions rewarded whose decision was not
    read yet (the reward waits as an orphan: read, not learned)."""
    s = Settings(kafka_bootstrap=broker.bootstrap, topic_prefix=prefix, reward_wait=3600.0,
                 model_dir=str(tmp_path / "models"), checkpoint_seconds=3600.0,
                 partitions=1)
    learner = Learner(s)
    learner.connect()
    try:
        produce(broker.bootstrap, prefix + "decisions",
                [(f"d{i}", dumps(decision(f"d{i}", 1))) for i in range(5)])
        stamps = [f"2026-01-01T00:00:0{i}.000Z" for i in range(8)]
        produce(broker.bootstrap, prefix + "rewards",
                [(f"d{i}", dumps({"EventId": f"d{i}", "Timestamp": stamps[i], "v": 1.0}))
                 for i in range(5)] +
                [(f"late{i}", dumps({"EventId": f"late{i}", "Timestamp": stamps[5 + i],
                                     "v": 1.0})) for i in range(3)])
        run_learner(learner, lambda: learner.state.counters.learned == 5 and
                    len(learner.state.orphans) == 3)
        man = learner.checkpoint()
        assert man is not None
        ck = Checkpoint.of(ModelStore(s.model_dir).current())
        assert ck.rewards_through() == stamps[7]
        assert ck.rewards_pending() == {"late0", "late1", "late2"}
    finally:
        learner.close()


def test_a_learner_restarted_after_its_windows_ended_joins_the_rewards_it_had_not_read(
        broker, prefix, tmp_path):
    """Downtime longer than the reward window: a learner reads 100 decisions (pending
    in its checkpoint) and stops; 6,000 more decisions are logged, and the 100's
    rewards reach the topic behind 12,000 rewards of other decisions; the next learner
    starts when every window is over by its clock.
    It reads on before closing them (the rewards topic has not been read past their end
    in event time), so the 50 rewarded decisions are learned with their rewards and
    only the other 50 with the default. (Closing by the clock alone, its first fetch —
    at most one poll of 5,000 messages — ends every window: 100 defaulted.)"""
    s = Settings(kafka_bootstrap=broker.bootstrap, topic_prefix=prefix, reward_wait=5.0,
                 model_dir=str(tmp_path / "models"), checkpoint_seconds=3600.0,
                 partitions=1)
    # a learner whose windows end at 5.0 by its clock
    leave_pending(Learner(s, clock=lambda: 0.0), broker.bootstrap, prefix,
                  [f"d{i}" for i in range(100)])
    # meanwhile more decisions are logged (the first steps of the next learner may read
    # only those: its rewards partition has no offset in the checkpoint, so it is at
    # its beginning, not read to its end) ...
    produce(broker.bootstrap, prefix + "decisions",
            [(f"n{i}", dumps(decision(f"n{i}", 0))) for i in range(6_000)])
    # ... and the rewards: decisions at 00:00:00 (see decision()), rewards 1-2 s later
    others = [(f"x{i}", dumps({"EventId": f"x{i}", "v": 1.0,
                               "Timestamp": "2026-01-01T00:00:01.000Z"}))
              for i in range(12_000)]
    mine = [(f"d{i}", dumps({"EventId": f"d{i}", "v": 1.0,
                             "Timestamp": "2026-01-01T00:00:02.000Z"}))
            for i in range(0, 100, 2)]
    produce(broker.bootstrap, prefix + "rewards", others + mine)
    second = Learner(s)  # time.time(): every restored window ended long ago
    second.connect()
    try:
        assert len(second.state.pending) == 100
        mine_done = {f"d{i}" for i in range(100)}
        run_learner(second, lambda: mine_done <= set(second.state.done))
        c = second.state.counters
        # of the 100 restored decisions, the 50 rewarded joined their rewards
        assert c.defaulted - sum(1 for i in range(6_000)
                                 if f"n{i}" in second.state.done) == 50
        assert c.duplicates == 0
    finally:
        second.close()

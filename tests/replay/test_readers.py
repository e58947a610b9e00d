"""Readers: this service's joined DSJSON, VW/Personalizer DSJSON, CCB DSJSON, gzip,
the Kafka topic, OBD CSV; malformed input is reported as file:line: reason."""

from __future__ import annotations

import gzip
import time

import numpy as np
import orjson
import pytest

from replay.errors import LogError
from replay.readers import read, read_dsjson, read_obd
from tests.replay.simlogs import make_logs

PERSONALIZER = {
    "_label_cost": -1.0, "_label_probability": 0.8, "_label_Action": 2, "_labelIndex": 1,
    "o": [{"v": 1.0, "EventId": "p1", "ActionTaken": False}],
    "Timestamp": "2023-01-02T10:00:00.0000000Z", "Version": "1", "EventId": "p1",
    "a": [2, 1, 3],
    "c": {"FromUrl": [{"timeOfDay": "morning", "weather": "sunny"}],
          "_multi": [{"_tag": "Cappucino", "i": {"constant": 1, "id": "Cappucino"},
                      "j": [{"type": "hot"}]},
                     {"_tag": "Latte", "i": {"constant": 1, "id": "Latte"}},
                     {"_tag": "Iced", "i": {"constant": 1, "id": "Iced"}}]},
    "p": [0.8, 0.1, 0.1], "VWState": {"m": "abc/def"},
}

CCB = {
    "Timestamp": "2023-01-02T10:00:00Z", "Version": "1", "EventId": "c1",
    "c": {"user": {"age": 30}, "_multi": [{"a": {"id": "x"}}, {"a": {"id": "y"}},
                                          {"a": {"id": "z"}}],
          "_slots": [{"_id": "s1"}, {"_id": "s2"}]},
    "_outcomes": [{"_id": "s1", "_label_cost": -1.0, "_a": [2, 0, 1], "_p": [0.7, 0.2, 0.1]},
                  {"_id": "s2", "_label_cost": 0.0, "_a": [0, 1], "_p": [0.6, 0.4]}],
    "VWState": {"m": "v1"},
}


def write_lines(path, objs, raw=()):
    with open(path, "wb") as f:
        for o in objs:
            f.write(orjson.dumps(o) + b"\n")
        for r in raw:
            f.write(r + b"\n")


def test_own_joined_events(tmp_path):
    events, truth = make_logs(tmp_path / "j.dsjson", 300, seed=1)
    logs = read_dsjson([tmp_path / "j.dsjson"])
    assert logs.n == 300 and logs.skipped == 0
    assert np.allclose(logs.pscore, 0.1)
    assert logs.reward.sum() == sum(1 for e in events if e["_label_cost"] < 0)
    # the chosen action is the logged a[0], by offer id
    first = events[0]
    assert logs.action_names[logs.chosen_action[0]] == first["ids"][first["a"][0] - 1]
    assert logs.logged_dist is not None and np.allclose(logs.logged_dist.sum(axis=1), 1)
    assert "click" in logs.kinds and logs.kinds["click"].sum() == logs.reward.sum()


def test_multi_slot_events_become_one_row_per_slot(tmp_path):
    make_logs(tmp_path / "m.dsjson", 100, seed=2, slots=3)
    logs = read_dsjson([tmp_path / "m.dsjson"])
    assert logs.n == 300
    assert sorted(set(logs.position.tolist())) == [0, 1, 2]
    # slot 2 chooses among the 9 offers left, slot 3 among 8, each uniformly
    assert np.allclose(logs.pscore[logs.position == 1], 1 / 9)
    assert (logs.mask[logs.position == 2].sum(axis=1) == 8).all()


def test_personalizer_and_ccb_dsjson_gzipped(tmp_path):
    path = tmp_path / "p.json.gz"
    with gzip.open(path, "wb") as f:
        for o in (PERSONALIZER, CCB, {**PERSONALIZER, "EventId": "p2", "_skipLearn": True}):
            f.write(orjson.dumps(o) + b"\n")
    logs = read_dsjson([path])
    assert logs.n == 3  # one Personalizer row, two CCB slots; the skipped event is not read
    names = [logs.action_names[a] for a in logs.chosen_action]
    assert names[0] == "Latte" and logs.pscore[0] == 0.8 and logs.reward[0] == 1.0
    assert logs.position.tolist() == [0, 0, 1]
    assert logs.pscore[1:].tolist() == [0.7, 0.6]
    assert logs.reward[1:].tolist() == [1.0, 0.0]
    assert logs.mask[2].sum() == 2  # slot 2 chooses among what slot 1 left


def test_malformed_lines_are_named_skipped_and_counted(tmp_path):
    path = tmp_path / "bad.dsjson"
    write_lines(path, [PERSONALIZER, {**PERSONALIZER, "EventId": "p3", "_label_probability": 0},
                       {**PERSONALIZER, "EventId": "p4", "a": [9]},
                       {**PERSONALIZER, "EventId": "p1"}],  # a duplicate, dropped silently
                raw=[b"{not json", b"[]"])
    logs = read_dsjson([path])
    assert logs.n == 1 and logs.skipped == 4
    assert logs.problems[0].startswith(f"{path}:2: _label_probability 0 is outside (0, 1]")
    assert logs.problems[1].startswith(f"{path}:3: a must list action indices")
    assert logs.problems[2].startswith(f"{path}:5: not valid JSON")
    with pytest.raises(LogError, match=rf"{path}:2: _label_probability"):
        read_dsjson([path], strict=True)
    with pytest.raises(LogError, match="no such file"):
        read(str(tmp_path / "missing.dsjson"))


def test_unjoined_decisions_are_explained(tmp_path):
    path = tmp_path / "d.dsjson"
    ev = {k: v for k, v in PERSONALIZER.items() if not k.startswith("_label")}
    write_lines(path, [ev])
    logs = read_dsjson([path])
    assert logs.skipped == 1 and "read the joined topic" in logs.problems[0]


def test_obd_bad_rows(tmp_path):
    d = tmp_path / "bts" / "men"
    d.mkdir(parents=True)
    (d / "item_context.csv").write_text(",item_id,item_feature_0\n0,0,1.0\n1,1,2.0\n")
    (d / "men.csv").write_text(
        ",timestamp,item_id,position,click,propensity_score,user_feature_0\n"
        "0,2019-11-24 00:00:00,0,1,0,0.5,a\n"
        "1,2019-11-24 00:00:01,1,2,1,1.5,b\n"
        "2,2019-11-24 00:00:02,7,1,0,0.5,a\n"
        "3,2019-11-24 00:00:03,1,2,1,0.25,b\n")
    logs = read_obd(tmp_path, "bts", "men")
    assert logs.n == 2 and logs.skipped == 2
    assert logs.problems[0] == f"{d / 'men.csv'}:3: propensity_score 1.5 is outside (0, 1]"
    assert "item_id 7 is not in item_context.csv" in logs.problems[1]
    assert logs.position.tolist() == [0, 1]
    with pytest.raises(LogError, match="no such file"):
        read_obd(tmp_path, "random", "men")


@pytest.mark.integration
def test_kafka_topic_read_to_the_high_water_mark(broker, prefix, tmp_path):
    from tests.streaming.kafka_util import produce

    events, _ = make_logs(tmp_path / "k.dsjson", 200, seed=3)
    topic = prefix + "joined"
    # at-least-once: a re-shipped duplicate and a poison message on the topic
    items = [(e["EventId"], orjson.dumps(e)) for e in events]
    produce(broker.bootstrap, topic, items + [items[0], ("x", b"garbage")])
    logs = read(f"kafka://{broker.bootstrap}/{topic}")
    assert logs.n == 200 and logs.skipped == 1
    assert sorted(logs.event_ids) == sorted(e["EventId"] for e in events)
    with pytest.raises(LogError, match="not found"):
        read(f"kafka://{broker.bootstrap}/{prefix}nothing", "kafka")


class _FetchWithAGap:
    """A real consumer whose first fetch holding offset 3 of a partition comes back
    without offsets 3-5 of it (as the embedded broker answers with a producer's batch
    before an earlier one is readable: benchmarks/fetch_gaps.py); ``always``: every
    fetch, as if the records were gone."""

    def __init__(self, consumer, always: bool = False) -> None:
        self.consumer, self.always, self.dropped = consumer, always, 0

    def __getattr__(self, name: str):
        return getattr(self.consumer, name)

    def consume(self, n: int, timeout: float):
        messages = self.consumer.consume(n, timeout)
        if (self.always or not self.dropped) and any(m.offset() == 3 for m in messages):
            kept = [m for m in messages if not 3 <= m.offset() <= 5]
            self.dropped += len(messages) - len(kept)
            return kept
        return messages


@pytest.mark.integration
def test_a_kafka_fetch_that_skips_offsets_is_read_again(broker, prefix, tmp_path,
                                                        monkeypatch):
    from bandit.streaming import kafka_client
    from tests.streaming.kafka_util import produce

    events, _ = make_logs(tmp_path / "k.dsjson", 60, seed=4)
    topic = prefix + "gappy"
    produce(broker.bootstrap, topic, [(e["EventId"], orjson.dumps(e)) for e in events])
    made: list[_FetchWithAGap] = []
    consumer = kafka_client.consumer

    def gappy(*args, **kwargs):
        made.append(_FetchWithAGap(consumer(*args, **kwargs)))
        return made[-1]

    monkeypatch.setattr(kafka_client, "consumer", gappy)
    logs = read(f"kafka://{broker.bootstrap}/{topic}")
    assert made[0].dropped > 0  # a gap was met...
    assert logs.n == 60 and sorted(logs.event_ids) == sorted(e["EventId"] for e in events)

    def gone(*args, **kwargs):  # ...and one that never fills is an error, not a silent loss
        return _FetchWithAGap(consumer(*args, **kwargs), always=True)

    monkeypatch.setattr(kafka_client, "consumer", gone)
    monkeypatch.setattr(kafka_client, "GAP_SECONDS", 0.5)
    with pytest.raises(LogError, match=r"gappy\[\d\] offsets 3-5 were not returned in 0.5 s"):
        read(f"kafka://{broker.bootstrap}/{topic}")


class _Msg:
    def __init__(self, p: int, off: int) -> None:
        self.p, self.off = p, off

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return "j"

    def partition(self) -> int:
        return self.p

    def offset(self) -> int:
        return self.off

    def value(self) -> bytes:
        return b"{}"


class Scripted:
    """A consumer that hands out the batches it is given, one per consume (each takes
    20 ms), then ``rest`` forever; ``highs`` are the partitions' high-water marks."""

    def __init__(self, batches: list[list[tuple[int, int]]], highs: dict[int, int],
                 rest: list[tuple[int, int]] | None = None, seek_fails: bool = False) -> None:
        self.batches, self.highs, self.rest = list(batches), highs, rest or []
        self.seek_fails, self.seeks = seek_fails, []

    def consume(self, n: int, timeout: float) -> list:
        time.sleep(0.02)
        batch = self.batches.pop(0) if self.batches else self.rest
        return [_Msg(p, o) for p, o in batch]

    def seek(self, tp) -> None:
        from bandit.streaming import kafka_client

        if self.seek_fails:
            raise kafka_client.KafkaException("Local: Erroneous state")
        self.seeks.append((tp.partition, tp.offset))

    def get_watermark_offsets(self, tp, cached: bool = False) -> tuple[int, int]:
        return 0, self.highs[tp.partition]


def test_a_gap_past_a_partition_s_mark_does_not_fail_the_read(monkeypatch):
    """Partition 0 is read to its mark (2); live, a later fetch of it skips offsets 2-4,
    which replay does not read at all. Partition 1 answers a little later. The read
    returns both partitions' messages below their marks."""
    from bandit.streaming import kafka_client
    from replay.readers import _up_to_marks

    monkeypatch.setattr(kafka_client, "GAP_SECONDS", 0.1)
    batches = [[(0, 0), (0, 1)]] + [[(0, 5)]] * 15 + [[(1, 0), (1, 1), (1, 2)]]
    consumer = Scripted(batches, {0: 2, 1: 3})
    got = [w for w, _ in _up_to_marks(consumer, "kafka://x/j", "j", [0, 1], 5.0, 2.0)]
    assert got == ["j[0]@0", "j[0]@1", "j[1]@0", "j[1]@1", "j[1]@2"]


@pytest.mark.parametrize("seek_fails", [False, True])
def test_a_gap_that_is_not_filled_fails_within_gap_seconds(monkeypatch, seek_fails):
    """A gap below the mark that nothing fills (the fetch from 3 returns nothing; or the
    consumer cannot go back) fails the read naming offsets 3-5 within about
    GAP_SECONDS, not after ``timeout`` as 'timed out'."""
    from bandit.streaming import kafka_client
    from replay.readers import _up_to_marks

    monkeypatch.setattr(kafka_client, "GAP_SECONDS", 0.2)
    consumer = Scripted([[(0, 0), (0, 1), (0, 2), (0, 6), (0, 7)]], {0: 8},
                        seek_fails=seek_fails)
    t0 = time.monotonic()
    with pytest.raises(LogError, match=r"j\[0\] offsets 3-5 were not returned in 0.2 s"):
        list(_up_to_marks(consumer, "kafka://x/j", "j", [0], 3.0, 0.5))
    assert time.monotonic() - t0 < 1.5


def test_a_gap_being_read_again_holds_the_idle_stop(monkeypatch):
    """The idle stop (nothing for ``idle`` seconds) does not end a read while a gap below
    a mark is read again: offsets 3-7 come after 0.4 s of nothing, idle being 0.2 s."""
    from bandit.streaming import kafka_client
    from replay.readers import _up_to_marks

    monkeypatch.setattr(kafka_client, "GAP_SECONDS", 2.0)
    batches = [[(0, 0), (0, 1), (0, 2), (0, 6)]] + [[]] * 20 + [[(0, o) for o in range(3, 8)]]
    consumer = Scripted(batches, {0: 8})
    got = [w for w, _ in _up_to_marks(consumer, "kafka://x/j", "j", [0], 5.0, 0.2)]
    assert got == [f"j[0]@{o}" for o in range(8)]

"""The VW child producing the joined events it learns: each learned line once, under
its key; a refused line not at all; all of them acknowledged when a save answers."""

from __future__ import annotations

import os
import signal
import time

import pytest
from kafka import KafkaConsumer, TopicPartition

from bandit.core.policy_spec import PolicySpec
from bandit.core.vw_adapter import VWModel
from bandit.learner.vw_process import VWProcess, VWProcessError
from bandit.streaming import kafka_client
from tests.test_vw_process import joined_lines


def keyed(bootstrap: str, topic: str, expect: int, timeout: float = 30.0) -> list:
    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        deadline = time.monotonic() + timeout
        while not c.partitions_for_topic(topic) and time.monotonic() < deadline:
            time.sleep(0.2)
        tps = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or [])]
        c.assign(tps)
        c.seek_to_beginning(*tps)
        out: list = []
        while len(out) < expect and time.monotonic() < deadline:
            for msgs in c.poll(timeout_ms=300, max_records=10000).values():
                out += [(m.key, m.value) for m in msgs]
        time.sleep(0.5)  # and nothing more
        for msgs in c.poll(timeout_ms=300).values():
            out += [(m.key, m.value) for m in msgs]
        return out
    finally:
        c.close()


def test_the_child_produces_what_it_learned_and_a_save_waits_for_it(broker, tmp_path):
    topic = f"emit{time.time_ns()}.joined"
    kafka_client.create_topics(broker.bootstrap, [topic], 1)
    args = PolicySpec.parse("epsilon:0.1").vw_args(7)
    lines = joined_lines(600, 3)
    keys = [f"e{i}\n\x00é".encode() for i in range(len(lines))]  # any bytes are a key
    child = VWProcess(args, emit=(broker.bootstrap, topic, "lz4"), chunk=8192)
    here = VWModel(args)
    try:
        for i, (key, line) in enumerate(zip(keys, lines, strict=True)):
            if i == 300:
                child.learn_and_emit(b"refused", b'{"_label_cost": oops}')
            child.learn_and_emit(key, line)
            here.learn_dsjson(line)
        child.save(tmp_path / "child.vw")
        assert (child.learned, child.errors, child.sent) == (600, 1, 601)
        here.save(tmp_path / "here.vw")
        # the save answered after the child's producer was flushed: killed at once, the
        # child has still delivered every line it learned
        os.kill(child._proc.pid, signal.SIGKILL)
        child._proc.wait(10)
    finally:
        child.close()
        here.close()
    assert (tmp_path / "child.vw").read_bytes() == (tmp_path / "here.vw").read_bytes()
    got = keyed(broker.bootstrap, topic, len(lines))
    assert sorted(got) == sorted(zip(keys, lines, strict=True))


def test_emitting_needs_a_topic_and_one_line_of_json():
    child = VWProcess(PolicySpec.parse("epsilon:0.1").vw_args(1))
    try:
        with pytest.raises(VWProcessError, match="without a topic"):
            child.learn_and_emit(b"k", b"{}")
        with pytest.raises(ValueError, match="one line"):
            child.learn_dsjson(b">00 {}")
    finally:
        child.close()


def test_a_save_waits_for_a_broker_that_is_away_and_loses_nothing(own_broker, tmp_path):
    """The child's producer never gives a joined event up: with the broker away for
    longer than a usual delivery timeout (10 s), a save does not answer; once the
    broker is back, every event is delivered and the save completes."""
    topic = "away.joined"
    args = PolicySpec.parse("epsilon:0.1").vw_args(7)
    lines = joined_lines(200, 4)
    child = VWProcess(args, emit=(own_broker.bootstrap, topic, "lz4"))
    try:
        for i, line in enumerate(lines):
            child.learn_and_emit(b"k%d" % i, line)
        child.save_begin(tmp_path / "m.vw")
        deadline = time.monotonic() + 12
        while time.monotonic() < deadline:
            assert not child.save_done()  # still waiting for the broker
            time.sleep(0.5)
        own_broker.start()
        kafka_client.create_topics(own_broker.bootstrap, [topic], 1)
        assert child.save_done(wait=True)
        assert (child.learned, child.errors) == (200, 0)
    finally:
        child.close()
    got = keyed(own_broker.bootstrap, topic, len(lines))
    assert sorted(got) == sorted((b"k%d" % i, line) for i, line in enumerate(lines))


def test_a_message_the_client_refuses_outright_is_logged_not_fatal():
    p = kafka_client.producer("127.0.0.1:1")  # no broker needed: refused before sending
    assert not kafka_client.send(p, "t", b"k", b"x" * 2_000_000)  # past message.max.bytes
    assert kafka_client.send(p, "t", b"k", b"small")


def test_a_line_sent_as_head_and_body_and_one_kafka_refuses_are_told_apart(broker, tmp_path):
    """A line sent as its head and the decision's bytes (opening brace dropped, a raw
    newline in them sent as a space) is the same line on the topic; a learned line
    larger than Kafka takes is counted as refused by the save's answer."""
    import orjson

    topic = f"emitbody{time.time_ns()}.joined"
    kafka_client.create_topics(broker.bootstrap, [topic], 1)
    args = PolicySpec.parse("epsilon:0.1").vw_args(7)
    lines = joined_lines(50, 8)
    huge = orjson.loads(lines[0])
    huge["o"] = [{"v": 1.0, "EventId": "x" * 100}] * 12_000  # ~1.4 MB: past message.max.bytes
    child = VWProcess(args, emit=(broker.bootstrap, topic, "lz4"), chunk=4096)
    try:
        for i, line in enumerate(lines):
            cut = line.index(b',"c":')
            body = b"{\n" + line[cut + 1:] if i % 2 else b"{" + line[cut + 1:]
            child.learn_and_emit(b"k%d" % i, line[:cut + 1], body)
        child.learn_and_emit(b"huge", orjson.dumps(huge))
        child.save(tmp_path / "child.vw")
        assert (child.learned, child.errors, child.refused) == (51, 0, 1)
    finally:
        child.close()
    got = dict(keyed(broker.bootstrap, topic, len(lines)))
    assert got.keys() == {b"k%d" % i for i in range(len(lines))}
    for i, line in enumerate(lines):
        cut = line.index(b',"c":')
        assert got[b"k%d" % i] == (line[:cut + 1] + b" " + line[cut + 1:] if i % 2 else line)


def test_a_group_is_written_only_if_vw_learned_all_of_it(broker, tmp_path):
    """Lines sent as one group (a multi-slot decision's slots) are learned in order; the
    group's output is written only if VW learned every line of it."""
    topic = f"emitgroup{time.time_ns()}.joined"
    kafka_client.create_topics(broker.bootstrap, [topic], 1)
    args = PolicySpec.parse("epsilon:0.1").vw_args(7)
    lines = joined_lines(40, 9)
    bad = b'{"_label_cost": oops}'
    child = VWProcess(args, emit=(broker.bootstrap, topic, "lz4"), chunk=4096)
    here = VWModel(args)
    try:
        for g in range(10):
            group = lines[4 * g:4 * g + 4]
            if g in (3, 7):
                group = [*group[:2], bad, *group[2:]]
            child.learn_group_and_emit(b"g%d" % g, group, b'{"group":%d}' % g)
            for line in group:
                if line is not bad:
                    here.learn_dsjson(line)
        with pytest.raises(ValueError, match="one line"):
            child.learn_group_and_emit(b"x", [b"+{}"], b"{}")
        with pytest.raises(ValueError, match="one line"):
            child.learn_dsjson(b"={}")
        child.save(tmp_path / "child.vw")
        assert (child.learned, child.errors, child.sent) == (40, 2, 42)
        here.save(tmp_path / "here.vw")
    finally:
        child.close()
        here.close()
    assert (tmp_path / "child.vw").read_bytes() == (tmp_path / "here.vw").read_bytes()
    got = dict(keyed(broker.bootstrap, topic, 8))
    assert got == {b"g%d" % g: b'{"group":%d}' % g for g in range(10) if g not in (3, 7)}

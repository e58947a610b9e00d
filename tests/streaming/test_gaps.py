"""Gapless: each partition's messages in offset order, each once; a gap read again
(bandit.streaming.gaps). The learner's and replay's real-broker tests are in
tests/streaming/test_learner.py and tests/replay/test_readers.py."""

from __future__ import annotations

from typing import Any

from bandit.streaming import kafka_client
from bandit.streaming.gaps import Gap, Gapless


class _Message:
    """A fetched message as the consumer gives it (partition 3 of topic ``t``)."""

    def __init__(self, offset: int) -> None:
        self._offset = offset

    def offset(self) -> int:
        return self._offset

    def partition(self) -> int:
        return 3

    def topic(self) -> str:
        return "t"

    def error(self) -> None:
        return None


class _Consumer:
    """Gives the fetches it is told to, records seeks (or refuses them), and gives
    ``log_start`` as the partition's first offset."""

    def __init__(self, log_start: int = 0, seek_fails: int = 0) -> None:
        self.fetches: list[list[int]] = []
        self.seeks: list[tuple[str, int, int]] = []
        self.log_start, self.seek_fails = log_start, seek_fails  # refuse this many seeks

    def consume(self, n: int, timeout: float) -> list[Any]:
        return [_Message(o) for o in self.fetches.pop(0)] if self.fetches else []

    def seek(self, tp: Any) -> None:
        if self.seek_fails:
            self.seek_fails -= 1
            raise kafka_client.KafkaException("Local: Erroneous state")
        self.seeks.append((tp.topic, tp.partition, tp.offset))

    def get_watermark_offsets(self, tp: Any, cached: bool = False) -> tuple[int, int]:
        assert cached  # no broker round trip on the reading path
        return self.log_start, 100


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _reader(**kwargs: Any) -> tuple[Gapless, _Consumer, _Clock]:
    consumer, clock = _Consumer(**kwargs), _Clock()
    reader = Gapless(consumer, budget=3.0, clock=clock)
    reader.start("t", 3, 10)
    return reader, consumer, clock


def fetch(reader: Gapless, consumer: _Consumer, *offsets: int) -> list[int]:
    consumer.fetches.append(list(offsets))
    return [m.offset() for m in reader.consume(100, 0.0)]


def test_a_fetch_that_skips_offsets_is_read_again_from_the_gap(caplog):
    """Offsets 12-13 missing from a fetch: what came before is returned, the consumer
    is sent back to 12 and the rest of the partition's messages wait for that read;
    read again, every offset is returned once, in order. A gap is counted and logged
    once, however many fetches it takes."""
    reader, consumer, _ = _reader()
    assert fetch(reader, consumer, 10, 11, 14, 15) == [10, 11]
    assert consumer.seeks == [("t", 3, 12)] and reader.met == 1 and reader.reading_gap
    assert "t[3]: offsets 12-13 were not returned by the fetch; reading again" in caplog.text
    # the same gap in the next fetch: read again, not counted again
    assert fetch(reader, consumer, 14, 15) == [] and len(consumer.seeks) == 2
    assert reader.met == 1 and caplog.text.count("were not returned") == 1
    assert fetch(reader, consumer, 12, 13, 14, 15) == [12, 13, 14, 15]
    assert reader.next[("t", 3)] == 16 and not reader.reading_gap and reader.given_up == []
    # a gap at the start of a fetch (past where the last one ended) is read again too
    assert fetch(reader, consumer, 20) == []
    assert consumer.seeks[-1] == ("t", 3, 16) and reader.met == 2


def test_a_position_that_went_back_is_read_on_from_there(caplog):
    """An offset reset (a broker that restarted empty starts its offsets at 0 again,
    below where the learner's checkpoint was): the messages are returned, not taken
    for ones read already, and a gap being read on that partition is over."""
    reader, consumer, _ = _reader()
    assert fetch(reader, consumer, 13) == [] and reader.reading_gap
    assert fetch(reader, consumer, 0, 1, 2) == [0, 1, 2]
    assert reader.next[("t", 3)] == 3 and not reader.reading_gap and reader.given_up == []
    assert "t[3]: offset 0 is before 10" in caplog.text


def test_a_partition_without_a_start_starts_at_its_first_message():
    consumer = _Consumer()
    reader = Gapless(consumer)
    assert fetch(reader, consumer, 40, 41) == [40, 41] and reader.met == 0


def test_a_gap_still_there_after_the_budget_is_given_up():
    reader, consumer, clock = _reader()
    assert fetch(reader, consumer, 13) == [] and len(consumer.seeks) == 1
    clock.now = 2.9
    assert fetch(reader, consumer, 13) == [] and len(consumer.seeks) == 2
    clock.now = 3.0
    assert fetch(reader, consumer, 13, 14) == [13, 14] and len(consumer.seeks) == 2
    assert reader.given_up == [Gap("t", 3, 10, 12)] and reader.met == 1
    assert not reader.reading_gap and str(reader.given_up[0]) == "t[3] offsets 10-12"


def test_a_gap_below_the_partition_s_first_offset_is_given_up_at_once():
    """Offsets deleted by retention are not there to read again."""
    reader, consumer, _ = _reader(log_start=12)
    assert fetch(reader, consumer, 12, 13) == [12, 13] and consumer.seeks == []
    assert reader.given_up == [Gap("t", 3, 10, 11, retention=True)]


def test_a_gap_partly_below_the_first_offset_reads_again_the_part_still_there():
    """Offsets 10-11 deleted by retention (the partition starts at 12), and a fetch that
    also skipped 12-14, which are in the topic: only 10-11 are given up; the consumer
    goes back to 12 for the rest."""
    reader, consumer, _ = _reader(log_start=12)
    assert fetch(reader, consumer, 15, 16) == []
    assert reader.given_up == [Gap("t", 3, 10, 11, retention=True)]
    assert consumer.seeks == [("t", 3, 12)] and reader.met == 1
    assert fetch(reader, consumer, 12, 13, 14, 15) == [12, 13, 14, 15]


def test_a_seek_that_fails_is_tried_again_at_every_consume():
    """The client's position is past every message it returned, those held back too:
    a refused seek is tried again at the next consume, whether a message comes or not;
    meanwhile nothing past the gap is returned."""
    reader, consumer, _ = _reader(seek_fails=2)
    assert fetch(reader, consumer, 10, 13) == [10] and consumer.seeks == []
    assert fetch(reader, consumer) == [] and consumer.seeks == []  # refused again
    assert fetch(reader, consumer) == [] and consumer.seeks == [("t", 3, 11)]
    assert reader.next[("t", 3)] == 11 and reader.given_up == [] and reader.reading_gap
    assert fetch(reader, consumer, 11, 12, 13) == [11, 12, 13] and not reader.reading_gap


def test_a_gap_is_overdue_after_the_budget_without_a_message_past_it():
    """For a caller that cannot wait for one (replay must fail in GAP_SECONDS)."""
    reader, consumer, clock = _reader()
    assert fetch(reader, consumer, 14) == [] and reader.overdue() == []
    clock.now = 3.0
    assert fetch(reader, consumer) == [] and reader.overdue() == [Gap("t", 3, 10, 13)]
    assert reader.given_up == [] and reader.reading_gap

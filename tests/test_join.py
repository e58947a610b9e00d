import math

import orjson
import pytest

from bandit.core.events import LoggedDecision, LoggedReward
from bandit.learner.join import JoinState, digest_of, event_time


def dec(eid, deferred=False):
    raw = {"EventId": eid, "a": [1, 2], "p": [0.5, 0.5],
           "c": {"_multi": [{"o_id": {"id=a": 1.0}}, {"o_id": {"id=b": 1.0}}]}}
    return LoggedDecision(eid, "", {}, ({}, {}), 1, deferred, raw)


def rew(eid, v=1.0, activate=False):
    return LoggedReward(eid, "", v, None, None, activate)


def test_earliest_learns_on_the_first_reward():
    s = JoinState(wait=10)
    assert s.add_decision(dec("e1"), 0) == []
    (j,) = s.add_reward(rew("e1", 0.5), 1)
    assert j.reward == 0.5 and j.decision["EventId"] == "e1"
    assert s.add_reward(rew("e1", 1.0), 2) == []  # late: counted, not learned twice
    assert s.counters.late_rewards == 1 and s.counters.learned == 1


@pytest.mark.parametrize("fn,expect", [("sum", 1.5), ("max", 1.0), ("last", 0.5),
                                       ("average", 0.75)])
def test_window_functions_wait_for_the_window(fn, expect):
    s = JoinState(wait=10, reward_function=fn)
    s.add_decision(dec("e"), 0)
    assert s.add_reward(rew("e", 1.0), 1) == [] and s.add_reward(rew("e", 0.5), 2) == []
    assert s.expire(9.9) == []
    (j,) = s.expire(10)
    assert j.reward == pytest.approx(expect) and len(j.rewards) == 2


def test_default_reward_at_expiry_and_orphans():
    s = JoinState(wait=5, default_reward=-0.1)
    s.add_decision(dec("e"), 0)
    (j,) = s.expire(5)
    assert j.reward == -0.1 and s.counters.defaulted == 1
    # a reward before its decision waits as an orphan, then joins
    s.add_reward(rew("x", 1.0), 6)
    (j,) = s.add_decision(dec("x"), 7)
    assert j.reward == 1.0
    # an orphan that never meets its decision is counted as unmatched
    s.add_reward(rew("ghost"), 8)
    s.expire(14)
    assert s.counters.unmatched_rewards == 1


def test_deferred_needs_activation():
    s = JoinState(wait=5)
    s.add_decision(dec("d1", deferred=True), 0)
    assert s.add_reward(rew("d1"), 1) == []  # not active yet
    (j,) = s.add_reward(rew("d1", activate=True), 2)
    assert j.reward == 1.0
    s.add_decision(dec("d2", deferred=True), 0)
    assert s.expire(6) == [] and s.counters.not_activated == 1


def test_duplicates_are_ignored_and_snapshot_round_trips():
    s = JoinState(wait=5)
    s.add_decision(dec("a"), 0)
    s.add_decision(dec("a"), 0)
    s.add_reward(rew("orph"), 0)
    s.add_decision(dec("b"), 0)
    s.add_reward(rew("b"), 1)
    assert s.counters.duplicates == 1
    t = JoinState(wait=5)
    t.restore(s.snapshot())
    assert t.snapshot() == s.snapshot()
    assert t.add_decision(dec("b"), 2) == [] and t.counters.duplicates == 2
    assert [j.decision["EventId"] for j in t.expire(5)] == ["a"]
    assert t.counters.digest == digest_of(["a", "b"])


def _dec(eid: str, user: str) -> dict:
    return {"EventId": eid, "a": [1, 2], "p": [0.9, 0.1], "user": user,
            "c": {"_multi": [{"o": {"x": 1.0}}, {"o": {"y": 1.0}}]}}


def test_long_horizon_rewards_are_attributed_by_user():
    from bandit.core.events import parse_decision, parse_reward
    from bandit.learner.join import JoinState

    for attribution, expect in (("last", {"d1": 0.0, "d2": 0.5 + 2 * 1.0, "d3": 0.0}),
                                ("split", {"d1": 1.0, "d2": 0.5 + 1.0, "d3": 0.0})):
        st = JoinState(wait=10, reward_function="sum", long_wait=100, long_weight=2.0,
                       attribution=attribution)
        st.add_decision(parse_decision(_dec("d1", "alice")), 0)
        st.add_decision(parse_decision(_dec("d2", "alice")), 5)
        st.add_decision(parse_decision(_dec("d3", "bob")), 6)
        # a short reward for d2 does not end its window: long rewards may still come
        assert st.add_reward(parse_reward({"EventId": "d2", "v": 0.5}), 7) == []
        st.add_reward(parse_reward({"User": "alice", "v": 1.0, "horizon": "long"}), 50)
        st.add_reward(parse_reward({"User": "carol", "v": 1.0}), 50)  # no decision
        assert st.expire(60) == []  # the long window (100 s) is still open
        joined = {j.decision["EventId"]: j.reward for j in st.expire(200)}
        assert joined == pytest.approx(expect), attribution
        assert st.counters.unmatched_rewards == 1 and st.counters.learned == 3
        assert st.long.by_user == {}


def test_a_reward_for_another_slot_is_not_learned_on_a_one_slot_decision():
    """Rewards of a one-slot decision that name slot 2 do not count, whatever other
    fields they carry (no Timestamp here)."""
    s = JoinState(wait=10, reward_function="sum")
    s.add_decision(dec("e"), 0)
    s.add_reward(rew("e", 1.0), 1)
    s.add_reward(LoggedReward("e", "", 5.0, 2, None, False), 2)
    (j,) = s.expire(10)
    assert j.reward == pytest.approx(1.0) and len(j.rewards) == 2


def test_a_decision_read_from_a_topic_is_snapshotted_by_its_offset():
    """The snapshot holds (partition, offset) instead of the event; after a restore the
    decision is listed as unloaded, and once read back it joins as if never stored."""
    import orjson

    s = JoinState(wait=10)
    s.add_decision(dec("e1"), 0, ref=(2, 41))
    s.add_decision(dec("e2"), 0)  # not from a topic: stored whole, as before
    s.add_reward(rew("e1", 0.25), 1)  # 'earliest': learned on its first reward
    snap = orjson.loads(orjson.dumps(s.snapshot()))
    assert "e1" not in snap["pending"]  # e1 was learned on its first reward
    s.add_decision(dec("e3"), 0, ref=(2, 42))
    snap = orjson.loads(orjson.dumps(s.snapshot()))
    assert snap["pending"]["e3"][0] is None and snap["pending"]["e3"][7:9] == [2, 42]
    assert snap["pending"]["e2"][0]["EventId"] == "e2"
    assert len(orjson.dumps(snap["pending"]["e3"])) < 60  # no event in it

    r = JoinState(wait=10)
    r.restore(snap)
    assert r.unloaded() == {2: {42: "e3"}}
    with pytest.raises(ValueError):
        r.reload("e3", dec("other"))  # the offset must hold the same event
    r.reload("e3", dec("e3"))
    assert r.unloaded() == {}
    (j,) = r.add_reward(rew("e3", 0.75), 2)
    assert j.decision == dec("e3").raw and j.reward == 0.75


def test_a_pending_decision_the_topic_lost_is_forgotten_and_counted():
    s = JoinState(wait=10)
    s.add_decision(dec("e1"), 0, ref=(0, 5))
    r = JoinState(wait=10)
    r.restore(s.snapshot())
    r.forget("e1")
    assert r.sizes["pending"] == 0 and r.counters.lost == 1
    assert r.add_reward(rew("e1"), 1) == []  # its reward is an orphan now, not a crash


def test_a_new_window_applies_to_decisions_made_after_it_however_late_they_are_read():
    def at(eid, ts):
        d = dec(eid)
        d.timestamp = ts
        return d

    s = JoinState(wait=3600)
    s.set_window(5, since="2026-01-01T12:00:00.000Z")  # 1 h → 5 s at noon
    # read after the change (a lagging learner), made before it: the hour stands
    s.add_decision(at("before", "2026-01-01T11:59:59.990Z"), 100)
    s.add_decision(at("after", "2026-01-01T12:00:00.010Z"), 100)
    assert [j.decision["EventId"] for j in s.expire(105)] == ["after"]
    assert s.expire(3699) == []
    again = JoinState(wait=5)  # the windows survive a checkpoint
    again.restore(s.snapshot())
    assert again.windows == [("2026-01-01T12:00:00.000Z", 3600.0)]
    assert [j.decision["EventId"] for j in again.expire(3700)] == ["before"]


def stamped(eid, ts, deferred=False):
    d = dec(eid, deferred)
    return LoggedDecision(eid, ts, {}, ({}, {}), 1, deferred, d.raw)


def rew_at(eid, ts, v=1.0):
    return LoggedReward(eid, ts, v, None, None, False)


T0 = "2026-01-01T00:00:00.000Z"  # the decisions' time; windows of 10 s end at 00:00:10


def test_a_window_stays_open_until_the_rewards_are_read_past_its_end():
    """The clock says the window is over, but the rewards topic has been read only to
    00:00:05 in event time: a reward stamped 00:00:07 may still be unread, so the
    decision waits, and joins the reward once it is read; without one it is learned
    with the default once the rewards are read past 00:00:10 (or to their end)."""
    s = JoinState(wait=10)
    s.add_decision(stamped("a", T0), 0)
    s.add_decision(stamped("b", T0), 0)
    s.add_decision(stamped("c", T0), 0)
    five = event_time("2026-01-01T00:00:05.000Z")
    assert s.expire(100, rewards_to=five) == [] and set(s.pending) == {"a", "b", "c"}
    (j,) = s.add_reward(rew_at("a", "2026-01-01T00:00:07.000Z", 0.5), 101)
    assert j.reward == 0.5 and s.counters.defaulted == 0
    done = s.expire(102, rewards_to=event_time("2026-01-01T00:00:10.001Z"))
    assert [x.reward for x in done] == [0.0, 0.0]  # b and c: the window is over
    assert s.counters.defaulted == 2 and not s.pending
    # the clock alone still decides while the rewards are read to their end
    s.add_decision(stamped("d", T0), 200)
    assert s.expire(209) == [] and len(s.expire(210)) == 1


def test_a_restored_decision_waits_for_the_rewards_its_learner_had_not_read():
    """A learner restarted long after its checkpoint (the windows of its pending
    decisions are over by the clock) learns the rewards waiting in the topic."""
    s = JoinState(wait=10)
    s.add_decision(stamped("a", T0), 0, ref=(0, 7))
    s.add_decision(stamped("b", T0), 0, ref=(0, 8))
    snap = orjson.loads(orjson.dumps(s.snapshot()))
    r = JoinState(wait=10)
    r.restore(snap)
    for eid in ("a", "b"):
        r.reload(eid, stamped(eid, T0))
    assert r.expire(3600, rewards_to=-math.inf) == []  # nothing read yet since the restart
    (j,) = r.add_reward(rew_at("a", "2026-01-01T00:00:03.000Z"), 3601)
    assert j.reward == 1.0
    assert [x.decision["EventId"] for x in r.expire(3602)] == ["b"]  # read to the end
    assert r.counters.defaulted == 1


def test_an_orphan_waits_until_the_decisions_are_read_past_its_time():
    s = JoinState(wait=10)
    s.add_reward(rew_at("x", "2026-01-01T00:00:05.000Z"), 0)
    four = event_time("2026-01-01T00:00:04.000Z")
    assert s.expire(100, decisions_to=four) == [] and "x" in s.orphans
    snap = orjson.loads(orjson.dumps(s.snapshot()))
    r = JoinState(wait=10)
    r.restore(snap)
    assert r.orphans["x"].at == event_time("2026-01-01T00:00:05.000Z")
    (j,) = r.add_decision(stamped("x", "2026-01-01T00:00:04.500Z"), 101)
    assert j.reward == 1.0 and r.counters.unmatched_rewards == 0
    r.add_reward(rew_at("y", "2026-01-01T00:00:05.000Z"), 102)
    r.expire(200, decisions_to=event_time("2026-01-01T00:00:05.000Z"))
    assert not r.orphans and r.counters.unmatched_rewards == 1


def test_event_times():
    assert event_time("2026-01-01T00:00:01.500Z") == 1767225601.5
    assert event_time("2026-01-01T00:00:01.500") == 1767225601.5  # no zone: UTC
    assert event_time("2026-01-01T01:00:01.500+01:00") == 1767225601.5
    assert event_time("") == -math.inf and event_time("yesterday") == -math.inf


def test_a_decision_stamped_far_ahead_does_not_hold_those_read_after_it():
    """A host whose clock is a day ahead: its decision waits for rewards stamped a day
    later, the decisions read after it close as usual (ordered and unordered scans)."""
    for shorten in (False, True):
        s = JoinState(wait=10)
        s.add_decision(stamped("skewed", "2026-01-02T00:00:00.000Z"), 0)
        if shorten:  # a shorter window: deadlines out of order, every entry is scanned
            s.set_window(5)
        for eid in ("a", "b"):
            s.add_decision(stamped(eid, T0), 0)
        closed = s.expire(100, rewards_to=event_time("2026-01-01T00:01:00.000Z"))
        assert [j.decision["EventId"] for j in closed] == ["a", "b"], shorten
        assert list(s.pending) == ["skewed"]


def test_a_whole_decision_keeps_its_window_end_through_a_snapshot():
    s = JoinState(wait=10)
    s.add_decision(stamped("a", T0), 0)  # not from a topic: stored whole
    r = JoinState(wait=10)
    r.restore(orjson.loads(orjson.dumps(s.snapshot())))
    assert r.expire(3600, rewards_to=event_time("2026-01-01T00:00:09.000Z")) == []
    assert len(r.expire(3600, rewards_to=event_time("2026-01-01T00:00:10.000Z"))) == 1


def test_a_decision_from_an_older_checkpoint_gets_its_window_end_when_read_back():
    """A checkpoint written before window ends were stored (a by-reference entry of nine
    fields): once its event is read back, the decision waits like any other."""
    snap = {"pending": {"a": [None, 10.0, False, False, [], None, 0, 0, 7]}}
    r = JoinState(wait=10)
    r.restore(snap)
    r.reload("a", stamped("a", T0))
    assert r.expire(3600, rewards_to=event_time("2026-01-01T00:00:05.000Z")) == []
    assert len(r.expire(3600)) == 1


def test_long_horizon_rewards_are_matched_by_event_time_after_a_restart():
    """A user's reward 30 s after the decision, inside the 100 s long window, read an
    hour after the decision was (a restart): attributed to it, not unmatched."""
    s = JoinState(wait=10, long_wait=100)
    d = stamped("a", T0)
    d.raw["user"] = "u1"
    s.add_decision(d, 0)
    r = JoinState(wait=10, long_wait=100)
    r.restore(orjson.loads(orjson.dumps(s.snapshot())))
    assert r.expire(5000, rewards_to=-math.inf) == []
    reward = LoggedReward("", "2026-01-01T00:00:30.000Z", 5.0, None, None, False,
                          user="u1")
    r.add_reward(reward, 5001)
    (j,) = r.expire(5002)
    assert j.reward == 5.0 and r.counters.unmatched_rewards == 0


def test_a_snapshot_loads_in_the_version_before_window_ends_were_stored():
    """Rolling back after a checkpoint of this version: the previous version's loader
    (copied here as it was) reads both kinds of pending entry."""

    def old_load(v):
        return (v[0] if v[0] is not None else {}, float(v[1]), bool(v[2]), bool(v[3]),
                list(v[4]), v[5].encode() if len(v) > 5 and v[5] is not None else None,
                int(v[6]) if len(v) > 6 else 0,
                (int(v[7]), int(v[8])) if len(v) > 8 else None)

    s = JoinState(wait=10)
    s.add_decision(stamped("whole", T0), 0)
    s.add_decision(stamped("ref", T0), 0, ref=(3, 9))
    snap = orjson.loads(orjson.dumps(s.snapshot()))
    assert old_load(snap["pending"]["whole"])[0]["EventId"] == "whole"
    assert old_load(snap["pending"]["ref"])[7] == (3, 9)


def test_a_restart_after_longer_than_the_retention_still_knows_the_ids_it_learned():
    """A decision learned, the learner restarted an hour later (its clock says every
    finished id is old), and the server's re-shipped copy of the decision read after the
    restart: a duplicate, not learned twice, until the decisions are read past the
    retention in event time; a late reward for it stays late."""
    s = JoinState(wait=10, retention=60)
    s.add_decision(stamped("a", T0), 0)
    (j,) = s.add_reward(rew_at("a", "2026-01-01T00:00:01.000Z"), 1)
    r = JoinState(wait=10, retention=60)
    r.restore(orjson.loads(orjson.dumps(s.snapshot())))
    r.expire(3600, decisions_to=event_time("2026-01-01T00:00:30.000Z"))
    assert r.add_decision(stamped("a", T0), 3601) == [] and r.counters.duplicates == 1
    assert r.add_reward(rew_at("a", "2026-01-01T00:00:05.000Z"), 3602) == []
    assert r.counters.late_rewards == 1 and not r.orphans
    r.expire(3603, decisions_to=event_time("2026-01-01T00:01:10.000Z"))  # 10 s + 60 s on
    assert "a" not in r.done


def test_finished_ids_of_an_older_snapshot_load():
    r = JoinState(wait=10)
    r.restore({"done": {"a": 100.0}})
    assert r.done == {"a": (100.0, -math.inf)} and r.expire(99) == [] and "a" in r.done
    r.expire(100)
    assert not r.done


def test_finished_ids_of_a_snapshot_load_in_the_version_before_their_window_ends():
    s = JoinState(wait=10)
    s.add_decision(stamped("a", T0), 0)
    s.add_reward(rew_at("a", T0), 1)
    snap = orjson.loads(orjson.dumps(s.snapshot()))
    assert {e: float(t) for e, t in snap.get("done", {}).items()} == {"a": 61.0}  # as it did
    r = JoinState(wait=10)
    r.restore(snap)
    assert r.done == s.done


def test_forgetting_finished_ids_visits_each_once():
    """Ids past their retention by the clock but not yet by the decisions read wait
    aside: a later step does not walk them again (the forgetting is a heap by window
    end), and they go once the decisions are read past it."""
    s = JoinState(wait=10, retention=60)
    for i in range(1000):
        s.add_decision(stamped(f"e{i}", T0), 0)
        s.add_reward(rew_at(f"e{i}", T0), 0)
    behind = event_time("2026-01-01T00:00:30.000Z")
    s.expire(100, decisions_to=behind)
    assert len(s.done) == 1000 and not s._by_clock and len(s._held) == 1000
    s.expire(101, decisions_to=event_time("2026-01-01T00:01:10.000Z"))
    assert not s.done and not s._held

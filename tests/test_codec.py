"""The codec's fast forms against their plain twins, byte for byte, over generated
decisions: arbitrary UTF-8 names (VW's special characters, quotes, braces and the
separators the fast forms cut on included), integer and float values, empty contexts,
multi-slot exclusions, extras. And the learner's slot examples against what the
server's policy predicted each slot from."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bandit.core.codec import (
    cb_label,
    decision_event,
    encode_decision,
    encode_decision_event,
    encode_decision_plain,
    joined_event,
    joined_line,
    learn_event,
    learn_line,
    open_label,
    slot_example,
    slot_lines,
    split_head,
    split_head_plain,
    split_joined,
    split_joined_plain,
)
from bandit.core.pmfs import VWScorer
from bandit.core.policy import VWPolicy
from bandit.core.policy_spec import PolicySpec
from bandit.core.types import DecideRequest, Decision, Offer
from bandit.core.vw_text import action_line

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

names = st.one_of(st.text(min_size=1, max_size=6),
                  st.sampled_from(['}},{', ',"c":{', '"_multi":[{', "a b|c:d", "_multi"]))
numbers = st.one_of(st.integers(-10**9, 10**9),
                    st.floats(-3e38, 3e38, allow_nan=False, allow_infinity=False))
namespace = st.dictionaries(names, numbers, max_size=3)
context = st.dictionaries(names, namespace, max_size=3)
offer_features = st.dictionaries(names, namespace, min_size=1, max_size=3)
probability = st.floats(0.001, 1.0)
rewards_seen = st.lists(st.fixed_dictionaries(
    {"v": numbers, "EventId": st.text(max_size=4)},
    optional={"kind": names, "slot": st.integers(1, 3)}), max_size=3)


@st.composite
def decisions(draw: Any) -> tuple[DecideRequest, Decision, dict[str, Any]]:
    """A request, the decision made on it and the extra fields logged with it."""
    n = draw(st.integers(1, 6))
    offers = tuple(Offer(draw(st.text(max_size=5)), draw(offer_features), "")
                   for _ in range(n))
    slots = draw(st.integers(1, min(3, n)))
    req = DecideRequest(draw(st.text(min_size=1, max_size=8)), draw(context), offers,
                        slots=slots, explore=draw(st.booleans()), defer=draw(st.booleans()),
                        user_id=draw(st.none() | st.text(max_size=4)))
    if slots > 1 and draw(st.booleans()):
        ids = [o.id for o in offers]
        req = replace(req, slot_ids=tuple(f"s{k}" for k in range(slots)),
                      slot_exclude=tuple(frozenset(draw(st.lists(st.sampled_from(ids),
                                                                 max_size=2)))
                                         for _ in range(slots)))
    order = tuple(draw(st.permutations(range(n))))
    decision = Decision(req.event_id, order, tuple(draw(probability) for _ in order), slots,
                        draw(st.text(max_size=4)), "epsilon:0.1", draw(st.booleans()),
                        draw(st.sampled_from([{}, {"path": "model"}])))
    extra = draw(st.dictionaries(st.sampled_from(["arm", "policy", "ids", "shadow"]),
                                 st.text(max_size=4), max_size=2))
    return req, decision, extra


@SETTINGS
@given(decisions(), st.text(min_size=1, max_size=24))
def test_the_servers_encoder_is_building_and_encoding_the_event(made, timestamp):
    req, decision, extra = made
    want = encode_decision(decision_event(req, decision, timestamp, **extra))
    assert encode_decision_event(req, decision, timestamp, **extra) == want
    assert encode_decision_event(req, decision, timestamp, **extra) == want  # cached lists


@SETTINGS
@given(decisions())
def test_encoding_a_decision_is_encoding_it_with_c_last(made):
    req, decision, extra = made
    event = decision_event(req, decision, "t", **extra)
    body, at = encode_decision(event)
    assert (body, at) == encode_decision_plain(event)
    assert at is not None and body[at:at + 6] == b',"c":{'
    assert split_head(body, at) == split_head_plain(body)
    shuffled = {"c": event["c"], **{k: v for k, v in event.items() if k != "c"}}
    assert encode_decision(shuffled) == encode_decision_plain(shuffled)


def _logged(made: Any) -> tuple[bytes, int, dict[str, Any]]:
    """A decision as the server logs it: its bytes, ``c_at`` and decoded head."""
    req, decision, extra = made
    body, at = encode_decision(decision_event(req, decision, "t", **extra))
    assert at is not None
    head = split_head(body, at)
    assert head is not None
    return body, at, head


@SETTINGS
@given(decisions(), numbers, rewards_seen)
def test_spliced_lines_are_the_joined_and_learn_events(made, reward, seen):
    body, at, head = _logged(made)
    event = orjson.loads(body)
    label = open_label(head, reward)
    assert joined_line(head, body, reward, seen) == \
        joined_line(head, body, reward, seen, label) == \
        orjson.dumps(joined_event(event, reward, seen))
    assert learn_line(head, body, at, reward) == learn_line(head, body, at, reward, label) \
        == orjson.dumps(learn_event(event, reward))


def _decodes(parts: Any) -> bool:
    """Whether every part of a cut decodes (else the cut fell inside a string, and the
    adapter decodes the line whole)."""
    try:
        orjson.loads(parts.context + b"}" if parts.context else b"{}")
        for o in parts.offers:
            orjson.loads(b"{" + o + b"}}")
    except orjson.JSONDecodeError:
        return False
    return True


@SETTINGS
@given(decisions(), numbers, rewards_seen)
def test_cutting_a_joined_line_is_cutting_the_decoded_line(made, reward, seen):
    body, at, head = _logged(made)
    for line in (joined_line(head, body, reward, seen), learn_line(head, body, at, reward)):
        fast, plain = split_joined(line), split_joined_plain(line)
        assert (fast is None) == (plain is None)
        if fast is not None and _decodes(fast):
            assert fast == plain
            assert fast.label and orjson.loads(fast.label + b"}") == cb_label(head, reward)


class _Recorder(VWScorer):
    """A scorer that records the context and offers the policy predicted each slot from."""

    seen: list[tuple[dict[str, Any], list[Any]]] = []

    def pmf(self, context: Any, offers: Any, slot: int) -> list[float]:
        self.seen.append((context, [o.features for o in offers]))
        return super().pmf(context, offers, slot)


class _RecordingPolicy(VWPolicy):
    scorer_type = _Recorder


POLICY = _RecordingPolicy.fresh(PolicySpec.parse("epsilon:0.5"))


@settings(max_examples=60, deadline=None)
@given(st.integers(3, 7), st.data())
def test_the_learner_learns_each_slot_from_what_the_server_predicted_it_from(n, data):
    ids = [f"o{i}" for i in range(n)]
    offers = tuple(Offer(i, {"o": {f"id={i}": 1.0}}, action_line({"o": {f"id={i}": 1.0}}))
                   for i in ids)
    exclude = tuple(frozenset(data.draw(st.lists(st.sampled_from(ids), max_size=n - 1)))
                    for _ in range(3))
    req = DecideRequest(data.draw(st.text(min_size=1, max_size=6)), {"u": {"x": 1.0}},
                        offers, slots=3, slot_ids=("a", "b", "c"), slot_exclude=exclude)
    _Recorder.seen = []
    decision = POLICY.decide(req)
    event = orjson.loads(orjson.dumps(decision_event(req, decision)))
    rewards = [float(k) for k in range(decision.slots)]
    lines = slot_lines(event, rewards)
    assert len(lines) == max(0, decision.slots - 1)
    for k in range(2, decision.slots + 1):
        example = slot_example(event, k, rewards[k - 1])
        context, predicted = _Recorder.seen[k - 1]
        assert example["c"] == {**context, "_multi": predicted}
        chosen = predicted[example["_labelIndex"]]
        assert chosen == offers[decision.order[k - 1]].features
        assert example["_label_probability"] == decision.probabilities[k - 1]
        assert orjson.loads(lines[k - 2]) == example

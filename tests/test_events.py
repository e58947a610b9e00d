import random
import subprocess
import sys

import orjson
import pytest

from bandit.config.settings import Settings
from bandit.core.errors import BadRequest
from bandit.core.events import (
    activation_event,
    cb_label,
    decision_event,
    encode_decision,
    encode_decision_event,
    joined_event,
    joined_line,
    open_label,
    parse_decision,
    parse_decision_head,
    parse_reward,
    reward_event,
)
from bandit.core.policy import VWPolicy
from bandit.core.policy_spec import PolicySpec
from bandit.core.schema import RequestParser
from bandit.core.types import Reward


def make_decision(event_id="e1", explore=True):
    parser = RequestParser(Settings())
    body = {"event_id": event_id, "context": {"user": {"country": "US", "age": 30}},
            "offers": [{"id": "a|b c", "features": {"cat": {"c": "x:y"}}}, {"id": "b"},
                       {"id": "c", "features": {"price": 9.5}}], "explore": explore}
    req = parser.decide(orjson.dumps(body))
    policy = VWPolicy.fresh(PolicySpec.parse("epsilon:0.3"))
    d = policy.decide(req)
    return req, d, decision_event(req, d)


def test_decision_round_trip():
    req, d, ev = make_decision()
    back = parse_decision(orjson.loads(orjson.dumps(ev)))
    assert back.event_id == req.event_id
    assert back.context == req.context
    assert back.offers == tuple(o.features for o in req.offers)
    assert back.ids == ("a|b c", "b", "c")
    assert back.actions == d.order and back.probabilities == pytest.approx(d.probabilities)
    assert back.model_version == "0" and back.slots == 1 and not back.deferred


def test_reward_and_activation_round_trip():
    r = parse_reward(reward_event(Reward("e1", 0.5, slot=2, kind="conversion")))
    assert (r.event_id, r.value, r.slot, r.kind, r.activate) == ("e1", 0.5, 2, "conversion",
                                                                 False)
    assert parse_reward(activation_event("e1")).activate


@pytest.mark.parametrize("mutate,field", [
    (lambda e: e.pop("EventId"), "EventId"),
    (lambda e: e.update(a=[0]), "a"),
    (lambda e: e.update(a=[9]), "a"),
    (lambda e: e.update(p=[0.0, 0.5, 0.5]), "p"),
    (lambda e: e.update(p=[0.5]), "p"),
    (lambda e: e["c"].update(_multi=[]), "c._multi"),
    (lambda e: e["c"]["_multi"][0].update(o_id={"id=a": "x"}), "c._multi[0].o_id.id=a"),
    (lambda e: e.update(a=[True]), "a"),
    (lambda e: e.update(a=[1.0]), "a"),
    (lambda e: e.update(a=[1, "2"]), "a"),
    (lambda e: e.update(p=[True, 0.5, 0.5]), "p"),
    (lambda e: e.update(p=[0.5, 1.5, 0.5]), "p"),
    (lambda e: e.update(p=[0.5, -0.1, 0.5]), "p"),
    (lambda e: e.update(ids=["a"]), "ids"),
    (lambda e: e.update(ids=["a", 2, "c"]), "ids"),
    (lambda e: e.update(slots=True), "slots"),
    (lambda e: e.update(slots=4), "slots"),  # more shown slots than ranked actions
    # a label in a decision would override the one the learner joins to it
    (lambda e: e.update(_label_probability=1e-9), "_label_probability"),
    (lambda e: e.update(_labelIndex=0), "_labelIndex"),
])
def test_bad_decision_events_name_the_field(mutate, field):
    _, _, ev = make_decision()
    mutate(ev)
    with pytest.raises(BadRequest) as err:
        parse_decision(ev)
    assert err.value.field == field


@pytest.mark.parametrize("obj", [[], {"EventId": ""}, {"EventId": "e", "v": "1"},
                                 {"EventId": "e", "v": 1, "slot": 0}])
def test_bad_rewards(obj):
    with pytest.raises(BadRequest):
        parse_reward(obj)


def test_vw_reads_joined_events_as_they_are(tmp_path):
    """``vw --dsjson --cb_explore_adf`` learns from our joined file unchanged."""
    lines = []
    for i in range(20):
        _, d, ev = make_decision(f"e{i}")
        lines.append(orjson.dumps(joined_event(ev, 1.0 if i % 2 else 0.0,
                                               [{"v": 1.0, "EventId": f"e{i}"}])))
    path = tmp_path / "joined.json"
    path.write_bytes(b"\n".join(lines) + b"\n")
    out = subprocess.run([sys.executable, "-m", "vowpalwabbit", "--dsjson", "--cb_explore_adf",
                          "-q", "co", "--hash", "all", "-d", str(path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "number of examples = 20" in out.stderr
    # every example carried a label: the reported loss is an average over labelled rows
    assert "average loss = n.a." not in out.stderr


def test_open_labels_are_the_label_json_whatever_was_kept_before():
    """Labels are kept by (reward, p[0], a[0]); values that are equal but written
    differently (1 and 1.0, 0.0 and -0.0) still get their own JSON."""
    rng = random.Random(3)
    for _ in range(3000):
        head = {"a": [rng.randrange(1, 21)],
                "p": [rng.choice([0.05, 0.9525, 0.0025, 1, 1.0, 0.5])]}
        reward = rng.choice([0.0, -0.0, 1.0, 1, 0, 2.5, -1.0, 0.30000000000000004])
        assert open_label(head, reward) == orjson.dumps(cb_label(head, reward))[:-1]


def test_joined_label_uses_the_chosen_action():
    _, d, ev = make_decision()
    j = joined_event(ev, 0.75, [])
    assert j["_label_cost"] == -0.75
    assert j["_label_Action"] == d.order[0] + 1 and j["_labelIndex"] == d.order[0]
    assert j["_label_probability"] == d.probabilities[0]


def test_encoded_decision_puts_c_last_and_its_head_parses_like_the_whole():
    req, d, ev = make_decision()
    ev["user"] = "h:abc"
    value, at = encode_decision(ev)
    assert at is not None and value[at:at + 6] == b',"c":{'
    assert orjson.loads(value) == ev and list(orjson.loads(value))[-1] == "c"
    whole = parse_decision(orjson.loads(value))
    head = parse_decision_head(value, at)
    assert head is not None and head.body == value and "c" not in head.raw
    for name in ("event_id", "timestamp", "ids", "actions", "probabilities",
                 "model_version", "slots", "deferred"):
        assert getattr(head, name) == getattr(whole, name), name
    assert head.raw == {k: v for k, v in ev.items() if k != "c"}


def test_joined_line_is_the_joined_event_byte_for_byte():
    _, _, ev = make_decision()
    value, at = encode_decision(ev)
    assert at is not None
    head = parse_decision_head(value, at)
    assert head is not None
    seen = [{"v": 1.0, "EventId": "e1", "Timestamp": "2026-01-01T00:00:00.000Z"}]
    decoded = orjson.loads(value)
    assert joined_line(head.raw, value, 1.0, seen) == \
        orjson.dumps(joined_event(decoded, 1.0, seen))


@pytest.mark.parametrize("shift", [-1, 1, 5, 10_000, -10_000])
def test_a_wrong_c_offset_means_decode_the_whole_event(shift):
    _, _, ev = make_decision()
    value, at = encode_decision(ev)
    assert at is not None
    assert parse_decision_head(value, at + shift) is None
    # c nested deeper than the top level is not taken for the decision's c
    nested = orjson.dumps({"EventId": "x", "x": {"y": 1, "c": {"z": 1}}, "c": {}})
    assert parse_decision_head(nested, nested.index(b',"c":{')) is None
    # JSON may open with whitespace, but the joined line is spliced on the brace
    assert parse_decision_head(b" " + value, at + 1) is None


def test_a_bad_head_is_refused_naming_the_field():
    _, _, ev = make_decision()
    value, at = encode_decision({**ev, "p": [2.0] * len(ev["p"])})
    assert at is not None
    with pytest.raises(BadRequest) as e:
        parse_decision_head(value, at)
    assert e.value.field == "p"
    value, at = encode_decision({**ev, "a": [99] + ev["a"][1:]})
    with pytest.raises(BadRequest) as e:
        parse_decision_head(value, at)  # type: ignore[arg-type]
    assert e.value.field == "a"
    value, at = encode_decision({**ev, "_label_cost": -1e6})
    with pytest.raises(BadRequest) as e:
        parse_decision_head(value, at)  # type: ignore[arg-type]
    assert e.value.field == "_label_cost"


@pytest.mark.parametrize("spec", ["epsilon:0.1", "bag:3", "squarecb", "softmax"])
def test_vw_learns_the_same_model_from_the_short_learn_line(spec, tmp_path):
    import random

    from bandit.core.events import learn_line
    from bandit.core.vw_adapter import VWModel

    rng = random.Random(4)
    args = PolicySpec.parse(spec).vw_args(3)
    full, short = VWModel(args, json_input=True), VWModel(args, json_input=True)
    for i in range(400):
        n = 5
        order = rng.sample(range(n), n)
        ev = {"EventId": f"e{i}", "Timestamp": "2026-01-01T00:00:00.000Z", "Version": "1",
              "a": [k + 1 for k in order], "p": [0.6] + [0.1] * (n - 1),
              "c": {"cuser": {f"seg={i % 3}": 1.0, "x": rng.random()},
                    "_multi": [{"o_id": {f"id=o{k}": 1.0}} for k in range(n)]},
              "VWState": {"m": "0"}, "ids": [f"o{k}" for k in range(n)], "slots": 1}
        value, at = encode_decision(ev)
        assert at is not None
        head = parse_decision_head(value, at)
        assert head is not None and head.c_at == at
        reward = float(rng.random() < 0.3)
        full.learn_dsjson(joined_line(head.raw, value, reward, [{"v": reward}]))
        short.learn_dsjson(learn_line(head.raw, value, at, reward))
    full.save(tmp_path / "full.vw")
    short.save(tmp_path / "short.vw")
    full.close()
    short.close()
    assert (tmp_path / "full.vw").read_bytes() == (tmp_path / "short.vw").read_bytes()


def test_encoded_decisions_are_the_event_with_c_last_whatever_the_offer_list_cache_holds():
    """``c._multi`` comes from a cache of recent offer lists, keyed by the identity of
    their feature dicts: the bytes must still be ``orjson.dumps`` of the event with
    ``c`` last, for a repeated list, a list of equal but different dicts, an empty
    context, and a ``c`` whose last key is not ``_multi``."""
    offers = [{"o": {f"id=o{i}": 1.0, "x": i / 7}} for i in range(5)]
    same_values = [{"o": dict(f["o"])} for f in offers]

    def event(c):
        return {"EventId": "e", "a": [2, 1, 3, 4, 5], "p": [0.6, 0.1, 0.1, 0.1, 0.1],
                "c": c, "ids": [f"o{i}" for i in range(5)]}

    cases = [{"u": {"k=v": 1.0}, "_multi": offers},
             {"u": {"k=w": 0.5}, "_multi": offers},  # a cache hit
             {"u": {"k=v": 1.0}, "_multi": same_values},
             {"_multi": offers},
             {"_multi": offers, "u": {"k=v": 1.0}},
             {"u": {"k=v": 1.0}, "_multi": offers[:3] + same_values[3:]}]
    for c in cases:
        ev = event(c)
        value, at = encode_decision(ev)
        want = orjson.dumps({**{k: v for k, v in ev.items() if k != "c"}, "c": c})
        assert value == want and value[at:at + 6] == b',"c":{'


def test_the_servers_encoder_writes_what_building_and_encoding_the_event_writes():
    """``encode_decision_event`` (the fast twin the server logs with) against
    ``encode_decision(decision_event(...))`` byte for byte, over seeded random
    requests: catalogues repeated (the cached path) and new, excluded offers, the null
    offer, multi-slot ids and exclusions, users, paths, extras (one overriding a head
    key, one naming a key the encoder splices), odd text and a context namespace
    called ``_multi``."""
    rng = random.Random(11)
    parser = RequestParser(Settings())
    policy = VWPolicy.fresh(PolicySpec.parse("epsilon:0.3"))
    catalogues = [[{"id": f"o{k}|\u00e9 \"{c}", "features": {"f": {"x": rng.random(),
                                                                  "t": f"v{k}:\n"}}}
                   for k in range(rng.randrange(2, 8))] for c in range(3)]
    checked = spliced = 0
    for i in range(400):
        offers = rng.choice(catalogues) if rng.random() < 0.8 else \
            [{"id": f"n{i}-{k}", "features": {"g": {"y": k}}} for k in range(3)]
        context = {"user": {"country": rng.choice(["US", "FR", "é|:"]), "age": i}}
        if rng.random() < 0.05:
            context = {"_multi": {"odd": 1}}
        if rng.random() < 0.05:
            context = {}
        body = {"event_id": f"e{i}", "context": context, "offers": offers}
        if rng.random() < 0.3:
            body["exclude"] = [offers[0]["id"]]
        if rng.random() < 0.2:
            body["user_id"] = f"u{i}"
        if rng.random() < 0.2:
            body["allow_none"] = True
        if rng.random() < 0.2:
            body["slots"] = 2
        if rng.random() < 0.1:
            body["defer"] = True
        req = parser.decide(orjson.dumps(body))
        if rng.random() < 0.2:
            from dataclasses import replace

            req = replace(req, slot_ids=("s1", "s2"),
                          slot_exclude=(frozenset({req.offers[0].id}), frozenset()))
        d = policy.decide(req)
        if rng.random() < 0.2:
            d.info["path"] = "model"
        extra = rng.choice([{}, {}, {"arm": "model", "experiment": "x"}, {"policy": "other"},
                            {"ids": ["overridden"]}, {"agree": True, "shadow": {"a": [1]}}])
        ts = rng.choice([None, "2026-01-01T00:00:00.000Z"])
        if ts is None:
            ts = "2026-02-03T04:05:06.789Z"
        fast = encode_decision_event(req, d, ts, **extra)
        plain = encode_decision(decision_event(req, d, ts, **extra))
        assert fast == plain, (i, body, extra)
        checked += 1
        spliced += "_multi" not in req.context and "ids" not in extra
    assert checked == 400 and spliced > 300

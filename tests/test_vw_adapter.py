import random

import pytest

from bandit.core.policy_spec import PolicySpec
from bandit.core.vw_adapter import VWModel, action_line, cost_label, shared_line

OFFERS = [{"o_id": {f"id=o{i}": 1.0}, "ocat": {f"c={i % 3}": 1.0}} for i in range(8)]
LINES = [action_line(o) for o in OFFERS]


def contexts(n, rng):
    return [{"cuser": {f"seg={rng.randrange(3)}": 1.0, "x": rng.random()}} for _ in range(n)]


def test_label_flips_reward_to_cost_once():
    assert cost_label(1.0, 0.25) == "0:-1.0:0.25"
    assert cost_label(-0.5, 1.0) == "0:0.5:1.0"
    assert shared_line({}) == "shared |c"


def test_cached_predictions_equal_text_predictions():
    """The offer-example cache must not change what VW predicts."""
    rng = random.Random(3)
    spec = PolicySpec.parse("epsilon:0.1")
    model = VWModel(spec.vw_args(1))
    for ctx in contexts(300, rng):
        a = rng.randrange(len(LINES))
        reward = 1.0 if a == int(next(iter(ctx["cuser"]))[-1]) else 0.0
        model.learn(ctx, LINES, a, reward, 1 / len(LINES))
    for ctx in contexts(50, rng):
        cached = model.predict(ctx, LINES)
        ws = model._ws  # same weights, VW's own text path, no cache
        ex = ws.parse("\n".join([shared_line(ctx), *LINES]))
        ws.predict(ex)
        text = ex[0].get_prediction(ws.get_prediction_type())
        ws.finish_example(ex)
        assert cached == pytest.approx(list(text), abs=1e-7)
    model.close()


def test_cache_is_bounded_and_evicts_cleanly():
    model = VWModel(PolicySpec.parse("epsilon").vw_args(), cache_size=5)
    for i in range(50):
        lines = [action_line({"o_id": {f"id=n{i}-{k}": 1.0}}) for k in range(3)]
        pmf = model.predict({"cuser": {"a": 1.0}}, lines)
        assert len(pmf) == 3 and sum(pmf) == pytest.approx(1.0, abs=1e-6)
    assert len(model._offers) == 5
    # a whole list remembered, then its examples evicted by others: predictions stay
    # those of a fresh parse (a finished example is never used again)
    rng = random.Random(8)
    first = [action_line({"o_id": {f"id=f{k}": 1.0}}) for k in range(3)]
    for ctx in contexts(30, rng):
        model.learn(ctx, first, rng.randrange(3), rng.random(), 1 / 3)
    want = model.predict({"cuser": {"seg=1": 1.0}}, first)
    for i in range(20):
        model.predict({"cuser": {"a": 1.0}}, [action_line({"o_id": {f"id=x{i}": 1.0}})])
        assert model.predict({"cuser": {"seg=1": 1.0}}, first) == want
    model.close()
    with pytest.raises(RuntimeError, match="closed"):
        model.predict({}, LINES)


def test_save_and_load_round_trip(tmp_path):
    rng = random.Random(5)
    model = VWModel(PolicySpec.parse("bag:3").vw_args(2))
    for ctx in contexts(200, rng):
        model.learn(ctx, LINES, rng.randrange(8), rng.random(), 0.125)
    path = tmp_path / "m.vw"
    model.save(path)
    loaded = VWModel.load(path)
    for ctx in contexts(20, rng):
        assert loaded.predict(ctx, LINES) == pytest.approx(model.predict(ctx, LINES), abs=1e-6)
    loaded.close()
    model.close()


def test_dsjson_learner_matches_the_text_format():
    """A learner reading joined DSJSON trains the model a text-format server expects."""
    import orjson

    from bandit.core.events import joined_event

    rng = random.Random(11)
    args = PolicySpec.parse("epsilon:0.1").vw_args(3)
    text, js = VWModel(args), VWModel(args, json_input=True)
    for i, ctx in enumerate(contexts(400, rng)):
        a = rng.randrange(len(LINES))
        reward = float(rng.random() < 0.3)
        text.learn(ctx, LINES, a, reward, 0.125)
        decision = {"EventId": f"e{i}", "a": [a + 1], "p": [0.125],
                    "c": {**ctx, "_multi": OFFERS}}
        js.learn_dsjson(orjson.dumps(joined_event(decision, reward, [])).decode())
    with pytest.raises(RuntimeError, match="does not serve"):
        js.predict({}, LINES)
    with pytest.raises(ValueError, match="c._multi must be a non-empty list"):
        text.learn_dsjson("{}")
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        js.save(Path(d) / "m.vw")
        served = VWModel.load(Path(d) / "m.vw")
        for ctx in contexts(30, rng):
            assert served.predict(ctx, LINES) == pytest.approx(text.predict(ctx, LINES), abs=1e-6)
        served.close()
    text.close()
    js.close()


# -- learning from joined DSJSON lines through cached offer examples -------------------

# escaped names as the server writes them, an empty offer and a numeric feature
JOINED_OFFERS = [*OFFERS, {"o_id": {"id=o%20x%7Cy": 1.0}, "ocat": {"price": 12.29}}, {}]


def joined(rng: random.Random, i: int, *, multi_slot: bool = False) -> bytes:
    """A joined line in the learner's layouts: ``c`` last (mostly), the offers in a
    new order each time, now and then no context or an empty offer last; contexts
    and labels often seen before."""
    import orjson

    from bandit.core.events import joined_event

    offers = rng.sample(JOINED_OFFERS, rng.randrange(2, len(JOINED_OFFERS) + 1))
    if i % 7 == 0 and {} in offers:
        offers.remove({})
        offers.append({})  # the empty offer last: not the common layout
    x = rng.choice([0.5, 1.5, rng.random()])  # contexts recur, as users' segments do
    ctx = {} if i % 11 == 0 else {"cuser": {f"seg={rng.randrange(3)}": 1.0, "x": x}}
    if multi_slot:
        ctx["cslot"] = {"k=2": 1.0}
    a = rng.randrange(len(offers))
    decision = {"EventId": f"e{i}", "a": [a + 1], "p": [rng.choice([0.5, 0.25, 1.0])],
                "c": {**ctx, "_multi": offers}}
    if i % 5 == 0:
        decision = {"c": decision.pop("c"), **decision}  # ``c`` not last
    return orjson.dumps(joined_event(decision, float(rng.random() < 0.4), []))


def pmfs(model: VWModel, rng: random.Random) -> list[list[float]]:
    lines = [action_line(o) for o in JOINED_OFFERS]
    return [model.predict(ctx, lines) for ctx in contexts(40, rng)]


@pytest.mark.parametrize("policy", ["epsilon:0.1", "squarecb", "bag:3"])
def test_joined_lines_learn_the_model_the_servers_read(policy, tmp_path, monkeypatch):
    """A text-format model learning joined lines keeps each offer parsed: it learns
    exactly what it learns from the servers' text parsed afresh (also when its offer
    cache is emptied, and whatever the line's layout), and what VW's JSON reader
    learns up to float rounding."""
    import orjson

    import bandit.core.vw_joined as adapter
    from bandit.core.features import render

    monkeypatch.setattr(adapter, "JOINED_OFFERS", 8)  # fewer than two lines' offers
    monkeypatch.setattr(adapter, "JOINED_CONTEXTS", 3)  # and few contexts and labels
    monkeypatch.setattr(adapter, "JOINED_LABELS", 2)
    rng = random.Random(4)
    lines = [joined(rng, i) for i in range(1500)]
    args = PolicySpec.parse(policy).vw_args(3)
    cached, text, js = VWModel(args), VWModel(args), VWModel(args, json_input=True)
    for line in lines:
        cached.learn_dsjson(line)
        js.learn_dsjson(line)
        d = orjson.loads(line)
        ctx = {k: v for k, v in d["c"].items() if k != "_multi"}
        text.learn(ctx, [action_line(o) for o in d["c"]["_multi"]], d["_labelIndex"],
                   -d["_label_cost"], d["_label_probability"])
        assert render(ctx) == (shared_line(ctx)[7:] if ctx else "")
    assert 0 < len(cached._lines._joined) <= len(JOINED_OFFERS)
    assert 0 < len(cached._lines._contexts) <= 3 and 0 < len(cached._lines._labels) <= 2
    models = []
    for name, m in (("cached", cached), ("text", text), ("json", js)):
        m.save(tmp_path / name)
        m.close()
        models.append(VWModel.load(tmp_path / name))
    a, b, c = (pmfs(m, random.Random(8)) for m in models)
    assert a == b
    assert a != pmfs(VWModel(args), random.Random(8))  # it did learn
    for x, y in zip(a, c, strict=True):
        assert x == pytest.approx(y, abs=1e-5)
    for m in models:
        m.close()


def test_a_joined_line_is_learnt_the_same_whatever_its_layout(tmp_path):
    """``c`` last or not, an empty offer last or not, the label's fields in any order:
    the same model, byte for byte."""
    import orjson

    rng = random.Random(9)
    lines = [joined(rng, i) for i in range(600)]
    args = PolicySpec.parse("epsilon:0.1").vw_args(3)
    common, other = VWModel(args), VWModel(args)
    for i, line in enumerate(lines):
        common.learn_dsjson(line)
        d = orjson.loads(line)
        if i % 2:
            other.learn_dsjson(orjson.dumps({"c": d.pop("c"), **d}))  # not the common layout
        else:  # the common layout, but the label's fields in another order
            label = {k: d.pop(k) for k in ("_labelIndex", "_label_cost", "_label_Action",
                                           "_label_probability")}
            other.learn_dsjson(orjson.dumps({**label, **d}))
    common.save(tmp_path / "a")
    other.save(tmp_path / "b")
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes()
    common.close()
    other.close()


@pytest.mark.parametrize("line, message", [
    (b'{"_label_cost": oops', "not JSON"),
    (b'{"_label_cost":-1.0,"_label_probability":0.5,"_labelIndex":0,"c":{"_multi":[]}}',
     "c._multi must be a non-empty list"),
    (b'{"_label_cost":-1.0,"_label_probability":0.5,"_labelIndex":0,'
     b'"c":{"cuser":{"a b":1.0},"_multi":[{"o":{"x":1.0}}]}}', "names that fit"),
    (b'{"_label_cost":-1.0,"_label_probability":0.5,"_labelIndex":0,'
     b'"c":{"cuser":{"a":1.0},"_multi":[{"o":{"x|y":1.0}}]}}', "names that fit"),
    (b'{"_label_cost":-1.0,"_label_probability":0.5,"_labelIndex":0,'
     b'"c":{"cuser":{"a":1.0},"_multi":[{"o":{"x:2":1.0}}]}}', "names that fit"),
    (b'{"_label_cost":-1.0,"_label_probability":0.5,"_labelIndex":0,'
     b'"c":{"_hidden":{"a":1.0},"_multi":[{"o":{"x":1.0}}]}}', "names that fit"),
    (b'{"_label_cost":-1.0,"_label_probability":0.5,"_labelIndex":0,'
     b'"c":{"cuser":{"a":"b"},"_multi":[{"o":{"x":1.0}}]}}', "names that fit"),
    (b'{"_label_cost":-1.0,"_label_probability":0.5,"_labelIndex":0,'
     b'"c":{"cuser":{"a":1.0},"_multi":[{"o":{"x":true}}]}}', "names that fit"),
    (b'{"_label_cost":-1.0,"_label_probability":0.5,"_labelIndex":0,'
     b'"c":{"cuser":{"a":1.0},"_multi":[{"o":{"x":1e39}}]}}', "within"),
    (b'{"_label_cost":-1.0,"_label_probability":0.0,"_labelIndex":0,'
     b'"c":{"cuser":{"a":1.0},"_multi":[{"o":{"x":1.0}}]}}', "out of range"),
    (b'{"_label_cost":-1.0,"_label_probability":0.5,"_labelIndex":1,'
     b'"c":{"cuser":{"a":1.0},"_multi":[{"o":{"x":1.0}}]}}', "out of range"),
    (b'{"EventId":"e","c":{"cuser":{"a":1.0},"_multi":[{"o":{"x":1.0}}]}}',
     "needs _label_cost"),
])
def test_a_joined_line_that_is_not_one_is_refused_and_changes_nothing(line, message):
    rng = random.Random(6)
    good = [joined(rng, i) for i in range(300)]
    args = PolicySpec.parse("epsilon:0.1").vw_args(3)
    model, clean = VWModel(args), VWModel(args)
    for i, g in enumerate(good):
        if i == 150:
            with pytest.raises(ValueError, match=message):
                model.learn_dsjson(line)
        model.learn_dsjson(g)
        clean.learn_dsjson(g)
    assert pmfs(model, random.Random(1)) == pmfs(clean, random.Random(1))
    model.close()
    clean.close()


@pytest.mark.parametrize("policy", ["bag:3", "softmax,cb_type=ips", "epsilon:0.1"])
def test_an_offer_listed_twice_is_learnt_as_two(policy, tmp_path):
    """The same offer twice in one line (a producer other than the servers may write
    it) is two examples, as VW's parser makes it: one cached example twice in a list
    would corrupt VW's memory with bagging or skew its update."""
    import orjson

    rng = random.Random(12)
    args = PolicySpec.parse(policy).vw_args(3)
    cached, text = VWModel(args), VWModel(args)
    kept: list[bytes] = []  # every offer parsed to be kept (once each, or one would leak)
    keep = cached._lines._keep
    cached._lines._keep = lambda seg, line: kept.append(seg) or keep(seg, line)  # type: ignore
    for i in range(400):
        d = orjson.loads(joined(rng, i))
        multi = d["c"]["_multi"]
        if i % 3 == 0:
            multi.append(multi[0])  # listed twice
        line = orjson.dumps(d)
        cached.learn_dsjson(line if i % 2 else orjson.dumps({"c": d.pop("c"), **d}))
        ctx = {k: v for k, v in (d.get("c") or orjson.loads(line)["c"]).items()
               if k != "_multi"}
        text.learn(ctx, [action_line(o) for o in multi], d["_labelIndex"],
                   -d["_label_cost"], d["_label_probability"])
    assert pmfs(cached, random.Random(2)) == pmfs(text, random.Random(2))
    assert kept and len(kept) == len(set(kept))  # never evicted here: each kept once
    # a line in the common layout whose repeated offer is new to the model
    d = orjson.loads(joined(rng, 1))
    d["c"]["_multi"].append(d["c"]["_multi"][0])
    first = VWModel(args)
    kept.clear()
    keep_first = first._lines._keep
    first._lines._keep = lambda seg, line: kept.append(seg) or keep_first(seg, line)  # type: ignore
    first.learn_dsjson(orjson.dumps(d))
    assert len(kept) == len(set(kept)) == len({orjson.dumps(o) for o in d["c"]["_multi"]})
    first.close()
    cached.close()
    text.close()


def test_a_closed_model_is_freed_without_waiting_for_the_garbage_collector(tmp_path):
    """VW frees a workspace's weights only when the object is destroyed: a closed model
    left in a reference cycle kept them until a full collection, and a server swapping
    models every second grew by ~1 GB in ten minutes."""
    import gc
    import weakref

    m = VWModel(PolicySpec.parse("squarecb:10").vw_args())
    m.save(tmp_path / "m.vw")
    m.close()
    gc.disable()
    try:
        refs = []
        for _ in range(5):
            model = VWModel.load(tmp_path / "m.vw")
            model.predict(contexts(1, random.Random(0))[0], LINES)
            model.close()
            refs.append(weakref.ref(model))
            del model
        assert all(r() is None for r in refs)
    finally:
        gc.enable()

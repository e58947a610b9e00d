import random

import pytest

from bandit.policy_spec import PolicySpec
from bandit.vw_adapter import VWModel, action_line, cost_label, shared_line

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
    assert len(model._cache) == 5
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

    from bandit.events import joined_event

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
    with pytest.raises(RuntimeError, match="not DSJSON"):
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

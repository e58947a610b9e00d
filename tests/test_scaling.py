"""Standardisation of numeric features: the statistics against numpy, the snapshot a
model is served with, and the same features however a model learns or is loaded."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from bandit.core.policy_spec import PolicySpec
from bandit.core.scaling import CLIP, Snapshot, Standardizer, served_snapshot
from bandit.core.vw_adapter import VWModel, action_line, parse_line
from bandit.learner.vw_process import VWProcess

ARGS = PolicySpec.parse("squarecb:gamma=10,lr=3,normalized=0").vw_args()


def contexts(n: int, seed: int = 0) -> list[dict[str, dict[str, float]]]:
    rng = np.random.default_rng(seed)
    return [{"cu": {"age": float(rng.normal(40, 12)), "income": float(rng.normal(5e4, 2e4)),
                    f"plan={'ab'[i % 2]}": 1.0},
             "cd": {"os=ios": 1.0}} for i in range(n)]


def test_the_statistics_are_numpys_and_categoricals_are_left_alone():
    ctx = contexts(500)
    std = Standardizer()
    for c in ctx:
        std.observe(c)
    snap = std.snapshot()
    ages = np.array([c["cu"]["age"] for c in ctx])
    mean, inv = snap.by_ns["cu"]["age"]
    assert mean == pytest.approx(ages.mean(), rel=1e-12)
    assert inv == pytest.approx(1 / ages.std(ddof=1), rel=1e-9)
    assert set(snap.by_ns) == {"cu"} and set(snap.by_ns["cu"]) == {"age", "income"}
    z = snap.apply(ctx[0])
    assert z["cu"]["age"] == pytest.approx((ages[0] - ages.mean()) / ages.std(ddof=1))
    assert z["cu"]["plan=a"] == 1.0 and z["cd"] == {"os=ios": 1.0}
    standardised = np.array([snap.apply(c)["cu"]["income"] for c in ctx])
    assert standardised.mean() == pytest.approx(0, abs=1e-9)
    assert standardised.std(ddof=1) == pytest.approx(1, rel=1e-9)


def test_unknown_numeric_features_wait_for_the_next_snapshot_and_outliers_are_clipped():
    std = Standardizer()
    assert std.current.apply({"cu": {"age": 30.0, "k=v": 1.0}}) == {"cu": {"k=v": 1.0}}
    for x in (1.0, 2.0, 3.0):
        std.observe({"cu": {"x": x}})
    std.refresh()
    assert std.current.apply({"cu": {"x": 2.0}}) == {"cu": {"x": 0.0}}
    assert std.current.apply({"cu": {"x": 1e9}})["cu"]["x"] == CLIP
    assert std.current.apply({"cu": {"x": -1e9}})["cu"]["x"] == -CLIP
    assert std.current.apply({"cu": {"y": 5.0}}) == {}  # seen never: left out


def test_state_round_trips_and_malformed_entries_are_left_out():
    std = Standardizer()
    for c in contexts(50):
        std.observe(c)
    served = std.refresh()
    state = orjson.loads(orjson.dumps(std.state(served)))
    back = Standardizer.restore(state)
    assert back.stats == std.stats and back.current.by_ns == std.current.by_ns
    assert served_snapshot(state).by_ns == served.by_ns == {}
    bad = Snapshot.from_json({"cu": {"a": [1.0, 2.0], "b": [1.0], "c": "x", "d": [1, "n"]},
                              "cx": [], "cy": {"e": [float("1e400"), 1.0]}})
    assert bad.by_ns == {"cu": {"a": (1.0, 2.0)}}
    assert served_snapshot(None).by_ns == {} and Standardizer.restore("junk").stats == {}


def test_parse_line_reads_what_render_writes():
    feats = {"oprice": {"usd": 12.5, "tier=gold": 1.0, "t": 3e-7}, "o_id": {"id=a%7Cb": 1.0}}
    assert parse_line(action_line(feats)) == feats
    assert parse_line("|o") == {"o": {}}


def joined(ctx: dict, i: int, reward: float) -> bytes:
    offers = [{"oprice": {"usd": 10.0 + 90 * k}, "o_id": {f"id=o{k}": 1.0}} for k in range(3)]
    return orjson.dumps({"_label_cost": -reward, "_label_probability": 0.5,
                         "_label_Action": i % 3 + 1, "_labelIndex": i % 3,
                         "a": [i % 3 + 1], "p": [0.5], "c": {**ctx, "_multi": offers}})


def probe(model: VWModel) -> list[float]:
    ctx = contexts(1, seed=9)[0]
    lines = [action_line({"oprice": {"usd": 10.0 + 90 * k}, "o_id": {f"id=o{k}": 1.0}})
             for k in range(3)]
    return model.predict(ctx, lines)


def learn_lines(model, n: int = 120) -> None:
    for i, c in enumerate(contexts(n)):
        model.learn_dsjson(joined(c, i, float(c["cu"]["age"] > 40) if i % 3 == 1 else 0.0))


def test_a_saved_model_is_served_with_the_snapshot_it_learned_under(tmp_path):
    """The server's model (loaded, with the served snapshot) predicts what the learner's
    did just before the save; after it the learner moves to the fresh snapshot."""
    learner = VWModel(ARGS)
    learner.standardize(Standardizer())
    learn_lines(learner, 40)
    learner.refresh_scale()  # an earlier checkpoint: statistics of 40 contexts in use
    learn_lines(learner, 80)
    before = probe(learner)
    learner.save(tmp_path / "m.vw")
    state = orjson.loads(orjson.dumps(learner.saved_scale))
    served = VWModel.load(tmp_path / "m.vw")
    served.set_scale(served_snapshot(state))
    assert served.scale.by_ns and probe(served) == pytest.approx(before, abs=1e-6)
    unscaled = VWModel.load(tmp_path / "m.vw")
    assert probe(unscaled) != pytest.approx(before, abs=1e-3)  # the scale matters
    assert learner.standardizer is not None
    assert learner.standardizer.current.by_ns != served.scale.by_ns  # refreshed
    for m in (learner, served, unscaled):
        m.close()


def test_the_vw_child_standardises_as_the_in_process_model(tmp_path):
    """Same lines, same checkpoints: the child's saved model and statistics equal the
    in-process model's, and its resumed state continues the same way."""
    inproc = VWModel(ARGS)
    inproc.standardize(Standardizer())
    child = VWProcess(ARGS)
    child.standardize({})
    try:
        for model, name in ((inproc, "a"), (child, "b")):
            learn_lines(model, 60)
            model.save(tmp_path / f"{name}1.vw")
            learn_lines(model, 60)
            model.save(tmp_path / f"{name}2.vw")
        assert child.saved_scale == orjson.loads(orjson.dumps(inproc.saved_scale))
        assert (tmp_path / "a2.vw").read_bytes() == (tmp_path / "b2.vw").read_bytes()
    finally:
        child.close()
        inproc.close()


def published(store, n: int = 120):
    """A standardising model published as the learner does (its scale as an attachment)."""
    model = VWModel(ARGS)
    model.standardize(Standardizer())
    learn_lines(model, 40)
    model.refresh_scale()
    learn_lines(model, n - 40)
    slot = store.reserve()
    model.save(slot.tmp)
    ref = store.write_attachment("state", orjson.dumps(model.saved_scale))
    man = store.publish_file(slot, "squarecb:10,lr=3,normalized=0", n, {},
                             {"feature_scale": ref})
    model.close()
    return man


def test_the_scale_travels_with_an_exported_model(tmp_path):
    """Store export → import, and the Personalizer signed archive → import: the model
    is served with its standardisation, so it predicts as before; a tampered scale in
    an archive is refused."""
    import io
    import zipfile

    from bandit.config.loop_admin import SCALE_ENTRY, LoopAdmin
    from bandit.config.settings import Settings
    from bandit.core.errors import BadRequest
    from bandit.stores.modelstore import ModelStore

    a = ModelStore(tmp_path / "a")
    man = published(a)
    want = probe(a.load(man))
    b = ModelStore(tmp_path / "b")
    copy = b.import_(a.export(man.version, tmp_path / "export"))
    assert probe(b.load(copy)) == pytest.approx(want, abs=1e-7)
    assert b.feature_scale(copy) == a.feature_scale(man)

    archive = LoopAdmin(Settings(model_dir=str(tmp_path / "a")), a).export_model(signed=True)
    c = ModelStore(tmp_path / "c")
    LoopAdmin(Settings(model_dir=str(tmp_path / "c")), c).import_model(archive)
    served = c.current()
    assert served is not None and probe(c.load(served)) == pytest.approx(want, abs=1e-7)

    buf = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(archive)) as src, zipfile.ZipFile(buf, "w") as out:
        for item in src.namelist():
            data = src.read(item)
            out.writestr(item, data.replace(b'"served"', b'"served" ') if item == SCALE_ENTRY
                         else data)
    with pytest.raises(BadRequest) as err:
        LoopAdmin(Settings(model_dir=str(tmp_path / "d")),
                  ModelStore(tmp_path / "d")).import_model(buf.getvalue())
    assert err.value.code == "InvalidModelImportSignature"


def test_replay_evaluates_a_stored_model_with_its_scale(tmp_path):
    """``vw:PATH`` of a model-store file predicts as the store's servers do; a bare file
    has no snapshot; ``spec:`` candidates standardise as the learner does."""
    import shutil

    from bandit.stores.modelstore import ModelStore
    from replay.policies import VWProgressive, VWSaved

    store = ModelStore(tmp_path / "store")
    man = published(store)
    saved = VWSaved(str(tmp_path / "store" / man.file))._model()
    assert saved.scale.by_ns and probe(saved) == pytest.approx(probe(store.load(man)), abs=1e-7)
    (tmp_path / "bare").mkdir()
    shutil.copyfile(tmp_path / "store" / man.file, tmp_path / "bare" / "m.vw")
    assert not VWSaved(str(tmp_path / "bare" / "m.vw"))._model().scale
    assert VWProgressive("squarecb:gamma=10,lr=3,normalized=0")._model().standardizer
    assert VWProgressive("epsilon:0.1", standardize=False)._model().standardizer is None


def test_explanations_weigh_the_values_the_model_sees(tmp_path):
    """An explanation's terms are those of the standardised values the model sees."""
    from bandit.core.policy import VWPolicy
    from bandit.core.types import DecideRequest, Offer
    from bandit.stores.modelstore import ModelStore

    store = ModelStore(tmp_path)
    model = store.load(published(store))
    policy = VWPolicy(PolicySpec.parse("squarecb:gamma=10,lr=3,normalized=0"), model)
    ctx = {"cu": {"age": 80.0, "income": 5e4}}
    offers = tuple(Offer(f"o{k}", {"oprice": {"usd": 10.0 + 90 * k}, "o_id": {f"id=o{k}": 1.0}},
                         action_line({"oprice": {"usd": 10.0 + 90 * k},
                                      "o_id": {f"id=o{k}": 1.0}})) for k in range(3))
    from bandit.core.explain import contributions

    d = policy.decide(DecideRequest("e1", ctx, offers, explain=True))
    (shown,) = d.info["explain"]
    offer = next(o for o in offers if o.id == shown["id"])
    top = len(shown["contributions"])
    seen = contributions(model, model.standardized(ctx), model.standardized(offer.features),
                         top)
    raw = contributions(model, ctx, offer.features, top)
    assert top and shown["contributions"] == seen  # the terms of the values the model sees
    assert [c["contribution"] for c in raw] != pytest.approx([c["contribution"] for c in seen])
    assert model.scale.apply(ctx)["cu"]["age"] != pytest.approx(80.0)

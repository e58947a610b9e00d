"""A server learns the first reward of its own decisions at once, on the model it
serves, and a model from the learner is served with the updates it lacks applied
again: the served model is then the model an uninterrupted learner would have (real VW,
real model store, the real Service)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
import pytest
from prometheus_client import CollectorRegistry

from bandit.config.settings import Settings
from bandit.core.policy import VWPolicy
from bandit.core.policy_spec import PolicySpec
from bandit.core.scaling import Standardizer, young_model
from bandit.core.schema import RequestParser
from bandit.core.types import DecideRequest, Reward
from bandit.core.vw_adapter import VWModel
from bandit.server.instant import InstantLearner
from bandit.server.metrics import Metrics
from bandit.server.service import Service
from bandit.stores.modelstore import ModelStore
from bandit.streaming.sinks import FileSink, NullSink

SPEC = "softmax:10"  # its probabilities are a continuous function of every weight
OFFERS = [{"id": f"o{k}", "features": {"kind": {"k": str(k % 2)}, "price": float(k)}}
          for k in range(4)]


def body(i: int, slots: int = 1, defer: bool = False) -> bytes:
    return orjson.dumps({"event_id": f"e{i}", "slots": slots, "defer": defer,
                         "context": {"user": {"device": ("ios", "web")[i % 2],
                                              "age": 20.0 + i % 7}},
                         "offers": OFFERS})


def scores(model: VWModel, req: DecideRequest) -> list[float]:
    return model.predict(req.context, [o.line for o in req.offers])


def service(tmp_path: Path, **kw: object) -> tuple[Service, ModelStore]:
    """A Service over a store in ``tmp_path``; raw numeric features unless asked (a
    model from the store here has no standardisation)."""
    kw.setdefault("standardize", False)
    s = Settings(policy=SPEC, model_dir=str(tmp_path / "models"),
                 event_dir=str(tmp_path / "events"), **kw)  # type: ignore[arg-type]
    store = ModelStore(s.model_dir)
    policy = VWPolicy.fresh(PolicySpec.parse(SPEC), seed=3)
    svc = Service(s, policy, FileSink(s.event_dir), Metrics(CollectorRegistry()), store)
    return svc, store


def reward_of(req: DecideRequest, chosen: int) -> float:
    # offer o1 pays on ios, o2 on web: a crossing the model must learn
    want = "o1" if req.context["cuser"].get("device=ios") else "o2"
    return 1.0 if req.offers[chosen].id == want else 0.0


def play(svc: Service, parser: RequestParser, start: int, stop: int,
         twin: VWModel | None = None) -> None:
    """Decide and reward events ``start..stop``; ``twin`` learns each at once too."""
    for i in range(start, stop):
        req, d = svc.decide(parser.decide(body(i)))
        value = reward_of(req, d.order[0])
        svc.reward(Reward(f"e{i}", value))
        if twin is not None:
            twin.learn(req.context, [o.line for o in req.offers], d.order[0], value,
                       d.probabilities[0])


def test_a_reward_changes_the_served_model_at_once_as_the_learner_would(tmp_path):
    svc, _ = service(tmp_path)
    parser = RequestParser(svc.settings)
    twin = VWModel(PolicySpec.parse(SPEC).vw_args(3))  # the same update, made directly
    probe = parser.decide(body(0))
    before = scores(svc.policy.model, probe)
    play(svc, parser, 0, 40, twin)
    assert svc.instant is not None and svc.instant.learned == 40
    assert scores(svc.policy.model, probe) == scores(twin, probe) != before
    assert svc.model_info()["instant"] == {"learned": 40, "replayed": 0}


def test_a_fresh_model_standardises_as_the_learner_does(tmp_path):
    """Before the learner's first model, the served one learns with running
    standardisation frozen at the young-model points (32, 64, …), as the learner does:
    equal to a twin standardising so, and not to one learning raw values."""
    svc, _ = service(tmp_path, standardize=True)
    parser = RequestParser(svc.settings)
    twin = VWModel(PolicySpec.parse(SPEC).vw_args(3))
    twin.standardize(Standardizer())
    raw = VWModel(PolicySpec.parse(SPEC).vw_args(3))
    for i in range(80):
        req, d = svc.decide(parser.decide(body(i)))
        value = reward_of(req, d.order[0])
        svc.reward(Reward(f"e{i}", value))
        for model in (twin, raw):
            model.learn(req.context, [o.line for o in req.offers], d.order[0], value,
                        d.probabilities[0])
        if young_model(i + 1):
            twin.refresh_scale()
    probe = parser.decide(body(3))
    std = svc.policy.model.standardizer
    assert std is not None and std.current, "a snapshot was frozen"
    assert scores(svc.policy.model, probe) == scores(twin, probe) != scores(raw, probe)


def test_only_the_first_reward_of_a_one_slot_decision_is_learned(tmp_path):
    svc, _ = service(tmp_path)
    parser = RequestParser(svc.settings)
    svc.decide(parser.decide(body(1)))
    svc.decide(parser.decide(body(2, slots=2)))
    svc.decide(parser.decide(body(3, defer=True)))
    for eid in ("e1", "e1", "e2", "e3", "never-decided"):
        svc.reward(Reward(eid, 1.0))
    svc.reward(Reward("e1", 1.0, slot=2))
    assert svc.instant is not None and svc.instant.learned == 1


@pytest.mark.parametrize("settings", [
    {"reward_function": "sum"},   # the learner waits for the window to close
    {"long_wait": 60.0},          # long-horizon rewards may still come
    {"instant_learning": False},
    {"mode": "apprentice"},       # the served offer is the client's, not the model's
])
def test_no_update_where_the_learner_would_learn_something_else(tmp_path, settings):
    svc, _ = service(tmp_path, **settings)
    parser = RequestParser(svc.settings)
    probe = parser.decide(body(0))
    before = scores(svc.policy.model, probe)
    play(svc, parser, 0, 20)
    assert scores(svc.policy.model, probe) == before
    assert svc.instant is None or svc.instant.learned == 0


def test_without_logged_decisions_nothing_is_learned(tmp_path):
    s = Settings(policy=SPEC)
    svc = Service(s, VWPolicy.fresh(PolicySpec.parse(SPEC)), NullSink(),
                  Metrics(CollectorRegistry()))
    assert svc.instant is None


def test_rewards_use_the_reward_weights_of_the_learner():
    learner = InstantLearner(10, 600.0, {"click": 1.0, "conversion": 5.0})
    assert learner.value(1.0, "conversion") == 5.0
    assert learner.value(1.0, "click") == 1.0
    assert learner.value(1.0, None) == 0.0  # no weight for kind "reward": counts 0
    assert InstantLearner(10, 600.0).value(0.5, "click") == 0.5


def test_memory_is_bounded_in_count_and_by_the_reward_window(tmp_path):
    svc, _ = service(tmp_path, instant_memory=5)
    parser = RequestParser(svc.settings)
    for i in range(8):
        svc.decide(parser.decide(body(i)))
    for i in range(8):
        svc.reward(Reward(f"e{i}", 1.0))
    assert svc.instant is not None and svc.instant.learned == 5  # e0..e2 forgotten
    old = InstantLearner(10, window=0.0)
    req = parser.decide(body(9))
    req2, d = svc.decide(req)
    old.remember(req2, d)
    old.remember(parser.decide(body(10)), d)  # the first is older than the window now
    assert old.learn("e9", 1.0, None, "2026", svc.policy.model) is False


def publish_as_learner(store: ModelStore, model: VWModel, learned: int,
                       rewards_to: str | None) -> None:
    logs = {"rewards_to": rewards_to} if rewards_to is not None else None
    store.publish(model, SPEC, learned, extra={"logs": logs})


def test_a_learner_model_is_served_with_the_updates_it_had_not_read(tmp_path):
    """The learner wrote its model after reading the rewards of events 0-29; the
    server had learned 0-49 at once. Served next: the learner's model with 30-49 applied
    again, which is exactly the model that learned all 50 in order."""
    svc, store = service(tmp_path)
    parser = RequestParser(svc.settings)
    stamps: list[str] = []
    learner = VWModel(PolicySpec.parse(SPEC).vw_args(3))  # the learner's own model
    whole = VWModel(PolicySpec.parse(SPEC).vw_args(3))  # learns all 50, in order
    for i in range(50):
        req, d = svc.decide(parser.decide(body(i)))
        value = reward_of(req, d.order[0])
        svc.reward(Reward(f"e{i}", value))
        assert svc.instant is not None
        stamps.append(svc.instant.since(svc.instant.last_seq - 1)[0].stamp)
        time.sleep(0.002)  # one reward a millisecond at most: their stamps differ
        args = (req.context, [o.line for o in req.offers], d.order[0], value,
                d.probabilities[0])
        whole.learn(*args)
        if i < 30:
            learner.learn(*args)
    read_to = stamps[29]
    assert all(s > read_to for s in stamps[30:])
    publish_as_learner(store, learner, 30, read_to)
    assert asyncio.run(svc.refresh_model())
    probe = parser.decide(body(0))
    assert svc.policy.version == store.current().version  # type: ignore[union-attr]
    assert scores(svc.policy.model, probe) == scores(whole, probe)
    assert svc.model_info()["instant"]["replayed"] == 20


def test_rewards_the_learner_read_but_had_not_learned_are_applied_again(tmp_path):
    """The learner read e25's reward before e25 (an orphan): its model lacks e25 though
    e25's reward is older than ``rewards_to``. Served next: that model with e25 and
    e30-e39 applied again, in the order the server learned them."""
    svc, store = service(tmp_path)
    parser = RequestParser(svc.settings)
    spec = PolicySpec.parse(SPEC).vw_args(3)
    learner, whole = VWModel(spec), VWModel(spec)
    rows = []
    for i in range(40):
        req, d = svc.decide(parser.decide(body(i)))
        value = reward_of(req, d.order[0])
        svc.reward(Reward(f"e{i}", value))
        rows.append((req.context, [o.line for o in req.offers], d.order[0], value,
                     d.probabilities[0]))
        time.sleep(0.002)
    assert svc.instant is not None
    read_to = svc.instant.unread("")[29].stamp  # (nothing is forgotten: all are after "")
    for i in [*range(25), *range(26, 30)]:
        learner.learn(*rows[i])
    for i in [*range(25), *range(26, 30), 25, *range(30, 40)]:
        whole.learn(*rows[i])
    store.publish(learner, SPEC, 29, extra={"logs": {"rewards_to": read_to,
                                                     "rewards_pending": ["e25", "e99"]}})
    assert asyncio.run(svc.refresh_model())
    probe = parser.decide(body(0))
    assert scores(svc.policy.model, probe) == scores(whole, probe)
    assert svc.model_info()["instant"]["replayed"] == 11


def test_a_learner_model_is_served_with_the_snapshot_the_learner_goes_on_with(tmp_path):
    """The learner saved a model learned under snapshot A, then goes on learning it
    under B (its statistics at the save). A server learning rewards at once serves and
    updates that model under B, as the learner will; without instant learning, under A
    (the snapshot its weights were learned under)."""
    std = Standardizer()
    for i in range(10):
        std.observe({"cuser": {"age": float(i)}})
    std.refresh()
    a = std.current  # the weights were learned under A
    for i in range(10):
        std.observe({"cuser": {"age": 100.0 + i}})
    b = std.snapshot()  # the statistics at the save
    assert a.by_ns != b.by_ns
    for instant, want in ((True, b), (False, a)):
        svc, store = service(tmp_path / str(instant), standardize=True,
                             instant_learning=instant)
        ref = store.write_attachment("scale", orjson.dumps(std.state(a)))
        store.publish(VWModel(PolicySpec.parse(SPEC).vw_args(3)), SPEC, 20,
                      extra={"feature_scale": ref, "logs": {"rewards_to": "2026"}})
        assert asyncio.run(svc.refresh_model())
        assert svc.policy.model.scale.by_ns == want.by_ns


def test_a_server_started_on_a_pinned_model_learns_nothing_at_once(tmp_path):
    s = Settings(policy=SPEC, model_dir=str(tmp_path / "models"), standardize=False,
                 event_dir=str(tmp_path / "events"))
    store = ModelStore(s.model_dir)
    man = store.publish(VWModel(PolicySpec.parse(SPEC).vw_args(3)), SPEC, 0)
    store.pin(man.version)
    policy = VWPolicy(PolicySpec.parse(SPEC), store.load(man), man.version, seed=3)
    svc = Service(s, policy, FileSink(s.event_dir), Metrics(CollectorRegistry()), store,
                  manifest_at_start=store.serving())
    parser = RequestParser(s)
    probe = parser.decide(body(0))
    before = scores(svc.policy.model, probe)
    play(svc, parser, 0, 10)
    assert svc.instant is not None and svc.instant.learned == 0
    assert scores(svc.policy.model, probe) == before

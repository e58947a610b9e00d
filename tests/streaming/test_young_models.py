"""Young models reach the store sooner (after 32, 64, 128… events), each with the
standardisation it learned under, and a learner resuming from one of them learns on
to the very model an uninterrupted learner reaches (real broker, VW child)."""

from __future__ import annotations

import numpy as np
import pytest

from bandit.config.settings import Settings
from bandit.core.events import dumps
from bandit.core.scaling import served_snapshot
from bandit.core.vw_adapter import action_line
from bandit.learner.daemon import Learner
from bandit.stores.modelstore import ModelStore
from tests.streaming.kafka_util import produce
from tests.streaming.test_learner import run_learner

pytestmark = pytest.mark.integration

CHUNK = 16


def decision(i: int) -> dict:
    # canonical features, as the server logs them; age is unique, so is each context
    return {"EventId": f"y{i}", "Timestamp": "2026-01-01T00:00:00.000Z", "Version": "1",
            "a": [i % 3 + 1] + [k + 1 for k in range(3) if k != i % 3],
            "p": [0.8, 0.1, 0.1],
            "c": {"cu": {"age": 18.0 + i, "income": 1000.0 * (i % 7), "plan=gold": 1.0},
                  "_multi": [{"o": {f"id=o{k}": 1.0}} for k in range(3)]},
            "VWState": {"m": "0"}, "ids": [f"o{k}" for k in range(3)], "slots": 1}


def settings(broker, prefix: str, tmp_path, name: str) -> Settings:
    return Settings(kafka_bootstrap=broker.bootstrap, topic_prefix=prefix, partitions=1,
                    reward_wait=3600.0, checkpoint_seconds=3600.0,
                    model_dir=str(tmp_path / name))


def feed(broker, prefix: str, learner: Learner, start: int, stop: int) -> None:
    """Produce events ``start..stop`` a chunk at a time, each learned before the next."""
    for lo in range(start, stop, CHUNK):
        hi = min(stop, lo + CHUNK)
        produce(broker.bootstrap, prefix + "decisions",
                [(f"y{i}", dumps(decision(i))) for i in range(lo, hi)])
        produce(broker.bootstrap, prefix + "rewards",
                [(f"y{i}", dumps({"EventId": f"y{i}", "v": float(i % 2)}))
                 for i in range(lo, hi)])
        want = learner.state.counters.learned + hi - lo
        run_learner(learner, lambda want=want: learner.state.counters.learned == want)
        learner.step(timeout_ms=50)  # a save begun by that step is published


def test_young_models_are_published_after_doubling_event_counts(broker, prefix, tmp_path):
    s = settings(broker, prefix, tmp_path, "models")
    learner = Learner(s)
    learner.connect()
    try:
        feed(broker, prefix, learner, 0, 17 * CHUNK)
        learner.checkpoint()
    finally:
        learner.close()
    store = ModelStore(s.model_dir)
    versions = store.versions()
    # the interval is an hour: every model but the last came from the young-model rule
    assert [m.events_learned for m in versions] == [32, 64, 128, 256, 272]
    # each is served with the statistics frozen at the model before it: the first
    # model learned with none, the second with the 32 contexts before its predecessor
    assert served_snapshot(store.feature_scale(versions[0])).by_ns == {}
    ages = 18.0 + np.arange(32)
    mean, inv = served_snapshot(store.feature_scale(versions[1])).by_ns["cu"]["age"]
    assert mean == pytest.approx(ages.mean()) and inv == pytest.approx(1 / ages.std(ddof=1))
    assert store.load(versions[1]).scale.by_ns["cu"]["age"] == (mean, inv)


def test_a_resumed_learner_learns_on_to_the_uninterrupted_model(broker, prefix, tmp_path):
    """Crash after the checkpoint at 128 events and 40 more learned: the resumed learner
    reads those 40 again with the snapshot the lost learner had, and both end with the
    same model (its predictions) and the same statistics."""
    n = 200
    whole = Learner(settings(broker, prefix + "a.", tmp_path, "a"))
    whole.connect()
    try:
        feed(broker, prefix + "a.", whole, 0, n)
        whole.checkpoint()
    finally:
        whole.close()
    s = settings(broker, prefix + "b.", tmp_path, "b")
    first = Learner(s)
    first.connect()
    try:
        feed(broker, prefix + "b.", first, 0, 128 + 48)
    finally:
        first.close()  # no checkpoint: what it learned after 128 events is lost
    store = ModelStore(s.model_dir)
    current = store.current()
    assert current is not None and current.events_learned == 128
    again = Learner(s)
    again.connect()
    try:
        run_learner(again, lambda: again.state.counters.learned == 128 + 48)
        feed(broker, prefix + "b.", again, 128 + 48, n)
        again.checkpoint()
    finally:
        again.close()
    a = ModelStore(tmp_path / "a").current()
    b = store.current()
    assert a is not None and b is not None and a.events_learned == b.events_learned == n
    assert ModelStore(tmp_path / "a").feature_scale(a) == store.feature_scale(b)
    ma, mb = ModelStore(tmp_path / "a").load(a), store.load(b)
    lines = [action_line({"o": {f"id=o{k}": 1.0}}) for k in range(3)]
    for age in (18.0, 40.0, 90.0, 400.0):
        ctx = {"cu": {"age": age, "income": 3000.0, "plan=gold": 1.0}}
        assert ma.predict(ctx, lines) == mb.predict(ctx, lines)

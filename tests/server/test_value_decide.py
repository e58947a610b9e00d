"""Value-aware decisions in the app (real VW heads, real model store, file sink): the
objective and head scores in the event, the runtime objective on every worker without
relearning, calibrated predictions, constraints before the draw, the status page."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from pathlib import Path

import numpy as np
import orjson
import pytest
from prometheus_client import CollectorRegistry

from bandit.config.settings import Settings
from bandit.core.policy import VWPolicy
from bandit.core.policy_spec import PolicySpec
from bandit.server.app import create_app
from bandit.stores.modelstore import ModelStore
from bandit.streaming.sinks import FileSink
from bandit.value import head_files
from tests.server.conftest import Client
from tests.value import trained
from tests.value.trained import OFFERS


@contextlib.contextmanager
def value_app(root: Path, **settings):
    """A real app over the store in ``root`` (where trained heads are published)."""
    s = Settings(event_dir=str(root / "events"), model_dir=str(root / "models"),
                 policy="epsilon:0.1", objective="click", **settings)
    s.validate()
    store = ModelStore(s.model_dir)
    policy = VWPolicy.fresh(PolicySpec.parse(s.policy), seed=1)
    sink = FileSink(s.event_dir)
    c = Client(create_app(s, policy, sink, registry=CollectorRegistry(), store=store))
    try:
        yield c, c.app.state.service
    finally:
        c.close()
        sink.close()
        policy.close()


@pytest.fixture(scope="module")
def learner():
    return trained.train()


@pytest.fixture
def published(tmp_path, learner):
    trained.publish(ModelStore(tmp_path / "models"), learner)
    return tmp_path


def first(c, **body) -> str:
    r = c.post("/v1/decide", json={"offers": OFFERS, "explore": False, **body})
    assert r.status_code == 200, r.text
    return r.json()["slots"][0]["id"]


def events(root: Path) -> list[dict]:
    out = []
    for f in sorted((root / "events").glob("decisions*")):
        out += [orjson.loads(x) for x in f.read_bytes().splitlines() if x]
    return out


def test_decisions_log_the_objective_and_the_head_scores(published):
    with value_app(published) as (c, svc):
        r = c.post("/v1/decide", json={"offers": OFFERS, "event_id": "e1"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["policy"].startswith("value(click;epsilon:0.1")
        ev = next(e for e in events(published) if e["EventId"] == "e1")
        assert ev["path"] == "value" and ev["info"]["objective"] == "click"
        assert set(ev["info"]["scores"]) == {"a", "b", "c"}
        assert set(ev["info"]["heads"]) == {"click"}
        # the logged probabilities are the ones replied, the drawn offer's first
        assert ev["p"] == [x["probability"] for x in body["ranking"]]
        assert 0 < ev["p"][0] <= 1 and abs(sum(ev["p"]) - 1) < 1e-9


def test_the_objective_ranks_by_the_heads(published):
    with value_app(published) as (c, svc):
        assert first(c) == "a"  # the most clicked
        r = c.request("PUT", "/v1/admin/objective", json={"objective": "value"})
        assert r.status_code == 200 and r.json() == {"objective": "value"}
        assert first(c) == "b"  # the most valuable
        c.request("PUT", "/v1/admin/objective",
                  json={"objective": "click * payout"})
        assert first(c) == "b"  # 0.2 × 10 against 0.6 × 1
        assert c.get("/v1/admin/objective").json() == {"objective": "click * payout"}


def test_every_worker_takes_a_new_objective_at_its_next_poll(published):
    """Two apps on one store stand for two workers: the objective changed through one
    reaches the other at its next poll, and no head learns anything."""
    with value_app(published) as (c1, svc1), value_app(published) as (c2, svc2):
        heads = svc2.value_aware.ranking.policy.heads
        learned = {k: h.learned for k, h in heads.by_kind.items()}
        assert first(c1) == first(c2) == "a"
        assert c1.request("PUT", "/v1/admin/objective",
                          json={"objective": "value"}).status_code == 200
        assert first(c1) == "b" and first(c2) == "a"  # c2 has not polled yet
        assert svc2.value_aware.ranking.refresh_objective() is True  # what poll_models does
        assert first(c2) == "b"
        assert {k: h.learned for k, h in heads.by_kind.items()} == learned
    with value_app(published) as (c3, svc3):  # a worker started later reads it too
        assert svc3.value_aware.ranking.objective.text == "value"


@pytest.mark.parametrize("body, field", [
    ({"objective": "click ** 2"}, "objective"),
    ({"objective": "payout"}, "objective"),  # no head
    ({"objective": 3}, "objective"),
    ({}, "objective"),
])
def test_a_bad_objective_is_a_400_naming_it(published, body, field):
    with value_app(published) as (c, svc):
        r = c.request("PUT", "/v1/admin/objective", json=body)
        assert r.status_code == 400 and r.json()["error"]["field"] == field
        assert svc.value_aware.ranking.objective.text == "click"


def test_an_offer_without_a_field_the_objective_needs_is_a_400(published):
    with value_app(published) as (c, svc):
        c.request("PUT", "/v1/admin/objective", json={"objective": "click * margin"})
        r = c.post("/v1/decide", json={"offers": OFFERS})
        assert r.status_code == 400 and "margin" in r.json()["error"]["message"]
        # from the catalogue: margin = payout − cost
        for o in OFFERS:
            c.request("PUT", f"/v1/offers/{o['id']}",
                      json={"features": o["features"], "payout": o["features"]["payout"],
                            "cost": 0.5})
        r = c.post("/v1/decide", json={"offers": ["a", "b", "c"], "explore": False})
        assert r.status_code == 200 and r.json()["slots"][0]["id"] == "b"


def test_predict_returns_the_calibrated_predictions(published, learner):
    with value_app(published) as (c, svc):
        r = c.post("/v1/decide", json={"offers": OFFERS, "predict": True})
        assert r.status_code == 200, r.text
        preds = r.json()["predictions"]
        assert set(preds) == {"a", "b", "c"} and set(preds["a"]) == {"click", "conversion",
                                                                      "value"}
        # what the learner's click head predicts, through its fitted calibrator
        window = learner.windows["click"]
        assert window.current is not None
        req = trained.request()
        raw = learner.heads.by_kind["click"].predict_raw(req.context,
                                                         [o.line for o in req.offers])
        cal = window.current(raw)
        assert np.allclose([preds[k]["click"] for k in ("a", "b", "c")], cal)
        assert not np.allclose(cal, raw)
        # calibrated click rates close to the world's (0.6, 0.2, 0.3)
        assert np.allclose(cal, [0.6, 0.2, 0.3], atol=0.08)


def test_without_an_objective_value_routes_say_so(tmp_path):
    from tests.server.conftest import store_app

    with store_app(tmp_path) as (s, store, c):
        r = c.post("/v1/decide", json={"offers": OFFERS, "predict": True})
        assert r.status_code == 409 and r.json()["error"]["field"] == "predict"
        assert c.get("/v1/admin/objective").status_code == 409
        assert c.request("PUT", "/v1/admin/objective",
                         json={"objective": "click"}).status_code == 409


def test_new_heads_are_served_at_the_next_poll(tmp_path, learner):
    """Heads the learner publishes later are loaded with no request dropped."""
    with value_app(tmp_path) as (c, svc):
        before = c.post("/v1/decide", json={"offers": OFFERS, "predict": True}).json()
        assert {v["click"] for v in before["predictions"].values()} == {0.0}  # fresh heads
        man = trained.publish(ModelStore(tmp_path / "models"), learner)
        assert asyncio.run(svc.value_aware.ranking.refresh_heads()) is True
        assert svc.value_aware.ranking.heads_ref == man.extra[head_files.HEADS_KEY]
        after = c.post("/v1/decide", json={"offers": OFFERS, "predict": True}).json()
        assert after["predictions"]["a"]["click"] > 0.4
        assert asyncio.run(svc.value_aware.ranking.refresh_heads()) is False  # the same heads


def test_constraints_remove_offers_before_the_draw(published):
    with value_app(published, min_margin="1.0", share_cap="advertiser:0.5/10") as (c, svc):
        put = {"a": (1.0, 0.5, "x"), "b": (10.0, 1.0, "y"), "c": (2.0, 0.0, "z")}
        for oid, (payout, cost, adv) in put.items():
            c.request("PUT", f"/v1/offers/{oid}", json={"payout": payout, "cost": cost,
                                                        "advertiser": adv})
        shown = Counter()
        window: list[str] = []
        for i in range(200):
            r = c.post("/v1/decide", json={"offers": ["a", "b", "c"], "event_id": f"e{i}"})
            if r.status_code == 422:  # every offer left out: nothing logged
                continue
            assert r.status_code == 200, r.text
            sid = r.json()["slots"][0]["id"]
            shown[sid] += 1
            window = (window + [sid])[-10:]
            assert window.count(sid) <= 5  # share cap
            # the removed offer has probability 0 and is never drawn
            assert {x["id"]: x["probability"] for x in r.json()["ranking"]}["a"] == 0.0
        assert shown["a"] == 0 and shown["b"] > 0 and shown["c"] > 0  # a's margin is 0.5
        page = c.get("/").text
        assert "id='constraints'" in page and "min_margin" in page
        assert "share_cap_advertiser" in page and "objective: <code>click</code>" in page
        state = svc.value_aware.ranking.state()["constraints"]
        assert state["min_margin"]["removed"] >= 200


def test_constraints_count_only_decisions_whose_event_was_accepted(published):
    """A decision whose event the sink refuses (a 503) was never shown: the share cap
    does not count it."""
    with value_app(published, share_cap="advertiser:0.5/10") as (c, svc):
        c.request("PUT", "/v1/offers/a", json={"features": {"payout": 1.0},
                                                "advertiser": "x"})
        sink = svc.sink
        ok = c.post("/v1/decide", json={"offers": ["a", {"id": "b", "features":
                                                         {"payout": 2.0}}]})
        assert ok.status_code == 200
        counted = svc.value_aware.ranking.constraints.state()["share_cap_advertiser"]
        before = counted["in_window"]
        assert before == 1

        def refuse(*args, **kwargs):
            raise OSError("disk full")

        sink.decision_encoded = refuse
        for _ in range(5):
            assert c.post("/v1/decide", json={"offers": ["a"]}).status_code == 503
        state = svc.value_aware.ranking.constraints.state()["share_cap_advertiser"]
        assert state["in_window"] == before

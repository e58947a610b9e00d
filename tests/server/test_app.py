import asyncio
import random

import orjson
import pytest
from prometheus_client import CollectorRegistry

from bandit.core.events import parse_decision, parse_reward
from bandit.core.policy_spec import PolicySpec
from bandit.core.vw_adapter import VWModel
from bandit.server.app import create_app
from bandit.stores.modelstore import ModelStore
from tests.server.conftest import Client, offers


def logged(settings, kind):
    from pathlib import Path

    lines = []
    for p in sorted(Path(settings.event_dir).glob(f"{kind}-*.jsonl")):
        lines += [orjson.loads(x) for x in p.read_bytes().splitlines()]
    return lines


def test_decide_response_and_log_agree(client, app_parts):
    settings = app_parts[0]
    r = client.post("/v1/decide", json={"context": {"user": {"c": "US"}}, "offers": offers(6),
                                        "slots": 3, "event_id": "ev-1", "user_id": "u1"})
    assert r.status_code == 200
    out = r.json()
    assert out["event_id"] == "ev-1" and out["policy"] == "epsilon:0.1"
    assert out["model_version"] == "0"
    assert [s["id"] for s in out["slots"]] == [x["id"] for x in out["ranking"][:3]]
    assert sorted(x["id"] for x in out["ranking"]) == [f"o{i}" for i in range(6)]
    assert all(0 < s["probability"] <= 1 for s in out["slots"])
    (ev,) = logged(settings, "decisions")
    d = parse_decision(ev)
    assert d.event_id == "ev-1" and d.slots == 3
    # the user is logged only as a salted hash
    from bandit.stores.userstore import hash_user, load_salt

    assert ev["user"] == hash_user("u1", load_salt("", settings.model_dir)) != "u1"
    assert len(ev["user"]) == 32
    assert [d.ids[i] for i in d.actions] == [x["id"] for x in out["ranking"]]
    assert list(d.probabilities) == pytest.approx([x["probability"] for x in out["ranking"]])


def test_exclude_removes_offers(client):
    r = client.post("/v1/decide", json={"offers": offers(4), "exclude": ["o0", "o2"]})
    assert sorted(x["id"] for x in r.json()["ranking"]) == ["o1", "o3"]


def test_exploit_requests_log_probability_one(client, app_parts):
    r = client.post("/v1/decide", json={"offers": offers(4), "explore": False})
    assert r.json()["slots"][0]["probability"] == 1.0
    (ev,) = logged(app_parts[0], "decisions")
    assert ev["explore"] is False and ev["p"][0] == 1.0
    assert 'mode="exploit"' in client.get("/metrics").text


def test_rewards_and_activation_are_logged(client, app_parts):
    assert client.post("/v1/rewards", json={"event_id": "e1", "reward": 1, "slot": 1,
                                            "kind": "click"}).status_code == 202
    assert client.post("/v1/events/e2/activate").status_code == 202
    evs = [parse_reward(x) for x in logged(app_parts[0], "rewards")]
    assert (evs[0].event_id, evs[0].value, evs[0].kind) == ("e1", 1.0, "click")
    assert evs[1].event_id == "e2" and evs[1].activate
    assert 'bandit_rewards_total{kind="click"} 1.0' in client.get("/metrics").text


@pytest.mark.parametrize("base", ["/personalizer/v1.0", "/personalizer/v1.1-preview.3"])
def test_personalizer_routes(client, app_parts, base):
    req = {"contextFeatures": [{"timeOfDay": "morning"}, {"user": {"tier": "gold"}}],
           "actions": [{"id": "news", "features": [{"topic": "world"}, {"len": 3}]},
                       {"id": "sports", "features": [{"topic": "football"}]},
                       {"id": "recipes"}],
           "excludedActions": ["recipes"], "eventId": "pz-1", "deferActivation": True}
    r = client.post(f"{base}/rank", json=req)
    assert r.status_code == 201
    out = r.json()
    assert set(out) == {"ranking", "eventId", "rewardActionId"}
    assert out["eventId"] == "pz-1" and out["rewardActionId"] == out["ranking"][0]["id"]
    assert {x["id"] for x in out["ranking"]} == {"news", "sports"}
    assert sum(x["probability"] for x in out["ranking"]) == pytest.approx(1.0)
    assert client.post(f"{base}/events/pz-1/reward", json={"value": 1.0}).status_code == 204
    assert client.post(f"{base}/events/pz-1/activate").status_code == 204
    (ev,) = logged(app_parts[0], "decisions")
    assert ev["DeferredAction"] is True
    assert ev["c"]["c"] == {"timeOfDay=morning": 1.0} and ev["c"]["cuser"] == {"tier=gold": 1.0}


def test_ops_endpoints(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    model = client.get("/v1/model").json()
    assert model["version"] == "0" and model["events_learned"] == 0
    doc = client.get("/openapi.json").json()
    assert "/v1/decide" in doc["paths"] and "/personalizer/v1.0/rank" in doc["paths"]
    assert 'bandit_model_version_info{policy="epsilon:0.1",version="0"} 1.0' in \
        client.get("/metrics").text


def test_hot_swap_from_the_store(tmp_path, app_parts):
    settings, policy, sink = app_parts
    store = ModelStore(settings.model_dir)
    app = create_app(settings, policy, sink, registry=CollectorRegistry(), store=store)
    c = Client(app)
    svc = app.state.service
    try:
        lines = ["|o_id id=o0", "|o_id id=o1"]
        trained = VWModel(PolicySpec.parse("epsilon:0.1").vw_args())
        rng = random.Random(0)
        for _ in range(300):
            a = rng.randrange(2)
            trained.learn({}, lines, a, 1.0 if a == 1 else 0.0, 0.5)
        man = store.publish(trained, "epsilon:0.1", 300)
        assert asyncio.run(svc.refresh_model()) is True
        r = c.post("/v1/decide", json={"offers": [{"id": "o0"}, {"id": "o1"}],
                                       "explore": False})
        assert r.json()["model_version"] == man.version and r.json()["slots"][0]["id"] == "o1"
        info = c.get("/v1/model").json()
        assert info["checksum"] == man.sha256 and info["events_learned"] == 300
        # a corrupt newer model is refused, the old one keeps serving
        bad = store.publish(trained, "epsilon:0.1", 301)
        (store.dir / bad.file).write_bytes(b"garbage")
        assert asyncio.run(svc.refresh_model()) is False
        assert c.post("/v1/decide", json={"offers": offers(2)}).json()["model_version"] == \
            man.version
        assert 'bandit_model_swaps_total{result="refused"} 1.0' in c.get("/metrics").text
    finally:
        c.close()


def test_sink_failure_is_503_not_500(client, app_parts):
    _, _, sink = app_parts

    def broken(event_id, *event):
        raise OSError("disk full")

    sink.decision = sink.decision_encoded = broken
    r = client.post("/v1/decide", json={"offers": offers(2)})
    assert r.status_code == 503 and r.json()["error"]["code"] == "ServiceUnavailable"


def test_a_bug_on_a_fast_route_is_a_json_500_and_the_next_request_works(client, caplog):
    svc = client.app.state.service
    real = svc.decide
    svc.decide = lambda req: (_ for _ in ()).throw(RuntimeError("boom"))  # a bug
    r = client.post("/v1/decide", json={"offers": offers(2)})
    assert r.status_code == 500
    assert r.json() == {"error": {"code": "InternalError", "message": "internal error"}}
    assert "boom" not in r.text and "unhandled error on /v1/decide" in caplog.text
    assert 'bandit_errors_total{code="InternalError"} 1.0' in client.get("/metrics").text
    svc.decide = real
    assert client.post("/v1/decide", json={"offers": offers(2)}).status_code == 200
    # the router still answers what the fast routes do not take
    assert client.get("/v1/decide").status_code == 405
    assert client.post("/v1/nowhere", json={}).status_code == 404

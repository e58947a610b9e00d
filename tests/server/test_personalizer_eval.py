"""Personalizer's offline evaluations, feature importance and applyFromEvaluation, on joined
logs whose ground truth is known: uniformly logged decisions over four actions where
``a1`` always wins for ``u=x`` and ``a2`` for ``u=y`` (an unrelated ``noise`` feature rides
along). Real VW, the real replay, the in-process app."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import numpy as np
import orjson
import pytest
from prometheus_client import CollectorRegistry

from bandit.config.settings import Settings
from bandit.core.events import decision_event, joined_event
from bandit.core.policy import VWPolicy
from bandit.core.policy_spec import PolicySpec
from bandit.core.schema import RequestParser
from bandit.core.types import Decision
from bandit.server.app import create_app
from bandit.stores.modelstore import ModelStore
from bandit.streaming.sinks import FileSink
from tests.server.conftest import Client, store_app

Q = "?api-version=2022-09-01-preview"
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
N = 600
ACTIONS = [{"id": f"a{i}", "features": [{"kind": str(i)}]} for i in range(4)]
WINNER = {"x": "a1", "y": "a2"}


def stamp(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def write_logs(path, n: int = N, seed: int = 3) -> np.ndarray:
    """Uniformly logged joined decisions, one a second from T0; returns the rewards."""
    rng = np.random.default_rng(seed)
    parser = RequestParser(Settings())
    rewards = []
    with open(path, "wb") as f:
        for i in range(n):
            u = "x" if rng.random() < 0.5 else "y"
            body = {"contextFeatures": [{"u": u, "noise": str(rng.integers(3))}],
                    "actions": ACTIONS, "eventId": f"e{i}"}
            req = parser.personalizer_rank(orjson.dumps(body))
            order = [int(x) for x in rng.permutation(4)]
            d = Decision(req.event_id, tuple(order), (0.25,) * 4, 1, "0", "uniform", True)
            ev = decision_event(req, d, timestamp=stamp(T0 + timedelta(seconds=i)))
            r = 1.0 if req.offers[order[0]].id == WINNER[u] else 0.0
            rewards.append(r)
            f.write(orjson.dumps(joined_event(ev, r, [{"EventId": req.event_id, "v": r}]
                                              if r else [])) + b"\n")
    return np.array(rewards)


@pytest.fixture
def parts(tmp_path):
    logs = tmp_path / "joined.jsonl"
    rewards = write_logs(logs)
    with store_app(tmp_path, evaluation_logs=str(logs)) as (_, store, c):
        yield c, rewards, store


CONTRACT = {"name": "first", "startTime": stamp(T0), "endTime": stamp(T0 + timedelta(hours=1)),
            "policies": [{"name": "greedy-ish", "arguments": "--cb_explore_adf --epsilon 0.05"}]}
RANGE = f"&startTime={stamp(T0)}&endTime={stamp(T0 + timedelta(hours=1))}"


def wait_done(c: Client, path: str, done: tuple[str, ...], timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = c.get(path)
        assert r.status_code == 200, r.text
        if r.json()["status"] in done:
            return r.json()
        time.sleep(0.2)
    raise TimeoutError(f"{path} did not finish")


def by_source(results: list[dict], key: str = "policySource") -> dict[str, dict]:
    return {r[key] if r[key] != "Custom" else r["name"]: r for r in results}


def test_v11_evaluation_compares_the_policies_against_the_known_truth(parts):
    c, rewards, _ = parts
    r = c.post("/personalizer/v1.1-preview.3/evaluations", json=CONTRACT)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["status"] == "pending" and created["name"] == "first"
    assert r.headers["Location"].endswith(f"/evaluations/{created['id']}")
    doc = wait_done(c, f"/personalizer/v1.1-preview.3/evaluations/{created['id']}",
                    ("completed", "failed"))
    assert doc["status"] == "completed", doc
    res = by_source(doc["policyResults"])
    assert set(res) == {"Online", "Baseline", "Random", "Current learning settings",
                        "greedy-ish"}
    total = {k: v["totalSummary"] for k, v in res.items()}
    # uniform logging: the online (logged) and random policies have weight 1 on every row,
    # so their IPS is the logs' mean reward exactly
    for k in ("Online", "Random"):
        assert total[k]["ipsEstimatorDenominator"] == N
        assert total[k]["averageReward"] == pytest.approx(rewards.mean(), abs=1e-9)
        assert total[k]["snipsEstimatorDenominator"] == pytest.approx(N)
    # a0 (listed first) never wins
    assert total["Baseline"]["averageReward"] == 0.0
    # learned progressively, the epsilon-greedy settings find the winners: the truth for a
    # policy that always picks them is 1; the learning phase costs a little
    learned = total["greedy-ish"]
    assert learned["averageReward"] - learned["confidenceInterval"] > 0.6
    assert learned["averageReward"] > total["Online"]["averageReward"] + \
        learned["confidenceInterval"] + total["Online"]["confidenceInterval"]
    assert doc["optimalPolicy"] in ("greedy-ish", "Current learning settings")
    # the 5-minute summaries add up to the total
    s = res["greedy-ish"]["summary"]
    assert len(s) == 2 and sum(x["ipsEstimatorDenominator"] for x in s) == N
    assert sum(x["ipsEstimatorNumerator"] for x in s) == \
        pytest.approx(learned["ipsEstimatorNumerator"])
    # listed, then deleted
    assert [e["id"] for e in c.get("/personalizer/v1.1-preview.3/evaluations").json()] == \
        [created["id"]]
    assert c.request("DELETE", f"/personalizer/v1.1-preview.3/evaluations/{created['id']}"
                     ).status_code == 204
    r = c.get(f"/personalizer/v1.1-preview.3/evaluations/{created['id']}")
    assert r.status_code == 404 and r.json()["error"]["code"] == "EvaluationNotFound"


def test_2022_evaluation_apply_and_feature_importance(parts):
    c, rewards, store = parts
    r = c.request("PUT", "/personalizer/evaluations/ev1" + Q, json={
        **CONTRACT, "enablePolicyOptimization": False})
    assert r.status_code == 200, r.text
    doc = wait_done(c, "/personalizer/evaluations/ev1" + Q + RANGE, ("Succeeded", "Failed"))
    assert doc["status"] == "Succeeded", doc
    content = doc["content"]
    assert content["intervalInMinutes"] == 5
    res = by_source(content["value"])
    online = res["Online"]["summary"]
    assert online["expectedReward"] == pytest.approx(rewards.mean(), abs=1e-9)
    lo, hi = online["confidenceInterval"]
    assert lo < rewards.mean() < hi
    # expanding window: the last point is the total
    series = res["greedy-ish"]["timeseries"]["data"]
    assert series[-1]["expectedReward"] == pytest.approx(res["greedy-ish"]["summary"]
                                                         ["expectedReward"])
    # hourly rolling: one interval holds all ten minutes of logs
    hourly = c.get("/personalizer/evaluations/ev1" + Q + RANGE +
                   "&intervalInMinutes=60&window=Rolling").json()
    assert len(by_source(hourly["content"]["value"])["Online"]["timeseries"]["data"]) == 1
    bad = c.get("/personalizer/evaluations/ev1" + Q + RANGE + "&intervalInMinutes=7")
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "intervalInMinutes"
    listed = c.get("/personalizer/evaluations" + Q).json()["value"]
    assert [e["id"] for e in listed] == ["ev1"] and listed[0]["status"] == "Succeeded"
    # the replay report of the same run
    report = c.get("/v1/admin/evaluations/ev1/report")
    assert report.status_code == 200 and "greedy-ish" in report.text
    # apply the learned settings: their model (learned on the logs) is served at once
    before = c.get("/v1/model").json()["version"]
    r = c.post("/personalizer/configurations/applyFromEvaluation" + Q,
               json={"evaluationId": "ev1", "policyName": "greedy-ish"})
    assert r.status_code == 204, r.text
    assert c.get("/v1/model").json()["version"] != before
    pol = c.get("/personalizer/configurations/policy" + Q).json()
    assert pol["name"] == "greedy-ish" and "--epsilon 0.05" in pol["arguments"]
    for u, winner in WINNER.items():
        ranked = c.post("/personalizer/rank" + Q, json={
            "contextFeatures": [{"u": u, "noise": "0"}], "actions": ACTIONS}).json()
        top = max(ranked["ranking"], key=lambda a: a["probability"])
        assert top["id"] == winner
    assert c.get("/personalizer/evaluations/ev1" + Q + RANGE).json()["status"] == \
        "OptimalPolicyApplied"
    for body, status, code in [
            ({"evaluationId": "ev1", "policyName": "Baseline"}, 404, "LearningSettingsNotFound"),
            ({"evaluationId": "nope", "policyName": "x"}, 404, "EvaluationNotFound"),
            ({"evaluationId": 3}, 400, "BadRequest")]:
        r = c.post("/personalizer/configurations/applyFromEvaluation" + Q, json=body)
        assert (r.status_code, r.json()["error"]["code"]) == (status, code)
    # feature importance of the served model: u decides about half the decisions (without
    # it the model's choice is the same for both users), the noise feature none
    r = c.request("PUT", "/personalizer/featureImportances/fi1" + Q, json={
        "name": "fi", "startTime": CONTRACT["startTime"], "endTime": CONTRACT["endTime"]})
    assert r.status_code == 200, r.text
    fi = wait_done(c, "/personalizer/featureImportances/fi1" + Q, ("Succeeded", "Failed"))
    assert fi["status"] == "Succeeded", fi
    scores = {s["featureName"]: s["score"] for s in fi["featureScores"]}
    assert 0.3 < scores["u"] <= 0.7
    assert scores.get("noise", 0.0) < 0.1
    assert [x["id"] for x in c.get("/personalizer/featureImportances" + Q).json()["value"]] \
        == ["fi1"]
    # v1.1-preview.3 evaluations carry the same scores as tiers of feature names
    r = c.post("/personalizer/v1.1-preview.3/evaluations", json=CONTRACT)
    tiers = wait_done(c, f"/personalizer/v1.1-preview.3/evaluations/{r.json()['id']}",
                      ("completed", "failed"))["featureImportance"]
    top = max(fi["featureScores"], key=lambda x: x["score"])
    assert f"{top['namespace']}.{top['featureName']}" in tiers[0]
    assert not any("noise" in name for tier in tiers[:1] for name in tier)
    assert c.request("DELETE", "/personalizer/featureImportances/fi1" + Q).status_code == 204
    assert c.get("/personalizer/featureImportances/fi1" + Q).status_code == 404


@pytest.mark.parametrize("body, field, code", [
    ({**CONTRACT, "name": ""}, "name", "InvalidEvaluationContract"),
    ({**CONTRACT, "startTime": "yesterday"}, "startTime", "InvalidEvaluationContract"),
    ({**CONTRACT, "endTime": "9999-12-31T23:59:59-05:00"}, "endTime",
     "InvalidEvaluationContract"),  # (after year 9999 in UTC)
    ({**CONTRACT, "startTime": "0001-01-01T00:00:00+05:00"}, "startTime",
     "InvalidEvaluationContract"),
    ({**CONTRACT, "endTime": CONTRACT["startTime"]}, "endTime", "InvalidEvaluationContract"),
    ({**CONTRACT, "policies": [{"name": "a", "arguments": "--epsilon 0.1"}] * 2},
     "policies[1].name", "DuplicateCustomPolicyNames"),
    ({**CONTRACT, "policies": [{"name": "a", "arguments": "--nonsense 3"}]},
     "policies[0].arguments", "InvalidPolicyConfiguration"),
    ({**CONTRACT, "policies": "all"}, "policies", "InvalidEvaluationContract"),
    # each of the two names of the flag is checked, also when the other one is given
    ({**CONTRACT, "enablePolicyOptimization": "yes"}, "enablePolicyOptimization",
     "InvalidEvaluationContract"),
    ({**CONTRACT, "enableOfflineExperimentation": False, "enablePolicyOptimization": [[1]]},
     "enablePolicyOptimization", "InvalidEvaluationContract"),
])
def test_bad_evaluation_contracts_are_refused_by_field(parts, body, field, code):
    c, _, _ = parts
    r = c.request("PUT", "/personalizer/evaluations/bad" + Q, json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["field"] == field and r.json()["error"]["code"] == code
    assert c.get("/personalizer/evaluations/bad" + Q).status_code == 404


def test_an_evaluation_outside_the_logs_fails_saying_why(parts):
    c, _, _ = parts
    later = {**CONTRACT, "startTime": "2027-01-01T00:00:00Z", "endTime": "2027-01-02T00:00:00Z"}
    assert c.request("PUT", "/personalizer/evaluations/late" + Q, json=later).status_code == 200
    doc = wait_done(c, "/personalizer/evaluations/late" + Q, ("Succeeded", "Failed"))
    assert doc["status"] == "Failed" and "NoLogsExistInDateRange" in doc["description"]


def test_every_route_is_in_the_openapi_document(parts):
    c, _, _ = parts
    doc = c.get("/openapi.json").json()["paths"]
    missing = []
    for route in c.app.routes:
        for method in sorted(set(getattr(route, "methods", None) or ()) - {"HEAD"}):
            if method.lower() not in doc.get(route.path, {}):
                missing.append(f"{method} {route.path}")
    assert missing == []


def test_offline_experimentation_adds_the_policy_search_s_best(parts):
    """With enableOfflineExperimentation the replay's policy search runs around the
    current settings; its best joins the results, scored by the evaluation's own pass to
    the same IPS the search found, and can be applied."""
    c, rewards, store = parts
    r = c.post("/personalizer/v1.1-preview.3/evaluations",
               json={**CONTRACT, "enableOfflineExperimentation": True})
    assert r.status_code == 201, r.text
    eid = r.json()["id"]
    doc = wait_done(c, f"/personalizer/v1.1-preview.3/evaluations/{eid}",
                    ("completed", "failed"))
    assert doc["status"] == "completed", doc
    res = {x["policySource"]: x for x in doc["policyResults"]}
    found = res["OfflineExperimentation"]
    stored = orjson.loads(next((store.dir / "evaluations").glob("*.json")).read_bytes())
    search = stored["search"]
    assert search["beats_logged"] is True and found["name"] == "Optimized learning settings"
    assert found["totalSummary"]["averageReward"] == pytest.approx(search["ips"], rel=1e-9)
    assert found["totalSummary"]["averageReward"] > res["Online"]["totalSummary"][
        "averageReward"] + 0.5  # a winner on these logs, far above uniform logging
    assert "policy search" in stored["description"] and search["best"] in stored["description"]
    r = c.post("/personalizer/configurations/applyFromEvaluation" + Q,
               json={"evaluationId": eid, "policyName": "Optimized learning settings"})
    assert r.status_code == 204, r.text
    assert c.get("/personalizer/configurations/policy" + Q).json()["arguments"] == \
        found["arguments"]
    assert c.get("/v1/model").json()["policy"] == search["best"]


def test_evaluations_run_on_personalizer_s_own_dsjson_logs(tmp_path):
    """Logs as Personalizer writes them (no canonical features, ``_label_*`` fields,
    ``a``/``p``, raw ``c``), pointed at by BANDIT_EVALUATION_LOGS: evaluated as they are."""
    rng = np.random.default_rng(5)
    path = tmp_path / "personalizer.json"
    rewards = []
    with open(path, "wb") as f:
        for i in range(N):
            u = "x" if rng.random() < 0.5 else "y"
            order = [int(x) for x in rng.permutation(4)]
            r = 1.0 if f"a{order[0]}" == WINNER[u] else 0.0
            rewards.append(r)
            f.write(orjson.dumps({
                "_label_cost": -r, "_label_probability": 0.25, "_label_Action": order[0] + 1,
                "_labelIndex": order[0], "Timestamp": stamp(T0 + timedelta(seconds=i)),
                "Version": "1", "EventId": f"p{i}", "a": [j + 1 for j in order],
                "c": {"user": {"u": u}, "_multi": [{"_tag": f"a{j}", "kind": str(j)}
                                                   for j in range(4)]},
                "p": [0.25] * 4, "VWState": {"m": "x"}}) + b"\n")
    settings = Settings(event_dir=str(tmp_path / "events"), model_dir=str(tmp_path / "m"),
                        policy="epsilon:0.1", evaluation_logs=str(path))
    policy = VWPolicy.fresh(PolicySpec.parse(settings.policy), seed=1)
    sink = FileSink(settings.event_dir)
    c = Client(create_app(settings, policy, sink, registry=CollectorRegistry(),
                          store=ModelStore(settings.model_dir)))
    try:
        assert c.request("PUT", "/personalizer/evaluations/p" + Q, json=CONTRACT
                         ).status_code == 200
        doc = wait_done(c, "/personalizer/evaluations/p" + Q, ("Succeeded", "Failed"))
    finally:
        c.close()
        sink.close()
        policy.close()
    assert doc["status"] == "Succeeded", doc
    res = by_source(doc["content"]["value"])
    assert res["Online"]["summary"]["expectedReward"] == pytest.approx(np.mean(rewards),
                                                                       abs=1e-9)
    assert res["greedy-ish"]["summary"]["expectedReward"] > 0.6


@pytest.mark.parametrize("flags, optimize", [
    ({}, False),
    ({"enableOfflineExperimentation": True}, True),
    ({"enablePolicyOptimization": True}, True),  # the older name
    ({"enableOfflineExperimentation": None, "enablePolicyOptimization": True}, True),
    ({"enableOfflineExperimentation": False, "enablePolicyOptimization": True}, False),
])
def test_either_name_of_the_optimization_flag_turns_it_on(flags, optimize):
    from bandit.evaluation.evaluations import parse_evaluation

    assert parse_evaluation({**CONTRACT, **flags})["optimize"] is optimize

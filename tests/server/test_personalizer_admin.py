"""Personalizer's newest generation in-process: ``?api-version=`` answers, the events
routes, and the configuration, learning settings, model and logs routes (their
validation, their effect on served decisions, and their storage in the model store)."""

from __future__ import annotations

import io
import zipfile

import orjson
import pytest

from bandit.config.loop_config import LoopConfig
from bandit.core.policy_spec import PolicySpec
from tests.server.conftest import Client, store_app
from tests.server.test_app import logged

Q = "?api-version=2022-09-01-preview"
ACTIONS = [{"id": f"a{i}", "features": [{"kind": str(i)}]} for i in range(4)]
SERVICE = {"rewardWaitTime": "PT10M", "defaultReward": 0.0, "rewardAggregation": "earliest",
           "explorationPercentage": 0.2, "modelExportFrequency": "PT5M",
           "logRetentionDays": 7, "learningMode": "Online"}


@pytest.fixture
def parts(tmp_path):
    with store_app(tmp_path) as out:
        yield out


def put(c: Client, path: str, body: object) -> object:
    return c.request("PUT", path + Q, json=body)


@pytest.mark.parametrize("query, status, code", [
    ("", 400, "MissingApiVersionParameter"),
    ("?api-version=", 400, "MissingApiVersionParameter"),
    ("?api-version=v1.0", 400, "UnsupportedApiVersionValue"),
    ("?api-version=2023-01-01", 400, "UnsupportedApiVersionValue"),
])
@pytest.mark.parametrize("method, path", [
    ("POST", "/personalizer/rank"), ("POST", "/personalizer/events/e1/reward"),
    ("POST", "/personalizer/multislot/rank"), ("GET", "/personalizer/configurations/service"),
    ("DELETE", "/personalizer/model"), ("GET", "/personalizer/logs/properties"),
])
def test_api_version_is_required_and_checked(parts, query, status, code, method, path):
    _, _, c = parts
    r = c.request(method, path + query, json={"value": 1})
    assert r.status_code == status
    assert r.json()["error"]["code"] == code and r.headers["x-ms-error-code"] == code
    if code == "UnsupportedApiVersionValue":
        assert "2022-09-01-preview" in r.json()["error"]["message"]


def test_events_routes_of_the_2022_generation(parts):
    settings, _, c = parts
    r = c.post("/personalizer/rank" + Q, json={"contextFeatures": [{"u": "x"}],
                                               "actions": ACTIONS, "eventId": "e1",
                                               "excludedActions": ["a3"]})
    assert r.status_code == 201 and r.json()["eventId"] == "e1"
    assert {x["id"] for x in r.json()["ranking"]} == {"a0", "a1", "a2"}
    assert c.post("/personalizer/events/e1/reward" + Q, json={"value": 0.5}).status_code == 204
    assert c.post("/personalizer/events/e1/activate" + Q).status_code == 204
    r = c.post("/personalizer/multislot/rank" + Q, json={
        "actions": ACTIONS, "eventId": "m1", "slots": [{"id": "s1", "baselineAction": "a0"},
                                                       {"id": "s2", "baselineAction": "a1"}]})
    assert r.status_code == 201 and [s["id"] for s in r.json()["slots"]] == ["s1", "s2"]
    assert c.post("/personalizer/multislot/events/m1/reward" + Q,
                  json={"reward": [{"slotId": "s2", "value": 1}]}).status_code == 204
    assert c.post("/personalizer/multislot/events/m1/activate" + Q).status_code == 204
    rewards = [e for e in logged(settings, "rewards") if "v" in e]
    assert [(e["EventId"], e["v"]) for e in rewards] == [("e1", 0.5), ("m1", 1.0)]
    r = c.post("/personalizer/events/e1/reward" + Q, json={"value": "high"})
    assert r.status_code == 400 and r.headers["x-ms-error-code"] == "BadRequest"


@pytest.mark.parametrize("change, code, field", [
    ({"rewardWaitTime": "PT1S"}, "InvalidRewardWaitTime", "rewardWaitTime"),
    ({"rewardWaitTime": "P3D"}, "InvalidRewardWaitTime", "rewardWaitTime"),
    ({"rewardWaitTime": "ten minutes"}, "InvalidRewardWaitTime", "rewardWaitTime"),
    ({"defaultReward": 1.5}, "InvalidServiceConfiguration", "defaultReward"),
    ({"defaultReward": True}, "InvalidServiceConfiguration", "defaultReward"),
    ({"explorationPercentage": -0.1}, "InvalidServiceConfiguration", "explorationPercentage"),
    ({"explorationPercentage": None}, "InvalidServiceConfiguration", "explorationPercentage"),
    ({"rewardAggregation": "median"}, "InvalidServiceConfiguration", "rewardAggregation"),
    ({"modelExportFrequency": "P2D"}, "InvalidServiceConfiguration", "modelExportFrequency"),
    ({"logRetentionDays": 0}, "InvalidLogRetentionDays", "logRetentionDays"),
    ({"rewardWaitTime": "P1D", "logRetentionDays": 1}, "InvalidLogRetentionDays",
     "logRetentionDays"),
    ({"logRetentionDays": 2.5}, "InvalidLogRetentionDays", "logRetentionDays"),
    ({"learningMode": "Offline"}, "InvalidServiceConfiguration", "learningMode"),
    ({"modelRetrainDays": -1}, "InvalidModelRetrainDays", "modelRetrainDays"),
    ({"logMirrorEnabled": "yes"}, "InvalidServiceConfiguration", "logMirrorEnabled"),
    ({"learningMode": "Apprentice", "defaultReward": 0.5},
     "InvalidLearningModeServiceConfiguration", "learningMode"),
])
def test_bad_service_configurations_are_refused_and_change_nothing(parts, change, code, field):
    _, store, c = parts
    assert put(c, "/personalizer/configurations/service", SERVICE).status_code == 200
    stored = store.read_config()
    r = put(c, "/personalizer/configurations/service", {**SERVICE, **change})
    assert r.status_code == 400, r.text
    assert r.json()["error"] == {**r.json()["error"], "code": code, "field": field}
    assert store.read_config() == stored


def test_configuration_round_trip_in_both_duration_formats(parts):
    _, store, c = parts
    conf = c.get("/personalizer/configurations/service" + Q).json()
    assert conf["rewardWaitTime"] == "PT10M" and conf["explorationPercentage"] == 0.1
    assert put(c, "/personalizer/configurations/service", conf).status_code == 200  # as read
    r = c.request("PUT", "/personalizer/v1.0/configurations/service",
                  json={**SERVICE, "rewardWaitTime": "04:00:00", "modelExportFrequency":
                        "00:05:00", "logMirrorEnabled": False})
    assert r.status_code == 200, r.text
    assert r.json()["rewardWaitTime"] == "04:00:00" and r.json()["logMirrorEnabled"] is False
    assert c.get("/personalizer/configurations/service" + Q).json()["rewardWaitTime"] == "PT4H"
    preview3 = c.get("/personalizer/v1.1-preview.3/configurations/service").json()
    assert preview3["rewardWaitTime"] == "PT4H"  # that generation's reference writes ISO too
    assert LoopConfig.from_json(store.read_config()).reward_wait == 4 * 3600
    assert "lastConfigurationEditDate" in r.json()


def test_exploration_and_learning_mode_change_what_is_served(parts):
    _, _, c = parts
    body = {"actions": ACTIONS}
    put(c, "/personalizer/configurations/service", {**SERVICE, "explorationPercentage": 0.0})
    r = c.post("/personalizer/rank" + Q, json=body).json()
    assert sorted(a["probability"] for a in r["ranking"]) == [0.25] * 4  # untrained: ties
    put(c, "/personalizer/configurations/service", {**SERVICE, "learningMode": "Apprentice"})
    for _ in range(5):  # the baseline (first) action is shown, with certainty
        r = c.post("/personalizer/rank" + Q, json=body).json()
        assert r["rewardActionId"] == "a0" and r["ranking"][0]["probability"] == 1.0
    assert c.get("/v1/model").json()["mode"] == "apprentice"
    put(c, "/personalizer/configurations/service", {**SERVICE, "learningMode": "LoggingOnly"})
    assert c.post("/personalizer/rank" + Q, json=body).json()["rewardActionId"] == "a0"
    assert c.get("/v1/model").json()["mode"] == "logging_only"


@pytest.mark.parametrize("body, code, field", [
    ({"name": "x", "arguments": "--cb_explore_adf --l1 1e-7"}, "InvalidPolicyConfiguration",
     "arguments"),
    ({"name": "x", "arguments": "--epsilon"}, "InvalidPolicyConfiguration", "arguments"),
    ({"name": "x", "arguments": "--epsilon 1.5"}, "InvalidPolicyConfiguration", "arguments"),
    ({"name": "x", "arguments": "--bag 5 --squarecb"}, "InvalidPolicyConfiguration",
     "arguments"),
    ({"name": "x", "arguments": ""}, "InvalidPolicyConfiguration", "arguments"),
    ({"name": "", "arguments": "--epsilon 0.1"}, "InvalidPolicyContract", "name"),
    ({"arguments": "--epsilon 0.1"}, "InvalidPolicyContract", "name"),
    ({"name": "x", "arguments": 3}, "InvalidPolicyContract", "arguments"),
    ({"name": "x", "arguments": "--hash strings --epsilon 0.1"}, "InvalidPolicyConfiguration",
     "arguments"),
    ({"name": "x", "arguments": "--adaptive --epsilon 0.1"}, "InvalidPolicyConfiguration",
     "arguments"),
    ({"name": "x", "arguments": "--epsilon 0.1 -q"}, "InvalidPolicyConfiguration",
     "arguments"),
])
def test_bad_learning_settings_are_refused(parts, body, code, field):
    _, store, c = parts
    r = put(c, "/personalizer/configurations/policy", body)
    assert r.status_code == 400 and r.json()["error"]["code"] == code
    assert r.json()["error"]["field"] == field
    assert store.current() is None  # no model was replaced


def test_learning_settings_replace_the_served_model(parts):
    _, store, c = parts
    default = c.get("/personalizer/configurations/policy" + Q).json()
    assert default == {"name": "default",
                       "arguments": "--cb_explore_adf -q co --hash all -b 18 --epsilon 0.1"}
    r = put(c, "/personalizer/configurations/policy",
            {"name": "bagged", "arguments": "--cb_explore_adf --bag 4 --epsilon 0.02 -q ::"})
    assert r.status_code == 200 and r.json()["name"] == "bagged"
    assert c.get("/v1/model").json()["policy"] == "bag:4,epsilon=0.02"  # served at once
    assert store.current().policy == "bag:4,epsilon=0.02"
    r = c.post("/personalizer/rank" + Q, json={"actions": ACTIONS})
    assert r.status_code == 201
    assert c.request("DELETE", "/personalizer/configurations/policy" + Q).json() == default
    assert c.get("/v1/model").json()["policy"] == "epsilon:0.1"


@pytest.mark.parametrize("spec", ["epsilon:0.1", "bag:5,interactions=co+cc+oo,lr=1",
                                  "squarecb:100,normalized=0", "epsilon:0.05,interactions=cco",
                                  "softmax:10,cb_type=dr,bits=20"])
def test_the_arguments_the_service_shows_are_ones_it_takes(parts, spec):
    """GET then PUT of the learning settings serves the same VW command line."""
    from bandit.config.learning_settings import arguments_of, spec_from_arguments

    _, store, c = parts
    args = arguments_of(PolicySpec.parse(spec))
    assert spec_from_arguments(args) == PolicySpec.parse(spec)
    r = put(c, "/personalizer/configurations/policy", {"name": "same", "arguments": args})
    assert r.status_code == 200, r.text
    assert PolicySpec.parse(store.current().policy).vw_args() == PolicySpec.parse(spec).vw_args()
    again = c.get("/personalizer/configurations/policy" + Q).json()
    assert again == {"name": "same", "arguments": args}


def test_model_export_import_and_reset(parts):
    _, store, c = parts
    assert c.get("/personalizer/model" + Q).status_code == 404  # nothing published yet
    assert c.request("DELETE", "/personalizer/model" + Q).status_code == 204
    first = store.current()
    raw = c.get("/personalizer/model" + Q).content
    signed = c.get("/personalizer/model" + Q + "&signed=true").content
    with zipfile.ZipFile(io.BytesIO(signed)) as z:
        assert z.read("model.vw") == raw
        assert orjson.loads(z.read("manifest.json"))["sha256"] == first.sha256
    assert c.request("PUT", "/personalizer/model" + Q, content=signed).status_code == 204
    assert store.current().version != first.version and store.current().sha256 == first.sha256
    assert c.get("/v1/model").json()["version"] == store.current().version
    assert c.request("PUT", "/personalizer/model" + Q, content=raw).status_code == 204
    for bad, code in ((b"", "InvalidModelImportFormat"),
                      (b"not a model", "InvalidModelImportFormat"),
                      (_zip({"model.vw": raw}), "InvalidModelImportFormat"),
                      (_zip({"model.vw": raw + b"x", "manifest.json":
                             orjson.dumps({"sha256": first.sha256})}),
                       "InvalidModelImportSignature")):
        r = c.request("PUT", "/personalizer/model" + Q, content=bad)
        assert r.status_code == 400 and r.json()["error"]["code"] == code, r.text
    props = c.get("/personalizer/model/properties" + Q).json()
    assert props["creationTime"] <= props["lastModifiedTime"]
    assert c.get("/personalizer/model" + Q + "&signed=maybe").status_code == 400


def test_logs_properties_and_delete(parts):
    _, store, c = parts
    r = c.get("/personalizer/logs/properties" + Q)
    assert r.status_code == 404 and r.json()["error"]["code"] == "LogsPropertiesNotFound"
    # what a learner records with its checkpoints
    store.publish(_Saved(), "epsilon:0.1", 3, extra={"logs": {
        "from": "2026-01-01T00:00:00.000Z", "to": "2026-01-02T00:00:00.000Z"}})
    assert c.get("/personalizer/logs/properties" + Q).json() == {"dateRange": {
        "from": "2026-01-01T00:00:00.000Z", "to": "2026-01-02T00:00:00.000Z"}}
    assert c.request("DELETE", "/personalizer/logs" + Q).status_code == 204
    assert c.get("/personalizer/logs/properties" + Q).status_code == 404  # all before now


class _Saved:
    def save(self, path: str) -> None:
        with open(path, "wb") as f:
            f.write(b"model")


def _zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return buf.getvalue()

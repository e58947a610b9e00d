"""Microsoft's published Personalizer client libraries, unchanged, against a real
``bandit-serve`` process: ``azure-ai-personalizer`` (2022-09-01-preview: rank, reward,
activate, multi-slot, configuration, learning settings, model, logs) and
``azure-cognitiveservices-personalizer`` (v1.0: rank, reward, activate)."""

from __future__ import annotations

import io
import json
import time
import zipfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from azure.ai.personalizer import PersonalizerAdministrationClient, PersonalizerClient
from azure.cognitiveservices.personalizer import PersonalizerClient as V1Client
from azure.cognitiveservices.personalizer.models import RankableAction, RankRequest
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
)
from msrest.authentication import CognitiveServicesCredentials

from tests.server.conftest import ADMIN, USER

pytestmark = pytest.mark.integration

ACTIONS = [{"id": f"a{i}", "features": [{"kind": str(i), "price": float(i)}]}
           for i in range(4)]
CONTEXT = [{"user": {"device": "ios"}}, {"time": "morning"}]
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
T1 = T0 + timedelta(hours=1)


def events(directory: Path, kind: str) -> list[dict]:
    out = []
    for path in sorted(directory.glob(f"{kind}-*.jsonl")):
        out += [json.loads(line) for line in path.read_text().splitlines() if line]
    return out


def test_azure_ai_personalizer_rank_reward_activate_and_multislot(server, tmp_path):
    client = PersonalizerClient(server.base, AzureKeyCredential(USER))
    out = client.rank({"contextFeatures": CONTEXT, "actions": ACTIONS, "eventId": "ev-1",
                       "deferActivation": True})
    assert out["eventId"] == "ev-1"
    assert out["rewardActionId"] in {a["id"] for a in ACTIONS}
    assert abs(sum(r["probability"] for r in out["ranking"]) - 1.0) < 1e-6
    client.activate("ev-1")
    client.reward("ev-1", {"value": 0.75})
    multi = client.rank_multi_slot({
        "contextFeatures": CONTEXT, "actions": ACTIONS, "eventId": "ev-2",
        "slots": [{"id": "hero", "baselineAction": "a0"},
                  {"id": "side", "baselineAction": "a1", "excludedActions": ["a3"]}]})
    assert [s["id"] for s in multi["slots"]] == ["hero", "side"]
    shown = [s["rewardActionId"] for s in multi["slots"]]
    assert len(set(shown)) == 2 and shown[1] != "a3"
    client.reward_multi_slot("ev-2", {"reward": [{"slotId": "hero", "value": 1.0},
                                                 {"slotId": "side", "value": 0.0}]})
    client.activate_multi_slot("ev-2")
    ev = tmp_path / "ev"
    decisions = {d["EventId"]: d for d in events(ev, "decisions")}
    assert decisions["ev-1"]["DeferredAction"] is True
    assert decisions["ev-2"]["slot_ids"] == ["hero", "side"]
    rewards = events(ev, "rewards")
    assert {"EventId": "ev-1", "v": 0.75} in [{k: r[k] for k in ("EventId", "v")}
                                             for r in rewards if "v" in r]
    assert {(r.get("slot_id"), r["v"]) for r in rewards if r["EventId"] == "ev-2"
            and "v" in r} == {("hero", 1.0), ("side", 0.0)}


def test_azure_ai_personalizer_administration(server):
    admin = PersonalizerAdministrationClient(server.base, AzureKeyCredential(ADMIN))
    conf = admin.get_service_configuration()
    assert conf["explorationPercentage"] == 0.2 and conf["learningMode"] == "Online"
    conf = admin.update_service_configuration({**conf, "explorationPercentage": 0.5,
                                               "rewardWaitTime": "PT5M",
                                               "logRetentionDays": 30})
    assert conf["explorationPercentage"] == 0.5 and conf["rewardWaitTime"] == "PT5M"
    assert admin.get_service_configuration()["logRetentionDays"] == 30
    with pytest.raises(HttpResponseError) as bad:
        admin.update_service_configuration({**conf, "explorationPercentage": 2})
    assert bad.value.status_code == 400 and bad.value.error.code == "InvalidServiceConfiguration"
    # served decisions follow the new exploration: 0.5 + 0.5/4 for the best, 0.125 else
    client = PersonalizerClient(server.base, AzureKeyCredential(USER))
    ranked = client.rank({"contextFeatures": CONTEXT, "actions": ACTIONS})["ranking"]
    assert sorted(round(r["probability"], 6) for r in ranked) == [0.25] * 4  # tied: uniform
    policy = admin.update_policy({"name": "from-portal", "arguments":
                                  "--cb_explore_adf --epsilon 0.3 --power_t 0 -l 0.01 -q ::"})
    assert policy["name"] == "from-portal" and "--epsilon 0.3" in policy["arguments"]
    assert admin.get_policy() == policy
    assert admin.reset_policy()["name"] == "default"
    signed = b"".join(admin.export_model(signed=True))
    with zipfile.ZipFile(io.BytesIO(signed)) as z:
        assert {"model.vw", "manifest.json"} <= set(z.namelist())
    raw = b"".join(admin.export_model())
    assert raw == zipfile.ZipFile(io.BytesIO(signed)).read("model.vw")
    before = admin.get_model_properties()
    admin.import_model(io.BytesIO(signed))
    after = admin.get_model_properties()
    assert after["lastModifiedTime"] >= before["lastModifiedTime"]
    tampered = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(signed)) as z, zipfile.ZipFile(tampered, "w") as t:
        t.writestr("model.vw", z.read("model.vw")[:-8] + b"\0" * 8)
        t.writestr("manifest.json", z.read("manifest.json"))
    with pytest.raises(HttpResponseError) as bad:
        admin.import_model(io.BytesIO(tampered.getvalue()))
    assert bad.value.status_code == 400 and bad.value.error.code == "InvalidModelImportSignature"
    admin.reset_model()
    with pytest.raises(ResourceNotFoundError):  # no learner has joined anything here
        admin.get_log_properties()
    admin.delete_logs()


def test_admin_routes_need_the_admin_scope(server):
    admin = PersonalizerAdministrationClient(server.base, AzureKeyCredential(USER))
    calls = [admin.get_service_configuration, admin.reset_model, admin.get_policy,
             admin.get_log_properties, lambda: list(admin.list_evaluations()),
             lambda: admin.get_evaluation("e", start_time=T0, end_time=T1),
             lambda: admin.apply_from_evaluation({"evaluationId": "e", "policyName": "p"}),
             lambda: list(admin.list_feature_importances())]
    for call in calls:  # Azure's answer to a key without the permission
        with pytest.raises(HttpResponseError) as refused:
            call()
        assert refused.value.status_code == 403
        assert refused.value.error.code == "PermissionDenied"
    stranger = PersonalizerAdministrationClient(server.base, AzureKeyCredential("nope"))
    with pytest.raises(ClientAuthenticationError) as denied:  # and to an unknown key
        stranger.get_policy()
    assert denied.value.status_code == 401 and denied.value.error.code == "401"
    assert "invalid subscription key" in denied.value.error.message


def test_azure_ai_personalizer_evaluations(evaluation_server):
    """Offline evaluation, applyFromEvaluation and feature importance through the
    published client, on joined logs where a1 wins for u=x and a2 for u=y."""
    from tests.server.test_personalizer_eval import ACTIONS as EVAL_ACTIONS
    from tests.server.test_personalizer_eval import CONTRACT, WINNER

    srv, rewards = evaluation_server
    admin = PersonalizerAdministrationClient(srv.base, AzureKeyCredential(ADMIN))
    admin.create_evaluation("ev-1", CONTRACT)
    found = wait(lambda: admin.get_evaluation("ev-1", start_time=T0, end_time=T1),
                 lambda e: e["status"] != "Running")
    assert found["status"] == "Succeeded", found
    value = {v["name"]: v for v in found["content"]["value"]}
    online = [v for v in value.values() if v["policySource"] == "Online"][0]
    assert abs(online["summary"]["expectedReward"] - rewards.mean()) < 1e-9
    assert value["greedy-ish"]["summary"]["expectedReward"] > 0.6
    assert [e["id"] for e in admin.list_evaluations()] == ["ev-1"]
    admin.apply_from_evaluation({"evaluationId": "ev-1", "policyName": "greedy-ish"})
    assert admin.get_policy()["name"] == "greedy-ish"
    client = PersonalizerClient(srv.base, AzureKeyCredential(ADMIN))
    for u, winner in WINNER.items():  # the model learned on the logs is served
        ranked = wait(lambda u=u: client.rank({"contextFeatures": [{"u": u}],
                                               "actions": EVAL_ACTIONS})["ranking"],
                      lambda r, w=winner: max(r, key=lambda a: a["probability"])["id"] == w)
        assert max(ranked, key=lambda a: a["probability"])["id"] == winner
    admin.create_feature_importance("fi-1", {"name": "fi", "startTime": CONTRACT["startTime"],
                                             "endTime": CONTRACT["endTime"]})
    fi = wait(lambda: admin.get_feature_importance("fi-1"), lambda f: f["status"] != "Running")
    assert fi["status"] == "Succeeded"
    assert fi["featureScores"][0]["featureName"] in ("u", "id", "kind")
    admin.delete_feature_importance("fi-1")
    admin.delete_evaluation("ev-1")
    with pytest.raises(ResourceNotFoundError):
        admin.get_evaluation("ev-1", start_time=T0, end_time=T1)


def wait(get, done, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while True:
        value = get()
        if done(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


def test_azure_cognitiveservices_personalizer_v1(server, tmp_path):
    client = V1Client(server.base, CognitiveServicesCredentials(USER))
    req = RankRequest(actions=[RankableAction(id=a["id"], features=a["features"])
                               for a in ACTIONS], context_features=CONTEXT,
                      excluded_actions=["a2"], event_id="v1-ev")
    out = client.rank(req)
    assert out.event_id == "v1-ev" and out.reward_action_id != "a2"
    assert {r.id for r in out.ranking} == {"a0", "a1", "a3"}
    client.events.reward("v1-ev", value=1.0)
    client.events.activate("v1-ev")
    rewards = events(tmp_path / "ev", "rewards")
    assert any(r["EventId"] == "v1-ev" and r.get("v") == 1.0 for r in rewards)

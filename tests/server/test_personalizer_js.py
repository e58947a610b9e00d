"""Microsoft's published Personalizer JavaScript clients, unchanged, against a real
``bandit-serve`` process: ``@azure/cognitiveservices-personalizer`` 2.0.1 (v1.0: rank,
reward, activate, in both its promise and callback forms) and ``@azure-rest/ai-personalizer``
1.0.0-beta.1 (rank, reward, activate, multi-slot rank/reward/activate, service
configuration, learning settings, model export/import/reset/properties, logs
properties/delete) on the base URL it ships with (``/personalizer/v1.1-preview.3``) and,
through its ``baseUrl``/``apiVersion`` options, on ``?api-version=2022-09-01-preview``.

The node scripts in ``tests/js`` make the calls and print what came back; the packages
are installed from the npm registry with ``npm ci`` into ``tests/js/node_modules``
(ignored by git) and installed again only when ``package-lock.json`` changes."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from tests.server.conftest import ADMIN, USER
from tests.server.test_personalizer_clients import ACTIONS, events

pytestmark = pytest.mark.integration

JS = Path(__file__).resolve().parent.parent / "js"
STAMP = JS / "node_modules" / ".package-lock.sha256"


def tool(name: str) -> str:
    exe = shutil.which(name)
    if exe is None:  # a failure under BANDIT_TEST_NO_SKIP=1 (tests/conftest.py)
        pytest.skip(f"{name} is not installed (Debian packages nodejs and npm, which "
                    ".ci/run installs)")
    return exe


@pytest.fixture(scope="module")
def node() -> str:
    """``node``, with the pinned client packages installed (``npm ci``) unless the
    installed ones came from this very lockfile."""
    exe, npm = tool("node"), tool("npm")
    lock = hashlib.sha256((JS / "package-lock.json").read_bytes()).hexdigest()
    if not (STAMP.exists() and STAMP.read_text() == lock):
        res = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                             cwd=JS, capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, f"npm ci failed:\n{res.stdout}\n{res.stderr}"
        STAMP.write_text(lock)
    return exe


def run(node: str, script: str, *args: str) -> dict:
    res = subprocess.run([node, script, *args], cwd=JS, capture_output=True, text=True,
                         timeout=120, env={**os.environ, "NODE_NO_WARNINGS": "1"})
    assert res.returncode == 0, f"{script} failed:\n{res.stderr}"
    return json.loads(res.stdout)


IDS = {a["id"] for a in ACTIONS}


def test_cognitiveservices_personalizer_v1(node, server, tmp_path):
    out = run(node, "v1.js", server.base, USER, "not-a-key")
    rank = out["rank"]
    assert rank["status"] == 201 and rank["eventId"] == "js-v1-ev"
    assert [r["id"] for r in rank["ranking"]][0] == rank["rewardActionId"] != "a2"
    assert {r["id"] for r in rank["ranking"]} == IDS - {"a2"}
    assert abs(sum(r["probability"] for r in rank["ranking"]) - 1.0) < 1e-6
    assert out["activate"] == {"status": 204} and out["reward"] == {"status": 204}
    again = out["rankCallback"]
    assert again["eventId"] and again["eventId"] != "js-v1-ev"
    assert {r["id"] for r in again["ranking"]} == IDS
    # errors come back as the client's RestError with Personalizer's code
    assert out["rankNoActions"]["statusCode"] == 400
    assert out["rankNoActions"]["code"] == "BadRequest"
    assert "actions" in out["rankNoActions"]["message"]
    assert out["rankBadKey"]["statusCode"] == 401 and out["rankBadKey"]["code"] == "401"
    ev = tmp_path / "ev"
    decisions = {d["EventId"]: d for d in events(ev, "decisions")}
    assert decisions["js-v1-ev"]["DeferredAction"] is True
    chosen = decisions["js-v1-ev"]["c"]["_multi"][decisions["js-v1-ev"]["a"][0] - 1]
    assert rank["rewardActionId"] in json.dumps(chosen)
    assert again["eventId"] in decisions
    rewards = events(ev, "rewards")
    assert {(r["EventId"], r["v"]) for r in rewards if "v" in r} == {
        ("js-v1-ev", 0.5), (again["eventId"], 1.0)}
    assert [r["EventId"] for r in rewards if r.get("activate")] == ["js-v1-ev"]


@pytest.mark.parametrize("generation", ["package", "2022-09-01-preview"])
def test_ai_personalizer_rest(node, server, tmp_path, generation):
    out = run(node, "rest.js", server.base, ADMIN, USER, generation)
    expected_ok = {"rank": 201, "activate": 204, "reward": 204, "rankExcluded": 201,
                   "multiRank": 201, "multiReward": 204, "multiActivate": 204,
                   "getService": 200, "putService": 200, "getServiceAfter": 200,
                   "putPolicy": 200, "getPolicy": 200, "resetPolicy": 200,
                   "modelProperties": 200, "exportSigned": 200, "export": 200, "import": 204,
                   "modelPropertiesAfterImport": 200, "resetModel": 204, "deleteLogs": 204}
    # isUnexpected matches a path with an {eventId} against the URL's whole path (base
    # included), so it calls every reward and activate answer unexpected, from Azure too
    templated = {"activate", "reward", "multiReward", "multiActivate"}
    for name, status in expected_ok.items():
        assert out[name]["status"] == str(status), (name, out[name])
        if generation == "package" and name not in templated:
            assert out[name]["unexpected"] is False, (name, out[name])

    rank = out["rank"]["body"]
    assert rank["eventId"] == "js-rank-1" and rank["rewardActionId"] in IDS
    assert rank["ranking"][0]["id"] == rank["rewardActionId"]
    assert abs(sum(r["probability"] for r in rank["ranking"]) - 1.0) < 1e-6
    excluded = out["rankExcluded"]["body"]
    assert {r["id"] for r in excluded["ranking"]} == IDS - {"a2"}
    assert excluded["rewardActionId"] != "a2"
    bad = out["rankNoActions"]
    assert bad["status"] == "400" and bad["body"]["error"]["code"] == "BadRequest"
    assert bad["errorCode"] == "BadRequest" and bad["unexpected"] in (True, None)
    multi = out["multiRank"]["body"]
    assert multi["eventId"] == "js-multi-1"
    assert [s["id"] for s in multi["slots"]] == ["hero", "side"]
    shown = [s["rewardActionId"] for s in multi["slots"]]
    assert len(set(shown)) == 2 and set(shown) <= IDS and shown[1] != "a3"

    conf = out["getService"]["body"]
    assert conf["explorationPercentage"] == 0.2 and conf["learningMode"] == "Online"
    assert conf["rewardWaitTime"] == "PT10M"
    assert {"rewardWaitTime", "defaultReward", "rewardAggregation", "modelExportFrequency",
            "logRetentionDays"} <= set(conf)
    put = out["putService"]["body"]
    assert put["explorationPercentage"] == 0.5 and put["defaultReward"] == 0.1
    assert put["rewardAggregation"] == "average"  # as the JS SDK's own tests send it
    assert put["logRetentionDays"] == 30
    assert put["rewardWaitTime"] == "PT5M"  # ISO-8601, as both references write it
    assert out["getServiceAfter"]["body"] == put
    refused = out["putServiceBad"]
    assert refused["status"] == "400" and refused["errorCode"] == "InvalidServiceConfiguration"
    assert refused["body"]["error"]["code"] == "InvalidServiceConfiguration"

    policy = out["putPolicy"]["body"]
    assert policy["name"] == "from-js" and "--epsilon 0.3" in policy["arguments"]
    assert out["getPolicy"]["body"] == policy
    assert out["resetPolicy"]["body"]["name"] == "default"

    signed = base64.b64decode(out["exportSigned"]["body"])
    raw = base64.b64decode(out["export"]["body"])
    with zipfile.ZipFile(io.BytesIO(signed)) as z:
        assert {"model.vw", "manifest.json"} <= set(z.namelist())
        assert z.read("model.vw") == raw and raw
    before = out["modelProperties"]["body"]
    after = out["modelPropertiesAfterImport"]["body"]
    assert {"creationTime", "lastModifiedTime"} <= set(before)
    assert after["lastModifiedTime"] >= before["lastModifiedTime"]
    garbage = out["importGarbage"]
    assert garbage["status"] == "400" and garbage["errorCode"]
    assert garbage["body"]["error"]["code"] == garbage["errorCode"]
    logs = out["logProperties"]  # no learner has joined anything here
    assert logs["status"] == "404" and logs["body"]["error"]["code"]

    assert out["userOnAdminRoute"]["status"] == "403"
    assert out["userOnAdminRoute"]["errorCode"] == "PermissionDenied"
    assert out["unknownKey"]["status"] == "401"
    assert "invalid subscription key" in out["unknownKey"]["body"]["error"]["message"]

    ev = tmp_path / "ev"
    decisions = {d["EventId"]: d for d in events(ev, "decisions")}
    assert decisions["js-rank-1"]["DeferredAction"] is True
    assert decisions["js-multi-1"]["slot_ids"] == ["hero", "side"]
    rewards = events(ev, "rewards")
    assert {(r["EventId"], r.get("slot_id"), r["v"]) for r in rewards if "v" in r} == {
        ("js-rank-1", None, 0.75), ("js-multi-1", "hero", 1.0), ("js-multi-1", "side", 0.0)}
    assert sorted(r["EventId"] for r in rewards if r.get("activate")) == [
        "js-multi-1", "js-rank-1"]


def test_ai_personalizer_rest_evaluations(node, evaluation_server):
    """Offline evaluation and applyFromEvaluation on joined logs where a1 wins for u=x and
    a2 for u=y (see ``test_personalizer_eval``)."""
    from tests.server.test_personalizer_eval import CONTRACT

    srv, rewards = evaluation_server
    policy = CONTRACT["policies"][0]
    out = run(node, "eval.js", srv.base, ADMIN, CONTRACT["startTime"], CONTRACT["endTime"],
              policy["name"], policy["arguments"])
    created = out["create"]
    assert created["status"] == "201" and created["body"]["name"] == "from-js"
    assert created["location"].endswith(f"/evaluations/{created['body']['id']}")
    doc = out["get"]["body"]
    assert out["get"]["status"] == "200" and doc["status"] == "completed", doc
    results = {r["name"]: r for r in doc["policyResults"]}
    online = [r for r in results.values() if r["policySource"] == "Online"][0]
    assert abs(online["totalSummary"]["averageReward"] - rewards.mean()) < 1e-9
    assert results[policy["name"]]["totalSummary"]["averageReward"] > 0.6
    assert [e["id"] for e in out["list"]["body"]] == [created["body"]["id"]]
    assert out["apply"]["status"] == "204"
    assert out["policy"]["body"]["name"] == policy["name"]
    assert out["delete"]["status"] == "204"
    assert out["getDeleted"]["status"] == "404"
    assert out["getDeleted"]["errorCode"] == "EvaluationNotFound"

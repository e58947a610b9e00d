"""Changing Personalizer's service configuration on a running loop (real broker, a real
two-worker server and a real learner): exploration and the reward window take effect
without a restart, in every worker and in the learner."""

from __future__ import annotations

import time

import httpx
import pytest

from bandit.demo.stack import Stack
from tests.streaming.kafka_util import read_topic

pytestmark = pytest.mark.integration

Q = "?api-version=2022-09-01-preview"
ACTIONS = [{"id": f"a{i}", "features": [{"kind": str(i)}]} for i in range(4)]


def rank(c: httpx.Client) -> dict:
    r = c.post("/personalizer/rank" + Q, json={"contextFeatures": [{"u": "x"}],
                                               "actions": ACTIONS})
    assert r.status_code == 201, r.text
    return r.json()


def probabilities(body: dict) -> set[float]:
    return {round(a["probability"], 6) for a in body["ranking"]}


def wait_for(predicate, timeout: float, step: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise TimeoutError("condition not reached")


def test_exploration_and_reward_wait_change_on_a_running_loop(broker, prefix, tmp_path):
    with Stack(tmp_path, policy="epsilon:0.2", bootstrap=broker.bootstrap, prefix=prefix,
               reward_wait=3600.0, checkpoint_seconds=0.5, model_poll=0.3,
               workers=2) as stack, httpx.Client(base_url=stack.base, timeout=10) as c:
        # teach the model that a0 wins (the earliest reward finalises a decision at once)
        for _ in range(60):
            body = rank(c)
            value = 1.0 if body["rewardActionId"] == "a0" else 0.0
            r = c.post(f"/personalizer/events/{body['eventId']}/reward" + Q,
                       json={"value": value})
            assert r.status_code == 204, r.text
        # VW's own epsilon 0.2 over 4 actions: 0.85 for the best one, 0.05 for the rest
        wait_for(lambda: all(probabilities(rank(c)) == {0.85, 0.05} for _ in range(20)), 30)
        wait_for(lambda: stack.model()["events_learned"] >= 60 and
                           stack.model()["events_learned"], 30)
        # made before the change, they wait an hour for a reward, however late the
        # learner reads them (the window goes by the decision's time)
        before = [rank(c)["eventId"] for _ in range(3)]
        conf = c.get("/personalizer/configurations/service" + Q).json()
        assert conf["rewardWaitTime"] == "PT1H" and conf["explorationPercentage"] == 0.2
        new = {**conf, "explorationPercentage": 0.6, "rewardWaitTime": "PT5S",
               "defaultReward": 0.25}
        r = c.put("/personalizer/configurations/service" + Q, json=new)
        assert r.status_code == 200, r.text
        assert r.json()["rewardWaitTime"] == "PT5S"
        # epsilon-greedy with 0.6: 0.4 + 0.15 for the best action, 0.15 for the others;
        # every worker (40 requests in a row over two workers) within a few polls
        wait_for(lambda: all(probabilities(rank(c)) == {0.55, 0.15} for _ in range(40)), 15)
        time.sleep(1.0)  # the learner polls the store at every step (≤ 0.2 s)
        after = [rank(c)["eventId"] for _ in range(5)]  # no reward: the default after 5 s
        t0 = time.monotonic()
        # the probes above were made under the new window too, so count nothing: wait for
        # these five decisions themselves to come out of the join
        def joined_after() -> dict | None:
            got = {j["EventId"]: j for j in read_topic(stack.bootstrap, prefix + "joined")}
            return got if set(after) <= set(got) else None
        by_id = wait_for(joined_after, 40, step=0.5)
        assert time.monotonic() - t0 > 4.0  # not at once: the window is 5 s
        assert all(by_id[e]["_label_cost"] == -0.25 for e in after)  # the new default reward
        # the decisions made before the change keep their hour-long window
        assert not set(before) & set(by_id)
        time.sleep(2.0)
        joined = read_topic(stack.bootstrap, prefix + "joined")
        assert not set(before) & {j["EventId"] for j in joined}
        assert stack.model()["events_learned"] == len(joined)  # each joined event learned once


def test_an_evaluation_of_the_loop_s_own_joined_topic_applied_to_the_running_loop(
        broker, prefix, tmp_path):
    """Traffic where a1 wins for u=x and a2 for u=y goes through the loop; an offline
    evaluation runs on the joined topic the learner wrote (the online policy's estimate
    is those events' mean reward exactly), and the evaluated settings applied from it are
    served with the model they learned, which the learner then learns on from."""
    from datetime import datetime, timedelta, timezone

    from tests.server.test_personalizer_eval import ACTIONS as EVAL_ACTIONS
    from tests.server.test_personalizer_eval import WINNER

    with Stack(tmp_path, policy="epsilon:0.5", bootstrap=broker.bootstrap, prefix=prefix,
               reward_wait=3600.0, checkpoint_seconds=0.5, model_poll=0.3) as stack, \
            httpx.Client(base_url=stack.base, timeout=10) as c:
        sent = 0
        for i in range(240):
            u = "xy"[i % 2]
            r = c.post("/personalizer/rank" + Q, json={"contextFeatures": [{"u": u}],
                                                       "actions": EVAL_ACTIONS})
            assert r.status_code == 201, r.text
            body = r.json()
            value = 1.0 if body["rewardActionId"] == WINNER[u] else 0.0
            assert c.post(f"/personalizer/events/{body['eventId']}/reward" + Q,
                          json={"value": value}).status_code == 204
            sent += 1
        joined = wait_for(lambda: (j := read_topic(stack.bootstrap, prefix + "joined"))
                          and len(j) >= sent and j, 40, step=0.5)
        mean = sum(-j["_label_cost"] for j in joined) / len(joined)
        now = datetime.now(timezone.utc)
        window = {"startTime": (now - timedelta(hours=1)).isoformat(),
                  "endTime": (now + timedelta(hours=1)).isoformat()}
        r = c.put("/personalizer/evaluations/live" + Q, json={
            "name": "live", **window,
            "policies": [{"name": "sharp", "arguments": "--cb_explore_adf --epsilon 0.02"}]})
        assert r.status_code == 200, r.text
        q = Q + f"&startTime={window['startTime'][:19]}Z&endTime={window['endTime'][:19]}Z"
        doc = wait_for(lambda: (d := c.get("/personalizer/evaluations/live" + q).json())
                       ["status"] != "Running" and d, 60, step=0.5)
        assert doc["status"] == "Succeeded", doc
        value = {v["name"]: v for v in doc["content"]["value"]}
        online = next(v for v in value.values() if v["policySource"] == "Online")
        assert abs(online["summary"]["expectedReward"] - mean) < 1e-9
        assert value["sharp"]["summary"]["expectedReward"] > mean
        r = c.post("/personalizer/configurations/applyFromEvaluation" + Q,
                   json={"evaluationId": "live", "policyName": "sharp"})
        assert r.status_code == 204, r.text
        assert stack.model()["policy"] == "epsilon:0.02"
        # the applied model already knows the winners: 0.98 + 0.005 on each user's one
        for u, winner in WINNER.items():
            ranked = c.post("/personalizer/rank" + Q, json={
                "contextFeatures": [{"u": u}], "actions": EVAL_ACTIONS}).json()["ranking"]
            top = max(ranked, key=lambda a: a["probability"])
            assert top["id"] == winner and round(top["probability"], 6) == 0.985
        version = stack.model()["version"]

        def more() -> dict | None:
            """Some traffic; the model once the learner published one learned on from the
            applied one (what it learned before it noticed the change is not in it)."""
            for i in range(4):
                u = "xy"[i % 2]
                body = rank_u(c, u, EVAL_ACTIONS)
                assert c.post(f"/personalizer/events/{body['eventId']}/reward" + Q, json={
                    "value": 1.0 if body["rewardActionId"] == WINNER[u] else 0.0}
                ).status_code == 204
            m = stack.model()
            return m if m["version"] != version else None

        info = wait_for(more, 30, step=0.5)
        assert info["policy"] == "epsilon:0.02" and info["events_learned"] > sent


def rank_u(c: httpx.Client, u: str, actions: list) -> dict:
    r = c.post("/personalizer/rank" + Q, json={"contextFeatures": [{"u": u}],
                                               "actions": actions})
    assert r.status_code == 201, r.text
    return r.json()

"""Ground truth for the policy search: the service's own joined logs from the offer
simulator, logged by a real VW policy (the server's ``VWPolicy``, learning every
row), with the true click probability of every offer of every row kept beside them.

Two true values of a candidate spec:

* :func:`counterfactual_truth` — what the search estimates: the expected reward of
  the candidate's progressive policy (learning from the logged rows, in order) on the
  logged requests, from the true click probabilities instead of the logged clicks;
* :func:`online_truth` — the spec deployed on its own against the simulator,
  learning from its own choices (expected reward per request).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import orjson

from bandit.config.settings import Settings
from bandit.core.events import decision_event, joined_event
from bandit.core.policy import VWPolicy
from bandit.core.policy_spec import PolicySpec
from bandit.core.scaling import Standardizer, young_model
from bandit.core.schema import RequestParser
from bandit.core.vw_adapter import VWModel
from bandit.demo.simulator import World
from replay.logs import Logs
from replay.policies import VWProgressive
from tests.replay.simlogs import T0


def policy_logs(path: Path, n: int, *, spec: str = "epsilon:0.2", seed: int = 0, k: int = 10,
                world: World | None = None) -> np.ndarray:
    """Joined DSJSON logged by ``spec`` learning online (the loop with no delay, numeric
    features standardised as the service's learner does);
    returns the (n, k) true click probabilities in each row's ``_multi`` order."""
    world = world or World(seed=seed)
    rng = np.random.default_rng(seed)
    parser = RequestParser(Settings())
    policy = VWPolicy.fresh(PolicySpec.parse(spec), seed)
    policy.model.standardize(Standardizer())  # learning as the service's learner does
    truth = []
    try:
        with open(path, "wb") as f:
            for i in range(n):
                body, offers = world.request(rng, k, event_id=f"s{seed}-{i}")
                req = parser.decide(orjson.dumps(body))
                d = policy.decide(req)
                ts = (T0 + timedelta(seconds=i)).isoformat().replace("+00:00", "Z")
                ev = decision_event(req, d, timestamp=ts)
                mu = world.probabilities(body["context"], offers)
                chosen = d.order[0]
                reward = 1.0 if rng.random() < mu[chosen] else 0.0
                rewards = [{"EventId": req.event_id, "v": 1.0, "kind": "click"}] \
                    if reward else []
                f.write(orjson.dumps(joined_event(ev, reward, rewards)) + b"\n")
                policy.model.learn(req.context, [o.line for o in req.offers], chosen,
                                   reward, d.probabilities[0])
                if young_model(i + 1):
                    policy.model.refresh_scale()  # where the learner publishes young models
                truth.append(mu)
    finally:
        policy.close()
    return np.array(truth)


def column_truth(logs: Logs, truth: np.ndarray) -> np.ndarray:
    """The true click probability of each candidate column of ``logs`` (read with
    ``keep_rows=True``; one row per decision, in the order they were logged)."""
    assert logs.rows is not None and logs.n == truth.shape[0]
    mu = np.zeros(logs.candidates.shape)
    for i in range(logs.n):
        lookup = logs.rows[i][3]
        for j, c in enumerate(logs.candidates[i]):
            if c >= 0:
                mu[i, j] = truth[i, lookup[logs.action_names[int(c)]]]
    return mu


def counterfactual_truth(logs: Logs, spec: str, mu: np.ndarray, seed: int = 0) -> float:
    dist, _ = VWProgressive(str(PolicySpec.parse(spec)), seed).action_dist(logs)
    return float((dist * mu).sum(axis=1).mean())


def logged_truth(logs: Logs, mu: np.ndarray) -> float:
    assert logs.logged_dist is not None
    return float((logs.logged_dist * mu).sum(axis=1).mean())


def online_truth(spec: str, n: int, *, seed: int = 0, k: int = 10,
                 world: World | None = None) -> float:
    """Mean expected reward of ``spec`` deciding and learning on its own for ``n``
    simulated requests (the clicks it learns from are drawn; the value is expected)."""
    world = world or World(seed=seed)
    rng = np.random.default_rng(seed + 10_000)
    parser = RequestParser(Settings())
    policy = VWPolicy.fresh(PolicySpec.parse(spec), seed)
    total = 0.0
    try:
        for i in range(n):
            body, offers = world.request(rng, k, event_id=f"o{seed}-{i}")
            req = parser.decide(orjson.dumps(body))
            pmf = np.asarray(policy.model.predict(req.context, [o.line for o in req.offers]))
            pmf = pmf / pmf.sum()
            mu = world.probabilities(body["context"], offers)
            total += float(pmf @ mu)
            chosen = int(rng.choice(k, p=pmf))
            reward = 1.0 if rng.random() < mu[chosen] else 0.0
            policy.model.learn(req.context, [o.line for o in req.offers], chosen, reward,
                               float(pmf[chosen]))
    finally:
        policy.close()
    return total / n


def taught_model(spec: str, n: int, *, seed: int = 0, k: int = 10,
                 world: World | None = None) -> VWModel:
    """A model of ``spec`` taught from ``n`` uniformly explored simulated requests with
    their expected rewards (a well-informed model, to stand for a strong served one)."""
    world = world or World(seed=seed)
    rng = np.random.default_rng(seed + 20_000)
    parser = RequestParser(Settings())
    model = VWModel(PolicySpec.parse(spec).vw_args(seed))
    for i in range(n):
        body, offers = world.request(rng, k, event_id=f"t{seed}-{i}")
        req = parser.decide(orjson.dumps(body))
        mu = world.probabilities(body["context"], offers)
        chosen = int(rng.integers(k))
        model.learn(req.context, [o.line for o in req.offers], chosen, float(mu[chosen]),
                    1.0 / k)
    return model

"""Learning quality: progressive reward on real data sets turned into bandit streams.

Supervised-to-bandit (Bietti, Agarwal and Langford, "A Contextual Bandit Bake-off",
JMLR 2021): each row of a labelled data set bundled with scikit-learn is one decision;
its features are the context, each class is an offer, and the reward is 1 when the
chosen offer is the row's class, else 0. Rows are shuffled once with a fixed seed and
played ``--passes`` times in the same order. Progressive reward: the reward of each
decision as it is made, before its own feedback is learned (online, no test set).

Side by side, on the same rows in the same order:

* ``service``: the whole loop, end to end, with its default settings: the embedded
  broker, ``bandit-serve`` and ``bandit-learn`` as processes; a client sends each row
  to ``POST /v1/decide`` at a steady ``--rate`` and its reward (0 or 1) to
  ``POST /v1/rewards``. The server learns each reward at once on the model it serves
  (``bandit.server.instant``; ``instant`` in the figures: the updates made since the
  last model swap and those applied again on the learner's models). The learner's
  delay is measured too: for each decision, how many decisions later the first one is
  served by a learner model that has learned it (from the model versions the responses
  name and the events each version had learned).
* ``vw_every_round``: the service's default policy spec and feature encoding in
  process (the same request parser, policy and VW adapter), learning every decision
  before the next.
* ``vw_service_delay``: the same, learning each decision only after the learner's
  measured median delay (in decisions): what the service would earn without learning
  rewards at once in the server.
* ``vw_previous_default``: the previous default spec (``epsilon:0.05``), every round.
* ``linucb`` / ``lingreedy``: MABWiser's LinUCB (alpha 1) and LinGreedy (epsilon 0.1),
  learning every round.
* ``coba_linucb`` / ``coba_lints``: coba's LinUCB (alpha 1) and linear Thompson
  sampling, learning every round (on data sets of at most ``--coba-max-features``
  features: they take minutes a pass on digits' 64).
* ``uniform``: a uniformly random choice.

Learners that draw at random run with ``--seeds`` seeds (the service with
``--service-seeds``); each figure is the mean over seeds with its standard deviation.
Prints JSON: per data set and learner the first-pass, last-pass and overall reward,
and the ratios of the service to the best peer (last pass) and to VW learning every
round (first pass).

    pip install -e '.[bench]'
    python benchmarks/learning_quality.py [--datasets digits,wine] [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bandit.config.settings import Settings  # noqa: E402
from bandit.core.policy import VWPolicy  # noqa: E402
from bandit.core.policy_spec import PolicySpec  # noqa: E402
from bandit.core.scaling import Standardizer, young_model  # noqa: E402
from bandit.core.schema import RequestParser  # noqa: E402
from bandit.demo.stack import Stack  # noqa: E402

PREVIOUS_DEFAULT = "epsilon:0.05"
PEERS = ("linucb", "lingreedy", "coba_linucb", "coba_lints")
DATA_SEED = 0  # the one shuffle of the rows


def load(name: str) -> tuple[np.ndarray, np.ndarray]:
    """A bundled data set's rows and classes (0..k-1), shuffled with :data:`DATA_SEED`."""
    from sklearn import datasets

    loaders = {"digits": datasets.load_digits, "wine": datasets.load_wine,
               "breast_cancer": datasets.load_breast_cancer, "iris": datasets.load_iris}
    if name not in loaders:
        raise SystemExit(f"unknown data set {name!r}; choose from {', '.join(loaders)}")
    x, y = loaders[name](return_X_y=True)
    order = np.random.default_rng(DATA_SEED).permutation(len(y))
    return np.asarray(x, dtype=float)[order], np.asarray(y, dtype=int)[order]


def decide_body(row: np.ndarray, classes: int, event_id: str) -> dict[str, Any]:
    """The request a client sends for one row: its raw feature values, one offer per
    class (identified by its id only)."""
    return {"event_id": event_id,
            "context": {"x": {f"f{j}": float(v) for j, v in enumerate(row)}},
            "offers": [{"id": f"class-{k}"} for k in range(classes)]}


def summary(rewards: Sequence[float], rows: int) -> dict[str, float]:
    r = np.asarray(rewards, dtype=float)
    return {"first_pass": float(r[:rows].mean()), "last_pass": float(r[-rows:].mean()),
            "overall": float(r.mean())}


# -- in-process learners ---------------------------------------------------------------
def publish_points(settings: Settings, rate: float) -> Callable[[int], bool]:
    """Whether the learner publishes a model after ``n`` events learned, at ``rate``
    events a second: the young-model schedule, then every checkpoint interval."""
    every = max(1, round(rate * settings.checkpoint_seconds))
    first = settings.checkpoint_first_events

    def due(n: int) -> bool:
        return young_model(n, first) or n % every == 0
    return due


def run_vw(spec: str, x: np.ndarray, y: np.ndarray, passes: int, seed: int,
           delay: int = 0, standardize: bool = True, rate: float = 100.0) -> list[float]:
    """The service's request parser, policy and VW adapter in process; each decision is
    learned (with its logged probability) ``delay`` decisions after it was made. With
    ``standardize``, the numeric features are standardised as the learner does, the
    snapshot refreshed when it would publish a model at ``rate`` decisions a second."""
    settings = Settings(policy=spec, seed=seed)
    parser = RequestParser(settings)
    policy = VWPolicy.fresh(PolicySpec.parse(spec), seed, settings.ranking_options())
    if standardize:
        policy.model.standardize(Standardizer())
    due = publish_points(settings, rate)
    learned = 0
    classes = int(y.max()) + 1
    pending: list[tuple[Any, int, float, float]] = []
    out: list[float] = []
    i = 0
    for _ in range(passes):
        for row, label in zip(x, y, strict=True):
            req = parser.decide(orjson.dumps(decide_body(row, classes, f"{seed}-{i}")))
            d = policy.decide(req)
            chosen = d.order[0]
            reward = 1.0 if req.offers[chosen].id == f"class-{label}" else 0.0
            out.append(reward)
            pending.append((req, chosen, reward, d.probabilities[0]))
            while len(pending) > delay:
                r, c, v, p = pending.pop(0)
                policy.model.learn(r.context, [o.line for o in r.offers], c, v, p)
                learned += 1
                if standardize and due(learned):
                    policy.model.refresh_scale()
            i += 1
    policy.close()
    return out


def run_mabwiser(kind: str, x: np.ndarray, y: np.ndarray, passes: int,
                 seed: int) -> list[float]:
    """MABWiser's linear bandits, one arm per class, learning every round (the first
    round is a uniform choice: MABWiser needs data before it predicts)."""
    from mabwiser.mab import MAB, LearningPolicy

    lp = LearningPolicy.LinUCB(alpha=1.0) if kind == "linucb" else \
        LearningPolicy.LinGreedy(epsilon=0.1)
    classes = int(y.max()) + 1
    mab = MAB(list(range(classes)), lp, seed=seed)
    rng = np.random.default_rng(seed)
    out: list[float] = []
    fitted = False
    for _ in range(passes):
        for row, label in zip(x, y, strict=True):
            arm = int(mab.predict([row])) if fitted else int(rng.integers(classes))
            reward = 1.0 if arm == label else 0.0
            out.append(reward)
            (mab.partial_fit if fitted else mab.fit)([arm], [reward], [row])
            fitted = True
    return out


def run_coba(kind: str, x: np.ndarray, y: np.ndarray, passes: int, seed: int) -> list[float]:
    """coba's LinUCB (alpha 1) and linear Thompson sampling, one one-hot action per class
    (its default features: 1, a, ax), learning every round with its own probabilities."""
    from coba.learners import LinTSLearner, LinUCBLearner

    classes = int(y.max()) + 1
    actions = [tuple(1.0 if j == a else 0.0 for j in range(classes)) for a in range(classes)]
    learner = LinUCBLearner(alpha=1.0, seed=seed) if kind == "linucb" else \
        LinTSLearner(seed=seed)
    out: list[float] = []
    for _ in range(passes):
        for row, label in zip(x, y, strict=True):
            ctx = [float(v) for v in row]
            action, prob = learner.predict(ctx, actions)[:2]
            reward = 1.0 if actions.index(tuple(action)) == label else 0.0
            out.append(reward)
            learner.learn(ctx, action, reward, prob)
    return out


def run_uniform(x: np.ndarray, y: np.ndarray, passes: int, seed: int) -> list[float]:
    rng = np.random.default_rng(seed)
    classes = int(y.max()) + 1
    return [float(a == b) for a, b in zip(rng.integers(classes, size=len(y) * passes),
                                          np.tile(y, passes), strict=True)]


# -- the service, end to end ---------------------------------------------------------------
def run_service(x: np.ndarray, y: np.ndarray, passes: int, seed: int, rate: float,
                time_limit: float, checkpoint_seconds: float | None = None
                ) -> tuple[list[float], dict[str, Any]]:
    """Play the stream through broker, server and learner (default settings but the
    seed, and ``checkpoint_seconds`` if given). Returns the rewards and the measured
    delays."""
    d = Settings()
    if checkpoint_seconds is not None:
        d = replace(d, checkpoint_seconds=checkpoint_seconds)
    classes = int(y.max()) + 1
    rewards: list[float] = []
    versions: list[int] = []
    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack(tmp, policy=d.policy, reward_wait=d.reward_wait,
                      checkpoint_seconds=d.checkpoint_seconds, model_poll=d.model_poll,
                      # every version stays listed, to tell what each decision's model had learned
                      extra_env={"BANDIT_SEED": str(seed), "BANDIT_MODEL_KEEP": "100000"})
        stack.start()
        try:
            stack.wait_learner()  # a learner that runs already, as in a deployment
            with httpx.Client(base_url=stack.base, timeout=10) as c:
                start = time.monotonic()
                i = 0
                for _ in range(passes):
                    for row, label in zip(x, y, strict=True):
                        due = start + i / rate
                        pause = due - time.monotonic()
                        if pause > 0:
                            time.sleep(pause)
                        if time.monotonic() - start > time_limit:
                            raise TimeoutError(f"the service run passed {time_limit:.0f} s "
                                               f"after {i} decisions")
                        eid = f"lq-{seed}-{i}"
                        r = c.post("/v1/decide", json=decide_body(row, classes, eid))
                        r.raise_for_status()
                        out = r.json()
                        reward = 1.0 if out["slots"][0]["id"] == f"class-{label}" else 0.0
                        c.post("/v1/rewards", json={"event_id": eid, "reward": reward}
                               ).raise_for_status()
                        rewards.append(reward)
                        versions.append(int(out["model_version"]))
                        i += 1
                seconds = time.monotonic() - start
                instant = c.get("/v1/model").json().get("instant")
            learned = {int(m["version"]): int(m["events_learned"]) for m in
                       (orjson.loads(f.read_bytes())
                        for f in (Path(tmp) / "models").glob("model-*.json"))}
        finally:
            stack.stop()
    return rewards, {"seconds": round(seconds, 1), **delays(versions, learned),
                     "instant": instant}


def delays(versions: list[int], learned: dict[int, int]) -> dict[str, Any]:
    """For decision ``i``: the number of decisions until the first one served by a model
    that had learned more than ``i`` events (the learner learns them in about the order
    they were made: each reward follows its decision at once)."""
    n = len(versions)
    served = [learned.get(v, 0) for v in versions]
    # first decision index served by a model with more than i events: scan backwards
    out: list[int] = []
    j = 0
    for i in range(n):
        j = max(j, i + 1)
        while j < n and served[j] <= i:
            j += 1
        if j < n:
            out.append(j - i)
    first = next((k for k, s in enumerate(served) if s > 0), None)
    return {"delay_median": int(statistics.median(out)) if out else None,
            "delay_p90": int(np.percentile(out, 90)) if out else None,
            "first_learned_model_at_decision": first,
            "models_served": len(set(versions))}


def in_process(spec: str, x: np.ndarray, y: np.ndarray, passes: int, delay: int,
               rate: float) -> dict[str, Callable[[int], list[float]]]:
    """Every in-process learner: a seed → its rewards."""
    return {
        "vw_every_round": lambda s: run_vw(spec, x, y, passes, s, rate=rate),
        "vw_service_delay": lambda s: run_vw(spec, x, y, passes, s, delay, rate=rate),
        "vw_previous_default": lambda s: run_vw(PREVIOUS_DEFAULT, x, y, passes, s,
                                                standardize=False),
        "linucb": lambda s: run_mabwiser("linucb", x, y, passes, s),
        "lingreedy": lambda s: run_mabwiser("lingreedy", x, y, passes, s),
        "coba_linucb": lambda s: run_coba("linucb", x, y, passes, s),
        "coba_lints": lambda s: run_coba("lints", x, y, passes, s),
        "uniform": lambda s: run_uniform(x, y, passes, s),
    }


def spread(runs: list[dict[str, float]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("first_pass", "last_pass", "overall"):
        vals = [r[key] for r in runs]
        out[key] = round(statistics.fmean(vals), 4)
        out[key + "_sd"] = round(statistics.stdev(vals), 4) if len(vals) > 1 else 0.0
    out["runs"] = len(runs)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="digits,wine,breast_cancer")
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--seeds", type=int, default=5, help="seeds of the in-process learners")
    ap.add_argument("--service-seeds", type=int, default=2)
    ap.add_argument("--rate", type=float, default=100.0, help="service decisions per second")
    ap.add_argument("--time-limit", type=float, default=300.0,
                    help="seconds one service run may take")
    ap.add_argument("--no-service", action="store_true", help="in-process learners only")
    ap.add_argument("--checkpoint-seconds", type=float, default=None,
                    help="the service's BANDIT_CHECKPOINT_SECONDS (default: the default)")
    ap.add_argument("--coba-max-features", type=int, default=32,
                    help="run coba's learners on data sets with at most this many features")
    ap.add_argument("--quick", action="store_true", help="1 pass of wine, 2 seeds")
    args = ap.parse_args()
    if args.quick:
        args.datasets, args.passes, args.seeds, args.service_seeds = "wine", 2, 2, 1
    spec = Settings().policy
    report: dict[str, Any] = {"benchmark": "learning_quality", "cpus": os.cpu_count(),
                              "default_policy": spec, "passes": args.passes,
                              "checkpoint_seconds": args.checkpoint_seconds or
                              Settings().checkpoint_seconds,
                              "rate": args.rate, "data_seed": DATA_SEED, "datasets": {}}
    for name in args.datasets.split(","):
        x, y = load(name)
        rows = len(y)
        res: dict[str, Any] = {"rows": rows, "features": x.shape[1],
                               "classes": int(y.max()) + 1, "learners": {}}
        seeds = range(args.seeds)
        delay = 0
        if not args.no_service:
            runs, measured = [], []
            for s in range(args.service_seeds):
                rewards, info = run_service(x, y, args.passes, s, args.rate, args.time_limit,
                                            args.checkpoint_seconds)
                runs.append(summary(rewards, rows))
                measured.append({**info, **{k: round(v, 4) for k, v in runs[-1].items()}})
            res["learners"]["service"] = spread(runs)
            res["service_runs"] = measured
            known = [m["delay_median"] for m in measured if m["delay_median"] is not None]
            # no learned model served at all: as if it learned nothing
            delay = int(statistics.median(known)) if known else rows * args.passes
            res["service_delay_decisions"] = delay
        learners = in_process(spec, x, y, args.passes, delay, args.rate)
        if x.shape[1] > args.coba_max_features:  # its updates cost O(d²), d = features × classes
            res["skipped"] = {k: f"more than {args.coba_max_features} features"
                              for k in ("coba_linucb", "coba_lints")}
            del learners["coba_linucb"], learners["coba_lints"]
        if args.no_service:
            del learners["vw_service_delay"]
        for label, fn in learners.items():
            res["learners"][label] = spread([summary(fn(s), rows) for s in seeds])
        got = res["learners"]
        best = max((k for k in PEERS if k in got), key=lambda k: got[k]["last_pass"])
        ratios: dict[str, Any] = {"best_peer": best}
        for who in ("service", "vw_every_round"):
            if who in got:
                ratios[f"{who}_last_pass_vs_best_peer"] = round(
                    got[who]["last_pass"] / got[best]["last_pass"], 4)
                ratios[f"{who}_first_pass_vs_vw_every_round"] = round(
                    got[who]["first_pass"] / got["vw_every_round"]["first_pass"], 4)
        res["ratios"] = ratios
        report["datasets"][name] = res
        print(f"{name}: done", file=sys.stderr, flush=True)
    print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()

"""Replay estimator speed: IPS + SNIPS + DR with bootstrap intervals on 1,000,000 logged
events with 20 offers, and, in the same run, obp's estimators on the same arrays.

obp pins old numpy/pandas, so it never lives in this project's environment: pass
``--obp-python`` pointing at an interpreter that has ``obp`` installed (see
tests/data/obd/make_reference.py); the arrays are handed over in an ``.npz`` file
and obp runs the same three estimators with the same number of resamples.

Target: ≥ 10× obp, ≤ 10 s total here.

    python benchmarks/replay_speed.py [--rows 1000000] [--bootstrap 100] [--obp-python PATH]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from replay.estimators import DR, IPS, SNIPS, OPEData, bootstrap_many  # noqa: E402

OBP_SCRIPT = r"""
import sys, time, json
import numpy as np
from obp.ope import (InverseProbabilityWeighting, SelfNormalizedInverseProbabilityWeighting,
                     DoublyRobust)
d = np.load(sys.argv[1])
B = int(sys.argv[2])
n, k = d["q"].shape
kw = dict(reward=d["reward"], action=d["action"], pscore=d["pscore"],
          action_dist=d["pi"][:, :, None], position=np.zeros(n, int))
t = time.perf_counter()
out = {}
for name, est, extra in (("ips", InverseProbabilityWeighting(), {}),
                         ("snips", SelfNormalizedInverseProbabilityWeighting(), {}),
                         ("dr", DoublyRobust(), {"estimated_rewards_by_reg_model":
                                                 d["q"][:, :, None]})):
    v = est.estimate_policy_value(**kw, **extra)
    ci = est.estimate_interval(**kw, **extra, n_bootstrap_samples=B, random_state=0)
    out[name] = [float(v), ci["95.0% CI (lower)"], ci["95.0% CI (upper)"]]
out["seconds"] = time.perf_counter() - t
print(json.dumps(out))
"""


def make_arrays(n: int, k: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1, (n, k)).astype(np.float64)
    p_log = np.exp(logits)
    p_log /= p_log.sum(axis=1, keepdims=True)
    action = (p_log.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
    mu = 1 / (1 + np.exp(-(logits - 2)))
    reward = (rng.random(n) < mu[np.arange(n), action]).astype(np.float64)
    pi = np.exp(2 * logits)
    pi /= pi.sum(axis=1, keepdims=True)
    q = np.clip(mu + rng.normal(0, 0.05, (n, k)), 0, 1)
    return {"reward": reward, "action": action, "pscore": p_log[np.arange(n), action],
            "pi": pi, "q": q}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--offers", type=int, default=20)
    ap.add_argument("--bootstrap", type=int, default=100)
    ap.add_argument("--obp-python", help="an interpreter with obp installed")
    ap.add_argument("--quick", action="store_true", help="100,000 rows, for a smoke test")
    args = ap.parse_args()
    n = 100_000 if args.quick else args.rows
    arrays = make_arrays(n, args.offers)
    t0 = time.perf_counter()
    a, rows = arrays["action"], np.arange(n)
    data = OPEData(arrays["reward"], arrays["pscore"], arrays["pi"][rows, a],
                   arrays["q"][rows, a], (arrays["pi"] * arrays["q"]).sum(axis=1))
    ests = [IPS(), SNIPS(), DR()]
    values = {e.label: e.value(data) for e in ests}
    cis = bootstrap_many(ests, data, args.bootstrap, seed=0)
    ours = time.perf_counter() - t0
    out: dict[str, object] = {
        "benchmark": "replay_speed", "rows": n, "offers": args.offers,
        "bootstrap": args.bootstrap, "cpus": os.cpu_count(),
        "seconds": round(ours, 3), "events_per_s": round(n / ours, 1),
        "estimates": {k: {"value": v, "ci": cis[k]} for k, v in values.items()},
        "target_le_10s": ours <= 10.0,
    }
    if args.obp_python:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "arrays.npz"
            np.savez(path, **arrays)
            res = subprocess.run([args.obp_python, "-c", OBP_SCRIPT, str(path),
                                  str(args.bootstrap)], capture_output=True, text=True,
                                 timeout=3600)
            if res.returncode != 0:
                out["obp_error"] = res.stderr.strip().splitlines()[-1:]
            else:
                obp = orjson.loads(res.stdout.strip().splitlines()[-1])
                out["obp_seconds"] = round(obp["seconds"], 3)
                out["speedup_vs_obp"] = round(obp["seconds"] / ours, 2)
                out["obp_values"] = {k: obp[k][0] for k in ("ips", "snips", "dr")}
                out["values_match_obp"] = all(
                    abs(values[k] - obp[k][0]) <= 1e-9 * max(1.0, abs(obp[k][0]))
                    for k in ("ips", "snips", "dr"))
                out["target_ge_10x_obp"] = obp["seconds"] / ours >= 10
    else:
        out["obp"] = "not run (pass --obp-python)"
    print(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()

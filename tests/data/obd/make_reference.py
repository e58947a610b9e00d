"""Reference values from the Open Bandit Pipeline (obp 0.4.1) for tests/replay.

Run in a throwaway environment, never as a project dependency (obp pins old
numpy/pandas):

    python3 -m venv /tmp/obpenv && /tmp/obpenv/bin/pip install obp==0.4.1 \
        "pandas<2" "numpy==1.26.4" "scipy<1.13" "matplotlib<3.9" "scikit-learn<1.5"
    /tmp/obpenv/bin/python tests/data/obd/make_reference.py > tests/data/obd/reference.json

It evaluates the uniform-random policy on the ``bts`` logs of the ``men`` campaign
of the 10,000-row samples shipped inside obp's wheel, with obp's IPW and SNIPW, and
records the on-policy truth (mean click of the ``random`` logs). It also writes the
trimmed sample this repository ships (the columns the tests read; the user-item
affinity columns are dropped, which changes none of the values above).
"""

import csv
import json
import sys
from pathlib import Path

import numpy as np
import obp
from obp.dataset import OpenBanditDataset
from obp.ope import InverseProbabilityWeighting, SelfNormalizedInverseProbabilityWeighting

SRC = Path(obp.__file__).parent / "dataset" / "obd"
HERE = Path(__file__).parent
KEEP = ["", "timestamp", "item_id", "position", "click", "propensity_score",
        "user_feature_0", "user_feature_1", "user_feature_2", "user_feature_3"]

for behavior in ("bts", "random"):
    out = HERE / behavior / "men"
    out.mkdir(parents=True, exist_ok=True)
    with open(SRC / behavior / "men" / "men.csv", newline="") as f, \
            open(out / "men.csv", "w", newline="") as g:
        r = csv.DictReader(f)
        w = csv.DictWriter(g, KEEP)
        w.writeheader()
        for rec in r:
            w.writerow({k: rec[k] for k in KEEP})
    (out / "item_context.csv").write_bytes((SRC / behavior / "men" / "item_context.csv")
                                            .read_bytes())

ds = OpenBanditDataset(behavior_policy="bts", campaign="men", data_path=SRC)
fb = ds.obtain_batch_bandit_feedback()
n, k, L = fb["n_rounds"], fb["n_actions"], ds.len_list
dist = np.ones((n, k, L)) / k
kw = dict(reward=fb["reward"], action=fb["action"], position=fb["position"],
          pscore=fb["pscore"], action_dist=dist)
ipw = InverseProbabilityWeighting().estimate_policy_value(**kw)
snipw = SelfNormalizedInverseProbabilityWeighting().estimate_policy_value(**kw)
truth = OpenBanditDataset.calc_on_policy_policy_value_estimate(
    behavior_policy="random", campaign="men", data_path=SRC)
json.dump({"obp_version": obp.__version__, "campaign": "men", "behavior": "bts",
           "policy": "uniform", "n_rounds": int(n), "n_actions": int(k), "len_list": int(L),
           "ipw": float(ipw), "snipw": float(snipw), "on_policy_random_mean_click": float(truth)},
          sys.stdout, indent=2)
print()

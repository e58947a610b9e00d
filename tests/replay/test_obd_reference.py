"""The correctness anchor: the Open Bandit Dataset sample (men campaign) against
reference values computed with obp 0.4.1 (tests/data/obd/make_reference.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from replay.estimators import by_name
from replay.evaluate import evaluate
from replay.policies import Uniform
from replay.readers import read_obd

DATA = Path(__file__).parent.parent / "data" / "obd"
REF = json.loads((DATA / "reference.json").read_text())


def test_ips_and_snips_equal_obp_and_dr_covers_the_on_policy_truth():
    logs = read_obd(DATA, "bts", "men")
    assert logs.n == REF["n_rounds"] and logs.n_actions == REF["n_actions"]
    assert logs.n_positions == REF["len_list"] and logs.skipped == 0
    ev = evaluate(logs, [Uniform()], by_name("ips,snips,dr"), n_bootstrap=200, seed=0)
    est = ev.policies["uniform"].estimates
    # the README: "IPS and SNIPS equal the Open Bandit Pipeline's to 4e-15" (relative)
    from tests.readme_figures import figure

    tol = float(figure(r"Open Bandit Pipeline's to ([\de.-]+) \(relative\)"))
    assert abs(est["ips"].value - REF["ipw"]) <= tol * REF["ipw"]
    assert abs(est["snips"].value - REF["snipw"]) <= tol * REF["snipw"]
    # the truth: the uniform-random policy's own logs of the same campaign
    random_logs = read_obd(DATA, "random", "men")
    truth = float(random_logs.reward.mean())
    assert np.isclose(truth, REF["on_policy_random_mean_click"])
    lo, hi = est["dr"].ci
    assert lo <= truth <= hi, (lo, truth, hi)


def test_random_logs_are_on_policy_for_the_uniform_policy():
    """On the random logs every propensity is 1/34 per position, so IPS of the uniform
    policy is exactly the mean click."""
    logs = read_obd(DATA, "random", "men")
    ev = evaluate(logs, [Uniform()], by_name("ips,snips"), n_bootstrap=0)
    est = ev.policies["uniform"].estimates
    assert est["ips"].value == pytest.approx(logs.reward.mean(), rel=1e-6)
    assert est["snips"].value == pytest.approx(logs.reward.mean(), rel=1e-6)

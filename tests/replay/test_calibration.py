"""ECE, reliability curves and AUC against hand-computed and reference values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from replay.calibration import auc, ece, head_report, plot, reliability_curve, report


def test_ece_by_hand():
    # bin [0, 0.5): predictions 0.1, 0.3, outcomes 0, 1 → |0.5 - 0.2| = 0.3, weight 2
    # bin [0.5, 1]: predictions 0.9, 0.9, outcomes 1, 1 → |1 - 0.9| = 0.1, weight 2
    p, y = [0.1, 0.3, 0.9, 0.9], [0, 1, 1, 1]
    assert ece(p, y, bins=2) == pytest.approx(0.2)
    curve = reliability_curve(p, y, bins=2)
    assert [(b.lo, b.hi, b.weight) for b in curve] == [(0.0, 0.5, 2.0), (0.5, 1.0, 2.0)]
    assert curve[0].predicted == pytest.approx(0.2) and curve[0].observed == 0.5


def test_a_calibrated_predictor_has_small_ece_and_a_shifted_one_does_not():
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 0.3, 50000)
    y = (rng.random(len(p)) < p).astype(float)
    assert ece(p, y) < 0.01
    assert ece(p + 0.1, y) == pytest.approx(0.1, abs=0.01)
    assert ece(p, y, strategy="quantile") < 0.01


def test_auc_agrees_with_scikit_learn_with_ties_and_weights():
    rng = np.random.default_rng(1)
    p = np.round(rng.uniform(0, 1, 2000), 1)  # many ties
    y = (rng.random(len(p)) < p).astype(float)
    w = rng.uniform(0.1, 3, len(p))
    assert auc(p, y) == pytest.approx(roc_auc_score(y, p))
    assert auc(p, y, w) == pytest.approx(roc_auc_score(y, p, sample_weight=w))
    assert math.isnan(auc([0.1, 0.2], [1, 1]))


def test_report_per_head_and_plot(tmp_path):
    rng = np.random.default_rng(2)
    p = rng.uniform(0, 0.5, 5000)
    y = (rng.random(len(p)) < p).astype(float)
    out = report({"click": p, "conversion": p / 5}, {"click": y, "conversion": y})
    assert set(out) == {"click", "conversion"}
    assert out["click"].ece < 0.03 < out["conversion"].ece
    assert out["click"].as_dict()["curve"][0]["weight"] > 0
    assert head_report("click", p, y).events == 5000
    png = plot(out, tmp_path / "reliability.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="no outcomes for head"):
        report({"value": p}, {"click": y})


@pytest.mark.parametrize("args", [([], []), ([0.1], [0, 1]), ([float("inf")], [1])])
def test_bad_input(args):
    with pytest.raises(ValueError):
        ece(*args)

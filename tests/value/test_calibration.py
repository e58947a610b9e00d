"""Isotonic and Platt calibrators, and the window that refits them."""

from __future__ import annotations

import numpy as np
import pytest

from bandit.value.calibration import CalibrationWindow, Isotonic, Platt, fit
from replay.calibration import ece


def _miscalibrated(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scores whose true probability is score² (an overconfident head)."""
    rng = np.random.default_rng(seed)
    s = rng.uniform(0, 1, n)
    p = s ** 2
    return s, (rng.random(n) < p).astype(float), p


def test_pool_adjacent_violators_by_hand():
    iso = Isotonic.fit([1, 2, 3, 4, 5], [0, 1, 0, 1, 1])
    # (0), (1, 0) pooled to 0.5, then (1), (1)
    assert iso.y == (0.0, 0.5, 1.0)
    assert list(iso(np.array([0.0, 1.0, 2.5, 5.0, 9.0]))) == [0.0, 0.0, 0.5, 1.0, 1.0]


def test_tied_predictions_are_one_point():
    iso = Isotonic.fit([1, 1, 2], [0, 1, 1])
    assert iso.x == (1.0, 2.0) and iso.y == (0.5, 1.0)


def test_isotonic_is_monotone_and_weighted_means_hold():
    s, y, _ = _miscalibrated(5000, 0)
    w = np.random.default_rng(1).uniform(0.5, 2, len(s))
    iso = Isotonic.fit(s, y, w)
    assert all(a < b for a, b in zip(iso.x, iso.x[1:], strict=False))
    assert all(a <= b for a, b in zip(iso.y, iso.y[1:], strict=False))
    # the fit preserves the weighted mean (each block is its weighted mean)
    assert (w * iso(s)).sum() / w.sum() == pytest.approx((w * y).sum() / w.sum(), abs=0.02)


@pytest.mark.parametrize("method", ["isotonic", "platt"])
def test_calibration_lowers_ece_out_of_sample(method):
    s, y, _ = _miscalibrated(20000, 2)
    s2, y2, _ = _miscalibrated(20000, 3)
    cal = fit(method, s, y)
    before, after = ece(s2, y2), ece(cal(s2), y2)
    assert before > 0.1
    assert after < (0.02 if method == "isotonic" else 0.05), (before, after)


def test_platt_recovers_a_logistic_link():
    rng = np.random.default_rng(4)
    s = rng.normal(0, 1, 50000)
    y = (rng.random(len(s)) < 1 / (1 + np.exp(-(2.0 * s - 1.0)))).astype(float)
    pl = Platt.fit(s, y)
    assert pl.a == pytest.approx(2.0, abs=0.1) and pl.b == pytest.approx(-1.0, abs=0.1)


@pytest.mark.parametrize("bad", [
    ([], [], None), ([0.1, float("nan")], [0, 1], None), ([0.1], [0, 1], None),
    ([0.1, 0.2], [0, 1], [-1, 1]), ([0.1, 0.2], [0, 1], [0, 0]),
])
def test_bad_input_is_refused(bad):
    with pytest.raises(ValueError):
        Isotonic.fit(*bad)
    with pytest.raises(ValueError):
        Platt.fit(*bad)


def test_the_window_refits_on_its_rule_and_ignores_non_finite_events():
    win = CalibrationWindow("isotonic", size=500, min_events=100, refresh_every=50)
    rng = np.random.default_rng(5)
    refits = [win.add(float(x), float(rng.random() < x * x)) for x in rng.uniform(0, 1, 300)]
    assert [i for i, r in enumerate(refits) if r] == [99, 149, 199, 249, 299]
    assert win.current is not None and win.fits == 5
    assert not win.add(float("nan"), 1.0) and not win.add(0.5, 1.0, float("inf"))
    assert win.state() == {"method": "isotonic", "events": 300, "fits": 5, "fitted": True}
    with pytest.raises(ValueError):
        CalibrationWindow("beta")
    with pytest.raises(ValueError):
        CalibrationWindow(size=10, min_events=20)


def test_an_unfitted_window_passes_predictions_through():
    win = CalibrationWindow(min_events=10, size=10)
    assert list(win(np.array([0.3, 2.0]))) == [0.3, 2.0]

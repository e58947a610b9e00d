"""One conformance test for every estimator: unbiased on seeded simulated logs with
known truth, nominal interval coverage, and the invariances each one promises."""

from __future__ import annotations

import numpy as np
import pytest

from replay.estimators import DM, DR, IPS, SNDR, SNIPS, OPEData, bootstrap_many, by_name

K = 5


THETA = np.random.default_rng(1234).normal(0, 1, (K, 3))  # the world is fixed


def mu(x):
    return 1 / (1 + np.exp(-(x @ THETA.T) + 1.0))


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def logging(x):
    return softmax(0.5 * (x @ THETA.T)[:, ::-1])  # deliberately unlike the target


def target(x):
    return softmax(2.0 * (x @ THETA.T))


# the exact value of the target policy, from a large independent sample of contexts
_XT = np.random.default_rng(99).normal(0, 1, (400_000, 3))
TRUTH = float((target(_XT) * mu(_XT)).sum(axis=1).mean())


def simulate(seed: int, n: int = 2000, q_bias: float = 0.0):
    """Contexts x ~ N(0, 1)^3; true click prob μ(x, a) = sigmoid(x·θ_a - 1); logging is
    a softmax (known probabilities); the target policy is a different softmax."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (n, 3))
    p_log = logging(x)
    a = (p_log.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
    m = mu(x)
    r = (rng.random(n) < m[np.arange(n), a]).astype(float)
    pi_all = target(x)
    q = np.clip(m + q_bias, 0, 1)
    d = OPEData(r, p_log[np.arange(n), a], pi_all[np.arange(n), a], q[np.arange(n), a],
                (pi_all * q).sum(axis=1))
    return d, TRUTH


ALL = [IPS(), SNIPS(), DM(), DR(), SNDR()]


@pytest.mark.parametrize("est", ALL, ids=lambda e: e.label)
def test_conformance(est):
    # 1. unbiased: the mean over 200 seeded logs is within 3 standard errors of the truth
    #    (DM is unbiased here because it is given the true reward model)
    values, covered_normal = [], 0
    for seed in range(200):
        d, _ = simulate(seed)
        values.append(est.value(d))
        lo, hi = est.normal_interval(d, 0.05)
        covered_normal += lo <= TRUTH <= hi
    values = np.array(values)
    se = values.std(ddof=1) / np.sqrt(len(values))
    assert abs(values.mean() - TRUTH) < 3 * se + 1e-4, (values.mean(), TRUTH, se)
    # 2. the normal interval covers the truth at about its nominal 95% rate
    #    (binomial sd over 200 runs is 1.5%; 0.90 leaves room for the small-n bias of the
    #    self-normalised ratios)
    assert covered_normal / 200 >= 0.90, covered_normal
    # 3. the seeded bootstrap interval covers it too (fewer runs: it is 100× the work)
    covered_boot = 0
    for seed in range(60):
        d, _ = simulate(seed)
        e = est.estimate(d, n_bootstrap=100, seed=seed)
        covered_boot += e.ci[0] <= TRUTH <= e.ci[1]
        assert e.method == "bootstrap" and e.ci[0] <= e.value <= e.ci[1]
    assert covered_boot / 60 >= 0.85, covered_boot
    # 4. invariances: scaling rewards (and the model) by c scales every estimate by c
    d, _ = simulate(7)
    c = 3.5
    scaled = OPEData(d.reward * c, d.pscore, d.pi, d.q_hat * c, d.v_hat * c)
    assert est.value(scaled) == pytest.approx(c * est.value(d), rel=1e-12)
    # shifting rewards (and the model) by b shifts every estimate but IPS by b
    b = 0.25
    shifted = OPEData(d.reward + b, d.pscore, d.pi, d.q_hat + b, d.v_hat + b)
    if isinstance(est, IPS):
        w = d.pi / d.pscore
        assert est.value(shifted) == pytest.approx(est.value(d) + b * w.mean(), rel=1e-12)
    else:
        assert est.value(shifted) == pytest.approx(est.value(d) + b, rel=1e-12)
    # 5. the same seed gives the same interval
    assert est.estimate(d, n_bootstrap=50, seed=3).ci == est.estimate(d, n_bootstrap=50,
                                                                       seed=3).ci


def test_dr_stays_unbiased_with_a_wrong_reward_model_and_dm_does_not():
    dr, dm = [], []
    for seed in range(150):
        d, _ = simulate(seed, q_bias=0.1)
        dr.append(DR().value(d))
        dm.append(DM().value(d))
    dr_arr, dm_arr = np.array(dr), np.array(dm)
    assert abs(dr_arr.mean() - TRUTH) < 3 * dr_arr.std(ddof=1) / np.sqrt(150) + 1e-4
    assert dm_arr.mean() - TRUTH > 0.05  # DM inherits the model's bias


def test_on_policy_logs_give_the_mean_reward():
    d, _ = simulate(3)
    same = OPEData(d.reward, d.pscore, d.pscore, d.q_hat, d.v_hat)  # π = logging policy
    assert IPS().value(same) == pytest.approx(d.reward.mean(), rel=1e-12)
    assert SNIPS().value(same) == pytest.approx(d.reward.mean(), rel=1e-12)


def test_clipping_bounds_the_weights():
    d, _ = simulate(4)
    clipped = IPS(clip=2.0)
    w = np.minimum(d.pi / d.pscore, 2.0)
    assert clipped.value(d) == pytest.approx(float(np.mean(w * d.reward)))
    assert clipped.label == "ips@2"


def plain_bootstrap(d: OPEData, n_boot: int, seed: int) -> dict[str, tuple[float, float]]:
    """The percentile bootstrap written out the slow way: gather each resample's rows
    and compute IPS and SNIPS on them (the same generator and draws as the fast one)."""
    rng = np.random.default_rng(seed)
    w = d.pi / d.pscore
    ips, snips = [], []
    for _ in range(n_boot):
        idx = rng.integers(0, d.n, d.n, dtype=np.int64)
        ips.append(np.mean(d.reward[idx] * w[idx]))
        snips.append(np.sum(d.reward[idx] * w[idx]) / np.sum(w[idx]))
    return {name: (float(np.quantile(v, 0.025)), float(np.quantile(v, 0.975)))
            for name, v in (("ips", ips), ("snips", snips))}


def test_bootstrap_many_matches_a_plain_bootstrap_and_single_estimators():
    d, _ = simulate(5)
    many = bootstrap_many([IPS(), SNIPS()], d, 80, seed=11)
    plain = plain_bootstrap(d, 80, seed=11)
    for name in ("ips", "snips"):
        assert many[name] == pytest.approx(plain[name], rel=1e-12), name
    assert IPS().estimate(d, n_bootstrap=80, seed=11).ci == pytest.approx(plain["ips"],
                                                                          rel=1e-12)
    # the interval holds the point estimate and has the width the normal theory gives
    # (within the 80-resample noise of a percentile interval)
    lo, hi = IPS().normal_interval(d, 0.05)
    assert many["ips"][0] < IPS().value(d) < many["ips"][1]
    assert (many["ips"][1] - many["ips"][0]) == pytest.approx(hi - lo, rel=0.25)


def test_bad_inputs_are_refused():
    r = np.array([1.0, 0.0])
    with pytest.raises(ValueError, match="pscore"):
        OPEData(r, np.array([0.5, 0.0]), np.array([0.5, 0.5]))
    with pytest.raises(ValueError, match="shape"):
        OPEData(r, np.array([0.5]), np.array([0.5, 0.5]))
    with pytest.raises(ValueError, match="needs reward-model"):
        DR().estimate(OPEData(r, np.array([0.5, 0.5]), np.array([0.5, 0.5])))
    with pytest.raises(ValueError, match="unknown estimator"):
        by_name("ips,magic")


def test_block_bootstrap_matches_the_row_bootstrap_on_large_logs(monkeypatch):
    """Above BLOCK_ABOVE rows the bootstrap resamples blocks; on independent rows its
    interval matches the row bootstrap's to within resampling noise."""
    import replay.estimators as E

    d, _ = simulate(8, n=300_000)
    blocked = bootstrap_many([IPS(), SNIPS(), DR()], d, 200, seed=1)
    monkeypatch.setattr(E, "BLOCK_ABOVE", 10**9)
    rows = bootstrap_many([IPS(), SNIPS(), DR()], d, 200, seed=1)
    for name in ("ips", "snips", "dr"):
        w_block = blocked[name][1] - blocked[name][0]
        w_rows = rows[name][1] - rows[name][0]
        assert abs(w_block - w_rows) < 0.15 * w_rows, (name, blocked[name], rows[name])
        mid_b, mid_r = sum(blocked[name]) / 2, sum(rows[name]) / 2
        assert abs(mid_b - mid_r) < 0.1 * w_rows


def test_bootstrap_with_a_legacy_random_state_is_obps_row_bootstrap():
    """Given ``RandomState(s)`` and ``by_rows``, the resamples are the ones obp 0.4.1's
    ``estimate_confidence_interval_by_bootstrap`` draws (``choice(samples, n)``, mean,
    ``np.percentile``), written out plainly here: IPS and DR intervals equal its to
    rounding. (obp's SNIPW holds the normaliser at its full-sample mean, so its
    interval is a different statistic from the ratio bootstrap's.)"""
    d, _ = simulate(9, n=3000)
    ours = bootstrap_many([IPS(), DR()], d, 50, np.random.RandomState(7), by_rows=True)
    w = d.pi / d.pscore
    assert d.q_hat is not None and d.v_hat is not None
    for name, samples in (("ips", d.reward * w),
                          ("dr", d.v_hat + w * (d.reward - d.q_hat))):
        rs = np.random.RandomState(7)
        boot = [np.mean(rs.choice(samples, size=samples.shape[0])) for _ in range(50)]
        plain = (np.percentile(boot, 2.5), np.percentile(boot, 97.5))
        assert ours[name] == pytest.approx(plain, rel=1e-12, abs=0), name

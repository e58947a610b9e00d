"""Uplift from randomised logs with a null offer, against the simulator's true effects:
users who would convert anyway, offers that only shift conversions in time."""

from __future__ import annotations

import numpy as np
import orjson
from scipy.stats import spearmanr

from replay.cli import main as replay_main
from replay.readers import read_dsjson
from replay.uplift import uplift

K = 8


def world(seed: int = 0):
    rng = np.random.default_rng(1000 + seed)
    base = rng.normal(0, 1, 3)        # conversion without an offer depends on the user
    lift = rng.uniform(-0.4, 1.2, K)  # each offer's true incremental effect (log-odds)
    lift[:2] = 0.0                    # two offers only shift conversions in time: no uplift
    slope = rng.normal(0, 0.5, K)

    def p_conv(x: np.ndarray, a: int | None) -> np.ndarray:
        z = -1.5 + x @ base
        if a is not None:
            z = z + lift[a] + slope[a] * x[:, 1]
        return 1 / (1 + np.exp(-z))

    return p_conv


def write_logs(path, n: int, seed: int = 0) -> np.ndarray:
    """Uniform logging over K offers + show-nothing; returns the true mean effects."""
    p_conv = world(seed)
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (n, 3))
    ids = [f"off{a}" for a in range(K)] + ["__none__"]
    with open(path, "wb") as f:
        for i in range(n):
            a = int(rng.integers(K + 1))
            offer = None if a == K else a
            conv = bool(rng.random() < p_conv(x[i:i + 1], offer)[0])
            seg = "young" if x[i, 2] > 0 else "old"
            order = [a] + [j for j in range(K + 1) if j != a]
            ev = {"EventId": f"u{i}", "Timestamp": "2026-01-01T00:00:00Z",
                  "a": [j + 1 for j in order], "p": [1 / (K + 1)] * (K + 1), "ids": ids,
                  "c": {"cu": {"x0": float(x[i, 0]), "x1": float(x[i, 1]),
                               f"age={seg}": 1.0},
                        "_multi": [{"o_id": {f"id={s}": 1.0}} for s in ids]},
                  "_label_cost": -1.0 if conv else 0.0, "_label_probability": 1 / (K + 1),
                  "o": [{"v": 1.0, "kind": "conversion"}] if conv else []}
            f.write(orjson.dumps(ev) + b"\n")
    xt = np.random.default_rng(7).normal(0, 1, (200_000, 3))
    return np.array([np.mean(p_conv(xt, a) - p_conv(xt, None)) for a in range(K)])


def test_uplift_recovers_the_true_effects(tmp_path):
    path = tmp_path / "logs.dsjson"
    truth = write_logs(path, 30_000)
    logs = read_dsjson([path])
    result = uplift(logs, "conversion", folds=3, seed=0)
    names = [f"off{a}" for a in range(K)]
    dr = np.array([result["offers"][n]["dr"] for n in names])
    tl = np.array([result["offers"][n]["t_learner"] for n in names])
    rho_dr = spearmanr(dr, truth).statistic
    rho_t = spearmanr(tl, truth).statistic
    print(f"rank correlation DR {rho_dr:.3f}, T-learner {rho_t:.3f}")
    # the README: "it ranks the true effects with rank correlation 0.98"
    from tests.readme_figures import figure, near

    stated = figure(r"ranks the true effects with rank correlation ([\d.]+)")
    assert near(rho_dr, stated) and near(rho_t, stated), (rho_dr, rho_t)
    covered = sum(result["offers"][n]["ci"][0] <= t <= result["offers"][n]["ci"][1]
                  for n, t in zip(names, truth, strict=True))
    assert covered >= K - 1  # 95% intervals: at most one miss among eight
    # the offers that only shift conversions in time show no effect
    for n in ("off0", "off1"):
        lo, hi = result["offers"][n]["ci"]
        assert lo <= 0 <= hi or abs(result["offers"][n]["dr"]) < 0.02
    for pts in result["qini"].values():
        assert pts[0] == (0.0, 0.0) and len(pts) == 21


def test_uplift_cli_segments_export_and_report(tmp_path, capsys):
    path = tmp_path / "logs.dsjson"
    write_logs(path, 6000, seed=1)
    assert replay_main(["uplift", str(path), "--kind", "conversion", "--segment", "age",
                        "--export", str(tmp_path / "priors.json"), "--report",
                        str(tmp_path / "u.html"), "--json", "--folds", "2"]) == 0
    result = orjson.loads(capsys.readouterr().out)
    assert set(result["offers"]["off3"]["segments"]) == {"young", "old"}
    priors = orjson.loads((tmp_path / "priors.json").read_bytes())
    assert set(priors) == {f"off{a}" for a in range(K)}
    assert "Qini" in (tmp_path / "u.html").read_text()
    # logs without a null offer are refused with a clear message
    from tests.replay.simlogs import make_logs

    make_logs(tmp_path / "plain.dsjson", 50, seed=2)
    assert replay_main(["uplift", str(tmp_path / "plain.dsjson")]) == 2
    assert "null offer" in capsys.readouterr().err

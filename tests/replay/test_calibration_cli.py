"""``bandit-replay calibration`` on joined value-aware logs with known ground truth."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from replay.cli import main

N = 20_000


def joined_logs(path, seed: int, truth) -> list[float]:
    """Decisions of 5 offers whose served click prediction is p; a click (kind
    ``click``) happens with probability ``truth(p)``; conversions never."""
    rng = np.random.default_rng(seed)
    preds = []
    with open(path, "wb") as f:
        for i in range(N):
            ps = rng.uniform(0.02, 0.6, size=5)
            a = int(rng.integers(5))
            ids = [f"o{k}" for k in range(5)]
            clicked = rng.random() < truth(ps[a])
            o = [{"v": 1.0, "kind": "click"}] if clicked else []
            event = {"_label_cost": -float(clicked), "_label_probability": 0.2,
                     "_label_Action": a + 1, "_labelIndex": a, "o": o,
                     "EventId": f"e{i}", "a": [a + 1], "p": [0.2], "ids": ids,
                     "info": {"objective": "click", "heads": {
                         "click": dict(zip(ids, map(float, ps), strict=True)),
                         "conversion": dict.fromkeys(ids, 0.0)}},
                     "c": {"_multi": [{} for _ in ids]}}
            f.write(orjson.dumps(event) + b"\n")
            preds.append(float(ps[a]))
    return preds


def run_json(capsys, *args) -> dict:
    assert main(["calibration", *args, "--json"]) == 0
    return orjson.loads(capsys.readouterr().out)


def test_calibrated_and_miscalibrated_heads_are_told_apart(tmp_path, capsys):
    good = tmp_path / "good.dsjson"
    joined_logs(good, 1, lambda p: p)
    out = run_json(capsys, str(good))
    assert out["click"]["events"] == N
    # 20,000 Bernoulli(p) outcomes: the binned ECE's noise is ~0.005-0.01
    assert out["click"]["ece"] < 0.015
    assert 0.70 < out["click"]["auc"] < 0.85  # p spread over 0.02-0.6
    bad = tmp_path / "bad.dsjson"
    preds = joined_logs(bad, 2, lambda p: p / 2)  # clicks half as often as predicted
    out = run_json(capsys, str(bad), "--plot", str(tmp_path / "r.png"))
    # every bin is off by half its prediction: ECE ≈ mean(p) / 2
    assert out["click"]["ece"] == pytest.approx(np.mean(preds) / 2, abs=0.01)
    assert out["click"]["observed_rate"] == pytest.approx(np.mean(preds) / 2, abs=0.01)
    assert out["conversion"]["observed_rate"] == 0.0
    assert (tmp_path / "r.png").stat().st_size > 1000


def test_bad_logs_are_named_by_file_and_line(tmp_path, capsys):
    path = tmp_path / "j.dsjson"
    joined_logs(path, 3, lambda p: p)
    lines = path.read_bytes().splitlines()
    lines[6] = lines[6].replace(b'"ids"', b'"idz"')
    path.write_bytes(b"\n".join(lines) + b"\n")
    assert main(["calibration", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:7:" in err and "ids" in err
    plain = tmp_path / "plain.dsjson"
    plain.write_bytes(b'{"_labelIndex":0,"ids":["a"],"o":[]}\n')
    assert main(["calibration", str(plain)]) == 2
    assert "no decision with head predictions" in capsys.readouterr().err
    assert main(["calibration", str(tmp_path / "missing.dsjson")]) == 2
    assert "missing.dsjson: no such file" in capsys.readouterr().err

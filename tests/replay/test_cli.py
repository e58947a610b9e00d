"""``bandit-replay evaluate`` end to end: table, JSON, HTML report, clear errors."""

from __future__ import annotations

import subprocess
import sys

import orjson

from replay.cli import main
from tests.replay.simlogs import make_logs


def test_json_output_and_report(tmp_path, capsys):
    make_logs(tmp_path / "logs.dsjson", 1500, seed=5)
    with open(tmp_path / "logs.dsjson", "ab") as f:
        f.write(b"{broken\n")
    report = tmp_path / "r.html"
    rc = main(["evaluate", str(tmp_path / "logs.dsjson"), "--policy", "uniform", "--policy",
               "best-constant", "--policy", "spec:epsilon:0.1", "--estimators", "ips,snips,dr",
               "--bootstrap", "50", "--json", "--report", str(report), "--quiet"])
    out, err = capsys.readouterr()
    assert rc == 0
    result = orjson.loads(out)
    assert result["n"] == 1500 and result["skipped"] == 1
    assert set(result["policies"]) == {"uniform", "best-constant", "spec:epsilon:0.1"}
    for ests in result["policies"].values():
        assert set(ests) == {"ips", "snips", "dr"}
        for e in ests.values():
            assert e["ci"][0] <= e["value"] <= e["ci"][1]
    assert 0 < result["metrics"]["rates"]["ctr"] < 1
    assert 0 <= result["metrics"]["reward_model"]["ece"] <= 1
    assert f"{tmp_path / 'logs.dsjson'}:1501: not valid JSON" in err
    page = report.read_text()
    assert page.count("<img") == 3 and "spec:epsilon:0.1" in page


def test_table_output(tmp_path, capsys):
    make_logs(tmp_path / "logs.dsjson", 500, seed=6)
    assert main(["evaluate", str(tmp_path / "logs.dsjson"), "--estimators", "ips,snips",
                 "--bootstrap", "20", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "500 rows (0 skipped)" in out
    assert out.count("\nuniform ") == 1 and out.count("\nlogged ") == 1
    assert "ranking uniform: mrr=" in out


def test_errors_name_the_file_and_line(tmp_path, capsys):
    bad = tmp_path / "bad.dsjson"
    bad.write_text('{"EventId": "x", "c": {"_multi": [{}]}, "a": [1], "p": [1.5], '
                   '"_label_cost": 0, "_label_probability": 1.5}\n')
    assert main(["evaluate", str(bad), "--strict", "--quiet"]) == 2
    assert f"{bad}:1: _label_probability 1.5 is outside (0, 1]" in capsys.readouterr().err
    assert main(["evaluate", str(bad), "--quiet"]) == 2  # nothing usable left
    assert "no usable rows" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "nope"), "--quiet"]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["evaluate", str(bad), "--policy", "magic", "--quiet"]) == 2
    assert "unknown policy" in capsys.readouterr().err


def test_console_script_runs_on_the_obd_sample():
    from pathlib import Path

    data = Path(__file__).parent.parent / "data" / "obd"
    out = subprocess.run([sys.executable, "-m", "replay.cli", "evaluate", str(data),
                          "--format", "obd", "--campaign", "men", "--policy", "uniform",
                          "--estimators", "ips,snips", "--json", "--bootstrap", "20"],
                         capture_output=True, timeout=120, check=True)
    result = orjson.loads(out.stdout)
    assert result["n"] == 10000 and result["metrics"]["positions"] == 3

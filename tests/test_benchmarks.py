"""Every benchmark runs (in its --quick form) and prints the JSON its issue names.

Speed is not asserted here (this machine is noisy); the figures come from full runs.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.slow, pytest.mark.integration]


def run(name: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / f"{name}.py"), "--quick",
                          *args], capture_output=True, timeout=400, check=True, cwd=ROOT)
    return orjson.loads(out.stdout)


def test_decide_latency():
    r = run("decide_latency")
    for server in ("bare", "decide", "decide_kafka"):
        ol = r[server]["open_loop"]
        assert ol["errors"] == 0 and ol["requests"] > 0
        assert 0 < ol["p50_ms"] <= ol["p99_ms"] <= ol["p999_ms"]
        assert r[server]["peak_rps"] > 0 and r[server]["peak_errors"] == 0
        assert len(r[server]["peak_rounds"]) == r["rounds"] == 1
    assert set(r["ratios"]) == {"decide_peak_vs_bare", "decide_peak_vs_bare_rounds",
                                "kafka_sink_p99_delta_ms"}
    assert r["ratios"]["decide_peak_vs_bare"] == round(
        r["decide"]["peak_rps"] / r["bare"]["peak_rps"], 3)


def test_learner_throughput():
    r = run("learner_throughput")
    assert r["learned"] == r["events"] == 20_000
    assert r["learner_events_per_s"] > 0 and r["raw_vw_events_per_s"] > 0
    assert 0 < r["ratio_vs_raw_vw"]
    (only,) = r["per_round"]
    assert r["rounds"] == 1 and only["learned"] == 20_000
    assert only["ratio_vs_raw_vw"] == r["ratio_vs_raw_vw"]
    assert len(only["raw_vw_events_per_s_before_after"]) == 2
    # the baseline is the faster of the raw VW runs around the round (conservative)
    assert only["ratio_vs_raw_vw"] == pytest.approx(
        only["learner_events_per_s"] / max(only["raw_vw_events_per_s_before_after"]),
        abs=0.002)


def test_feedback_latency():
    r = run("feedback_latency")
    assert r["measured"] == r["probes"] == 5
    assert 0 < r["median_s"] <= r["max_s"] < 60


def test_replay_speed():
    r = run("replay_speed")
    assert r["rows"] == 100_000 and r["seconds"] > 0 and r["bootstrap"] == 100
    assert "RandomState(0) resamples" in r["computation"]
    blocks = r["block_bootstrap"]
    for name in ("ips", "snips", "dr"):
        e, b = r["estimates"][name], blocks["estimates"][name]
        assert e["ci"][0] <= e["value"] <= e["ci"][1]
        assert b["value"] == e["value"]  # the same estimate, another interval method
        assert b["ci"][0] <= b["value"] <= b["ci"][1]


def test_soak():
    r = run("soak")
    assert r["requests"] > 0 and r["errors"] == 0 and r["workers_alive"]
    assert r["rss_start_kib"] > 0 and r["per_minute"]


def test_learning_quality():
    r = run("learning_quality")
    wine = r["datasets"]["wine"]
    assert r["passes"] == 2 and wine["rows"] == 178 and wine["classes"] == 3
    got = wine["learners"]
    assert set(got) == {"service", "vw_every_round", "vw_service_delay", "vw_previous_default",
                        "linucb", "lingreedy", "coba_linucb", "coba_lints", "uniform"}
    for who, v in got.items():
        assert 0 <= v["first_pass"] <= 1 and 0 <= v["last_pass"] <= 1, who
        assert v["runs"] == (1 if who == "service" else 2)
    # uniform over three classes: its expected reward is 1/3
    assert abs(got["uniform"]["overall"] - 1 / 3) < 0.05
    (run_,) = wine["service_runs"]
    assert run_["models_served"] >= 2 and run_["first_learned_model_at_decision"] is not None
    ratios = wine["ratios"]
    assert ratios["service_last_pass_vs_best_peer"] == round(
        got["service"]["last_pass"] / got[ratios["best_peer"]]["last_pass"], 4)

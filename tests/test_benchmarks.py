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
    assert r["load_generator"] == "wrk" and r["workers"] == 1 and r["rounds"] == 1
    # the baseline answers with decide's own bytes, checked before measuring
    assert r["replies_identical"] is True and r["replies_identical_without_sink"] is True
    for server in ("baseline", "floor", "decide_kafka", "decide"):
        s = r[server]
        assert s["errors"] == 0 and s["peak_rps"]["median"] > 0
        rate = s["at_rate"]
        assert rate["requests"] > 0
        assert 0 < rate["p50_ms"]["median"] <= rate["p99_ms"]["median"] <= \
            rate["p999_ms"]["median"]
        # the server's CPU per request at peak: one process on one core, so the CPU it
        # used per request times the requests per second is at most one core's second
        cpu = s["cpu_us_per_request"]
        used = (cpu["user"]["median"] + cpu["system"]["median"]) * s["peak_rps"]["median"]
        assert 0 < cpu["user"]["median"] and 0 < cpu["system"]["median"]
        assert 0.2e6 < used <= 1.1e6, (server, cpu, s["peak_rps"])
        # the constant-rate script keeps its rate (300 req/s in --quick)
        assert rate["achieved_rps"]["median"] == pytest.approx(300, rel=0.1)
    # the headline sink really shipped to the broker
    sink = r["decide_kafka_sink"]
    assert sink["kind"] == "kafka" and sink["connected"] and sink["shipped"] > 0
    # the floor predicted with VW and spooled a record for every decide it answered
    # (256 checks of its replies, warm-up, peak and rate runs)
    work = r["floor_work"]
    assert work["predicted"] == work["spooled"] >= 256 + r["floor"]["at_rate"]["requests"]
    assert "floor_peak_vs_baseline" in r["ratios"]
    ratio = r["ratios"]["decide_kafka_peak_vs_baseline"]
    assert ratio["median"] == round(
        r["decide_kafka"]["peak_rps"]["median"] / r["baseline"]["peak_rps"]["median"], 3)
    assert set(r["targets"]) == {"decide_kafka_peak_ge_0.5x_baseline",
                                 "decide_kafka_p99_le_baseline_plus_1ms", "no_errors"}


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
    assert r["load_generator"] == "wrk"
    # every answered decision (warm-up and run: 4/5 of 2 s + 10 s at 300 req/s; wrk may
    # send a few more or fewer in the time it is given) is in the decisions topic and was
    # learned
    assert 2880 * 0.97 <= r["decisions_accepted"] <= 2880 * 1.03
    assert r["decisions_in_kafka"] == r["decisions_accepted"] and r["events_lost"] == 0
    assert r["decisions_joined"] == r["decisions_accepted"] and r["spool_depth_after"] == 0
    assert r["events_learned"] >= r["decisions_accepted"] and r["targets"]["no_event_lost"]


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



def test_fetch_gaps():
    r = run("fetch_gaps")
    assert r["produced"] > 0 and r["partitions"] == 1
    # the consumer that reads a gap again reads every record; the one that moves on
    # misses exactly the records of the gaps it met (none if no gap came in 10 s)
    assert r["reading_again"]["read"] == r["produced"] and r["reading_again"]["never_read"] == 0
    moving = r["moving_on"]
    assert moving["read"] + moving["never_read"] == r["produced"]
    assert (moving["never_read"] > 0) == (moving["gaps"] > 0)


def test_fetch_gaps_does_not_report_a_gap_given_up_as_filled(monkeypatch):
    """fetch_gaps.py's reading-again consumer: offsets 3-5 never come back, so the gap
    is given up after GAP_SECONDS; ``fill_seconds`` does not count it as filled."""
    import threading

    from bandit.streaming import kafka_client
    from tests.replay.test_readers import Scripted

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import fetch_gaps

    monkeypatch.setattr(kafka_client, "GAP_SECONDS", 0.1)
    tail = fetch_gaps.Tail.__new__(fetch_gaps.Tail)
    tail.consumer = Scripted([[(0, 0), (0, 1), (0, 2), (0, 6)]], {0: 7}, rest=[(0, 6)])
    tail.read_again, tail.read, tail.gaps, tail.fill_seconds, tail._open = True, 0, [], [], None
    stop = threading.Event()
    threading.Timer(0.6, stop.set).start()
    tail._read_again(stop)
    assert tail.gaps == [(3, -1)] and tail.fill_seconds == []

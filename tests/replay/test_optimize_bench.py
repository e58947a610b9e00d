"""``benchmarks/optimize_search.py --quick`` runs and prints the JSON the docs quote."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from bandit.config.settings import Settings
from bandit.core.policy_spec import PolicySpec

ROOT = Path(__file__).resolve().parent.parent.parent
pytestmark = [pytest.mark.slow]


def test_optimize_search_benchmark_quick():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "optimize_search.py"),
                          "--quick"], capture_output=True, timeout=300, check=True, cwd=ROOT)
    r = orjson.loads(out.stdout)
    (run,) = r["runs"]
    assert r["rows"] == 1500 and run["candidates"] == 4
    assert run["parallel_ranking_equal"] and run["flagged_truly_worse"] == []
    assert run["winner"] in run["flagged"] and run["true_winner"] >= run["true_default"]
    default = str(PolicySpec.parse(Settings.policy))
    assert set(run["online"]) == {default, run["winner"]}
    assert r["ratios"]["jobs_1_over_jobs_2"] == [round(run["jobs_1_s"] / run["jobs_2_s"], 2)]

"""Policy search on the simulator's joined logs, against ground truth, and its speed.

For each seed: ``--rows`` decisions of the offer simulator logged by ``--logger``
learning online (the server's policy; joined DSJSON as the learner writes it), then
``bandit-replay optimize``'s search over the default grid around the default spec, once
with ``--jobs 1`` and once with ``--jobs 2`` (alternating which goes first; the results
are equal, the times are compared). Truth from the known click probabilities: every
candidate's expected reward over the logged requests (what the search estimates), the
logged policy's, and the winner's and the default's expected reward deployed alone.

Prints JSON: per seed the winner, the candidates it flags as beating the logged policy,
those of them truly worse (should be none), the truly best candidate, the true values
and the times; and the ratios over the seeds.

    python benchmarks/optimize_search.py [--rows 10000] [--seeds 0,1,2] [--quick]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bandit.core.policy_spec import PolicySpec  # noqa: E402
from replay.grid import grid  # noqa: E402
from replay.optimize import default_spec, optimize  # noqa: E402
from replay.readers import read  # noqa: E402
from tests.replay.optsim import (  # noqa: E402
    column_truth,
    counterfactual_truth,
    logged_truth,
    online_truth,
    policy_logs,
)


def run_seed(seed: int, rows: int, logger: str, items: list[str], tmp: Path) -> dict:
    path = tmp / f"joined-{seed}.dsjson"
    truth = policy_logs(path, rows, spec=logger, seed=seed)
    logs = read(str(path), keep_rows=True, strict=True)
    mu = column_truth(logs, truth)
    current = str(PolicySpec.parse(default_spec()))  # as the results name it
    candidates = grid(current, items)
    times: dict[str, float] = {}
    results = {}
    for jobs in ((1, 2) if seed % 2 == 0 else (2, 1)):
        t0 = time.perf_counter()
        results[jobs] = optimize(logs, candidates, jobs=jobs, seed=0)
        times[f"jobs_{jobs}_s"] = round(time.perf_counter() - t0, 2)
    result = results[1]
    same = [r.name for r in result.ranked] == [r.name for r in results[2].ranked]
    true = {r.name: counterfactual_truth(logs, r.name, mu) for r in result.ranked}
    logged = logged_truth(logs, mu)
    flagged = [r.name for r in result.ranked if r.paired[result.rank_by].lower > 0]
    winner = result.winner
    best = max(true, key=true.__getitem__)
    online = {s: round(online_truth(s, rows, seed=seed), 4)
              for s in dict.fromkeys([current] + ([winner.name] if winner else []))}
    return {"seed": seed, "candidates": len(candidates), "winner": winner.name if winner else None,
            "flagged": flagged, "flagged_truly_worse": [n for n in flagged if true[n] <= logged],
            "true_logged": round(logged, 4), "true_default": round(true[current], 4),
            "true_winner": round(true[winner.name], 4) if winner else None,
            "truly_best": best, "true_best": round(true[best], 4),
            "online": online, "parallel_ranking_equal": same, **times}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=10_000)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--logger", default="epsilon:0.05", help="the logging policy's spec")
    p.add_argument("--quick", action="store_true", help="1,500 rows, seed 0, 4 candidates")
    args = p.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    rows, items = args.rows, []
    if args.quick:
        rows, seeds, items = 1500, [0], ["epsilon:0.02;bag:5;squarecb:100"]
    with tempfile.TemporaryDirectory(prefix="optimize-bench-") as tmp:
        runs = [run_seed(s, rows, args.logger, items, Path(tmp)) for s in seeds]
    ratios = [r["jobs_1_s"] / r["jobs_2_s"] for r in runs]
    gains = [r["true_winner"] - r["true_default"] for r in runs if r["winner"]]
    print(orjson.dumps({
        "rows": rows, "logger": args.logger, "runs": runs,
        "ratios": {"jobs_1_over_jobs_2": [round(x, 2) for x in ratios],
                   "winner_minus_default_true": [round(g, 4) for g in gains]}},
        option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()

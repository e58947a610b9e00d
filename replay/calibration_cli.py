"""``bandit-replay calibration LOGS``: how well each head's predictions were calibrated.

Reads joined DSJSON logs of value-aware decisions: each decision's event holds, in
``info.heads``, every head's calibrated prediction for the offers of slot 1 as served;
the outcome of head *k* is slot 1's reward of kind *k* (combined by the reward
function, 0 when none came: as the learner's heads learn it). Prints, per head, the
events, mean prediction and observed rate, ECE and AUC (:mod:`replay.calibration`),
optionally as JSON and a reliability diagram (PNG).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import orjson

from bandit.learner.heads import rewards_by_kind
from replay.calibration import plot, report


class CalibrationLogError(ValueError):
    pass


def add_parser(sub: Any) -> None:
    c = sub.add_parser("calibration", help="ECE, AUC and reliability of each head's "
                                            "predictions in value-aware joined logs")
    c.add_argument("logs", nargs="+", help="joined DSJSON files")
    c.add_argument("--reward-function", default="earliest",
                   choices=("earliest", "sum", "max", "last", "average"),
                   help="how several rewards of one kind combine (the learner's setting)")
    c.add_argument("--bins", type=int, default=15)
    c.add_argument("--strategy", default="uniform", choices=("uniform", "quantile"))
    c.add_argument("--plot", metavar="PNG", help="write a reliability diagram")
    c.add_argument("--json", action="store_true", help="print JSON instead of a table")


def read(paths: list[str], function: str) -> tuple[dict[str, list[float]],
                                                    dict[str, list[float]], int]:
    """Per head: the served prediction of slot 1's offer and its outcome; and how many
    decisions had no head predictions (not value-aware)."""
    preds: dict[str, list[float]] = {}
    outs: dict[str, list[float]] = {}
    without = 0
    for path in paths:
        if not Path(path).is_file():
            raise CalibrationLogError(f"{path}: no such file")
        with open(path, "rb") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    event = orjson.loads(line)
                    heads = (event.get("info") or {}).get("heads")
                    if not heads:
                        without += 1
                        continue
                    chosen = event["ids"][event["_labelIndex"]]
                    kinds = rewards_by_kind(event.get("o") or [], function)
                    for head, by_offer in heads.items():
                        preds.setdefault(head, []).append(float(by_offer[chosen]))
                        outs.setdefault(head, []).append(float(kinds.get(head, 0.0)))
                except (orjson.JSONDecodeError, KeyError, IndexError, TypeError,
                        ValueError, AttributeError) as exc:
                    raise CalibrationLogError(
                        f"{path}:{lineno}: not a joined value-aware decision "
                        f"({type(exc).__name__}: {exc})") from None
    return preds, outs, without


def run(args: argparse.Namespace) -> int:
    try:
        preds, outs, without = read(args.logs, args.reward_function)
    except CalibrationLogError as exc:
        print(f"bandit-replay calibration: {exc}", file=sys.stderr)
        return 2
    if not preds:
        print(f"bandit-replay calibration: {', '.join(args.logs)}: no decision with head "
              f"predictions (info.heads; {without} without): were they made with "
              "BANDIT_OBJECTIVE set?", file=sys.stderr)
        return 2
    reports = report(preds, outs, args.bins, args.strategy)
    if args.plot:
        plot(reports, args.plot)
    if args.json:
        print(orjson.dumps({h: r.as_dict() for h, r in reports.items()},
                           option=orjson.OPT_INDENT_2).decode())
        return 0
    print(f"{'head':<12} {'events':>8} {'predicted':>10} {'observed':>9} {'ECE':>7} {'AUC':>6}")
    for h, r in reports.items():
        print(f"{h:<12} {r.events:>8} {r.mean_predicted:>10.4f} {r.observed_rate:>9.4f} "
              f"{r.ece:>7.4f} {r.auc:>6.3f}")
    if without:
        print(f"({without} decisions without head predictions left out)")
    return 0

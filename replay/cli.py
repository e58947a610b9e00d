"""``bandit-replay``: estimate what candidate policies would have earned on logged traffic.

    bandit-replay evaluate LOGS [--format dsjson|obd|kafka] [--behavior bts --campaign men]
                           --policy uniform --policy spec:bag:5 ... [--estimators ips,snips,dm,dr]
                           [--json] [--report report.html] [--seed N]
    bandit-replay optimize LOGS [--grid FILE|'SPEC;SPEC'] [--jobs N] [--report F] [--apply]
                           (``bandit-replay optimize --help``: the search and its exit codes)

LOGS is a DSJSON file or directory (plain or gzipped), ``kafka://host:port/topic``
(read to the high-water mark), or an Open Bandit Dataset directory (``--format obd``).
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import TYPE_CHECKING, Any

import orjson

from replay.errors import LogError

if TYPE_CHECKING:  # (the commands import what they need when run)
    from replay.logs import Logs

POLICY_HELP = ("policy to evaluate (repeatable): uniform, logged, best-constant, lgbm[:FRACTION], "
               "vw:PATH (a saved model), spec:SPEC (e.g. spec:bag:5, learned progressively "
               "over the logs)")


def _fmt(x: float) -> str:
    return "nan" if not math.isfinite(x) else f"{x:.5f}"


def table(result: Any) -> str:
    names = list(result.policies)
    ests = list(next(iter(result.policies.values())).estimates) if names else []
    width = max([len(n) for n in names] + [6])
    lines = [f"{result.n} rows ({result.skipped} skipped)", ""]
    head = f"{'policy':<{width}}  {'n':>7}  " + "  ".join(f"{e:>27}" for e in ests)
    lines += [head, "-" * len(head)]
    for name, r in result.policies.items():
        cells = []
        for e in ests:
            est = r.estimates[e]
            cells.append(f"{_fmt(est.value):>9} [{_fmt(est.ci[0])}, {_fmt(est.ci[1])}]")
        lines.append(f"{name:<{width}}  {r.n:>7}  " + "  ".join(f"{c:>27}" for c in cells))
    lines.append("")
    rates = result.metrics.get("rates", {})
    lines.append("logged: " + ", ".join(f"{k}={_fmt(v)}" for k, v in rates.items()))
    rm = result.metrics.get("reward_model")
    if rm:
        parts = [f"{k}={_fmt(rm[k])}" for k in ("auc", "log_loss", "ece", "rmse") if k in rm]
        lines.append(f"reward model ({rm['kind']}, {rm['folds']}-fold cross-fitted): "
                     + ", ".join(parts))
    for name, r in result.policies.items():
        if r.ranking:
            lines.append(f"ranking {name}: " + ", ".join(
                f"{k}={_fmt(v) if isinstance(v, float) else v}" for k, v in r.ranking.items()))
    return "\n".join(lines)


def evaluate_cmd(args: argparse.Namespace) -> int:
    from replay.estimators import by_name
    from replay.evaluate import evaluate
    from replay.policies import parse_policy
    from replay.readers import read

    try:
        policies = [parse_policy(p, args.seed) for p in (args.policy or ["uniform", "logged"])]
        estimators = by_name(args.estimators)
    except ValueError as exc:
        print(f"bandit-replay: {exc}", file=sys.stderr)
        return 2
    needs_rows = any(p.name.startswith(("vw:", "spec:")) for p in policies)
    progress = not args.quiet and sys.stderr.isatty()
    try:
        logs = read(args.logs, args.format, strict=args.strict, keep_rows=needs_rows,
                    behavior=args.behavior, campaign=args.campaign, progress=progress)
    except LogError as exc:
        print(f"bandit-replay: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"bandit-replay: {args.logs}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    for problem in logs.problems[:10]:
        print(f"skipped {problem}", file=sys.stderr)
    if logs.skipped > 10:
        print(f"... and {logs.skipped - 10} more skipped", file=sys.stderr)
    try:
        result = evaluate(logs, policies, estimators, reward_model=args.reward_model,
                          folds=args.folds, seed=args.seed, n_bootstrap=args.bootstrap,
                          alpha=args.alpha, interval=args.interval, progress=progress)
    except ValueError as exc:
        print(f"bandit-replay: {exc}", file=sys.stderr)
        return 2
    if args.report:
        from replay.report import write_report

        write_report(result, args.report, title=f"bandit-replay: {args.logs}")
    if args.json:
        print(orjson.dumps(result.as_json(), option=orjson.OPT_SERIALIZE_NUMPY).decode())
    else:
        print(table(result))
        if args.report:
            print(f"\nreport written to {args.report}")
    return 0


def _read_segmented(args: argparse.Namespace) -> tuple[Logs, list[str | None] | None]:
    """The logs named by ``args``, and each row's value of the context feature
    ``args.segment`` (None when not segmenting)."""
    from bandit.core.policy import category_of
    from replay.readers import read

    logs = read(args.logs, args.format, strict=args.strict, keep_rows=bool(args.segment))
    if not args.segment:
        return logs, None
    assert logs.rows is not None
    return logs, [category_of(r[0], args.segment) if r else None for r in logs.rows]


def arms_cmd(args: argparse.Namespace) -> int:
    from replay.arms import compare_arms

    try:
        logs, segments = _read_segmented(args)
        result = compare_arms(logs, args.control, args.alpha, segments)
    except (LogError, ValueError) as exc:
        print(f"bandit-replay: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(orjson.dumps(result, option=orjson.OPT_SERIALIZE_NUMPY).decode())
        return 0
    print(f"control: {result['control']}")
    for name, r in result["arms"].items():
        line = (f"{name:<12} n={r['n']:>8}  mean={_fmt(r['mean_reward'])} "
                f"[{_fmt(r['ci'][0])}, {_fmt(r['ci'][1])}]")
        vs = r.get("vs_control")
        if vs:
            line += (f"  diff={_fmt(vs['difference'])} p={vs['p_value']:.4f} "
                     f"n_needed/arm={vs['n_needed_per_arm']:.0f}")
        print(line)
    return 0


def train_cmd(args: argparse.Namespace) -> int:
    from replay.readers import read
    from replay.train import train

    try:
        logs = read(args.logs, args.format, strict=args.strict)
        meta = train(logs, args.out, target=args.target, ips=args.ips, seed=args.seed)
    except (LogError, ValueError) as exc:
        print(f"bandit-replay: {exc}", file=sys.stderr)
        return 2
    q = meta["quality"]
    print(f"trained on {meta['rows']} rows → {args.out} (serve with "
          f"BANDIT_POLICY=lgbm:{args.out}); cross-fitted " +
          ", ".join(f"{k}={_fmt(q[k])}" for k in ("auc", "log_loss", "ece", "rmse") if k in q))
    return 0


def uplift_cmd(args: argparse.Namespace) -> int:
    from replay.uplift import uplift

    try:
        logs, segment = _read_segmented(args)
        result = uplift(logs, args.kind, args.folds, args.seed, segment)
    except (LogError, ValueError) as exc:
        print(f"bandit-replay: {exc}", file=sys.stderr)
        return 2
    if args.export:
        from pathlib import Path

        Path(args.export).write_bytes(orjson.dumps(
            {k: v["dr"] for k, v in result["offers"].items()}, option=orjson.OPT_INDENT_2))
    if args.report:
        from replay.report import write_uplift_report

        write_uplift_report(result, args.report)
    if args.json:
        print(orjson.dumps(result, option=orjson.OPT_SERIALIZE_NUMPY, default=float).decode())
        return 0
    print(f"{result['rows']} rows, {result['control_rows']} showed nothing; outcome "
          f"{result['kind']}")
    for name, r in sorted(result["offers"].items(), key=lambda kv: -kv[1]["dr"]):
        print(f"{name:<20} T={_fmt(r['t_learner'])}  DR={_fmt(r['dr'])} "
              f"[{_fmt(r['ci'][0])}, {_fmt(r['ci'][1])}]")
    return 0


def main(argv: list[str] | None = None) -> int:
    from replay import calibration_cli, optimize_cli

    p = argparse.ArgumentParser(prog="bandit-replay", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    _evaluate_parser(sub)
    _arms_parser(sub)
    _train_parser(sub)
    _uplift_parser(sub)
    optimize_cli.add_parser(sub)
    calibration_cli.add_parser(sub)
    args = p.parse_args(argv)
    commands = {"optimize": optimize_cli.run, "calibration": calibration_cli.run,
                "uplift": uplift_cmd, "train": train_cmd, "evaluate": evaluate_cmd,
                "arms": arms_cmd}
    return commands[args.command](args)


def _evaluate_parser(sub: Any) -> None:
    e = sub.add_parser("evaluate", help="counterfactual policy values with intervals")
    e.add_argument("logs", help="DSJSON file/dir, kafka://host:port/topic, or an OBD dir")
    e.add_argument("--format", default="auto", choices=("auto", "dsjson", "obd", "kafka"))
    e.add_argument("--behavior", default="bts", help="OBD behaviour policy (random, bts)")
    e.add_argument("--campaign", default="all", help="OBD campaign (all, men, women)")
    e.add_argument("--policy", action="append", help=POLICY_HELP)
    e.add_argument("--estimators", default="ips,snips,dm,dr",
                   help="comma-separated: ips, ips@CLIP, snips, dm, dr, sndr")
    e.add_argument("--reward-model", default="lgbm", choices=("lgbm", "logistic"))
    e.add_argument("--folds", type=int, default=5, help="cross-fitting folds")
    e.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples")
    e.add_argument("--interval", default="bootstrap", choices=("bootstrap", "normal"))
    e.add_argument("--alpha", type=float, default=0.05, help="1 - confidence level")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--strict", action="store_true", help="fail on the first malformed line")
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.add_argument("--report", help="write a self-contained HTML report here")
    e.add_argument("--quiet", action="store_true", help="no progress bars")


def _arms_parser(sub: Any) -> None:
    a = sub.add_parser("arms", help="A/B comparison of experiment arms (on-policy)")
    a.add_argument("logs")
    a.add_argument("--format", default="auto", choices=("auto", "dsjson", "kafka"))
    a.add_argument("--control", help="control arm (default: the first by name)")
    a.add_argument("--alpha", type=float, default=0.05)
    a.add_argument("--segment", help="also compare within each value of this feature")
    a.add_argument("--strict", action="store_true")
    a.add_argument("--json", action="store_true")


def _train_parser(sub: Any) -> None:
    t = sub.add_parser("train", help="fit a LightGBM propensity model to serve as lgbm:DIR")
    t.add_argument("logs")
    t.add_argument("--out", required=True, help="directory for model.txt and meta.json")
    t.add_argument("--format", default="auto", choices=("auto", "dsjson", "obd", "kafka"))
    t.add_argument("--target", default="reward",
                   help="reward (default), or a reward kind such as click or conversion")
    t.add_argument("--ips", action="store_true", help="weight rows by 1/p (exposure bias)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--strict", action="store_true")


def _uplift_parser(sub: Any) -> None:
    u = sub.add_parser("uplift", help="per-offer incremental effects (T- and DR-learner)")
    u.add_argument("logs")
    u.add_argument("--format", default="auto", choices=("auto", "dsjson", "kafka"))
    u.add_argument("--kind", default="reward", help="outcome: reward, or a kind (conversion)")
    u.add_argument("--segment", help="a categorical context feature to split by")
    u.add_argument("--folds", type=int, default=5)
    u.add_argument("--seed", type=int, default=0)
    u.add_argument("--export", help="write {offer: effect} JSON (priors for the policy)")
    u.add_argument("--report", help="HTML report with Qini curves")
    u.add_argument("--strict", action="store_true")
    u.add_argument("--json", action="store_true")


if __name__ == "__main__":
    sys.exit(main())

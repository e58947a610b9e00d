"""``bandit-replay optimize LOGS``: search the learning settings on the service's own logs.

Evaluates a grid of candidate policy specs counterfactually on the joined logs (each
learned over the logs in time order with VW's off-policy learning, scored before each
row is learned), ranks them against the logged policy by the Bonferroni-corrected
lower bound of the paired difference, prints the table, optionally writes an HTML
report, and with ``--apply`` publishes the winner to the model store through the
promotion guard when it beats the current policy.

exit codes:
  0  a candidate beats the logged policy (with --apply: it was published, or it is
     the spec being served already)
  1  error: unreadable or empty logs, a malformed line (named file:line: field), a
     bad spec in the grid, an unusable model store, a served version pinned by a
     person; nothing is published
  2  no candidate beats the current policy (nothing is published)
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

import orjson

from replay.errors import LogError

if TYPE_CHECKING:  # (run imports what it needs when it runs)
    from replay.apply import ApplyOutcome
    from replay.logs import Logs
    from replay.optimize import OptimizeResult

EXIT_OK, EXIT_ERROR, EXIT_NO_WINNER = 0, 1, 2


def add_parser(sub: Any) -> None:
    o = sub.add_parser("optimize", help="search policy specs on the logs (optimization "
                       "discovery); --apply publishes the winner",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    o.add_argument("logs", help="joined DSJSON file/dir or kafka://host:port/topic")
    o.add_argument("--format", default="auto", choices=("auto", "dsjson", "kafka"))
    o.add_argument("--grid", action="append", default=[],
                   help="candidate specs: a file (one spec a line, # comments) or specs "
                        "inline separated by ';' (repeatable; default: a grid around the "
                        "current spec)")
    o.add_argument("--current", help="the current spec (default: the model store's served "
                   "spec, else BANDIT_POLICY); always among the candidates")
    o.add_argument("--estimators", default="ips,snips,dr",
                   help="comma-separated: ips, ips@CLIP, snips, dm, dr, sndr")
    o.add_argument("--rank-by", help="estimator to rank by (default: dr if listed, else "
                   "the first)")
    o.add_argument("--alpha", type=float, default=0.05,
                   help="family-wise error rate over all candidates (default 0.05)")
    o.add_argument("--jobs", type=int, default=0,
                   help="parallel processes (default 0: one per core)")
    o.add_argument("--reward-model", default="lgbm", choices=("lgbm", "logistic"))
    o.add_argument("--folds", type=int, default=5, help="cross-fitting folds (DR, DM)")
    o.add_argument("--bootstrap", type=int, default=200,
                   help="bootstrap resamples for each estimate's interval")
    o.add_argument("--seed", type=int, default=0)
    o.add_argument("--skip-bad", action="store_true",
                   help="skip and count malformed lines instead of stopping at the first")
    o.add_argument("--json", action="store_true", help="print one JSON object")
    o.add_argument("--report", help="write a self-contained HTML report here")
    o.add_argument("--top", type=int, default=0, help="rows of the table (default all)")
    o.add_argument("--quiet", action="store_true", help="no progress bars")
    o.add_argument("--apply", action="store_true",
                   help="publish the winner to the model store if it beats the current "
                        "policy and passes the promotion guard")
    o.add_argument("--model-dir", help="model store (default BANDIT_MODEL_DIR)")
    o.add_argument("--guard-margin", type=float,
                   help="promotion guard margin (default BANDIT_GUARD_MARGIN)")
    o.add_argument("--guard-holdout", type=float,
                   help="share of rows held out for the guard (default BANDIT_GUARD_HOLDOUT)")


def _fail(msg: str) -> int:
    print(f"bandit-replay optimize: {msg}", file=sys.stderr)
    return EXIT_ERROR


def _check_options(args: argparse.Namespace) -> None:
    """Refuse bad options before any log is read (a Kafka read can take a while)."""
    from replay.estimators import by_name

    labels = [e.label for e in by_name(args.estimators)]
    if args.rank_by is not None and args.rank_by not in labels:
        raise ValueError(f"--rank-by {args.rank_by!r} is not among the estimators "
                         f"({', '.join(labels)})")
    if not 0 < args.alpha < 1:
        raise ValueError(f"--alpha {args.alpha:g} must be in (0, 1)")
    if args.folds < 2:
        raise ValueError("--folds must be at least 2")
    if args.bootstrap < 0:
        raise ValueError("--bootstrap must be 0 or more")


def _print_skipped(logs: Logs) -> None:
    """The first lines the reader skipped, and how many more."""
    for problem in logs.problems[:10]:
        print(f"skipped {problem}", file=sys.stderr)
    if logs.skipped > 10:
        print(f"... and {logs.skipped - 10} more skipped", file=sys.stderr)


def _print_result(args: argparse.Namespace, result: OptimizeResult,
                  outcome: ApplyOutcome | None) -> None:
    """The search's table (or JSON) and the apply outcome; the HTML report if asked."""
    if args.report:
        from replay.optimize_report import write_report

        write_report(result, args.report, title=f"bandit-replay optimize: {args.logs}",
                     applied=outcome.as_dict() if outcome else None)
    if args.json:
        out = result.as_json()
        if outcome is not None:
            out["apply"] = outcome.as_dict()
        print(orjson.dumps(out, option=orjson.OPT_SERIALIZE_NUMPY).decode())
        return
    from replay.optimize_report import table

    print(table(result, args.top or None))
    if outcome is not None:
        print(f"apply: {outcome.reason}")
    if args.report:
        print(f"report written to {args.report}")


def run(args: argparse.Namespace) -> int:
    from bandit.config.settings import Settings
    from replay.apply import apply, current_spec
    from replay.grid import grid
    from replay.optimize import optimize
    from replay.readers import read

    try:
        settings = Settings.from_env()
    except ValueError as exc:
        return _fail(str(exc))
    model_dir = args.model_dir or settings.model_dir
    fallback = settings.policy if not settings.policy.startswith("lgbm:") else "epsilon:0.05"
    try:
        _check_options(args)
        current = args.current or (current_spec(model_dir, fallback) if args.apply
                                   else fallback)
        candidates = grid(current, args.grid)
    except ValueError as exc:
        return _fail(str(exc))
    progress = not args.quiet and sys.stderr.isatty()
    try:
        logs = read(args.logs, args.format, strict=not args.skip_bad, keep_rows=True,
                    progress=progress)
    except LogError as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"{args.logs}: {exc.strerror or exc}")
    _print_skipped(logs)
    try:
        result = optimize(logs, candidates, estimators=args.estimators, rank_by=args.rank_by,
                          alpha=args.alpha, jobs=args.jobs, seed=args.seed,
                          reward_model=args.reward_model, folds=args.folds,
                          n_bootstrap=args.bootstrap, progress=progress)
    except ValueError as exc:
        return _fail(f"{args.logs}: {exc}")
    outcome = None
    if args.apply:
        try:
            outcome = apply(result, logs, model_dir, settings=settings,
                            margin=args.guard_margin, holdout=args.guard_holdout,
                            seed=args.seed)
        except (ValueError, OSError) as exc:
            return _fail(str(exc))
    _print_result(args, result, outcome)
    if outcome is not None:
        return outcome.exit_code
    return EXIT_OK if result.winner is not None else EXIT_NO_WINNER

"""``bandit-demo``: the whole loop on one machine, learning from simulated users.

Starts the embedded Kafka-protocol broker, a decision server and the learner as real
processes, then plays simulated users against the server: each user is shown the
server's choice and clicks with the simulator's true probability; clicks go back as
rewards. Every window prints the CTR the served policy earns (exact, from the known
click probabilities) next to a uniformly random policy and the best possible choice,
so you can watch the learned policy pull away from random as new models arrive.
Ctrl-C stops everything cleanly.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import FrameType

import orjson

from bandit.demo.simulator import World
from bandit.demo.stack import Stack
from bandit.demo.traffic import TrafficDriver


class _Stop(Exception):
    pass


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bandit-demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--policy", default="epsilon:0.1", help="policy spec (default epsilon:0.1)")
    p.add_argument("--offers", type=int, default=20, help="offers in the catalogue")
    p.add_argument("--per-request", type=int, default=10, help="eligible offers per request")
    p.add_argument("--window", type=int, default=1000, help="requests per report line")
    p.add_argument("--windows", type=int, default=0,
                   help="stop after this many windows (default: run until Ctrl-C)")
    p.add_argument("--rate", type=float, default=400.0, help="requests per second (0 = max)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--workdir", help="models, spool and logs (default: a fresh temp dir, "
                                     "removed at exit)")
    p.add_argument("--json", action="store_true", help="one JSON object per window")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="bandit-demo-"))
    signal.signal(signal.SIGTERM, _raise_stop)
    stack = Stack(workdir, policy=args.policy, reward_wait=2.0, checkpoint_seconds=1.0,
                  model_poll=0.5)
    world = World(n_offers=args.offers, seed=args.seed)
    driver: TrafficDriver | None = None

    def say(*parts: object) -> None:
        if not args.json:
            print(*parts, flush=True)

    try:
        say(f"bandit-demo: starting broker, server and learner in {workdir} ...")
        stack.start()
        _banner(stack, args, workdir, say)
        driver = TrafficDriver(stack.base, world, seed=args.seed + 1,
                               offers_per_request=args.per_request, rate=args.rate)
        if _report(stack, driver, args, say):
            return 1
    except (KeyboardInterrupt, _Stop):
        say("\nstopping ...")
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not orphan children
        if driver is not None:
            driver.close()
        stack.stop()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    say("stopped: broker, server and learner are down.")
    return 0


def _banner(stack: Stack, args: argparse.Namespace, workdir: Path,
            say: Callable[..., None]) -> None:
    say(f"  broker {stack.bootstrap}   server {stack.base}   policy {args.policy}")
    if stack.broker is not None and stack.broker.tools_bootstrap:
        prefix = {**os.environ, **stack.env}.get("BANDIT_TOPIC_PREFIX", "offers.")
        say(f"  look at the topics: kcat -b {stack.broker.tools_bootstrap} -C -t "
            f"{prefix}decisions")
    if args.json:
        print(orjson.dumps({"started": True, "broker": stack.bootstrap, "server": stack.base,
                            "workdir": str(workdir)}).decode(), flush=True)
    say("  simulated users click with known probabilities; CTR below is exact.")
    say("  Ctrl-C to stop.\n")
    say(f"{'window':>6} {'requests':>9} {'model':>16} {'CTR':>7} {'random':>7} "
        f"{'best':>7} {'vs random':>10}")


def _report(stack: Stack, driver: TrafficDriver, args: argparse.Namespace,
            say: Callable[..., None]) -> int:
    """A line per window until the windows asked for are done (0), or a child of the
    stack exits (1)."""
    total = 0
    for w in driver.windows(args.window, args.windows or None):
        total += w.tally.n
        d = w.tally.as_dict()
        lift = d["ctr"] / d["random_ctr"] - 1 if d["random_ctr"] else 0.0
        if args.json:
            print(orjson.dumps({"window": w.index, "requests": total,
                                "model": w.model_version, **d, "lift": lift,
                                "errors": driver.errors}).decode(), flush=True)
        else:
            say(f"{w.index:>6} {total:>9} {str(w.model_version):>16} {d['ctr']:>7.3f} "
                f"{d['random_ctr']:>7.3f} {d['best_ctr']:>7.3f} {lift:>+9.0%}")
        for child in (stack.server, stack.learner):
            if child is not None and not child.running:
                print(f"bandit-demo: the {child.name} exited:\n{child.tail()}",
                      file=sys.stderr)
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

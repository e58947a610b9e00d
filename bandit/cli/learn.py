"""``bandit-learn``: the learner daemon (``run``, the default).

Reads ``BANDIT_KAFKA_BOOTSTRAP``, the topic prefix, the reward window and the
model store from the environment; stops with a final checkpoint on SIGTERM/Ctrl-C.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from types import FrameType

from bandit.errors import ConfigError
from bandit.settings import Settings


def run(args: argparse.Namespace) -> int:
    from bandit.learner.daemon import Learner

    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"bandit-learn: {exc}", file=sys.stderr)
        return 2
    if not settings.kafka_bootstrap:
        print("bandit-learn: BANDIT_KAFKA_BOOTSTRAP is not set", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s "
                                                   "%(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)  # its INFO is per-connection chatter
    log = logging.getLogger("bandit.learner")
    stopping = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    learner = Learner(settings, group=args.group)
    learner.connect()
    log.info("learning %s from %s", learner.policy, settings.kafka_bootstrap)
    last_status = time.monotonic()
    try:
        while not stopping:
            learner.step()
            if time.monotonic() - last_status >= args.status_every:
                last_status = time.monotonic()
                log.info("status %s lag=%d", learner.status(), learner.lag())
        learner.checkpoint()
    finally:
        learner.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bandit-learn", description=__doc__)
    sub = p.add_subparsers(dest="command")
    r = sub.add_parser("run", help="run the learner daemon (default)")
    for parser in (p, r):
        parser.add_argument("--group", default="bandit-learner", help="Kafka consumer group")
        parser.add_argument("--status-every", type=float, default=10.0,
                            help="seconds between status log lines")
    args = p.parse_args(argv)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())

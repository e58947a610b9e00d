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

from bandit.config.settings import Settings
from bandit.core.errors import ConfigError


def _settings() -> Settings | None:
    """Settings from the environment, or None after saying what is wrong."""
    try:
        return Settings.from_env()
    except ConfigError as exc:
        print(f"bandit-learn: {exc}", file=sys.stderr)
        return None


def run(args: argparse.Namespace) -> int:
    from bandit.learner.daemon import Learner

    settings = _settings()
    if settings is None:
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
    log.info("learning %s from %s", learner.checkpointer.policy, settings.kafka_bootstrap)
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


def models(args: argparse.Namespace) -> int:
    """``bandit-learn models …``: list, pin (rollback), unpin, export, import."""
    from bandit.stores.modelstore import ModelStore, ModelStoreError

    settings = _settings()
    if settings is None:
        return 2
    store = ModelStore(args.model_dir or settings.model_dir, settings.model_keep)
    try:
        if args.action == "list":
            cur, pin = store.current(), store.pinned()
            for m in store.versions():
                mark = ("pinned " if pin and m.version == pin.version else "") + \
                    ("current" if cur and m.version == cur.version else "")
                print(f"{m.version}  {m.created_at}  {m.events_learned:>10} events  "
                      f"{m.policy:<16} {m.sha256[:12]}  {mark}".rstrip())
            return 0
        if args.action in ("pin", "rollback"):
            m = store.pin(args.version)
            print(f"servers now serve {m.version} (until `bandit-learn models unpin`)")
            return 0
        if args.action == "unpin":
            store.unpin()
            cur = store.current()
            print(f"servers follow the learner again ({cur.version if cur else 'no model'})")
            return 0
        if args.action == "export":
            out = store.export(args.version, args.target)
            print(f"exported {args.version} to {out}")
            return 0
        if args.action == "import":
            m = store.import_(args.source)
            if args.pin:
                store.pin(m.version)
            print(f"imported as {m.version}" + (" and pinned" if args.pin else ""))
            return 0
    except ModelStoreError as exc:
        print(f"bandit-learn: {exc}", file=sys.stderr)
        return 1
    return 2


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bandit-learn", description=__doc__)
    sub = p.add_subparsers(dest="command")
    r = sub.add_parser("run", help="run the learner daemon (default)")
    for parser in (p, r):
        parser.add_argument("--group", default="bandit-learner", help="Kafka consumer group")
        parser.add_argument("--status-every", type=float, default=10.0,
                            help="seconds between status log lines")
    m = sub.add_parser("models", help="list, pin (roll back), export and import models")
    m.add_argument("--model-dir", help="model store (default BANDIT_MODEL_DIR)")
    ms = m.add_subparsers(dest="action", required=True)
    ms.add_parser("list", help="versions in the store, which is current and pinned")
    for name in ("pin", "rollback"):
        x = ms.add_parser(name, help="serve VERSION from now on (servers swap to it)")
        x.add_argument("version")
    ms.add_parser("unpin", help="serve what the learner publishes again")
    x = ms.add_parser("export", help="copy VERSION and its manifest into a directory")
    x.add_argument("version")
    x.add_argument("target")
    x = ms.add_parser("import", help="add an exported model as a new version")
    x.add_argument("source")
    x.add_argument("--pin", action="store_true", help="and serve it")
    args = p.parse_args(argv)
    if args.command == "models":
        return models(args)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())

"""``bandit-broker``: run the embedded Kafka-protocol broker (Tansu) on 127.0.0.1.

Creates the service's topics, prints the bootstrap address and runs until
SIGTERM or Ctrl-C. Tansu keeps data in memory: a restart starts empty.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType

from bandit.config.settings import Settings
from bandit.core.errors import ConfigError
from bandit.streaming.broker import BrokerError, EmbeddedBroker
from bandit.streaming.topics import Topics, ensure_topics


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bandit-broker", description=__doc__)
    p.add_argument("--port", type=int, default=9092)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--tools-port", type=int,
                   help="where stock Kafka tools such as kcat connect (default: port + 1; "
                        "0: none)")
    p.add_argument("--data-dir", help="where the broker log file goes (data stays in memory)")
    p.add_argument("--partitions", type=int, help="partitions per topic (BANDIT_PARTITIONS)")
    args = p.parse_args(argv)
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"bandit-broker: {exc}", file=sys.stderr)
        return 2
    log_path = None
    if args.data_dir:
        from pathlib import Path

        Path(args.data_dir).mkdir(parents=True, exist_ok=True)
        log_path = Path(args.data_dir) / "tansu.log"
    tools = args.port + 1 if args.tools_port is None else args.tools_port
    broker = EmbeddedBroker(args.port, args.host, log_path, tools or None)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        broker.start()
        topics = Topics.from_settings(settings)
        ensure_topics(broker.bootstrap, topics, args.partitions or settings.partitions)
    except BrokerError as exc:
        print(f"bandit-broker: {exc}", file=sys.stderr)
        broker.stop()
        return 1
    print(f"broker ready at {broker.bootstrap} (topics: {', '.join(topics.all())})", flush=True)
    if broker.tools_bootstrap:
        print(f"stock Kafka tools: kcat -b {broker.tools_bootstrap} -C -t "
              f"{topics.decisions}", flush=True)
    try:
        while not stop.wait(0.5):
            if not broker.running:
                print("bandit-broker: the broker process exited", file=sys.stderr)
                return 1
    finally:
        broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

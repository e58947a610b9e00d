"""``bandit-serve``: run the decision server with uvicorn.

Flags override the matching ``BANDIT_*`` variables; workers are separate processes
that rebuild the same Settings from the environment.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

from bandit.config.settings import Settings
from bandit.core.errors import ConfigError


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bandit-serve", description=__doc__)
    p.add_argument("--host", help="bind address (BANDIT_HOST, default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (BANDIT_PORT, default 8080)")
    p.add_argument("--workers", type=int, help="worker processes (BANDIT_WORKERS, default 1)")
    p.add_argument("--policy", help="policy spec, e.g. epsilon:0.05 or bag:5 (BANDIT_POLICY)")
    p.add_argument("--log-level", default="warning", help="uvicorn log level")
    p.add_argument("--hash-key", metavar="KEY",
                   help="print the SHA-256 of an API key for BANDIT_API_KEYS and exit")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.hash_key is not None:
        from bandit.config.apikeys import hash_key

        print(hash_key(args.hash_key))
        return 0
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port),
                                   ("workers", args.workers), ("policy", args.policy))
                 if v is not None}
    try:
        settings = Settings.from_env().with_overrides(**overrides)
    except ConfigError as exc:
        print(f"bandit-serve: {exc}", file=sys.stderr)
        return 2
    if settings.workers > 1 and not settings.shared_dir:
        # state the workers share (user store, live counts, arm guard): one per run
        settings = settings.with_overrides(shared_dir=tempfile.mkdtemp(prefix="bandit-shared-"))
    os.environ.update(settings.to_env())
    if settings.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="bandit-metrics-")

    import uvicorn

    uvicorn.run("bandit.server.app:app_from_env", factory=True, host=settings.host,
                port=settings.port, workers=settings.workers, log_level=args.log_level,
                access_log=False, timeout_keep_alive=5, server_header=False,
                limit_concurrency=settings.max_connections)
    return 0


if __name__ == "__main__":
    sys.exit(main())

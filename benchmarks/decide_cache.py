"""How much a decision's cost depends on the CPU caches: the server's decide handler
(parse → decide → event written → reply, the function ``FastRoutes`` calls), in this
process, back to back (warm caches, as a tight loop measures it) and with other memory
traffic between decisions (as in a server, where each decision runs between the HTTP
work of other requests).

For each traffic size (MB of a NumPy array summed between two decisions) it measures
per 256 decisions: the traffic alone, the traffic plus a decision, and the decision
alone; a decision's cost under traffic is the difference of the first two. The same
for the VW model's ``predict`` alone (the shared line parsed, 20 offers scored).
Figures are the minimum over rounds (the least disturbed by this shared machine),
in microseconds per decision. Prints one JSON object.

This is the figure behind the decide benchmark's gap: ``decide_latency.py`` finds
~120–150 µs of the worker's CPU per decision beyond the baseline's HTTP work, where a
tight loop measures the handler at ~50 µs.

    python benchmarks/decide_cache.py [--rounds 20] [--sizes 0,1,4,16,64]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from decide_latency import payloads  # noqa: E402


def per_call(fn: Callable[[int], Any], rounds: int, n: int = 256) -> float:
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for i in range(n):
            fn(i)
        best = min(best, (time.perf_counter() - t0) / n)
    return best * 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--sizes", default="0,1,4,16,64", help="MB of traffic between calls")
    p.add_argument("--quick", action="store_true", help="few rounds, two sizes (a smoke test)")
    args = p.parse_args()
    if args.quick:
        args.rounds, args.sizes = 2, "0,4"
    tmp = tempfile.mkdtemp(prefix="decide-cache-")
    os.environ.update({"BANDIT_EVENT_SINK": "file", "BANDIT_EVENT_DIR": f"{tmp}/events",
                       "BANDIT_POLICY": "epsilon:0.05", "BANDIT_MODEL_DIR": f"{tmp}/models",
                       "BANDIT_SHARED_DIR": f"{tmp}/shared"})
    from bandit.server.app import app_from_env, hot_routes

    app = app_from_env()
    svc = app.state.service
    decide = hot_routes(svc)["/v1/decide"]
    bodies = payloads()
    requests = [svc.decide(svc.parser.decide(b))[0] for b in bodies]
    model = svc.policy.model
    lines = [tuple(o.line for o in r.offers) for r in requests]

    def predict(i: int) -> None:
        model.predict(requests[i].context, lines[i])

    for b in bodies:
        decide(b)
    out: dict[str, Any] = {"benchmark": "decide_cache", "offers": 20, "rounds": args.rounds,
                           "unit": "us per decision (minimum over rounds)", "by_traffic_mb": {}}
    for mb in (int(x) for x in args.sizes.split(",")):
        a = np.ones(max(1, mb * 1024 * 1024 // 8))

        def traffic(i: int, a: np.ndarray = a, on: bool = mb > 0) -> None:
            if on:
                a.sum()

        alone = per_call(traffic, args.rounds)
        row = {"traffic_alone": round(alone, 1)}
        for name, fn in (("decide", lambda i: decide(bodies[i])), ("vw_predict", predict)):
            both = per_call(lambda i, fn=fn: (traffic(i), fn(i)), args.rounds)
            row[name] = round(both - alone, 1)
        out["by_traffic_mb"][str(mb)] = row
    base = out["by_traffic_mb"].get("0")
    if base:
        out["ratio_to_warm"] = {mb: {k: round(r[k] / base[k], 2) for k in ("decide", "vw_predict")}
                                for mb, r in out["by_traffic_mb"].items()}
    print(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())
    os._exit(0)  # the service's background threads and children are not ours to wait for


if __name__ == "__main__":
    main()

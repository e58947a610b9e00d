"""Decide latency and throughput against a bare Starlette baseline, in one run.

Three servers, one uvicorn worker each, started and measured one after another on
the same machine: ``bare`` (a Starlette endpoint that parses and echoes the same
JSON payload), ``decide`` (the decision server, events discarded) and
``decide_kafka`` (the decision server producing every decision to the embedded
broker). Payload: 20 offers × 10 features, a 10-feature context that changes per
request. For each: open-loop latency p50/p99/p99.9 at ``--rate`` req/s for
``--seconds`` s, then closed-loop peak throughput. Prints one JSON object.

Targets: decide p99 ≤ 5 ms at 1,000 req/s; decide peak ≥ 0.5 × bare peak;
the Kafka sink moves decide p99 by ≤ 1 ms.

    python benchmarks/decide_latency.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _load import build_request, closed_loop, open_loop  # noqa: E402

from bandit.broker import EmbeddedBroker  # noqa: E402
from bandit.stack import Child, free_port  # noqa: E402

BARE_APP = """
import orjson, uvicorn, sys
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

async def echo(request: Request) -> Response:
    body = orjson.loads(await request.body())
    return Response(orjson.dumps(body), media_type="application/json")

app = Starlette(routes=[Route("/v1/decide", echo, methods=["POST"]),
                        Route("/healthz", lambda r: Response("ok"))])
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning",
            access_log=False)
"""


def payloads(n: int = 256, offers: int = 20, seed: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    catalogue = [{"id": f"offer-{k:02d}", "features": {"offer": {
        **{f"c{j}": f"v{int(rng.integers(5))}" for j in range(5)},
        **{f"x{j}": round(float(rng.random()), 3) for j in range(5)}}}} for k in range(offers)]
    out = []
    for _ in range(n):
        ctx = {"user": {**{f"u{j}": f"v{int(rng.integers(20))}" for j in range(5)},
                        **{f"n{j}": round(float(rng.random()), 3) for j in range(5)}}}
        out.append(build_request("/v1/decide", orjson.dumps({"context": ctx,
                                                               "offers": catalogue})))
    return out


def wait_healthy(port: int, proc: Child, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.running:
            raise RuntimeError(f"{proc.name} exited:\n{proc.tail()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError(proc.name)


def measure(port: int, reqs: list[bytes], rate: float, seconds: float,
            peak_seconds: float) -> dict[str, object]:
    asyncio.run(closed_loop("127.0.0.1", port, reqs, min(2.0, peak_seconds), 8))  # warm-up
    lat = asyncio.run(open_loop("127.0.0.1", port, reqs, rate, seconds))
    peak = asyncio.run(closed_loop("127.0.0.1", port, reqs, peak_seconds, 16))
    return {"open_loop": {"rate_rps": rate, **lat.summary()},
            "peak_rps": peak.summary()["throughput_rps"], "peak_errors": peak.errors}


def run_server(name: str, work: Path, env: dict[str, str], reqs: list[bytes],
               args: argparse.Namespace) -> dict[str, object]:
    port = free_port()
    if name == "bare":
        child = Child(name, "", [], {}, work / f"{name}.log",
                      argv=[sys.executable, "-c", BARE_APP, str(port)])
    else:
        child = Child(name, "bandit.cli.serve", ["--port", str(port), "--workers", "1"],
                      env, work / f"{name}.log")
    try:
        wait_healthy(port, child)
        return measure(port, reqs, args.rate, args.seconds, args.peak_seconds)
    finally:
        child.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--rate", type=float, default=1000.0)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--peak-seconds", type=float, default=10.0)
    p.add_argument("--quick", action="store_true", help="3 s runs, for a smoke test")
    args = p.parse_args()
    if args.quick:
        args.seconds, args.peak_seconds, args.rate = 3.0, 2.0, 300.0
    reqs = payloads()
    out: dict[str, object] = {"benchmark": "decide_latency", "offers": 20,
                              "features_per_offer": 10, "context_features": 10,
                              "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        base_env = {"BANDIT_MODEL_DIR": str(work / "models"), "BANDIT_EVENT_SINK": "none",
                    "BANDIT_POLICY": "epsilon:0.05"}
        out["bare"] = run_server("bare", work, {}, reqs, args)
        out["decide"] = run_server("decide", work, base_env, reqs, args)
        with EmbeddedBroker(free_port(), log_path=work / "broker.log") as broker:
            kafka_env = {**base_env, "BANDIT_EVENT_SINK": "kafka",
                         "BANDIT_KAFKA_BOOTSTRAP": broker.bootstrap,
                         "BANDIT_SPOOL_DIR": str(work / "spool")}
            out["decide_kafka"] = run_server("decide_kafka", work, kafka_env, reqs, args)
    bare, dec, kaf = out["bare"], out["decide"], out["decide_kafka"]
    assert isinstance(bare, dict) and isinstance(dec, dict) and isinstance(kaf, dict)
    ratio = dec["peak_rps"] / bare["peak_rps"] if bare["peak_rps"] else 0.0
    p99_delta = kaf["open_loop"]["p99_ms"] - dec["open_loop"]["p99_ms"]
    out["ratios"] = {"decide_peak_vs_bare": round(ratio, 3),
                     "kafka_sink_p99_delta_ms": round(p99_delta, 3)}
    out["targets"] = {"decide_p99_le_5ms": dec["open_loop"]["p99_ms"] <= 5.0,
                      "decide_peak_ge_0.5x_bare": ratio >= 0.5,
                      "kafka_sink_p99_delta_le_1ms": p99_delta <= 1.0}
    print(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()

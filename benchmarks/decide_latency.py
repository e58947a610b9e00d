"""Decide latency and throughput against a bare Starlette baseline, in one run.

Three servers, one uvicorn worker each, on the same machine: ``bare`` (a Starlette
endpoint that parses and echoes the same JSON payload), ``decide`` (the decision
server, events discarded) and ``decide_kafka`` (the decision server producing every
decision to the embedded broker). Payload: 20 offers × 10 features, a 10-feature
context that changes per request. All three run for the whole benchmark and are
measured in turn, round after round (``--rounds``), so a slow spell of this shared
machine falls on all of them rather than on whichever ran then: open-loop latency
p50/p99/p99.9 at ``--rate`` req/s (``--seconds`` per server, split over the rounds,
pooled), then closed-loop peak throughput per round. The peak ratio is the median of
the rounds' decide/bare ratios; every round's figures are printed. Prints one JSON
object.

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

from _load import Result, build_request, closed_loop, open_loop  # noqa: E402

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


def start_server(name: str, work: Path, env: dict[str, str]) -> tuple[Child, int]:
    port = free_port()
    if name == "bare":
        child = Child(name, "", [], {}, work / f"{name}.log",
                      argv=[sys.executable, "-c", BARE_APP, str(port)])
    else:
        child = Child(name, "bandit.cli.serve", ["--port", str(port), "--workers", "1"],
                      env, work / f"{name}.log")
    wait_healthy(port, child)
    return child, port


def interleaved(ports: dict[str, int], reqs: list[bytes],
                args: argparse.Namespace) -> dict[str, dict[str, object]]:
    """Every server measured in turn, round after round, so a slow spell of the
    machine falls on all of them: open-loop latency (``--seconds`` split over the
    rounds, the latencies pooled) and closed-loop peak (``--peak-seconds`` per round;
    the peak is the median of the rounds)."""
    for port in ports.values():  # warm-up
        asyncio.run(closed_loop("127.0.0.1", port, reqs, min(2.0, args.peak_seconds), 8))
    lat = {name: Result() for name in ports}
    peaks: dict[str, list[float]] = {name: [] for name in ports}
    peak_errors = {name: 0 for name in ports}
    for _ in range(args.rounds):
        for name, port in ports.items():
            r = asyncio.run(open_loop("127.0.0.1", port, reqs, args.rate,
                                      args.seconds / args.rounds))
            lat[name].latencies_ms += r.latencies_ms
            lat[name].errors += r.errors
            lat[name].seconds += r.seconds
        for name, port in ports.items():
            peak = asyncio.run(closed_loop("127.0.0.1", port, reqs, args.peak_seconds, 16))
            peaks[name].append(peak.summary()["throughput_rps"])
            peak_errors[name] += peak.errors
    return {name: {"open_loop": {"rate_rps": args.rate, **lat[name].summary()},
                   "peak_rps": float(np.median(peaks[name])), "peak_rounds": peaks[name],
                   "peak_errors": peak_errors[name]} for name in ports}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--rate", type=float, default=1000.0)
    p.add_argument("--seconds", type=float, default=20.0,
                   help="open-loop seconds per server, split over the rounds")
    p.add_argument("--peak-seconds", type=float, default=5.0,
                   help="closed-loop seconds per server and round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="short runs, for a smoke test")
    args = p.parse_args()
    if args.quick:
        args.seconds, args.peak_seconds, args.rate, args.rounds = 3.0, 1.0, 300.0, 1
    reqs = payloads()
    out: dict[str, object] = {"benchmark": "decide_latency", "offers": 20,
                              "features_per_offer": 10, "context_features": 10,
                              "cpus": os.cpu_count(), "rounds": args.rounds}
    with tempfile.TemporaryDirectory() as tmp, \
            EmbeddedBroker(free_port(), log_path=Path(tmp) / "broker.log") as broker:
        work = Path(tmp)
        base_env = {"BANDIT_MODEL_DIR": str(work / "models"), "BANDIT_EVENT_SINK": "none",
                    "BANDIT_POLICY": "epsilon:0.05"}
        kafka_env = {**base_env, "BANDIT_EVENT_SINK": "kafka",
                     "BANDIT_KAFKA_BOOTSTRAP": broker.bootstrap,
                     "BANDIT_SPOOL_DIR": str(work / "spool"),
                     "BANDIT_MODEL_DIR": str(work / "models-kafka")}
        children: list[Child] = []
        try:
            ports = {}
            for name, env in (("bare", {}), ("decide", base_env), ("decide_kafka", kafka_env)):
                child, ports[name] = start_server(name, work, env)
                children.append(child)
            out.update(interleaved(ports, reqs, args))
        finally:
            for child in children:
                child.stop()
    bare, dec, kaf = out["bare"], out["decide"], out["decide_kafka"]
    assert isinstance(bare, dict) and isinstance(dec, dict) and isinstance(kaf, dict)
    rounds = [d / b for d, b in zip(dec["peak_rounds"], bare["peak_rounds"], strict=True) if b]
    ratio = float(np.median(rounds)) if rounds else 0.0
    p99_delta = kaf["open_loop"]["p99_ms"] - dec["open_loop"]["p99_ms"]
    out["ratios"] = {"decide_peak_vs_bare": round(ratio, 3),
                     "decide_peak_vs_bare_rounds": [round(r, 3) for r in rounds],
                     "kafka_sink_p99_delta_ms": round(p99_delta, 3)}
    out["targets"] = {"decide_p99_le_5ms": dec["open_loop"]["p99_ms"] <= 5.0,
                      "decide_peak_ge_0.5x_bare": ratio >= 0.5,
                      "kafka_sink_p99_delta_le_1ms": p99_delta <= 1.0}
    print(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()

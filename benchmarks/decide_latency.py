"""Decide throughput and latency with the Kafka sink on, against a raw ASGI
baseline, measured with wrk (an external load generator), in one run.

Servers, one uvicorn worker each, on the same machine:

* ``baseline`` (``benchmarks/raw_asgi.py``): reads the body, parses it with orjson and
  answers with the decision server's own reply bytes for that request;
* ``decide_kafka`` (the headline): the decision server with ``BANDIT_EVENT_SINK=kafka``,
  spooling every decision and shipping it to the embedded broker (real Tansu);
* ``floor``: the baseline plus the two parts no logged VW decision can leave out, done
  with the service's own classes: one prediction of a VW model with the decide
  server's arguments and one record appended to a spool (``raw_asgi.py --floor``: the
  features rendered once per distinct request, no draw, no event encoding, no metrics,
  no shipping, no fsync). Its
  ratio to the baseline bounds what any decide path built on VW's predict and a write
  per request can reach on this machine;
* ``decide`` (secondary): the decision server with ``BANDIT_EVENT_SINK=none``;
* with ``--inline-handlers``, ``decide_kafka_inline``: as the headline but each request's
  handler run in its own task (``BANDIT_BATCH_HANDLERS=false``) rather than batched per
  event-loop iteration; with ``--shipper-thread``, ``decide_kafka_thread``: the spool
  shipped from a thread of the worker (``BANDIT_SHIPPER=thread``).

Payload: 256 requests of 20 offers × 10 features and a 10-feature context that
changes per request, each with a fixed ``event_id`` (so a decision, seeded by its
event id, is the same every time). Before measuring, every request is sent to each
server and the replies are checked byte for byte: the baseline sends what decide
sends (``replies_identical``).

Each round measures every server in turn (so a slow spell of this shared machine
falls on all of them): closed-loop peak throughput (``wrk -t1 -c16 -s wrk/bodies.lua``)
and latency at a constant ``--rate`` (``wrk -tT -cT -s wrk/rate.lua``: open loop,
latency from each request's due time, as wrk2 does). The ratios are per round;
figures are the median of the rounds with their min–max spread, with each server's
user and system CPU per request at peak (from ``/proc/PID/stat``). Prints one JSON object.

Targets (one worker): decide with the Kafka sink ≥ 0.5 × the baseline's peak, and its
p99 at 1,000 req/s no more than 1 ms above the baseline's.

    python benchmarks/decide_latency.py [--rounds 5] [--inline-handlers] [--shipper-thread]
                                        [--quick]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import orjson

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from bandit.demo.stack import Child, free_port  # noqa: E402
from bandit.streaming.broker import EmbeddedBroker  # noqa: E402

WRK_THREADS_RATE = 4  # one connection each: 250 req/s per connection at 1,000 req/s


def payloads(n: int = 256, offers: int = 20, seed: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    catalogue = [{"id": f"offer-{k:02d}", "features": {"offer": {
        **{f"c{j}": f"v{int(rng.integers(5))}" for j in range(5)},
        **{f"x{j}": round(float(rng.random()), 3) for j in range(5)}}}} for k in range(offers)]
    out = []
    for i in range(n):
        ctx = {"user": {**{f"u{j}": f"v{int(rng.integers(20))}" for j in range(5)},
                        **{f"n{j}": round(float(rng.random()), 3) for j in range(5)}}}
        out.append(orjson.dumps({"context": ctx, "offers": catalogue,
                                 "event_id": f"bench-{i:04d}"}))
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


def replies(port: int, bodies: list[bytes]) -> list[tuple[int, str, bytes]]:
    out = []
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        for body in bodies:
            r = client.post("/v1/decide", content=body,
                            headers={"content-type": "application/json"})
            out.append((r.status_code, r.headers.get("content-type", ""), r.content))
    return out


def cpu_seconds(pid: int) -> tuple[float, float]:
    """The user and system CPU seconds process ``pid`` has used (``/proc/PID/stat``)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def wrk_peak(port: int, bodies_file: Path, seconds: float,
             pid: int | None = None) -> dict[str, float]:
    before = cpu_seconds(pid) if pid is not None else (0.0, 0.0)
    out = subprocess.run(
        ["wrk", "-t1", "-c16", f"-d{seconds:g}s", "-s", str(HERE / "wrk" / "bodies.lua"),
         f"http://127.0.0.1:{port}/", "--", str(bodies_file), "/v1/decide"],
        capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    rps = errors = requests = 0.0
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("Requests/sec:"):
            rps = float(line.split()[1])
        elif " requests in " in line:  # "12345 requests in 5.00s, 11.2MB read"
            requests = float(line.split()[0])
        elif line.startswith("Non-2xx or 3xx responses:") or line.startswith("Socket errors:"):
            errors += sum(int(x.strip(",")) for x in line.split(":", 1)[1].split()
                          if x.strip(",").isdigit())
    result = {"rps": rps, "errors": errors}
    if pid is not None and rps:  # the server's CPU per request answered, in µs
        after = cpu_seconds(pid)
        # the requests wrk counted (over its own elapsed time, a little past ``seconds``)
        n = requests or rps * seconds
        result["user_us"] = (after[0] - before[0]) * 1e6 / n
        result["system_us"] = (after[1] - before[1]) * 1e6 / n
    return result


def wrk_rate(port: int, bodies_file: Path, rate: float, seconds: float,
             work: Path) -> dict[str, float]:
    t = WRK_THREADS_RATE
    out_file = work / "rate.txt"
    out_file.unlink(missing_ok=True)
    subprocess.run(
        ["wrk", f"-t{t}", f"-c{t}", f"-d{seconds:g}s", "-s", str(HERE / "wrk" / "rate.lua"),
         f"http://127.0.0.1:{port}/", "--", str(bodies_file), "/v1/decide",
         str(rate / t), str(out_file), str(t)],
        capture_output=True, text=True, timeout=seconds + 60, check=True)
    lat: list[int] = []
    errors = 0
    for line in out_file.read_text().splitlines():
        n, e, values = (line.split(" ", 2) + [""])[:3]
        errors += int(e)
        lat += [int(v) for v in values.split(",") if v]
    a = np.array(lat, dtype=float) / 1000.0
    return {"requests": len(lat), "errors": errors,
            "rate_rps": round(len(lat) / seconds, 1),
            "p50_ms": round(float(np.percentile(a, 50)), 3),
            "p99_ms": round(float(np.percentile(a, 99)), 3),
            "p999_ms": round(float(np.percentile(a, 99.9)), 3)}


def spread(values: list[float]) -> dict[str, object]:
    return {"median": round(float(np.median(values)), 3),
            "min": round(float(min(values)), 3), "max": round(float(max(values)), 3),
            "rounds": [round(float(v), 3) for v in values]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--rate", type=float, default=1000.0)
    p.add_argument("--rate-seconds", type=float, default=10.0,
                   help="constant-rate seconds per server and round")
    p.add_argument("--peak-seconds", type=float, default=5.0,
                   help="closed-loop seconds per server and round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--no-plain", action="store_true",
                   help="skip the secondary decide server without a sink")
    p.add_argument("--shipper-thread", action="store_true",
                   help="also the Kafka sink shipping from a thread of the server "
                        "(BANDIT_SHIPPER=thread) rather than its child process")
    p.add_argument("--inline-handlers", action="store_true",
                   help="also the Kafka sink with each handler run in its request's task "
                        "(BANDIT_BATCH_HANDLERS=false) rather than batched per loop iteration")
    p.add_argument("--quick", action="store_true", help="short runs, for a smoke test")
    args = p.parse_args()
    if args.quick:
        args.rate_seconds, args.peak_seconds, args.rate, args.rounds = 2.0, 1.0, 300.0, 1
    if shutil.which("wrk") is None:
        sys.exit("decide_latency: needs wrk (Debian: apt-get install -y wrk)")
    bodies = payloads()
    out: dict[str, object] = {"benchmark": "decide_latency", "offers": 20,
                              "features_per_offer": 10, "context_features": 10,
                              "cpus": os.cpu_count(), "rounds": args.rounds,
                              "load_generator": "wrk", "workers": 1}
    with tempfile.TemporaryDirectory() as tmp, \
            EmbeddedBroker(free_port(), log_path=Path(tmp) / "broker.log") as broker:
        work = Path(tmp)
        bodies_file = work / "bodies.txt"
        bodies_file.write_bytes(b"\n".join(bodies) + b"\n")
        base_env = {"BANDIT_EVENT_SINK": "none", "BANDIT_POLICY": "epsilon:0.05"}
        envs = {"decide_kafka": {**base_env, "BANDIT_EVENT_SINK": "kafka",
                                 "BANDIT_KAFKA_BOOTSTRAP": broker.bootstrap,
                                 "BANDIT_SPOOL_DIR": str(work / "spool"),
                                 "BANDIT_MODEL_DIR": str(work / "models-kafka")},
                "decide": {**base_env, "BANDIT_MODEL_DIR": str(work / "models")}}
        if args.shipper_thread:
            envs["decide_kafka_thread"] = {**envs["decide_kafka"], "BANDIT_SHIPPER": "thread",
                                           "BANDIT_SPOOL_DIR": str(work / "spool-thread"),
                                           "BANDIT_MODEL_DIR": str(work / "models-thread")}
        if args.inline_handlers:
            envs["decide_kafka_inline"] = {**envs["decide_kafka"],
                                           "BANDIT_BATCH_HANDLERS": "false",
                                           "BANDIT_SPOOL_DIR": str(work / "spool-inline"),
                                           "BANDIT_MODEL_DIR": str(work / "models-inline")}
        if args.no_plain:
            del envs["decide"]
        children: list[Child] = []
        ports: dict[str, int] = {}
        try:
            for name, env in envs.items():
                ports[name] = free_port()
                child = Child(name, "bandit.cli.serve", ["--port", str(ports[name]),
                                                         "--workers", "1"],
                              env, work / f"{name}.log")
                children.append(child)
                wait_healthy(ports[name], child)
            decided = replies(ports["decide_kafka"], bodies)
            assert all(s == 200 for s, _, _ in decided), decided[0]
            table = {f"bench-{i:04d}": r.decode() for i, (_, _, r) in enumerate(decided)}
            (work / "replies.json").write_bytes(orjson.dumps(table))
            ports["baseline"] = free_port()
            child = Child("baseline", "", [], {}, work / "baseline.log",
                          argv=[sys.executable, str(HERE / "raw_asgi.py"),
                                str(ports["baseline"]), str(work / "replies.json")])
            children.append(child)
            wait_healthy(ports["baseline"], child)
            ports["floor"] = free_port()
            child = Child("floor", "", [], {}, work / "floor.log",
                          argv=[sys.executable, str(HERE / "raw_asgi.py"), str(ports["floor"]),
                                str(work / "replies.json"), "--floor", str(work / "spool-floor")])
            children.append(child)
            wait_healthy(ports["floor"], child)
            same = replies(ports["baseline"], bodies) == decided == \
                replies(ports["decide_kafka"], bodies) == replies(ports["floor"], bodies)
            out["replies_identical"] = same
            if "decide" in ports:
                out["replies_identical_without_sink"] = replies(ports["decide"], bodies) == \
                    decided
            if not same:
                sys.exit("decide_latency: the baseline's replies differ from decide's")
            order = ["baseline", "floor", "decide_kafka"] + [
                n for n in ("decide", "decide_kafka_thread", "decide_kafka_inline") if n in ports]
            for name in order:  # warm-up
                wrk_peak(ports[name], bodies_file, min(2.0, args.peak_seconds))
            pids = {c.name: c.proc.pid for c in children}  # one worker: the server itself
            peaks: dict[str, list[float]] = {n: [] for n in order}
            cpu: dict[str, list[tuple[float, float]]] = {n: [] for n in order}
            rates: dict[str, list[dict[str, float]]] = {n: [] for n in order}
            errors = {n: 0.0 for n in order}
            for _ in range(args.rounds):
                for name in order:
                    pk = wrk_peak(ports[name], bodies_file, args.peak_seconds, pids[name])
                    peaks[name].append(pk["rps"])
                    if "user_us" in pk:
                        cpu[name].append((pk["user_us"], pk["system_us"]))
                    errors[name] += pk["errors"]
                for name in order:
                    rt = wrk_rate(ports[name], bodies_file, args.rate, args.rate_seconds, work)
                    rates[name].append(rt)
                    errors[name] += rt["errors"]
            health = httpx.get(f"http://127.0.0.1:{ports['decide_kafka']}/readyz").json()
            out["decide_kafka_sink"] = health.get("sink")
            out["floor_work"] = httpx.get(f"http://127.0.0.1:{ports['floor']}/floorz").json()
        finally:
            for child in children:
                child.stop()
    for name in order:
        out[name] = {
            "peak_rps": spread(peaks[name]),
            # the server process's CPU per request at peak (wrk runs on the other core)
            "cpu_us_per_request": {"user": spread([u for u, _ in cpu[name]]),
                                   "system": spread([s for _, s in cpu[name]])},
            "at_rate": {"rate_rps": args.rate,
                        "achieved_rps": spread([r["rate_rps"] for r in rates[name]]),
                        "p50_ms": spread([r["p50_ms"] for r in rates[name]]),
                        "p99_ms": spread([r["p99_ms"] for r in rates[name]]),
                        "p999_ms": spread([r["p999_ms"] for r in rates[name]]),
                        "requests": int(sum(r["requests"] for r in rates[name]))},
            "errors": int(errors[name])}
    base = peaks["baseline"]
    ratios: dict[str, object] = {}
    targets: dict[str, bool] = {}
    for name in order[1:]:
        ratio = [d / b for d, b in zip(peaks[name], base, strict=True) if b]
        p99_over = [r["p99_ms"] - b["p99_ms"]
                    for r, b in zip(rates[name], rates["baseline"], strict=True)]
        ratios[f"{name}_peak_vs_baseline"] = spread(ratio)
        ratios[f"{name}_p99_over_baseline_ms"] = spread(p99_over)
    out["ratios"] = ratios
    kr = ratios["decide_kafka_peak_vs_baseline"]
    kp = ratios["decide_kafka_p99_over_baseline_ms"]
    assert isinstance(kr, dict) and isinstance(kp, dict)
    targets["decide_kafka_peak_ge_0.5x_baseline"] = float(kr["median"]) >= 0.5  # type: ignore[arg-type]
    targets["decide_kafka_p99_le_baseline_plus_1ms"] = float(kp["median"]) <= 1.0  # type: ignore[arg-type]
    targets["no_errors"] = all(v == 0 for v in errors.values())
    out["targets"] = targets
    print(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()

"""``bandit-replay optimize --apply`` end to end: the winner is published to a real model
store, a real server (uvicorn) hot-swaps to it and a learner learns on from it; and
nothing is published when the winner does not beat the current policy (the logged
policy, the served spec's replay, or the served model on the guard's held-out rows)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest

from bandit.config.settings import Settings
from bandit.core.policy_spec import PolicySpec
from bandit.core.vw_adapter import VWModel
from bandit.demo.simulator import World
from bandit.learner.daemon import Learner
from bandit.stores.modelstore import ModelStore
from replay.apply import apply, guard_rows, train
from replay.cli import main
from replay.grid import grid
from replay.optimize import optimize
from replay.readers import read
from tests.replay.optsim import policy_logs

LOGGER = "epsilon:0.2"
FAST = ["--estimators", "ips,snips", "--bootstrap", "0", "--quiet", "--jobs", "1"]


@pytest.fixture(scope="module")
def joined(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("apply") / "joined.dsjson"
    policy_logs(path, 2000, spec=LOGGER, seed=7)
    return path


def _store_with(tmp_path: Path, joined: Path, spec: str, *, learned: bool = True,
                share: float = 0.1) -> ModelStore:
    """A store serving ``spec`` as the loop's learner would have left it: learned over
    the logs except the rows its promotion guard holds out."""
    logs = read(str(joined), keep_rows=True)
    store = ModelStore(tmp_path / "models")
    learn = ~guard_rows(logs, share) if learned else np.zeros(logs.n, bool)
    model, _ = train(logs, PolicySpec.parse(spec), learn)
    try:
        store.publish(model, spec, int(learn.sum()))
    finally:
        model.close()
    return store


def _files(store: ModelStore) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(store.dir.iterdir())}


def _refused(joined: Path, store: ModelStore, grid_text: str, code: int, capsys,
             *extra: str) -> tuple[str, str]:
    """Run ``optimize --apply``; assert its exit code and that the store is unchanged."""
    before = _files(store)
    rc = main(["optimize", str(joined), "--grid", grid_text, "--apply", "--model-dir",
               str(store.dir), *extra, *FAST])
    out, err = capsys.readouterr()
    assert rc == code, (out, err)
    assert _files(store) == before
    return out, err


def _model_info(base: str, version: str, timeout: float = 15.0) -> dict:
    deadline = time.monotonic() + timeout
    info: dict = {}
    while time.monotonic() < deadline:
        info = httpx.get(f"{base}/v1/model", timeout=2).json()
        if info["version"] == version:
            return info
        time.sleep(0.1)
    raise AssertionError(f"server still serves {info.get('version')}, not {version}")


def test_apply_publishes_the_winner_and_the_loop_picks_it_up(joined, tmp_path, start_server,
                                                             capsys):
    store = _store_with(tmp_path, joined, LOGGER)
    srv = start_server({"BANDIT_MODEL_DIR": str(store.dir), "BANDIT_EVENT_SINK": "none",
                        "BANDIT_POLICY": LOGGER, "BANDIT_MODEL_POLL": "0.2"})
    srv.wait_ready()
    assert _model_info(srv.base, "000001")["policy"] == LOGGER
    settings = Settings(model_dir=str(store.dir), learner_process=False)
    learner = Learner(settings)  # resumed from the served version, as a running learner is
    try:
        assert learner.checkpointer.policy == LOGGER
        rc = main(["optimize", str(joined), "--grid", "epsilon:0.02;epsilon:1", "--apply",
                   "--model-dir", str(store.dir), "--json", *FAST])
        out = orjson.loads(capsys.readouterr().out)
        assert rc == 0, out["apply"]
        assert out["current"] == LOGGER and out["winner"] == "epsilon:0.02"
        applied = out["apply"]
        assert applied["applied"] and applied["version"] == "000002"
        assert applied["guard"]["new"] >= applied["guard"]["old"]
        man = store.current()
        assert man is not None and man.version == "000002" and man.policy == "epsilon:0.02"
        assert man.extra["optimized"]["lower_bound"] > 0
        # the server hot-swaps to it and decides with it
        info = _model_info(srv.base, "000002")
        assert info["policy"] == "epsilon:0.02" and info["checksum"] == man.sha256
        body, _ = World(seed=7).request(np.random.default_rng(1), 10)
        r = httpx.post(f"{srv.base}/v1/decide", content=orjson.dumps(body), timeout=5)
        assert r.status_code == 200 and r.json()["model_version"] == "000002"
        # the learner adopts it from the configuration's new generation
        learner.follow_config()
        ck = learner.checkpointer
        assert ck.policy == "epsilon:0.02" and ck.manifest is not None
        assert ck.manifest.version == "000002"
        assert "--epsilon 0.019999" in learner.model.model.args_text()  # (VW keeps a float)
    finally:
        learner.close()
    # run again: the best spec is served now, nothing more to publish
    out, _ = _refused(joined, store, "epsilon:0.1", 0, capsys)
    assert "apply: already served: epsilon:0.02" in out


def test_nothing_is_published_when_no_candidate_beats_the_logged_policy(
        joined, tmp_path, start_server, capsys):
    store = _store_with(tmp_path, joined, "epsilon:0.6")
    srv = start_server({"BANDIT_MODEL_DIR": str(store.dir), "BANDIT_EVENT_SINK": "none",
                        "BANDIT_MODEL_POLL": "0.2"})
    srv.wait_ready()
    out, _ = _refused(joined, store, "epsilon:1", 2, capsys)
    assert "apply: no candidate beats the logged policy" in out
    time.sleep(0.5)  # several polls: the server keeps its model
    assert _model_info(srv.base, "000001", timeout=1)["policy"] == "epsilon:0.6"


def test_nothing_is_published_when_the_winner_does_not_beat_the_served_spec(
        joined, tmp_path, capsys):
    """``epsilon:0.1`` beats the logged ``epsilon:0.2`` with the tightest bound, but the
    served ``squarecb:100`` is better on the same rows: it stays."""
    store = _store_with(tmp_path, joined, "squarecb:100")
    text, _ = _refused(joined, store, "epsilon:0.1", 2, capsys, "--json")
    out = orjson.loads(text)
    assert out["winner"] == "epsilon:0.1" and out["current"] == "squarecb:100"
    assert not out["apply"]["applied"]
    assert "does not beat the served squarecb:100" in out["apply"]["reason"]


def test_the_promotion_guard_keeps_a_served_model_that_is_better_on_held_out_rows(
        joined, tmp_path):
    """The served model (a spec not among the candidates) was taught the guard's
    held-out rows, so it is better on them than the winner: the guard refuses."""
    logs = read(str(joined), keep_rows=True)
    result = optimize(logs, grid("epsilon:0.05", ["epsilon:0.02"]), estimators="ips,snips",
                      n_bootstrap=0)
    assert result.winner is not None
    store = ModelStore(tmp_path / "models")
    held = guard_rows(logs, 0.3)
    unused, rows = train(logs, PolicySpec.parse("epsilon:0.01"), ~held)
    unused.close()
    taught = VWModel(PolicySpec.parse("epsilon:0.01").vw_args())
    try:
        for _ in range(5):
            for e in rows:
                taught.learn(e.context, e.lines, e.chosen, e.reward, e.probability)
        store.publish(taught, "epsilon:0.01", len(rows))
    finally:
        taught.close()
    before = _files(store)
    outcome = apply(result, logs, store.dir, holdout=0.3, margin=0.0)
    assert not outcome.applied and outcome.exit_code == 2
    assert outcome.reason.startswith("the promotion guard refused epsilon:0.02")
    assert outcome.guard["new"] < outcome.guard["old"]
    assert _files(store) == before
    # the same winner against an untrained served model passes the guard
    weak = ModelStore(tmp_path / "weak")
    blank = VWModel(PolicySpec.parse("epsilon:0.01").vw_args())
    try:
        weak.publish(blank, "epsilon:0.01", 0)
    finally:
        blank.close()
    outcome = apply(result, logs, weak.dir, holdout=0.3, margin=0.0)
    assert outcome.applied and outcome.exit_code == 0
    assert weak.current() is not None and weak.current().policy == result.winner.name


def test_a_version_pinned_by_a_person_is_left_alone(joined, tmp_path, capsys):
    store = _store_with(tmp_path, joined, LOGGER)
    store.pin("000001", reason="manual")
    _, err = _refused(joined, store, "epsilon:0.02", 1, capsys)
    assert "version 000001 is pinned (manual); unpin it" in err

"""A/B splits, apprentice and shadow modes, the arms report, the status page."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections import Counter

import numpy as np
import orjson
import pytest
from prometheus_client import CollectorRegistry

from bandit.config.settings import Settings
from bandit.core.experiments import Experiment
from bandit.core.policy import VWPolicy
from bandit.core.policy_spec import PolicySpec
from bandit.demo.simulator import World
from bandit.server.app import create_app
from bandit.streaming.sinks import FileSink
from replay.arms import compare_arms
from replay.readers import read_dsjson
from tests.server.conftest import Client, offers
from tests.server.test_app import logged


def test_split_shares_and_stickiness():
    exp = Experiment.parse("spring:model=0.6,popularity=0.25,fixed=0.15")
    users = [f"user-{i}" for i in range(100_000)]
    arms = [exp.assign(u) for u in users]
    counts = Counter(arms)
    for arm in exp.arms:
        assert abs(counts[arm.name] / len(users) - arm.share) < 0.01, counts
    assert [exp.assign(u) for u in users[:2000]] == arms[:2000]  # sticky
    other = Experiment.parse("autumn:model=0.6,popularity=0.25,fixed=0.15")
    moved = sum(a != other.assign(u) for u, a in zip(users[:5000], arms, strict=False))
    assert moved > 1000  # a new experiment reshuffles
    for bad in ("x", "x:model=0.5", "x:model=0.5,best=0.5", "x:model=1.5",
                "x:model=0.5,model=0.5"):
        with pytest.raises(ValueError):
            Experiment.parse(bad)


def make(tmp_path, **kw):
    # a fixed salt: which users a share puts in an arm (or the holdout) is then fixed too,
    # so the share tests are seeded like every statistical test
    kw.setdefault("user_salt", "experiments-test-salt")
    s = Settings(model_dir=str(tmp_path / "m"), event_dir=str(tmp_path / "ev"),
                 event_sink="file", **kw)
    app = create_app(s, VWPolicy.fresh(PolicySpec.parse("epsilon:0.1")),
                     FileSink(s.event_dir), registry=CollectorRegistry())
    return s, Client(app)


def test_arms_are_logged_and_compared(tmp_path):
    s, c = make(tmp_path, experiment="exp:model=0.5,fixed=0.3,uniform=0.2")
    world = World(seed=3)
    rng = np.random.default_rng(0)
    try:
        for i in range(1500):
            body, sim = world.request(rng, 5, user_id=f"u{i % 500}")
            out = c.post("/v1/decide", json=body).json()
            chosen = world.by_id(out["slots"][0]["id"])
            if rng.random() < world.click_probability(body["context"], chosen):
                c.post("/v1/rewards", json={"event_id": out["event_id"], "reward": 1.0,
                                            "kind": "click"})
        page = c.get("/").text
    finally:
        c.close()
    decisions = logged(s, "decisions")
    by_user: dict[str, set[str]] = {}
    for d in decisions:
        by_user.setdefault(d["user"], set()).add(d["arm"])
        if d["arm"] == "fixed":
            assert d["a"][0] == 1 and d["p"][0] == 1.0  # the client's first offer, p = 1
        if d["arm"] == "uniform":
            assert d["p"][0] == pytest.approx(0.2)
    assert all(len(a) == 1 for a in by_user.values())  # one arm per user
    # join rewards to decisions the way the learner does, then compare the arms
    rewards = {r["EventId"] for r in logged(s, "rewards")}
    path = tmp_path / "joined.dsjson"
    with open(path, "wb") as f:
        for d in decisions:
            hit = d["EventId"] in rewards
            o = [{"v": 1.0, "kind": "click"}] if hit else []
            f.write(orjson.dumps({**d, "_label_cost": -1.0 if hit else 0.0,
                                  "_label_probability": d["p"][0], "o": o}) + b"\n")
    result = compare_arms(read_dsjson([path]), control="fixed")
    assert set(result["arms"]) == {"model", "fixed", "uniform"}
    assert sum(r["n"] for r in result["arms"].values()) == 1500
    # the comparison, recomputed here from the logged decisions and rewards: a
    # two-sided z-test of the difference in click rate (unpooled variances)
    vs = result["arms"]["uniform"]["vs_control"]
    from statistics import NormalDist

    def clicks(arm: str) -> np.ndarray:
        return np.array([d["EventId"] in rewards for d in decisions if d["arm"] == arm],
                        dtype=float)

    u, f = clicks("uniform"), clicks("fixed")
    diff = u.mean() - f.mean()
    se = np.sqrt(u.var(ddof=1) / len(u) + f.var(ddof=1) / len(f))
    p = 2 * (1 - NormalDist().cdf(abs(diff / se)))
    assert vs["difference"] == pytest.approx(diff, rel=1e-12)
    assert vs["p_value"] == pytest.approx(p, rel=1e-9)
    assert vs["ci"] == pytest.approx([diff - 1.959964 * se, diff + 1.959964 * se], rel=1e-6)
    assert result["arms"]["fixed"]["n"] == len(f) and result["arms"]["uniform"]["n"] == len(u)
    assert "rate_click" in str(result) or "click" in result["arms"]["fixed"]["rates"]
    # the status page shows the arms
    assert "by arm" in page and all(a in page for a in ("model", "fixed", "uniform"))


def test_apprentice_mode_serves_the_default_and_reports_agreement(tmp_path):
    """A model taught that o2 is the only offer that pays agrees with the client's
    default (its first offer) exactly when o2 is listed first: 15 of 40 decisions."""
    from bandit.core.schema import RequestParser

    s = Settings(model_dir=str(tmp_path / "m"), event_dir=str(tmp_path / "ev"),
                 event_sink="file", mode="apprentice")
    policy = VWPolicy.fresh(PolicySpec.parse("epsilon:0.1"))
    parse = RequestParser(s).decide
    for i in range(300):
        req = parse(orjson.dumps({"offers": offers(4)}))
        shown = i % 4
        policy.model.learn(req.context, [o.line for o in req.offers], shown,
                           1.0 if shown == 2 else 0.0, 0.25)
    app = create_app(s, policy, FileSink(s.event_dir), registry=CollectorRegistry())
    c = Client(app)
    o2_first = [i % 8 < 3 for i in range(40)]  # 15 of 40
    try:
        outs = []
        for first in o2_first:
            listed = offers(4)
            if first:
                listed = [listed[2], *listed[:2], listed[3]]
            outs.append((listed[0]["id"],
                         c.post("/v1/decide", json={"offers": listed}).json()))
        info = c.get("/v1/model").json()
    finally:
        c.close()
    assert all(o["slots"][0]["id"] == default and o["slots"][0]["probability"] == 1.0
               for default, o in outs)  # the default is served, always
    assert info["mode"] == "apprentice" and info["apprentice"]["decisions"] == 40
    assert info["apprentice"]["agreement"] == 15 / 40
    assert [d["agree"] for d in logged(s, "decisions")] == o2_first


def test_shadow_policy_decides_in_parallel(tmp_path):
    s, c = make(tmp_path, shadow_policy="uniform")
    try:
        out = c.post("/v1/decide", json={"offers": offers(4), "event_id": "sh1"}).json()
    finally:
        c.close()
    (d,) = logged(s, "decisions")
    assert d["shadow"]["policy"] == "uniform" and len(d["shadow"]["a"]) == 4
    assert d["shadow"]["p"][0] == pytest.approx(0.25)
    assert out["slots"][0]["id"] == d["ids"][d["a"][0] - 1]  # what was shown is the policy's


def test_status_page_content(tmp_path):
    s, c = make(tmp_path)
    try:
        for _ in range(30):
            out = c.post("/v1/decide", json={"offers": offers(3)}).json()
            c.post("/v1/rewards", json={"event_id": out["event_id"], "reward": 1.0})
        page = c.get("/")
    finally:
        c.close()
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    for tile in ("decisions/s (last minute)", "exploration rate (5 min)", "model version",
                 "model age", "learner lag (messages)", "spool depth"):
        assert f"data-tile='{tile}'" in html
    assert "<svg class='chart'" in html and "polyline" in html
    assert "<td>epsilon:0.1</td><td>30</td><td>1.0000</td>" in html


@pytest.mark.integration
def test_status_page_in_a_real_headless_chromium(start_server, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (Debian package `chromium`); this test "
                    "installs nothing at run time")
    srv = start_server({"BANDIT_MODEL_DIR": str(tmp_path / "m"), "BANDIT_EVENT_SINK": "none",
                        "BANDIT_EXPERIMENT": "exp:model=0.5,uniform=0.5",
                        "BANDIT_USER_SALT": "status-page-test-salt"})  # a fixed split
    srv.wait_ready()
    import httpx

    with httpx.Client(base_url=srv.base) as c:
        for i in range(200):
            out = c.post("/v1/decide", json={"offers": offers(4), "user_id": f"u{i}"}).json()
            if i % 3 == 0:
                c.post("/v1/rewards", json={"event_id": out["event_id"], "reward": 1.0})
    shot = tmp_path / "status.png"
    args = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            "--window-size=1200,1000", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*args, "--dump-dom", srv.base + "/"], capture_output=True,
                         timeout=120, text=True)
    subprocess.run([*args, f"--screenshot={shot}", srv.base + "/"], capture_output=True,
                   timeout=120, check=False)
    assert "data-tile=\"decisions/s (last minute)\"" in dom.stdout
    assert dom.stdout.count("class=\"series\"") >= 4  # two arms × two charts, rendered
    import matplotlib.image as mpimg

    img = mpimg.imread(str(shot))
    assert img.shape[0] >= 900 and img.shape[1] >= 1100
    rgb = (img[..., :3] * 255).round().astype(int)
    blue = np.all(np.abs(rgb - [31, 119, 180]) <= 6, axis=-1).sum()
    orange = np.all(np.abs(rgb - [255, 127, 14]) <= 6, axis=-1).sum()
    assert blue > 50 and orange > 50  # both arms' chart lines were painted
    time.sleep(0)  # keep the screenshot for inspection in tmp_path


def test_incremental_value_over_a_holdout_by_segment(tmp_path, capsys):
    """Holdout users see nothing; the treatment's incremental conversion rate over them,
    overall and per segment, with intervals."""
    from replay.cli import main as replay_main

    s, c = make(tmp_path, holdout=0.3, user_salt="fixed-for-the-test")
    rng = np.random.default_rng(1)
    try:
        for i in range(3000):
            young = i % 2 == 0
            out = c.post("/v1/decide", json={"offers": offers(3), "user_id": f"u{i}",
                                             "context": {"u": {"age": "young" if young
                                                               else "old"}}}).json()
            shown = out["slots"][0]["id"]
            p = (0.10 if shown is None else (0.30 if young else 0.12))  # truth
            if rng.random() < p:
                c.post("/v1/rewards", json={"event_id": out["event_id"], "reward": 1.0,
                                            "kind": "conversion"})
    finally:
        c.close()
    rewards = {r["EventId"] for r in logged(s, "rewards")}
    path = tmp_path / "joined.dsjson"
    with open(path, "wb") as f:
        for d in logged(s, "decisions"):
            hit = d["EventId"] in rewards
            f.write(orjson.dumps({**d, "_label_cost": -1.0 if hit else 0.0,
                                  "_label_probability": d["p"][0],
                                  "o": [{"v": 1.0, "kind": "conversion"}] if hit else []})
                    + b"\n")
    assert replay_main(["arms", str(path), "--control", "holdout", "--segment", "age",
                        "--json"]) == 0
    result = orjson.loads(capsys.readouterr().out)
    lift = result["arms"]["treatment"]["vs_control"]
    assert lift["ci"][0] <= 0.11 <= lift["ci"][1]  # true overall lift: (0.30+0.12)/2 − 0.10
    young = result["segments"]["young"]["treatment"]["vs_control"]
    old = result["segments"]["old"]["treatment"]["vs_control"]
    assert young["ci"][0] <= 0.20 <= young["ci"][1] and old["ci"][0] <= 0.02 <= old["ci"][1]
    assert young["difference"] > old["difference"]

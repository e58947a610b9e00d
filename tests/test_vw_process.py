"""VW learning in a child process: the same model as learning in-process, refused
lines counted, a dead child reported, saves that hold exactly the lines sent."""

import os
import random
import signal

import orjson
import pytest

from bandit.core.events import joined_event
from bandit.core.policy_spec import PolicySpec
from bandit.core.vw_adapter import VWModel, action_line
from bandit.learner.vw_process import VWProcess, VWProcessError

OFFERS = [{"o_id": {f"id=o{i}": 1.0}, "ocat": {f"c={i % 3}": 1.0}} for i in range(6)]
LINES = [action_line(o) for o in OFFERS]


def joined_lines(n: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        ctx = {"cuser": {f"seg={rng.randrange(3)}": 1.0, "x": rng.random()}}
        a = rng.randrange(len(OFFERS))
        reward = float(rng.random() < 0.2 + 0.1 * a)
        d = {"EventId": f"e{i}", "a": [a + 1], "p": [1 / 6], "c": {**ctx, "_multi": OFFERS}}
        out.append(orjson.dumps(joined_event(d, reward, [])))
    return out


def predictions(model: VWModel) -> list[list[float]]:
    rng = random.Random(99)
    return [model.predict({"cuser": {f"seg={s}": 1.0, "x": rng.random()}}, LINES)
            for s in range(3)]


def test_child_learns_the_same_model_as_in_process(tmp_path):
    args = PolicySpec.parse("epsilon:0.1").vw_args(7)
    lines = joined_lines(3000, 1)
    here = VWModel(args)
    child = VWProcess(args, chunk=4096)  # small chunks: many partial writes
    try:
        for i, line in enumerate(lines):
            here.learn_dsjson(line)
            child.learn_dsjson(line if i % 2 else line.decode())
            if i == 1000:
                child.save(tmp_path / "mid.vw")  # a save in the middle changes nothing
        child.save(tmp_path / "child.vw")
        here.save(tmp_path / "here.vw")
        assert (child.learned, child.errors, child.sent) == (3000, 0, 3000)
    finally:
        child.close()
        here.close()
    # the same bytes as the model learned here; the mid save held only its 1,001 lines
    assert (tmp_path / "child.vw").read_bytes() == (tmp_path / "here.vw").read_bytes()
    assert (tmp_path / "mid.vw").read_bytes() != (tmp_path / "child.vw").read_bytes()
    a = VWModel.load(tmp_path / "child.vw")
    assert len(predictions(a)) == 3
    a.close()


def test_a_child_resumes_from_a_saved_model(tmp_path):
    args = PolicySpec.parse("epsilon:0.1").vw_args(7)
    lines = joined_lines(1000, 2)
    whole = VWProcess(args)
    first = VWProcess(args)
    try:
        for line in lines:
            whole.learn_dsjson(line)
        whole.save(tmp_path / "whole.vw")
        for line in lines[:500]:
            first.learn_dsjson(line)
        first.save(tmp_path / "half.vw")
    finally:
        whole.close()
        first.close()
    second = VWProcess.load(tmp_path / "half.vw")
    try:
        for line in lines[500:]:
            second.learn_dsjson(line)
        second.save(tmp_path / "resumed.vw")
    finally:
        second.close()
    a, b = VWModel.load(tmp_path / "whole.vw"), VWModel.load(tmp_path / "resumed.vw")
    flat = [x for pmf in predictions(a) for x in pmf]
    assert flat == pytest.approx([x for pmf in predictions(b) for x in pmf], abs=1e-5)
    a.close()
    b.close()


def only_good(args: str, lines: list[bytes], path) -> bytes:
    """The model file learned in-process from ``lines`` alone."""
    here = VWModel(args)
    try:
        for line in lines:
            here.learn_dsjson(line)
        here.save(path)
    finally:
        here.close()
    return path.read_bytes()


def test_a_line_vw_cannot_use_does_not_stop_learning(tmp_path):
    args = PolicySpec.parse("epsilon:0.1").vw_args(7)
    child = VWProcess(args)
    try:
        good = joined_lines(20, 3)
        for line in good[:10]:
            child.learn_dsjson(line)
        child.learn_dsjson(b'{"_label_cost": oops')  # not JSON
        for line in good[10:]:
            child.learn_dsjson(line)
        child.save(tmp_path / "m.vw")
        # the bad line was refused and counted, not learned: the model is the one the
        # 20 good lines alone make, byte for byte
        assert (child.learned, child.errors, child.sent) == (20, 1, 21)
        assert (tmp_path / "m.vw").read_bytes() == only_good(args, good, tmp_path / "g.vw")
        for line in good:
            child.learn_dsjson(line)
        child.save(tmp_path / "m2.vw")
        assert (child.learned, child.errors) == (40, 1)
        assert (tmp_path / "m2.vw").read_bytes() == only_good(args, good + good,
                                                               tmp_path / "g2.vw")
        learned, errors = child.learned, child.errors
        # a newline is whitespace to JSON: sent as a space, it cannot start a command
        child.learn_dsjson(b'{"a": 1}\n!save ' + str(tmp_path / "x").encode())
        with pytest.raises(ValueError, match="one line"):
            child.learn_dsjson(b"!save /tmp/x")
        child.learn_dsjson(good[0].replace(b',"c":', b',\n"c":\n'))  # still learned
        child.save(tmp_path / "m3.vw")
        assert (child.learned, child.errors) == (learned + 1, errors + 1)
        assert not (tmp_path / "x").exists()
    finally:
        child.close()


def test_a_dead_child_is_reported_not_ignored(tmp_path):
    child = VWProcess(PolicySpec.parse("epsilon:0.1").vw_args(7))
    try:
        os.kill(child._proc.pid, signal.SIGKILL)
        child._proc.wait()
        with pytest.raises(VWProcessError):
            for line in joined_lines(2000, 4):  # enough to fill the pipe
                child.learn_dsjson(line)
            child.save(tmp_path / "m.vw")
        assert not (tmp_path / "m.vw").exists()
    finally:
        child.close()


def test_a_model_vw_cannot_load_is_refused(tmp_path):
    bad = tmp_path / "bad.vw"
    bad.write_bytes(b"not a model")
    with pytest.raises(VWProcessError, match="could not start"):
        VWProcess.load(bad)


def test_a_save_begun_holds_exactly_the_lines_sent_before_it(tmp_path):
    args = PolicySpec.parse("epsilon:0.1").vw_args(7)
    lines = joined_lines(1500, 5)
    child, here = VWProcess(args), VWModel(args)
    try:
        for line in lines[:1000]:
            child.learn_dsjson(line)
            here.learn_dsjson(line)
        here.save(tmp_path / "here.vw")
        child.save_begin(tmp_path / "child.vw")
        with pytest.raises(VWProcessError, match="in progress"):
            child.save_begin(tmp_path / "other.vw")
        for line in lines[1000:]:  # sent while the child saves: after the save
            child.learn_dsjson(line)
            child.save_done()
        assert child.save_done(wait=True)
        assert (child.learned, child.errors) == (1000, 0)
        child.save(tmp_path / "all.vw")
        assert child.learned == 1500
    finally:
        child.close()
        here.close()
    assert (tmp_path / "child.vw").read_bytes() == (tmp_path / "here.vw").read_bytes()
    assert (tmp_path / "all.vw").read_bytes() != (tmp_path / "here.vw").read_bytes()

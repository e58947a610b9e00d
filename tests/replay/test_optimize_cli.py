"""``bandit-replay optimize`` end to end: the table, JSON, the report, exit codes, the
grid, and bad input (a clear error naming file, line and field; exit 1; nothing
published)."""

from __future__ import annotations

import re

import orjson
import pytest

from bandit.core.policy_spec import PolicySpec
from bandit.core.vw_adapter import VWModel
from replay.cli import main
from replay.grid import default_grid, grid, parse_grid
from tests.replay.optsim import policy_logs


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "joined.dsjson"
    policy_logs(path, 1500, spec="epsilon:0.2", seed=3)
    return path


def _lines(path):
    return path.read_bytes().splitlines(keepends=True)


FAST = ["--estimators", "ips,snips", "--bootstrap", "20", "--quiet", "--jobs", "1"]


def test_table_json_and_report(logs, tmp_path, capsys):
    report = tmp_path / "r.html"
    rc = main(["optimize", str(logs), "--grid", "epsilon:0.02;epsilon:1", "--current",
               "epsilon:0.05", "--report", str(report), *FAST])
    out = capsys.readouterr().out
    assert rc == 0
    assert "1500 rows (0 skipped); 3 candidates" in out and "logged (baseline)" in out
    assert "winner: epsilon:0.02" in out and "current spec: epsilon:0.05 (rank 2)" in out
    assert "note: 1500 rows: on fewer than 3,000 the intervals" in out
    page = report.read_text()
    assert page.count("<img") == 2 and "epsilon:0.02" in page and "Bonferroni over 3" in page
    rc = main(["optimize", str(logs), "--grid", "epsilon:0.02;epsilon:1", "--current",
               "epsilon:0.05", "--json", *FAST])
    result = orjson.loads(capsys.readouterr().out)
    assert rc == 0 and result["winner"] == "epsilon:0.02" and result["comparisons"] == 3
    assert [c["spec"] for c in result["candidates"]][0] == "epsilon:0.02"
    assert result["candidates"][-1]["spec"] == "epsilon:1"
    worst = result["candidates"][-1]["vs_logged"]["ips"]
    assert worst["ci_corrected"][1] < 0  # uniform is worse than the logger, and says so


def test_exit_code_2_when_no_candidate_beats_the_logged_policy(logs, tmp_path, capsys):
    store = tmp_path / "models"
    rc = main(["optimize", str(logs), "--grid", "epsilon:1", "--current", "epsilon:0.6",
               "--apply", "--model-dir", str(store), *FAST])
    out = capsys.readouterr().out
    assert rc == 2
    assert "no candidate beats the logged policy" in out
    assert not (store / "manifest.json").exists()


def test_help_documents_the_exit_codes(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["optimize", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "exit codes:" in text and "0  a candidate beats the logged policy" in text
    assert "1  error" in text and "2  no candidate beats the current policy" in text


def _no_probabilities(line: bytes) -> bytes:
    obj = orjson.loads(line)
    del obj["p"], obj["_label_probability"]
    return orjson.dumps(obj) + b"\n"


def _bad_probability(line: bytes) -> bytes:
    obj = orjson.loads(line)
    obj["_label_probability"] = 1.5
    return orjson.dumps(obj) + b"\n"


@pytest.mark.parametrize("case", ["empty", "no-probabilities", "malformed", "probability",
                                  "missing"])
def test_bad_logs_name_the_file_line_and_field(case, logs, tmp_path, capsys):
    bad = tmp_path / "bad.dsjson"
    lines = _lines(logs)[:300]
    if case == "empty":
        bad.write_bytes(b"")
        expected = f"{bad}: no usable rows in the logs"
    elif case == "no-probabilities":
        bad.write_bytes(b"".join(lines[:5] + [_no_probabilities(lines[5])] + lines[6:]))
        expected = f"{bad}:6: no logging probabilities (p, _label_probability)"
    elif case == "malformed":
        bad.write_bytes(b"".join(lines[:41] + [b'{"EventId": "x", \n'] + lines[41:]))
        expected = f"{bad}:42: not valid JSON"
    elif case == "probability":
        bad.write_bytes(b"".join([_bad_probability(lines[0])] + lines[1:]))
        expected = f"{bad}:1: _label_probability 1.5 is outside (0, 1]"
    else:
        expected = f"{bad}: no such file"
    store = tmp_path / "models"
    rc = main(["optimize", str(bad), "--apply", "--model-dir", str(store), "--grid",
               "epsilon:0.02", *FAST])
    assert rc == 1
    assert expected in capsys.readouterr().err
    assert not (store / "manifest.json").exists()


def test_skip_bad_counts_malformed_lines_instead(logs, tmp_path, capsys):
    bad = tmp_path / "bad.dsjson"
    lines = _lines(logs)[:400]
    bad.write_bytes(b"".join(lines[:10] + [b"{broken\n"] + lines[10:]))
    rc = main(["optimize", str(bad), "--skip-bad", "--grid", "epsilon:0.02", *FAST])
    out, err = capsys.readouterr()
    assert rc in (0, 2) and "400 rows (1 skipped)" in out
    assert f"skipped {bad}:11: not valid JSON" in err


@pytest.mark.parametrize(("grid_text", "expected"), [
    ("epsilon:0.05\n# a comment\n\nepsilon:0.05,lr=-1\n", ":4: bad spec 'epsilon:0.05,lr=-1': "
     "lr must be positive"),
    ("bag:5,foo=1\n", ":1: bad spec 'bag:5,foo=1': bad parameter 'foo=1' for bag"),
    ("thompson:1\n", ":1: bad spec 'thompson:1': unknown policy kind 'thompson'"),
    ("epsilon:0.1,interactions=c\n", ":1: bad spec 'epsilon:0.1,interactions=c': "
     "interactions='c'"),
])
def test_a_bad_spec_in_the_grid_file_names_the_file_line_and_parameter(
        grid_text, expected, logs, tmp_path, capsys):
    g = tmp_path / "grid.txt"
    g.write_text(grid_text)
    store = tmp_path / "models"
    rc = main(["optimize", str(logs), "--grid", str(g), "--apply", "--model-dir",
               str(store), *FAST])
    assert rc == 1
    assert f"{g}{expected}" in capsys.readouterr().err
    assert not (store / "manifest.json").exists()


@pytest.mark.parametrize(("option", "expected"), [
    (["--estimators", "ips,magic"], "unknown estimator 'magic'"),
    (["--rank-by", "dr"], "--rank-by 'dr' is not among the estimators (ips, snips)"),
    (["--alpha", "1.5"], "--alpha 1.5 must be in (0, 1)"),
])
def test_bad_options_are_refused_before_the_logs_are_read(option, expected, tmp_path, capsys):
    missing = tmp_path / "not-read.dsjson"
    assert main(["optimize", str(missing), *FAST, *option]) == 1
    err = capsys.readouterr().err
    assert expected in err and "no such file" not in err


def test_inline_grid_errors_name_the_item(logs, capsys):
    assert main(["optimize", str(logs), "--grid", "epsilon:0.02;squarecb:gamma=-3",
                 *FAST]) == 1
    assert "--grid item 2: bad spec 'squarecb:gamma=-3': gamma must be positive" in \
        capsys.readouterr().err
    assert main(["optimize", str(logs), "--grid", "nofile.txt", *FAST]) == 1
    assert "nofile.txt: no such grid file" in capsys.readouterr().err


def test_grid_files_and_the_default_grid(tmp_path):
    g = tmp_path / "grid.txt"
    g.write_text("# candidates\nbag:5  # bootstrap\nepsilon:0.05,lr=0.5\nbag:5\n")
    got = parse_grid([str(g), "squarecb:10;softmax:10"])
    assert [c.name for c in got] == ["bag:5", "epsilon:0.05,lr=0.5", "squarecb:10",
                                     "softmax:10"]
    assert [c.origin for c in got][:2] == [f"{g}:2", f"{g}:3"]
    # the current spec is always a candidate, marked as such
    cands = grid("epsilon:0.1", ["bag:5"])
    assert [(c.name, c.origin) for c in cands] == [("epsilon:0.1", "current"),
                                                   ("bag:5", "--grid item 1")]
    default = default_grid("epsilon:0.05")
    names = [c.name for c in default]
    assert names[0] == "epsilon:0.05" and default[0].origin == "current"
    assert len(names) == len(set(names)) >= 20
    # VW's own defaults are not separate candidates (lr=0.5 is VW's learning rate)
    assert "epsilon:0.05,lr=0.5" not in names and "epsilon:0.05,cb_type=mtr" not in names
    kinds = {PolicySpec.parse(n).kind for n in names}
    assert kinds == {"epsilon", "bag", "squarecb", "softmax"}
    for key in ("lr", "interactions", "cb_type", "normalized"):
        assert any(PolicySpec.parse(n).get(key) is not None for n in names), key
    for n in names:  # every candidate is a model VW builds
        VWModel(PolicySpec.parse(n).vw_args()).close()


@pytest.mark.integration
def test_the_joined_topic_is_searched_as_its_files_are(logs, broker, prefix, capsys):
    """The learner's joined topic on a real broker: the same search as the file; a poison
    message stops a strict run naming the topic, partition and offset."""
    from tests.streaming.kafka_util import produce

    lines = [line.strip() for line in _lines(logs)]
    items = [(orjson.loads(line)["EventId"], line) for line in lines]
    topic = prefix + "joined"
    produce(broker.bootstrap, topic, items)
    args = ["--grid", "epsilon:0.02;bag:5", "--current", "epsilon:0.05", "--json", *FAST]
    assert main(["optimize", str(logs), *args]) == 0
    from_file = orjson.loads(capsys.readouterr().out)
    assert main(["optimize", f"kafka://{broker.bootstrap}/{topic}", *args]) == 0
    from_topic = orjson.loads(capsys.readouterr().out)
    def strip(out):
        return [{k: v for k, v in c.items() if k != "seconds"} for c in out["candidates"]]

    assert strip(from_topic) == strip(from_file) and from_topic["n"] == 1500
    poisoned = prefix + "poisoned"
    produce(broker.bootstrap, poisoned, items[:100] + [("x", b"garbage")] + items[100:200])
    assert main(["optimize", f"kafka://{broker.bootstrap}/{poisoned}", *args]) == 1
    assert re.search(rf"{re.escape(poisoned)}\[\d+\]@\d+: not valid JSON",
                     capsys.readouterr().err)  # (keyed messages spread over partitions)

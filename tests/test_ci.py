"""CI runs the README's test command on a machine with every package the suite needs,
and a skipped test fails the run there."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SKIPPING = """
import pytest

def test_runs():
    pass

def test_skips():
    pytest.skip("a package is missing")
"""


def run_pytest(tmp_path: Path, no_skip: str | None) -> subprocess.CompletedProcess[str]:
    shutil.copy(ROOT / "tests" / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_skipping.py").write_text(SKIPPING)
    env = {k: v for k, v in os.environ.items() if k != "BANDIT_TEST_NO_SKIP"}
    if no_skip is not None:
        env["BANDIT_TEST_NO_SKIP"] = no_skip
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(tmp_path)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)


def test_a_skip_fails_the_run_under_the_ci_variable(tmp_path):
    res = run_pytest(tmp_path, "1")
    assert res.returncode == 1, res.stdout
    assert "1 failed, 1 passed" in res.stdout
    assert "skipped under BANDIT_TEST_NO_SKIP=1: Skipped: a package is missing" in res.stdout


def test_a_skip_is_a_skip_elsewhere(tmp_path):
    res = run_pytest(tmp_path, None)
    assert res.returncode == 0, res.stdout
    assert "1 passed, 1 skipped" in res.stdout


def test_ci_installs_the_debian_packages_then_runs_make_test_with_no_skip():
    script = (ROOT / ".ci" / "run").read_text()
    lines = [ln.strip() for ln in script.splitlines() if ln.strip() and
             not ln.strip().startswith("#")]
    assert lines[-1] == "make test"  # the README's command, nothing that could drift
    assert "export BANDIT_TEST_NO_SKIP=1" in lines
    packages = next(ln for ln in lines if ln.startswith("DEBIAN_PACKAGES="))
    assert set(packages.split("=", 1)[1].strip('"').split()) == {
        "redis-server", "chromium", "kcat", "wrk", "nodejs", "npm"}
    assert any(ln.startswith("apt-get install -y") for ln in lines)
    make = (ROOT / "Makefile").read_text()
    assert "$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist worksteal $(PYTEST_ARGS)" in make

"""Evaluation jobs run in a child process; one that dies leaves its job Failed."""

from __future__ import annotations

import os
import sys
import time

from bandit.evaluation import evaluations as ev
from bandit.stores.modelstore import ModelStore


def wait_status(jobs: ev.JobStore, job_id: str, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        doc = jobs.load(job_id)
        if doc is not None and doc["status"] != "Running":
            return doc
        time.sleep(0.05)
    raise AssertionError("the job is still running")


def test_a_child_that_dies_without_a_result_fails_its_job(tmp_path):
    jobs = ev.JobStore(ModelStore(tmp_path / "models"), "evaluations")
    doc = ev.new_job("j1", {"name": "x"}, "2026-01-01T00:00:00.000Z")
    jobs.save(doc)
    ev.Runner().submit(jobs, doc, [sys.executable, "-c",
                                   "import sys; print('no logs', file=sys.stderr); "
                                   "raise SystemExit(3)"], dict(os.environ))
    done = wait_status(jobs, "j1")
    assert done["status"] == "Failed"
    assert "exited with code 3" in done["description"] and "no logs" in done["description"]


def test_the_child_writes_its_result_and_the_runner_leaves_it(tmp_path):
    store = ModelStore(tmp_path / "models")
    jobs = ev.JobStore(store, "featureImportances")
    doc = ev.new_job("j2", {"name": "y"}, "2026-01-01T00:00:00.000Z")
    jobs.save(doc)
    script = ("import sys; from bandit.evaluation import evaluations as ev; "
              "from bandit.stores.modelstore import ModelStore; "
              f"jobs = ev.JobStore(ModelStore({str(tmp_path / 'models')!r}), "
              "'featureImportances'); "
              "ev.finish(jobs, jobs.load('j2'), lambda d: {'featureScores': [], 'rows': 7})")
    ev.Runner().submit(jobs, doc, [sys.executable, "-c", script], dict(os.environ))
    done = wait_status(jobs, "j2")
    assert done["status"] == "Succeeded" and done["rows"] == 7

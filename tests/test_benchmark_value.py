"""benchmarks/decide_value.py runs (in its --quick form) and prints its JSON: every
variant measured in the same run, each ratio to inline decide from those figures."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.slow, pytest.mark.integration]


def test_decide_value():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "decide_value.py"),
                          "--quick"], capture_output=True, timeout=400, check=True, cwd=ROOT)
    r = orjson.loads(out.stdout)
    assert r["benchmark"] == "decide_value" and r["rounds"] == 1 and r["offers"] == 20
    us = r["us_per_decision"]
    assert set(us) == {"inline", "inline_value", "catalogue_ids", "catalogue_ids_embeddings"}
    assert all(v["median"] > 0 for v in us.values())
    for name in ("inline_value", "catalogue_ids", "catalogue_ids_embeddings"):
        ratio = r["ratios"][f"{name}_vs_inline"]["median"]
        assert ratio == pytest.approx(us[name]["median"] / us["inline"]["median"], abs=0.02)

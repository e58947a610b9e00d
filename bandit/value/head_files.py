"""The heads of a checkpoint as one model-store attachment, and back.

The learner writes every head's VW model, its events learned, its calibration
window's held-out events and the calibrator fitted on them into one JSON attachment
(:meth:`bandit.stores.modelstore.VersionFiles.write_attachment`: written before the
manifest that names it under ``extra["heads"]``, with its sha256). One attachment for
all heads keeps them in the same checkpoint as the main model and its offsets, so a
restarted learner resumes every head from the same point (exactly once), and a
server loads heads and calibration with the model.
"""

from __future__ import annotations

import base64
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from bandit.core.vw_adapter import VWModel
from bandit.value.calibration import CalibrationWindow, Isotonic, Platt
from bandit.value.heads import Head, Heads, HeadSpec

HEADS_KEY = "heads"  # the manifest's extra entry naming the attachment
HEAD_SPEC = HeadSpec(lr=0.1)  # a new head's VW arguments, as measured (docs/value.md)


@dataclass
class HeadState:
    """One head's part of the attachment."""

    model: bytes
    learned: int = 0
    window: list[tuple[float, float, float]] = field(default_factory=list)
    calibrator: Isotonic | Platt | None = None


def calibrator_json(cal: Isotonic | Platt | None) -> dict[str, Any] | None:
    if isinstance(cal, Isotonic):
        return {"method": "isotonic", "x": list(cal.x), "y": list(cal.y)}
    if isinstance(cal, Platt):
        return {"method": "platt", "a": cal.a, "b": cal.b}
    return None


def calibrator_of(obj: Any) -> Isotonic | Platt | None:
    if not isinstance(obj, dict):
        return None
    if obj.get("method") == "isotonic":
        return Isotonic(tuple(map(float, obj["x"])), tuple(map(float, obj["y"])))
    if obj.get("method") == "platt":
        return Platt(float(obj["a"]), float(obj["b"]))
    return None


def model_bytes(model: VWModel) -> bytes:
    """A VW model's saved file."""
    fd, path = tempfile.mkstemp(prefix=".head-", suffix=".vw")
    os.close(fd)
    try:
        model.save(path)
        with open(path, "rb") as f:
            return f.read()
    finally:
        os.unlink(path)


def model_from(data: bytes) -> VWModel:
    fd, path = tempfile.mkstemp(prefix=".head-", suffix=".vw")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return VWModel.load(path)
    finally:
        os.unlink(path)


def encode(heads: Heads, windows: Mapping[str, CalibrationWindow]) -> bytes:
    """The attachment's bytes for ``heads`` and their calibration windows."""
    out: dict[str, Any] = {}
    for kind, head in heads.by_kind.items():
        w = windows.get(kind)
        out[kind] = {"model": base64.b64encode(model_bytes(head.model)).decode(),
                     "learned": head.learned,
                     "window": [list(e) for e in w.events()] if w is not None else [],
                     "calibrator": calibrator_json(w.current if w is not None else None)}
    return orjson.dumps({"heads": out})


def decode(data: bytes) -> dict[str, HeadState]:
    """Each head's state in an attachment (raises ``ValueError`` for one that is not)."""
    try:
        obj = orjson.loads(data)
        return {str(kind): HeadState(base64.b64decode(h["model"]), int(h.get("learned", 0)),
                                     [(float(p), float(y), float(w))
                                      for p, y, w in h.get("window", [])],
                                     calibrator_of(h.get("calibrator")))
                for kind, h in obj["heads"].items()}
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"unreadable heads attachment: {exc}") from None


def load_head(kind: str, state: HeadState, calibrated: bool) -> Head:
    """A head from its state; ``calibrated``: its predictions go through its
    calibrator (a server's; the learner learns on raw predictions)."""
    head = Head(kind, model_from(state.model))
    head.learned = state.learned
    if calibrated and state.calibrator is not None:
        head.calibrate = state.calibrator
    return head


def heads_of(states: Mapping[str, HeadState], kinds: Sequence[str], spec: HeadSpec,
             seed: int = 0, calibrated: bool = True) -> Heads:
    """The heads of ``kinds`` from saved states (a kind without one: a fresh head)."""
    return Heads({k: load_head(k, states[k], calibrated) if k in states
                  else Head.fresh(k, spec, seed) for k in kinds})

"""The HTTP edge maps each kind of service error to its status; the core names none."""

from __future__ import annotations

import ast
from pathlib import Path

import orjson
import pytest

from bandit.core import errors
from bandit.server.http import PayloadTooLarge, error_response, status_of
from bandit.server.service import SinkUnavailable

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("exc,status,code", [
    (errors.BadRequest("x", field="slots"), 400, "BadRequest"),
    (errors.NotFound("x"), 404, "NotFound"),
    (errors.Conflict("x", code="OperationNotAllowed"), 409, "OperationNotAllowed"),
    (PayloadTooLarge(1024), 413, "PayloadTooLarge"),
    (errors.Unprocessable("x", code="NoEligibleOffer"), 422, "NoEligibleOffer"),
    (SinkUnavailable("decision"), 503, "ServiceUnavailable"),
])
def test_each_kind_has_its_status_and_code(exc, status, code):
    r = error_response(exc)
    assert status_of(exc) == r.status_code == status
    assert orjson.loads(r.body)["error"]["code"] == code


def test_no_error_outside_the_http_layer_carries_a_status():
    """``raise Kind(..., status=...)`` appears nowhere in bandit/ (the edge decides)."""
    found = []
    for path in sorted((ROOT / "bandit").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and \
                    any(k.arg == "status" for k in node.exc.keywords):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert found == []

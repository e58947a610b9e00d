"""The online package stands alone: nothing under ``bandit/`` imports the offline
``replay`` package (the replay depends on the service's code, never the reverse)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


def test_bandit_never_imports_replay():
    offenders = {str(p.relative_to(ROOT)): sorted(m for m in imported_modules(p)
                                                  if m.split(".")[0] == "replay")
                 for p in sorted((ROOT / "bandit").rglob("*.py"))}
    assert {p: ms for p, ms in offenders.items() if ms} == {}

"""The figures the README states, read from it, so a test checks the number the reader
sees. A seeded run reproduces its figure up to rounding: tests allow one unit of the
figure's last stated digit (``near``), or a stated range widened by one unit."""

from __future__ import annotations

import re
from pathlib import Path

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def figure(pattern: str) -> str:
    """The text of group 1 of ``pattern`` in the README (whitespace-normalised)."""
    m = re.search(pattern, " ".join(README.split()))
    assert m is not None, f"the README no longer states {pattern!r}"
    return m.group(1)


def unit(text: str) -> float:
    """One unit of the last digit of a number as written: '0.98' -> 0.01, '84' -> 1."""
    return 10.0 ** -len(text.split(".")[1]) if "." in text else 1.0


def near(measured: float, text: str, scale: float = 1.0) -> bool:
    """``measured`` (in the figure's units × ``scale``) is within one unit of it."""
    return abs(measured / scale - float(text)) <= unit(text) * 1.000001


def within(measured: float, low: str, high: str, scale: float = 1.0) -> bool:
    return float(low) - unit(low) <= measured / scale <= float(high) + unit(high)

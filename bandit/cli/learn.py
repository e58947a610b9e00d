"""`bandit-learn` (arrives with the streaming loop)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    print("bandit-learn: not yet available", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())

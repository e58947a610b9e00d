"""API keys as configured: ``BANDIT_API_KEYS`` lists ``SHA256:SCOPE+SCOPE`` entries.

Only hashes of the keys are configured (``bandit-serve --hash-key KEY`` prints one);
the gate in :mod:`bandit.server.guard` checks presented keys against them.
"""

from __future__ import annotations

import hashlib

SCOPES = ("decide", "reward", "admin")
def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def parse_keys(text: str) -> list[tuple[bytes, frozenset[str]]]:
    """``SHA256:scope+scope,...`` → [(digest bytes, scopes)]."""
    out: list[tuple[bytes, frozenset[str]]] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        digest, sep, scopes = part.partition(":")
        if not sep:
            raise ValueError(f"expected SHA256:SCOPES, got an entry without ':' "
                             f"(entry {len(out) + 1})")
        try:
            raw = bytes.fromhex(digest)
        except ValueError:
            raise ValueError(f"entry {len(out) + 1}: the key hash is not hex") from None
        if len(raw) != 32:
            raise ValueError(f"entry {len(out) + 1}: a SHA-256 hash has 64 hex digits")
        names = frozenset(s.strip() for s in scopes.split("+") if s.strip())
        unknown = names - set(SCOPES)
        if not names or unknown:
            raise ValueError(f"entry {len(out) + 1}: scopes must be among "
                             f"{', '.join(SCOPES)}")
        out.append((raw, names))
    return out

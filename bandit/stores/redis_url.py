"""Redis connection URLs as the settings give them (``BANDIT_USER_STORE``,
``BANDIT_CATALOGUE``): whether a value names Redis, and the URL fit to log."""

from __future__ import annotations

from typing import TypeGuard
from urllib.parse import urlsplit, urlunsplit

SCHEMES = ("redis://", "rediss://", "unix://")


def is_redis(source: object) -> TypeGuard[str]:
    """Whether a setting's value names Redis (rather than a file or another store)."""
    return isinstance(source, str) and source.startswith(SCHEMES)


def redacted(url: str) -> str:
    """``url`` without its password (errors and logs name a store by it); any other
    text is returned as it is."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))

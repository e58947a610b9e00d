"""Errors raised at the boundary when input is invalid.

Everything a client can send wrongly becomes a :class:`BadRequest`; the HTTP layer
turns it into ``{"error": {"code", "message"}}`` with the given status.
"""

from __future__ import annotations


class BadRequest(Exception):
    """A request that cannot be served as sent. ``field`` names the offending input."""

    close_connection = False  # answered with ``Connection: close`` (a body left unread)

    def __init__(self, message: str, *, field: str = "", code: str = "BadRequest",
                 status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.code = code
        self.status = status

    def to_json(self) -> dict[str, dict[str, str]]:
        err = {"code": self.code, "message": self.message}
        if self.field:
            err["field"] = self.field
        return {"error": err}


class ConfigError(Exception):
    """A setting that stops start-up; the message names the variable."""

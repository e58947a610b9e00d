"""The service's errors, by kind; the HTTP edge maps each kind to its status.

Everything a client can get wrong or ask that cannot be done raises a
:class:`ServiceError` of the fitting kind (:class:`BadRequest` for invalid input,
:class:`NotFound`, :class:`Conflict`, :class:`TooLarge`, :class:`Unprocessable`,
:class:`Unavailable`). The core never names an HTTP status: the HTTP layer
(:func:`bandit.server.http.status_of`) turns the kind into one and the error into
``{"error": {"code", "message", "field"}}``.
"""

from __future__ import annotations


class ServiceError(Exception):
    """A request that cannot be served. ``field`` names the offending input; ``code`` is
    the machine-readable reason (Personalizer's error codes where it has one)."""

    default_code = "BadRequest"
    close_connection = False  # answered with ``Connection: close`` (a body left unread)

    def __init__(self, message: str, *, field: str = "", code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.code = code or self.default_code

    def to_json(self) -> dict[str, dict[str, str]]:
        err = {"code": self.code, "message": self.message}
        if self.field:
            err["field"] = self.field
        return {"error": err}


class BadRequest(ServiceError):
    """Input that is invalid as sent (also a logged event that fails validation)."""


class NotFound(ServiceError):
    """What the request names does not exist."""

    default_code = "NotFound"


class Conflict(ServiceError):
    """Not possible in the service's current state or configuration."""

    default_code = "Conflict"


class TooLarge(ServiceError):
    """A request body over the configured limit."""

    default_code = "PayloadTooLarge"


class Unprocessable(ServiceError):
    """Valid input that leaves nothing to decide (e.g. every offer capped)."""

    default_code = "Unprocessable"


class Unavailable(ServiceError):
    """A dependency is down for now (the event could not be recorded); retry."""

    default_code = "ServiceUnavailable"


class ConfigError(Exception):
    """A setting that stops start-up; the message names the variable."""

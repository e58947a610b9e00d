"""Errors the replay tools report to their users."""


class LogError(ValueError):
    """A log that cannot be read; the message names the file, line and field."""

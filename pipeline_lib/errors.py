"""Errors that describe a user's mistake (a bad key, a missing file, a wrong shape).

The workflow catches :class:`UserError` at start-up and prints its message alone, without
a traceback; anything else is a bug and keeps its traceback.
"""


class UserError(ValueError):
    """A mistake in the user's configuration or data; the message names the key or file."""


class ConfigError(UserError):
    """A configuration value is missing, misspelled or out of range."""


class DataError(UserError):
    """A fault in the data (an unreadable source file, a damaged or missing chunk, a truncated
    checkpoint); the message names the file (and array, chunk or key) and, where one exists,
    the command that recovers."""

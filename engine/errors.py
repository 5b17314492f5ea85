"""Errors the engine raises for the user to read.

Each carries a one-line message meant to be shown as is, with no traceback.
They also subclass the built-in exception a library user would expect
(a bad config is a ValueError, a missing file a FileNotFoundError).
"""


class TuiGptError(Exception):
    """Base of every error whose message is shown to the user verbatim."""


class ConfigError(TuiGptError, ValueError):
    """A model or training configuration is invalid; the message names the field."""


class CorpusError(TuiGptError, ValueError):
    """A training corpus cannot be used as given."""


class CheckpointError(TuiGptError, ValueError):
    """A checkpoint or weights file is missing, corrupt or does not fit the model."""


class RunError(TuiGptError, RuntimeError):
    """A run name or run folder cannot be used (missing, in use, invalid name)."""

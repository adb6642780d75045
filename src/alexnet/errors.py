"""Errors that mean "the user must change something". The CLI prints their message as
one line and exits non-zero; anything else is a bug and keeps its traceback."""


class AlexNetError(Exception):
    """Base of every user-facing error; the message names the problem and the fix."""


class DataError(AlexNetError):
    """A data source that cannot be used; the message says what is wrong and how to fix it."""


class AlexNetWarning(UserWarning):
    """Something the user should know that does not stop the command; the CLI prints the
    message as one line on stderr."""


class DataWarning(AlexNetWarning):
    """Data that can be used but may not be what the user meant."""

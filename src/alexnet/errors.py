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


def printable(text: str) -> str:
    """``text`` with control characters (terminal escape codes, newlines, ...) written as
    ``\\x1b``-style escapes: file names come from anywhere and must not drive the terminal."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def first_line(error: BaseException | str, default: str | None = None) -> str:
    """The first line of an exception's message, for a one-line error (library messages can
    run to pages); ``default``, else the exception's type name, when the message is empty."""
    lines = str(error).strip().splitlines()
    if lines:
        return lines[0]
    return default if default is not None else type(error).__name__

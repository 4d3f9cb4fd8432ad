"""The one exception type for user errors (bad files, bad arguments)."""

import re

# a Python class name leading an exception's text, e.g. "builtins.RuntimeError: " from
# TorchScript, which the user should not see
_CLASS_PREFIX = re.compile(r"^(?:[A-Za-z_]\w*\.)*\w*(?:Error|Exception|Interrupt)\b:?\s*")


class UnravelError(Exception):
    """A user-facing error: the message is one line naming the file or command and the cause.

    The CLI prints it without a traceback and exits with status 2; the Pd object prints it
    with pd_error.
    """


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty)."""
    text = str(e).strip().splitlines()
    return without_class(text[0]) if text else type(e).__name__


def without_class(line: str) -> str:
    """`line` without a leading Python class name (`builtins.RuntimeError: x` -> `x`)."""
    return _CLASS_PREFIX.sub("", line.strip()) or line.strip()

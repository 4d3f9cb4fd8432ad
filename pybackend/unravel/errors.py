"""The one exception type for user errors (bad files, bad arguments)."""


class UnravelError(Exception):
    """A user-facing error: the message is one line naming the file or command and the cause.

    The CLI prints it without a traceback and exits with status 2; the Pd object prints it
    with pd_error.
    """


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty)."""
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__

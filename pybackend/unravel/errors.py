"""The one exception type for user errors (bad files, bad arguments)."""

import functools
import re
import warnings

# a Python class name leading an exception's text, e.g. "builtins.RuntimeError: " from
# TorchScript, which the user should not see
_CLASS_PREFIX = re.compile(r"^(?:[A-Za-z_]\w*\.)*\w*(?:Error|Exception|Interrupt)\b:?\s*")
# lines of torch's messages that are no cause: a tensor's repr (`[ torch.FloatTensor{64} ]`)
_NOT_A_CAUSE = re.compile(r"^\[ [\w.]+\{[\d,]*\} \]$")


class UnravelError(Exception):
    """A user-facing error: the message is one line naming the file or command and the cause.

    The CLI prints it without a traceback and exits with status 2; the Pd object prints it
    with pd_error.
    """


def silence_warnings() -> None:
    """Warnings of numpy, torch and the other libraries (an overflow in a cast, a tracer's
    note) never reach stderr or Pd's window: what the user reads there is our one line.
    Called where a process starts (the CLI, the bridge in Pd, the job and worker processes)."""
    warnings.simplefilter("ignore")


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty)."""
    text = str(e).strip().splitlines()
    return without_class(text[0]) if text else type(e).__name__


def short_cause(e: BaseException) -> str:
    """A short one-line cause (of a TorchScript error, whose last line says it): the last line
    of the message, its first sentence, at most 120 characters."""
    lines = _cause_lines(e)
    if _out_of_memory(e, lines):
        return "out of memory"
    line = without_class(lines[-1]) if lines else "unexpected error"
    line = line.split(". ")[0]
    return line if len(line) <= 120 else line[:117] + "..."


def without_class(line: str) -> str:
    """`line` without a leading Python class name (`builtins.RuntimeError: x` -> `x`)."""
    return _CLASS_PREFIX.sub("", line.strip()) or line.strip()


def _cause(e: BaseException) -> str:
    """An unexpected exception as a short cause, without its class name or traceback."""
    lines = _cause_lines(e)
    if _out_of_memory(e, lines):
        return "out of memory"
    line = without_class(lines[-1]) if lines else "unexpected error"
    return line if len(line) <= 200 else line[:197] + "..."


def _cause_lines(e: BaseException) -> list[str]:
    """The lines of an exception's message that may say its cause (no tensor reprs)."""
    return [ln.strip() for ln in str(e).strip().splitlines()
            if ln.strip() and not _NOT_A_CAUSE.match(ln.strip())]


def out_of_memory(e: BaseException) -> bool:
    """Whether `e` is a MemoryError or torch's allocator failing."""
    return _out_of_memory(e, _cause_lines(e))


def _out_of_memory(e: BaseException, lines: list[str]) -> bool:
    """A MemoryError, or torch's allocator failing (`[enforce fail at alloc_cpu.cpp...]
    DefaultCPUAllocator: can't allocate memory`, CUDA's `out of memory`)."""
    text = " ".join(lines).lower()
    return isinstance(e, MemoryError) or "can't allocate memory" in text or (
        "out of memory" in text and "cuda" in text)


def one_line(what: str | None = None):
    """Decorator for what the C side calls: an unexpected exception becomes one UnravelError
    line `<what>: <cause>` (`what` defaults to the call's first argument, a message or job name)."""
    def deco(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kw):
            try:
                return fn(*args, **kw)
            except UnravelError:
                raise
            except Exception as e:  # noqa: BLE001 - Pd must get one line, never a traceback
                name = what or (args[1] if len(args) > 1 and isinstance(args[1], str) else fn.__name__)
                raise UnravelError(f"{name}: {_cause(e)}") from None
        return wrapper
    return deco

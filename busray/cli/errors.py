"""The CLI's error vocabulary: every exception becomes one line that names the file or key at fault.

busray's layers raise ``ValueError`` subclasses (``ConfigError``, ``DataError``, ``CheckpointError``,
``ResultsError``, :class:`CliError`) whose message already names the dotted key or the file. Anything
else that reaches the CLI -- a full or read-only disk, a missing device, memory exhaustion, a bug --
is translated here by :func:`one_line`, so ``busray`` never prints a traceback unless ``--debug``
asks for one. Exit codes: :data:`EXIT_ERROR` (2) for every failure, 130 for Ctrl-C, 143 for a train
run or sweep that SIGTERM stopped cleanly, 141 when the reader of our output went away (``busray
config --keys | head -1``).
"""

from __future__ import annotations

import contextlib
import errno
import signal
from collections.abc import Iterator

from busray.atomic import writing_to  # noqa: F401  (re-exported: the commands import it from here)


EXIT_ERROR = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143           # 128 + SIGTERM: a train run or sweep that SIGTERM stopped cleanly
EXIT_BROKEN_PIPE = 141          # 128 + SIGPIPE, what a Unix tool reports when its reader closed
MAX_CHARS = 400                 # a message longer than this is cut (a huge repr must not flood stderr)

_OS_HINTS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOTDIR: "a parent is a file, not a folder",
    errno.EISDIR: "is a folder, not a file",
    errno.ENAMETOOLONG: "name too long",
    errno.ENOENT: "no such file or folder",
}


class Terminated(KeyboardInterrupt):
    """SIGTERM (``timeout``, systemd, a batch scheduler), raised where Ctrl-C raises KeyboardInterrupt,
    so a run stops the same clean way (its folder says ``interrupted``); the CLI exits 143."""


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` instead of killing the process."""
    def terminate(signum, frame):
        raise Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, terminate)
    except ValueError:  # not the main thread: SIGTERM keeps its handler
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class CliError(ValueError):
    """A bad command line (a flag's value, a path, a device); ``str(err)`` is one line."""


class UsageError(CliError):
    """What argparse would print with the usage text, as one line."""


def one_line(err: BaseException) -> str:
    """The message printed after ``busray: error:`` for ``err`` (one line, at most MAX_CHARS)."""
    text = _describe(err)
    text = " ".join(text.split()) if "\n" in text else text
    return text if len(text) <= MAX_CHARS else text[:MAX_CHARS - 3] + "..."


def _describe(err: BaseException) -> str:
    if isinstance(err, OSError):
        return _os_error(err)
    if isinstance(err, MemoryError):
        return "out of memory (try a smaller data.image_size, train.batch_size or fewer images)"
    if isinstance(err, RecursionError):
        return "input nested too deeply (RecursionError)"
    if isinstance(err, UnicodeError):
        return f"a file is not UTF-8 text ({_first_line(err)}; rerun with busray --debug to see where)"
    if isinstance(err, ValueError) and str(err):
        return _first_line(err)
    if type(err).__name__ == "DecompressionBombError":
        return f"image too large (a decompression bomb?): {_first_line(err)}"
    detail = _first_line(err)
    return (f"unexpected {type(err).__name__}" + (f": {detail}" if detail else "")
            + " (rerun with busray --debug for the traceback)")


def _os_error(err: OSError) -> str:
    reason = _OS_HINTS.get(err.errno or -1) or err.strerror or _first_line(err) or type(err).__name__
    names = [str(n) for n in (err.filename, err.filename2) if n is not None]
    if names:
        return f"{' -> '.join(names)}: {reason}"
    detail = _first_line(err)
    return reason if not detail or detail == reason else f"{reason} ({detail})"


def _first_line(err: BaseException) -> str:
    """The message's first line; for an error that carries a formatted traceback (Ray's ``TuneError``
    and ``RayTaskError`` do), its last line: the exception that started it."""
    text = str(err).strip()
    if isinstance(err, KeyError) and err.args:
        text = f"missing key {err.args[0]!r}"
    lines = [line for line in text.splitlines() if line.strip()]
    if lines and lines[0].startswith("Traceback (most recent call last)"):
        return lines[-1].strip()
    return lines[0] if lines else ""

"""``busray: warning: ...``: a line on stderr that a user sees whatever Python's warning filters say.

What busray did on its own that the user must know about (a results file it set aside as unreadable)
is not a Python ``UserWarning``: ``PYTHONWARNINGS=ignore``, ``-W ignore`` or a notebook's filters hid
those, and the default filter showed each only once per place in the code. Like the CLI's
``busray: error: ...`` line, a warning is one line naming the file, written straight to stderr.
Dependency-free, so every layer can use it.
"""

from __future__ import annotations

import sys

PREFIX = "busray: warning: "


def warn(message: str) -> None:
    """Write ``busray: warning: <message>`` (as one line) to stderr."""
    text = " ".join(str(message).split())
    sys.stderr.write(f"{PREFIX}{text}\n")
    sys.stderr.flush()

"""The one error type of the data layer.

Every problem with input data (an unreadable image, a missing mask, an unknown label, a split that
cannot be stratified) raises :class:`DataError` with a one-line message that names the offending
file, so the CLI can print it as is.
"""

from __future__ import annotations


class DataError(ValueError):
    """Bad input data; ``str(err)`` is one line naming the file (or dataset root) at fault."""

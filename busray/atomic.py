"""One way to write a file so that readers never see half of it: a private temp file, then a rename.

Every small writer in busray (configs, split.json, run-folder files, sweep state, exports) goes through
:func:`atomic_write`. The temp file is unique (``mkstemp``) and lives in the target's folder, so
concurrent writers of the same path cannot clobber each other's temp file and ``os.replace`` stays a
same-filesystem atomic rename; on any error the temp file is removed. Standard library only, so every
layer may use it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write(path: str | Path, data: str | bytes) -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` atomically, creating the parent folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path

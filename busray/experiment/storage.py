"""Where a sweep or ablation keeps its folders and results: a local or mounted folder, never a URI.

The results store, run folders and checkpoints are plain files that every trial writes directly, so
the storage must be a filesystem path all Ray nodes share (a local disk on one machine, NFS or similar
on a cluster). ``s3://…``, ``gs://…`` and other URIs are refused with one line instead of silently
becoming a local folder named ``s3:``.
"""

from __future__ import annotations

import re
from pathlib import Path

from busray.configtools import ConfigError

DEFAULT_STORAGE = "busray_storage"
_URI = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def resolve_storage(storage: str | Path | None, key: str = "--storage") -> str:
    """The absolute storage folder (default :data:`DEFAULT_STORAGE`); ``file://`` paths are accepted."""
    text = str(storage or DEFAULT_STORAGE)
    if text.startswith("file://"):
        text = text[len("file://"):]
    elif _URI.match(text):
        raise ConfigError(f"{key}: '{text}' is a URI; busray needs a local or mounted folder "
                          "(mount the bucket, or use a shared filesystem path)")
    path = Path(text).expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{key}: '{path}' is a file, not a folder")
    return str(path)

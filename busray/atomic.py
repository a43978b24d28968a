"""One way to write a file so that readers never see half of it: a hidden temp file, then a rename.

Every writer in busray (configs, split.json, run-folder files, sweep state, exports, the results
store's Parquet files) goes through :func:`atomic_writer` or :func:`atomic_write`. The temp file
(``.<name>.<host>.<pid>.<random>.tmp``) is created exclusively in the target's folder, so concurrent
writers of one path never share a temp file and ``os.replace`` stays a same-filesystem atomic
rename; it is fsynced before the rename, and removed on any error.

Permissions: the temp file is created with mode ``0o666`` and the process umask applies, as for
``open(path, "w")`` (0644 under umask 022). ``tempfile.mkstemp`` would make every file 0600, which
hid configs and metrics from the other users of a shared results folder. Standard library only,
so every layer may use it.

A writer killed between create and rename (``kill -9``, a lost node) leaves its temp file behind;
:func:`remove_stale_temps` clears those when a run starts or resumes in its folder and when the
results store is compacted. The host in the name makes that safe on a shared filesystem: a pid is
only checked on the host that wrote it; another host's temp file goes once it is an hour old.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


#: This machine in temp names: the short host name, with anything but letters, digits and '-' replaced.
HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname().split(".")[0]) or "host"
#: ``temp_name``'s pattern: the writer's host and pid.
_TEMP_NAME = re.compile(r"^\..+\.(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d+)\.[0-9a-f]{8}\.tmp$")
#: A temp file this old has no writer left, wherever it ran (writes take milliseconds to seconds).
STALE_AFTER_S = 3600.0


def temp_name(path: Path) -> Path:
    """The hidden, unique temp file beside ``path`` (readers skip names starting with a dot)."""
    return path.with_name(f".{path.name}.{HOST}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


@contextlib.contextmanager
def atomic_writer(path: str | Path) -> Iterator[BinaryIO]:
    """A binary file handle whose content replaces ``path`` when the block exits without error.

    The parent folder is created. On an exception the temp file is removed and ``path`` is left as
    it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # umask applies, like open()
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(path: str | Path, data: str | bytes) -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` atomically, creating the parent folder."""
    with atomic_writer(path) as fh:
        fh.write(data.encode("utf-8") if isinstance(data, str) else data)
    return Path(path)


def missing_folders(path: str | Path) -> tuple[Path, ...]:
    """``path`` and those of its parents that do not exist yet, deepest first: what writing there creates."""
    path = Path(path).absolute()
    return tuple(folder for folder in (path, *path.parents) if not folder.exists())


def remove_empty_folders(folders: tuple[Path, ...]) -> None:
    """Undo the creation of ``folders`` (deepest first) where they are still empty: after a failed write,
    no empty ``runs/`` or ``a/b/`` is left behind; a folder that holds anything stays."""
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()


@contextlib.contextmanager
def writing_to(path: str | Path) -> Iterator[None]:
    """Name ``path`` in an OSError that names no file (a full disk fails in ``write``/``fsync``,
    whose errors carry no file name), so the one line says where the write failed; after any failure,
    remove the folders on the way to ``path`` that the write created and left empty."""
    created = missing_folders(path)
    try:
        yield
    except BaseException as err:
        if isinstance(err, OSError) and err.filename is None:
            err.filename = str(path)
        remove_empty_folders(created)
        raise


def remove_stale_temps(folder: str | Path, stale_after_s: float = STALE_AFTER_S) -> list[Path]:
    """Remove the temp files under ``folder`` (recursively) that no writer will finish.

    A temp file is stale when it was written on this host by a process that no longer exists, or
    when it was last written ``stale_after_s`` ago (a pid says nothing about another host's
    processes). Returns the removed paths.
    """
    removed = []
    for tmp in Path(folder).rglob(".*.tmp"):
        match = _TEMP_NAME.match(tmp.name)
        if not match or not tmp.is_file():
            continue
        dead_here = match["host"] == HOST and not _process_exists(int(match["pid"]))
        if dead_here or last_written_before(tmp, stale_after_s):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def last_written_before(path: Path, seconds: float) -> bool:
    """Whether ``path`` was last written more than ``seconds`` ago (False once it is gone)."""
    try:
        return path.stat().st_mtime < time.time() - seconds
    except FileNotFoundError:       # its writer renamed it meanwhile
        return False


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)             # signal 0: existence check only
    except ProcessLookupError:
        return False
    except PermissionError:         # alive, owned by another user
        return True
    return True

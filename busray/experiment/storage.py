"""Which storage a sweep or ablation uses: ``--storage``, else the file's ``storage:``, else the default.

A storage is a local or mounted folder, or a bucket (``s3://bucket/prefix``, ``gs://...``):
:class:`busray.storage.Storage` says how each is read and written. A storage is never a relative path
resolved somewhere unexpected: under ``ray job submit`` the entrypoint runs in Ray's unpacked copy of
the working folder, deleted with the session, so a relative (or default) storage there is refused in
one line naming ``--storage`` (:func:`in_ray_job`).
"""

from __future__ import annotations

import os
from pathlib import Path

from busray.configtools import ConfigError
from busray.storage import Storage, is_uri

DEFAULT_STORAGE = "busray_storage"
#: Set by Ray's job supervisor for a submitted job's entrypoint (``ray job submit``; Ray 2.60's
#: ``JobSupervisor._get_driver_env_vars``): the job's runtime environment, as JSON.
JOB_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"


def resolve_storage(storage: "str | Path | Storage | None", key: str = "--storage") -> Storage:
    """The storage of a run: ``storage`` (default :data:`DEFAULT_STORAGE`), checked; a path that is a
    file, or a relative one inside a Ray job, is a ``ConfigError`` naming ``key``."""
    if isinstance(storage, Storage):
        return storage
    text = str(storage or DEFAULT_STORAGE)
    if in_ray_job() and not is_uri(text) and not Path(text).expanduser().is_absolute():
        raise ConfigError(f"{key}: '{text}' is relative, and under ray job submit it would land in Ray's temporary "
                          f"copy of the working folder, deleted with the session; give an absolute path every "
                          f"node shares, or a bucket (s3://bucket/prefix)")
    where = Storage.at(text, key)
    if not where.remote and where.local.exists() and not where.local.is_dir():
        raise ConfigError(f"{key}: '{where.local}' is a file, not a folder")
    return where


def in_ray_job() -> bool:
    """Whether this process is the entrypoint of a job submitted to Ray (``ray job submit``)."""
    return bool(os.environ.get(JOB_ENV))

"""Where an experiment's files live: a folder used in place, or a bucket mirrored through ``pyarrow.fs``.

``--storage`` (and a file's ``storage:``) is one of

- a local or mounted folder (``/srv/store``, ``file:///srv/store``, an NFS mount every node sees at the
  same path): busray reads and writes it in place, as it always did;
- an object-store URI (``s3://bucket/prefix``, ``gs://bucket/prefix``), opened with ``pyarrow.fs`` --
  the filesystem layer Ray Tune itself uses -- with credentials and endpoint the standard way
  (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``, ``AWS_ENDPOINT_URL``; Google's
  application-default credentials).

A bucket has no rename, no ``flock`` and no partial writes, and a trial's node may be another machine
than the driver's. So every process works in a local mirror of the bucket (``local``: a cache folder
on its own machine, :func:`cache_folder`), where busray's file code runs unchanged (atomic renames,
locks), and moves whole files: :meth:`Storage.pull` downloads what changed in the bucket,
:meth:`Storage.push` uploads what changed locally (one PUT per file, which an object store makes
atomic) and deletes in the bucket the files it had synced that are gone locally. A trial pushes its run
folder at every epoch (its checkpoint, history and TensorBoard events) and at the end; a trial that
restarts on another node pulls it first and resumes from its ``last.pt``; the driver pushes the
results store after every row it records. Nothing here imports torch or Ray.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from busray.atomic import atomic_write
from busray.configtools import ConfigError

#: URI schemes a storage may have besides a path (``file://`` is a path).
BUCKET_SCHEMES = ("s3", "gs", "gcs")
PROBE = ".busray-write-probe"
_URI = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")
CACHE_ENV = "BUSRAY_STORAGE_CACHE"


def is_uri(text: str) -> bool:
    """Whether ``text`` is a URI (``s3://...``, ``file://...``) rather than a path."""
    return bool(_URI.match(str(text)))


def is_bucket(text: str) -> bool:
    """Whether ``text`` names an object store busray mirrors (``s3://``, ``gs://``)."""
    match = _URI.match(str(text))
    return bool(match) and match.group(1).lower() in BUCKET_SCHEMES


def check_location(text: str, key: str = "--storage") -> str:
    """``text`` normalised: an absolute path (``file://`` stripped, ``~`` expanded) or a bucket URI;
    another scheme, or a bucket URI without a bucket, is a one-line ``ConfigError`` naming ``key``."""
    text = str(text).strip()
    if not text:
        raise ConfigError(f"{key}: empty path")
    if text.startswith("file://"):
        text = text[len("file://"):]
    elif is_uri(text):
        if not is_bucket(text):
            raise ConfigError(f"{key}: '{text}' is a URI busray cannot store to; use a local or mounted folder, "
                              f"or s3://bucket/prefix or gs://bucket/prefix")
        if not text.split("://", 1)[1].strip("/"):
            raise ConfigError(f"{key}: '{text}' names no bucket (s3://bucket/prefix)")
        return text.rstrip("/")
    return str(Path(text).expanduser().absolute())


def cache_folder(uri: str, base: str | Path | None = None) -> Path:
    """This machine's mirror of a bucket: ``base`` (default ``$BUSRAY_STORAGE_CACHE``, else
    ``$XDG_CACHE_HOME/busray``, else ``~/.cache/busray``) ``/storage/<16 hex of the URI>``."""
    base = base or os.environ.get(CACHE_ENV) or \
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "busray"
    return Path(base) / "storage" / hashlib.sha256(uri.encode()).hexdigest()[:16]


@dataclass
class Storage:
    """An experiment storage: ``uri`` as normalised by :func:`check_location`; ``local``: where this
    process reads and writes its files (the folder itself, or the mirror of a bucket)."""
    uri: str
    _synced: dict[str, tuple[int, int]] = field(default_factory=dict, repr=False, compare=False)
    _fs: object = field(default=None, repr=False, compare=False)
    _local: Path | None = field(default=None, repr=False, compare=False)

    @classmethod
    def at(cls, location: "str | Path | Storage", key: str = "--storage") -> "Storage":
        return location if isinstance(location, Storage) else cls(check_location(str(location), key))

    @property
    def remote(self) -> bool:
        return is_bucket(self.uri)

    @property
    def local(self) -> Path:
        """Fixed when first asked in a process (a copy sent to another machine finds its own mirror)."""
        if self._local is None:
            self._local = cache_folder(self.uri) if self.remote else Path(self.uri)
        return self._local

    def path(self, *parts: str) -> Path:
        """The local path of ``parts`` (a file or folder of the storage) on this machine."""
        return self.local.joinpath(*parts)

    def location(self, *parts: str) -> str:
        """What names ``parts`` for every machine and reader: its absolute path, or its bucket URI."""
        return "/".join([self.uri, *parts]) if self.remote else str(self.path(*parts))

    def __getstate__(self) -> dict:  # picklable into Ray tasks: the filesystem is opened where used
        return {"uri": self.uri, "_synced": {}, "_fs": None, "_local": None}

    # ------------------------------------------------------------------ syncing a bucket
    def pull(self, *parts: str) -> None:
        """Download the files under ``parts`` that are missing or older here (a no-op for a folder);
        a file changed here since (not pushed yet) is kept."""
        if not self.remote:
            return
        fs, base = self._filesystem()
        for rel, info in self._remote_files("/".join(parts)):
            local = self.path(rel)
            mtime = int(info.mtime_ns or 0)
            if local.is_file() and local.stat().st_mtime_ns >= mtime:  # as new here (or newer, unpushed)
                here = local.stat()
                if here.st_size == info.size:  # the bucket's version: a push need not send it again
                    self._synced[rel] = (here.st_size, here.st_mtime_ns)
                continue
            local.parent.mkdir(parents=True, exist_ok=True)
            tmp = local.with_name(f".{local.name}.pull")
            with fs.open_input_stream(f"{base}/{rel}") as src, open(tmp, "wb") as dst:
                dst.write(src.read())
            os.utime(tmp, ns=(mtime, mtime))
            os.replace(tmp, local)
            self._synced[rel] = (info.size, mtime)

    def push(self, *parts: str) -> None:
        """Upload the files under ``parts`` that changed here since this process last synced them, and
        delete in the bucket those it synced that are gone here (a no-op for a folder)."""
        if not self.remote:
            return
        fs, base = self._filesystem()
        prefix = "/".join(parts)
        here = dict(self._local_files(prefix))
        for rel, stat in here.items():
            if self._synced.get(rel) == (stat.st_size, stat.st_mtime_ns):
                continue
            with open(self.path(rel), "rb") as src, fs.open_output_stream(f"{base}/{rel}") as dst:
                dst.write(src.read())
            now = time.time_ns()  # not older than the object's time: a later pull leaves the file alone
            os.utime(self.path(rel), ns=(now, now))
            self._synced[rel] = (stat.st_size, now)
        for rel in [r for r in self._synced if _under(r, prefix) and r not in here]:
            if self._exists(f"{base}/{rel}"):
                fs.delete_file(f"{base}/{rel}")
            del self._synced[rel]

    def exists(self, *parts: str, quick: bool = False) -> bool:
        """Whether ``parts`` (a file or folder) exists in the storage itself (``quick``: a check before
        Ray starts, which fails within seconds)."""
        if not self.remote:
            return self.path(*parts).exists()
        fs, base = open_bucket(self.uri, quick=True) if quick else self._filesystem()
        import pyarrow.fs as pafs  # lazy: only a bucket needs it

        return fs.get_file_info(f"{base}/{'/'.join(parts)}").type != pafs.FileType.NotFound

    def names(self, *parts: str) -> list[str]:
        """The names of the files directly in folder ``parts`` of the storage itself (none if absent)."""
        if not self.remote:
            folder = self.path(*parts)
            return sorted(p.name for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []
        import pyarrow.fs as pafs  # lazy: only a bucket needs it

        fs, base = self._filesystem()
        selector = pafs.FileSelector(f"{base}/{'/'.join(parts)}", recursive=False, allow_not_found=True)
        return sorted(i.base_name for i in fs.get_file_info(selector) if i.type == pafs.FileType.File)

    def read_json(self, *parts: str) -> dict | None:
        """A small JSON object of the storage itself (not the mirror); None when absent or unreadable."""
        if not self.remote:
            try:
                return json.loads(self.path(*parts).read_text())
            except (OSError, ValueError):
                return None
        fs, base = self._filesystem()
        try:
            with fs.open_input_stream(f"{base}/{'/'.join(parts)}") as src:
                return json.loads(src.read())
        except (OSError, ValueError):
            return None

    def write_json(self, data: dict, *parts: str) -> None:
        """Write a small JSON object straight into the storage (one PUT in a bucket)."""
        text = json.dumps(data).encode()
        if not self.remote:
            atomic_write(self.path(*parts), text)
            return
        fs, base = self._filesystem()
        with fs.open_output_stream(f"{base}/{'/'.join(parts)}") as dst:
            dst.write(text)

    def delete(self, *parts: str) -> None:
        """Delete one file of the storage itself, if it is there."""
        if not self.remote:
            self.path(*parts).unlink(missing_ok=True)
        elif self._exists(f"{self._filesystem()[1]}/{'/'.join(parts)}"):
            self._filesystem()[0].delete_file(f"{self._filesystem()[1]}/{'/'.join(parts)}")

    # ------------------------------------------------------------------ internals
    def _filesystem(self):
        """(pyarrow filesystem, path of the storage in it), opened once per process."""
        if self._fs is None:
            self._fs = open_bucket(self.uri)
        return self._fs

    def probe(self) -> None:
        """Write and delete a small object, with short time limits (a ``--storage`` check before Ray
        starts: an unreachable endpoint or missing credentials fail in seconds, not minutes)."""
        fs, base = open_bucket(self.uri, quick=True)
        with fs.open_output_stream(f"{base}/{PROBE}") as out:
            out.write(b"busray")
        fs.delete_file(f"{base}/{PROBE}")

    def _exists(self, path: str) -> bool:
        import pyarrow.fs as pafs

        return self._filesystem()[0].get_file_info(path).type != pafs.FileType.NotFound

    def _remote_files(self, prefix: str) -> Iterator[tuple[str, object]]:
        import pyarrow.fs as pafs

        fs, base = self._filesystem()
        target = f"{base}/{prefix}".rstrip("/")
        info = fs.get_file_info(target)
        if info.type == pafs.FileType.File:
            yield prefix, info
            return
        selector = pafs.FileSelector(target, recursive=True, allow_not_found=True)
        for item in fs.get_file_info(selector):
            if item.type == pafs.FileType.File:
                yield item.path[len(base) + 1:], item

    def _local_files(self, prefix: str) -> Iterator[tuple[str, os.stat_result]]:
        root = self.path(prefix) if prefix else self.local
        if root.is_file():
            yield prefix, root.stat()
            return
        for path in sorted(root.rglob("*")) if root.is_dir() else ():
            if path.is_file() and not path.name.endswith((".pull", ".lock")) and not _is_temp(path.name):
                yield path.relative_to(self.local).as_posix(), path.stat()


def open_bucket(uri: str, quick: bool = False):
    """(pyarrow filesystem, the URI's path in it) of a bucket URI, with bounded timeouts and retries: a
    trial's pushes ride out a transient error; ``quick``: fail within seconds (probes). Credentials,
    region and endpoint come the standard way (``AWS_*`` variables, instance profiles; Google's
    application-default credentials)."""
    import pyarrow.fs as pafs  # lazy: only a bucket needs it

    scheme, rest = uri.split("://", 1)
    path = rest.strip("/")
    try:
        if scheme.lower() == "s3":
            attempts, timeout = (2, 10) if quick else (5, 120)
            fs = pafs.S3FileSystem(region=_s3_region(path.split("/")[0]),
                                   endpoint_override=os.environ.get("AWS_ENDPOINT_URL") or None,
                                   connect_timeout=5 if quick else 20, request_timeout=timeout,
                                   retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=attempts))
        else:
            fs = pafs.GcsFileSystem(retry_time_limit=dt.timedelta(seconds=5 if quick else 120))
    except (OSError, ValueError) as err:
        raise ConfigError(f"{uri}: cannot open the bucket ({str(err).splitlines()[0]})") from None
    return fs, path


def _s3_region(bucket: str) -> str:
    """``AWS_REGION`` (or ``AWS_DEFAULT_REGION``); else the bucket's own region if AWS says it (a custom
    endpoint has none to ask: us-east-1)."""
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region or os.environ.get("AWS_ENDPOINT_URL"):
        return region or "us-east-1"
    import pyarrow.fs as pafs

    try:
        return pafs.resolve_s3_region(bucket)
    except (OSError, ValueError):
        return "us-east-1"


def local_copy(location: str | Path, *files: str) -> Path:
    """A folder (or file) by its location, as a path on this machine: a path as it is; a bucket URI
    (a run folder a bucket storage recorded, ``s3://lab/busi/sweep/runs/a1``) pulled into this machine's
    mirror first -- only ``files`` of it when given (``checkpoints/best.pt``), else everything."""
    if not is_bucket(str(location)):
        return Path(location)
    storage = Storage.at(str(location))
    for name in files or ("",):
        storage.pull(*([name] if name else []))
    if not storage.local.exists():
        raise ConfigError(f"{location}: not found in the bucket")
    return storage.local


def _under(rel: str, prefix: str) -> bool:
    return not prefix or rel == prefix or rel.startswith(prefix.rstrip("/") + "/")


def _is_temp(name: str) -> bool:
    """busray's own temp files (busray.atomic: ``.<name>.<host>.<pid>.<hex>.tmp``) are never synced."""
    return name.startswith(".") and name.endswith(".tmp")

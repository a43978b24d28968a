"""The store's files on disk and the rule that turns a folder of them into one table.

Under ``<storage>/results/``::

    runs/<sweep_id>__<trial_id>__<hash>.parquet   one trial's run row ("loose" file)
    runs/part-<seq>-<rand>.parquet                 many trials' rows, written by compaction
    _epochs/<same names>                           the epoch rows of the same trials
    _store.json                                    schema version and fingerprint of the files
    _generation                                    a counter compaction bumps before deleting
    _compact.lock                                  held (flock) while a compaction runs

Which row wins (busray's reader; the same rule compaction applies when it merges files):

- a loose file *claims* its trial (its Parquet metadata names ``(sweep_id, trial_id)``, so even an
  empty epochs file claims one): it beats every part file's rows of that trial;
- among part files the one with the highest ``seq`` wins (compaction writes a new part holding
  everything before it deletes the files it merged, so two parts coexist only for a moment, or
  after a crash).

``_epochs`` starts with ``_`` so that Arrow's dataset discovery (pandas, pyarrow) skips it, as it
skips the bookkeeping files: ``pd.read_parquet("<storage>/results")`` is the runs table, not the two
tables mixed under the first file's schema. Stores written before kept it in ``epochs/``; busray
reads both, and the next compaction (the first write runs one) moves the rows.

A reader lists the folder between two reads of ``_generation``; a file that vanished while being
read, or a changed counter, means a compaction ran meanwhile, and the read starts over, so a row
is never lost or counted twice. A file that is not a readable results file (corrupt, another
schema) is moved aside to ``_quarantine/<table folder>/`` (:func:`set_aside`), which Arrow's
discovery and the documented globs skip, so raw readers of the folder keep working; a
``busray: warning:`` line (:mod:`busray.notice`) names it and where it went.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from busray.atomic import atomic_write, atomic_writer
from busray.notice import warn
from busray.results.columns import SCHEMA_VERSION
from busray.results.schema import ResultsError
from busray.results.unify import conform

TRIAL_KEY = b"busray.trial"
PART_KEY = b"busray.part"
VERSION_KEY = b"busray.schema_version"
PART_RE = re.compile(r"^part-(\d+)-[0-9a-f]+\.parquet$")
READ_ATTEMPTS = 20
QUARANTINE = "_quarantine"  # <results>/_quarantine/<table folder>/: files set aside as unreadable


@dataclass(frozen=True)
class Table:
    """One of the store's tables: its name, folder, declared schema, required and sort columns;
    ``legacy``: where an older layout kept its files (read too, emptied by the next compaction)."""
    name: str
    folder: Path
    schema: pa.Schema
    required: tuple[str, ...]
    sort: tuple[str, ...]
    legacy: Path | None = None

    def files(self) -> list[Path]:
        """The committed files of the table: the legacy folder's (if any) first."""
        return [*(committed_files(self.legacy) if self.legacy else ()), *committed_files(self.folder)]


@dataclass
class StoreFile:
    """One committed file, read and upgraded to the declared schema."""
    path: Path
    table: pa.Table
    claim: tuple[str, str] | None  # loose files: the (sweep_id, trial_id) they hold
    seq: int | None                # part files: their sequence number
    digest: str | None             # loose files: hash of the bytes read (compaction compares it)


def loose_name(sweep_id: str, trial_id: str) -> str:
    """A file name unique to ``(sweep_id, trial_id)`` that is safe on every filesystem."""
    digest = hashlib.sha1(f"{sweep_id}\0{trial_id}".encode()).hexdigest()[:10]
    return f"{file_safe(sweep_id)}__{file_safe(str(trial_id))}__{digest}.parquet"


def part_seq(path: Path) -> int | None:
    match = PART_RE.match(path.name)
    return int(match.group(1)) if match else None


def committed_files(folder: Path) -> list[Path]:
    """Committed ``.parquet`` files (temp files start with a dot; ``_`` names are bookkeeping)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir()
                  if p.suffix == ".parquet" and not p.name.startswith((".", "_")))


def write_table(table: pa.Table, path: Path, claim: tuple[str, str] | None = None,
                seq: int | None = None) -> Path:
    """Write ``table`` atomically, naming in its metadata the trial it claims or its part seq."""
    meta = {VERSION_KEY: str(SCHEMA_VERSION).encode()}
    if claim is not None:
        meta[TRIAL_KEY] = json.dumps(list(claim)).encode()
    if seq is not None:
        meta[PART_KEY] = str(seq).encode()
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), **meta})
    # A one-row file gains nothing from dictionaries and statistics; a part keeps them (readers
    # such as DuckDB skip row groups by their min/max).
    small = seq is None
    with atomic_writer(path) as fh:
        pq.write_table(table, fh, use_dictionary=not small, write_statistics=not small)
    return path


def read_table(root: Path, table: Table, moved: list[Path] | None = None) -> pa.Table:
    """The table's rows under the precedence rule, started over if a compaction removes a file
    before it was read. Unreadable files are set aside (``moved``: where they went)."""
    for _ in range(READ_ATTEMPTS):
        paths = stable_listing(root, table)
        try:
            files = read_files(paths, table.schema, table.required, root, moved)
        except FileNotFoundError:
            time.sleep(0.02)
            continue
        return merge(files, table.schema)
    raise ResultsError(f"{table.folder}: kept changing while being read ({READ_ATTEMPTS} tries)")


def stable_listing(root: Path, table: Table) -> list[Path]:
    """A listing taken while no compaction bumped ``_generation``.

    A directory listed while files come and go may miss both a new part and the files it
    replaces; compaction bumps the counter after writing its part and before deleting anything,
    so a listing with the same counter before and after holds one or the other.
    """
    for _ in range(READ_ATTEMPTS):
        before = generation(root)
        paths = table.files()
        if generation(root) == before:
            return paths
    raise ResultsError(f"{table.folder}: kept changing while being listed ({READ_ATTEMPTS} tries)")


def read_files(paths: Sequence[Path], schema: pa.Schema, required: Sequence[str], root: Path | None = None,
               moved: list[Path] | None = None) -> list[StoreFile]:
    """Each readable file; FileNotFoundError if one vanished. A bad one is skipped with a
    ``busray: warning:`` line, and set aside under ``root/_quarantine`` when ``root`` is given
    (``moved`` collects where it went).

    Many small files are read a few at a time (Arrow releases the GIL while it reads).
    """
    def one(path: Path) -> StoreFile | str:
        try:
            return read_file(path, schema, required)
        except ResultsError as err:
            return str(err)

    if len(paths) > 32:
        with ThreadPoolExecutor(max_workers=min(8, 2 * (os.cpu_count() or 1))) as pool:
            results = list(pool.map(one, paths))
    else:
        results = [one(p) for p in paths]
    for path, problem in ((p, r) for p, r in zip(paths, results) if isinstance(r, str)):
        warn(problem + (set_aside(path, root, moved) if root is not None else ""))
    return [r for r in results if not isinstance(r, str)]


def set_aside(path: Path, root: Path, moved: list[Path] | None = None) -> str:
    """Move an unreadable file to ``root/_quarantine/<its folder>/`` (a new name if one is taken), so
    ``pd.read_parquet`` and DuckDB on the folder keep working; returns the end of its warning."""
    target = root / QUARANTINE / path.parent.name / path.name
    if target.exists():
        target = target.with_name(f"{path.stem}.{uuid.uuid4().hex[:8]}{path.suffix}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        os.rename(path, target)
    except FileNotFoundError:  # another reader moved it first
        return f"; moved to {target.parent}"
    except OSError as err:
        return (f"; could not move it aside ({err.strerror or type(err).__name__}): raw readers of the folder "
                f"fail on it until it is removed")
    if moved is not None:
        moved.append(target)
    return f"; moved to {target} (raw readers skip it)"


def read_file(path: Path, schema: pa.Schema, required: Sequence[str]) -> StoreFile:
    """One file upgraded to ``schema``; ResultsError (one line) when it is not a results file."""
    seq = part_seq(path)
    data = path.read_bytes()
    try:
        # One small file each: a plain single-threaded read is the fastest way here.
        table = pq.ParquetFile(pa.BufferReader(data), pre_buffer=False).read(use_threads=False)
    except (OSError, pa.ArrowException) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ResultsError(f"{path}: skipped, not a readable Parquet file ({first})") from None
    missing = [c for c in required if c not in table.column_names]
    if missing:
        raise ResultsError(f"{path}: skipped, not a busray results file (no column '{missing[0]}')")
    try:
        table = conform(table, schema, str(path))
    except ResultsError as err:
        raise ResultsError(f"{path}: skipped, {str(err).removeprefix(f'{path}: ')}") from None
    meta = table.schema.metadata or {}
    # Older files name no claim in their metadata: a one-row run file claims its row's trial.
    claim = tuple(json.loads(meta[TRIAL_KEY])) if TRIAL_KEY in meta else None
    if claim is None and seq is None and table.num_rows:
        claim = (table["sweep_id"][0].as_py(), table["trial_id"][0].as_py())
    digest = None if seq is not None else content_digest(data)
    return StoreFile(path, table.replace_schema_metadata(None), claim, seq, digest)


def merge(files: Sequence[StoreFile], schema: pa.Schema) -> pa.Table:
    """One table: loose files' rows, then part rows of trials no loose file or newer part holds."""
    taken = {_key(*f.claim) for f in files if f.seq is None and f.claim is not None}
    tables = [f.table for f in files if f.seq is None]
    parts = sorted((f for f in files if f.seq is not None), key=lambda f: -f.seq)
    for i, part in enumerate(parts):
        keys = _keys(part.table) if taken or i + 1 < len(parts) else None
        if taken:
            held = pc.is_in(keys, value_set=pa.array(sorted(taken), type=pa.string()))
            tables.append(part.table.filter(pc.invert(held)))
        else:
            tables.append(part.table)
        if i + 1 < len(parts):  # an older part follows: this one's trials hide its rows
            taken.update(pc.unique(keys).to_pylist())
    if not tables:
        return schema.empty_table()
    return pa.concat_tables(tables)


def _keys(table: pa.Table) -> pa.Array:
    return pc.binary_join_element_wise(table["sweep_id"].combine_chunks(),
                                       table["trial_id"].combine_chunks(), "\0")


def _key(sweep_id: str, trial_id: str) -> str:
    return f"{sweep_id}\0{trial_id}"


# ---------------------------------------------------------------------------- bookkeeping files
def generation(root: Path) -> int:
    try:
        return int((root / "_generation").read_text() or 0)
    except (OSError, ValueError):
        return 0


def bump_generation(root: Path) -> None:
    atomic_write(root / "_generation", f"{generation(root) + 1}\n")


def read_marker(root: Path) -> dict:
    try:
        data = json.loads((root / "_store.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_marker(root: Path, schema_print: str) -> None:
    atomic_write(root / "_store.json", json.dumps(
        {"schema_version": SCHEMA_VERSION, "fingerprint": schema_print}) + "\n")


def marker_is_current(root: Path, schema_print: str) -> bool:
    """Whether the store's files have the schema ``schema_print`` names (or a newer version
    wrote them: an older busray leaves those alone)."""
    return marker_is_newer(root) or read_marker(root).get("fingerprint") == schema_print


def marker_is_newer(root: Path) -> bool:
    """Whether a newer busray (a higher schema version) wrote the store's files."""
    version = read_marker(root).get("schema_version")
    return isinstance(version, int) and version > SCHEMA_VERSION


def content_digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def file_safe(text: str) -> str:
    """``text`` as a file name part: runs of other characters than letters, digits, ``.``, ``_``
    and ``-`` become one ``_`` (at most 60 characters)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")[:60] or "x"

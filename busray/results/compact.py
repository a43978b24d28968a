"""Compaction: merge a table's files into one part file, so reading 10,000 trials opens one file.

Every recorded trial writes its own small ("loose") file: concurrent writers never share one, and
a write is one atomic rename. Thousands of small files make reading slow, so compaction merges
them, per table, under the precedence rule of :mod:`busray.results.layout`:

1. take ``_compact.lock`` (``flock``: released by the kernel if the process dies);
2. read every committed file (bad ones are set aside to ``_quarantine/``, with a warning:
   :func:`busray.results.layout.set_aside`) and merge their rows, upgraded to the current schema
   (and run rows an older busray recorded without their whole config completed from their
   ``config.yaml``: :mod:`busray.results.repair`);
3. write ``_compacting.json``, the intent: each table's new part and the files it merges (with the
   digest of each loose file's bytes), then the new ``part-<seq>`` files (seq above every existing
   part); until step 5 a reader sees the new part *and* the old files, and the precedence rule makes
   them agree: loose files beat parts, the newer part beats the older;
4. bump ``_generation``, so a reader that listed the folder before now starts over;
5. delete the old parts and retire the loose files, each only if it is still the version that was
   read: a trial recorded again meanwhile keeps its newer loose file, which beats the part; then
   delete the intent;
6. write ``_store.json`` (the schema every file now has);
7. remove what killed processes left in the table folders: a writer's temp file whose process is gone
   (:func:`busray.atomic.remove_stale_temps`: checked by pid on its own host, by age elsewhere), and a
   file step 5 renamed aside over an hour ago; then a table's emptied legacy folder (an older
   layout's ``epochs/``: its files were merged into the new part like any other).

So busray's reader never loses or double-counts a row. A raw reader (pandas, DuckDB, polars) sees
the merged trials twice between step 3 and step 5 -- for a moment, or until the store is next opened
when the compaction was killed there: the next busray command that opens the store finds the intent
and finishes step 5 (:func:`finish_killed`; a part the killed process never committed leaves its old
files as they are). It also sees a trial twice when the trial was recorded again after the last
compaction (its loose row and its older part row); ``docs/STORE.md`` shows how to keep one.
The writer runs compaction itself when a store was written by an older schema (the upgrade) and
when more than ``auto_compact`` loose run files pile up; ``busray results compact`` runs it by hand.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from busray.atomic import STALE_AFTER_S, atomic_write, last_written_before, remove_stale_temps
from busray.results.columns import STORE_FINGERPRINT
from busray.results.layout import (
    StoreFile, Table, bump_generation, committed_files, content_digest, marker_is_current, marker_is_newer,
    merge, part_seq, read_files, write_marker, write_table)
from busray.results.repair import repair_runs

LOCK = "_compact.lock"
RETIRED = ".retired"
INTENT = "_compacting.json"  # step 3: what a compaction is about to commit and retire (step 5)


@dataclass
class CompactReport:
    """What one compaction did, per table name: rows written, files merged, files kept."""
    rows: dict[str, int] = field(default_factory=dict)
    merged: dict[str, int] = field(default_factory=dict)
    kept: int = 0  # loose files recorded again while compacting (they stay and win)
    leftovers: int = 0  # files killed processes left half-done (step 6)
    repaired: int = 0  # run rows whose config columns were filled from their config.yaml

    def summary(self) -> str:
        left = f"; removed {self.leftovers} leftover file(s) of killed writers" if self.leftovers else ""
        if not self.rows:
            return "nothing to compact" + left
        parts = [f"{name}: {self.merged[name]} file(s) -> 1 part of {self.rows[name]} row(s)"
                 for name in self.rows]
        kept = f"; {self.kept} file(s) written meanwhile kept" if self.kept else ""
        fixed = (f"; {self.repaired} run row(s) completed from their config.yaml (recorded by an older busray)"
                 if self.repaired else "")
        return "compacted " + ", ".join(parts) + kept + fixed + left


@contextlib.contextmanager
def compaction_lock(root: Path, wait: bool = False) -> Iterator[bool]:
    """Hold the store's compaction lock; yields False (without waiting) when another holds it."""
    root.mkdir(parents=True, exist_ok=True)
    # Read-only is enough for flock, so another user of a shared store can take the lock too.
    fd = os.open(root / LOCK, os.O_RDONLY | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # closing releases the lock


def upgrade_if_needed(root: Path, tables: Sequence[Table]) -> None:
    """Bring a store written by an older schema or layout to the current one (once; skipped if
    another process is compacting right now: it does the same)."""
    if is_current(root, tables):
        return
    with compaction_lock(root) as held:
        if not held or is_current(root, tables):
            return
        if any(t.files() for t in tables):
            compact_locked(root, tables)
        else:
            write_marker(root, STORE_FINGERPRINT)


def is_current(root: Path, tables: Sequence[Table]) -> bool:
    """The marker names this schema and no table has files in a legacy folder (a newer busray's
    store is left alone)."""
    if marker_is_newer(root):
        return True
    return (marker_is_current(root, STORE_FINGERPRINT)
            and not any(t.legacy is not None and committed_files(t.legacy) for t in tables))


def compact_locked(root: Path, tables: Sequence[Table], keep_intent: bool = False) -> CompactReport:
    """Steps 2-7 above; the caller holds the lock. ``keep_intent``: leave the intent for the caller to
    delete (a bucket's store, which pushes it before the new part: :mod:`busray.results.store`)."""
    report, planned = CompactReport(), []
    for table in tables:
        paths = table.files()
        files = read_files(paths, table.schema, table.required, root)
        merged = merge(files, table.schema).sort_by([(c, "ascending") for c in table.sort])
        if table.name == "runs":  # rows an older busray recorded without the whole config
            merged, report.repaired = repair_runs(merged)
        seq = max((s for s in map(part_seq, paths) if s is not None), default=0) + 1
        if files:
            report.rows[table.name], report.merged[table.name] = merged.num_rows, len(files)
            new = table.folder / f"part-{seq:010d}-{uuid.uuid4().hex[:8]}.parquet"
            planned.append((merged, new, seq, files))
    write_intent(root, [(new, files) for _, new, _, files in planned])
    for merged, new, seq, _ in planned:
        write_table(merged, new, seq=seq)
    bump_generation(root)
    report.kept = sum(retire_merged(files) for *_, files in planned)
    if not keep_intent:
        (root / INTENT).unlink(missing_ok=True)
    write_marker(root, STORE_FINGERPRINT)
    folders = [f for t in tables for f in (t.folder, t.legacy) if f is not None]
    report.leftovers = sum(remove_leftovers(folder) for folder in folders)
    for legacy in (t.legacy for t in tables if t.legacy is not None):
        with contextlib.suppress(OSError):  # still holds a file (kept, or a live writer's temp)
            legacy.rmdir()
    return report


def retire_merged(files: Sequence[StoreFile]) -> int:
    """Step 5 for one table: delete its merged parts, retire its merged loose files; returns how many
    loose files were recorded again meanwhile (kept: they beat the part)."""
    kept = 0
    for old in files:
        if old.seq is not None:
            old.path.unlink(missing_ok=True)
        elif not retire(old):
            kept += 1
    return kept


def write_intent(root: Path, plan: Sequence[tuple[Path, Sequence[StoreFile]]]) -> None:
    """Step 3's record: per table, its new part and the files it merges (a loose one with its digest),
    as paths relative to ``root``."""
    tables = [{"part": new.relative_to(root).as_posix(),
               "merged": [[f.path.relative_to(root).as_posix(), f.digest] for f in files]} for new, files in plan]
    atomic_write(root / INTENT, json.dumps({"tables": tables}) + "\n")


def finish_killed(root: Path) -> int:
    """Finish the step 5 of a compaction killed after step 3 (its intent is still there; the caller
    holds the lock): each table whose new part was committed has its merged files retired, a table
    whose part never was keeps them. Returns the files retired; raw readers then see each row once."""
    try:
        intent = json.loads((root / INTENT).read_text())
        tables = intent["tables"]
    except FileNotFoundError:
        return 0
    except (OSError, ValueError, KeyError, TypeError):  # a torn intent: it committed nothing
        tables = []
    retired = 0
    for table in tables:
        if not (root / table["part"]).is_file():
            continue
        files = [StoreFile(root / rel, None, None, part_seq(root / rel), digest) for rel, digest in table["merged"]]
        retire_merged([f for f in files if f.path.exists()])
        retired += sum(1 for f in files if not f.path.exists())
    bump_generation(root)
    (root / INTENT).unlink(missing_ok=True)
    return retired


def remove_leftovers(folder: Path) -> int:
    """Step 6: remove killed writers' temp files and renamed-aside files over an hour old."""
    if not folder.is_dir():
        return 0
    asides = [p for p in folder.glob(f".*{RETIRED}") if last_written_before(p, STALE_AFTER_S)]
    for aside in asides:
        aside.unlink(missing_ok=True)
    return len(remove_stale_temps(folder)) + len(asides)


def retire(old: StoreFile) -> bool:
    """Delete a merged loose file unless a newer version replaced it since it was read.

    The file is first renamed aside (atomic: whichever version is there moves); if that is not
    the version read, it is linked back, unless a still newer one has arrived. Returns whether
    the merged version was deleted.
    """
    aside = old.path.with_name(f".{old.path.name}.{uuid.uuid4().hex[:8]}{RETIRED}")
    try:
        os.rename(old.path, aside)
    except FileNotFoundError:
        return True
    if content_digest(aside.read_bytes()) == old.digest:  # the same bytes: merged, so delete
        aside.unlink()
        return True
    with contextlib.suppress(FileExistsError):
        os.link(aside, old.path)
    aside.unlink()
    return False

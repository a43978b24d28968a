"""The Parquet results store: ``record_run`` one trial at a time, read every trial back as one table.

Files live under ``<storage>/results/{runs,epochs}/`` (:mod:`busray.results.layout`), each with
exactly the declared schema of :mod:`busray.results.columns`, so plain readers work::

    pd.read_parquet("st/results/runs")
    duckdb.sql("SELECT * FROM read_parquet('st/results/runs/*.parquet')")
    pl.read_parquet("st/results/runs/*.parquet")

Why one file per recorded trial, named by ``(sweep_id, trial_id)``: trials that finish at once,
and two sweeps sharing a store, write different files, so no writer ever reads-modifies-writes a
shared file and no lock is needed (Ray workers may be on other hosts; a shared filesystem is
enough). Each write is a hidden temp file, fsynced and renamed into place: readers see the old
file or the new one, never half of one. Recording a trial again (a resumed sweep) replaces its
file. The epochs file is written before the run file, so a visible run row has its epochs.
Compaction (:mod:`busray.results.compact`) merges the small files into one, automatically once
``auto_compact`` of them pile up, so reading stays fast at 10,000 trials.

The store lives in a storage (:class:`busray.storage.Storage`): a local or mounted folder, or a bucket
(``s3://bucket/prefix``). In a bucket, this code works on the local mirror: every read pulls what
changed in ``results/``, every write (a recorded trial, a compaction) pushes its files -- one PUT each,
atomic in an object store -- and deletes the ones compaction merged; raw readers read the bucket
(``pd.read_parquet("s3://bucket/prefix/results/runs")``). A bucket has no ``flock``: a compaction there
also takes a lease object (``results/_compact.lease``, :func:`bucket_lease`), so two machines never
compact one store at once, and pushes its intent (``_compacting.json``) before its new part.

Opening the store (every read and write) first finishes a compaction that was killed between
committing its new part and retiring the files it merged (:func:`busray.results.compact.finish_killed`),
so raw readers see every row once again, and a file a read finds unreadable is moved aside to
``results/_quarantine/`` (in a bucket: a new key, the old one deleted), so raw readers keep working.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from busray.configtools import ConfigError, flatten
from busray.notice import warn
from busray.results.columns import (
    CONFIG_COLUMNS, EPOCH_SCHEMA, EXTRA, IDENTITY, REQUIRED_EPOCH_COLUMNS, REQUIRED_RUN_COLUMNS, RUN_SCHEMA,
    SCHEMA_VERSION, VERSION)
from busray.results.compact import INTENT, LOCK, CompactReport, compaction_lock, compact_locked, finish_killed, \
    is_current, upgrade_if_needed
from busray.results.filters import Filter, apply_filters
from busray.results.layout import Table, loose_name, read_table, write_table
from busray.results.ranking import best_value, choose_metrics
from busray.results.schema import STATUSES, ResultsError
from busray.results.unify import typed_table
from busray.storage import Storage

Where = Mapping[str, Any] | Iterable[Filter | str] | None
IDENTITY_COLUMNS = tuple(name for name, _ in IDENTITY)
#: Loose run files that trigger an automatic compaction after a write (0: never).
AUTO_COMPACT = 100
RESULTS = "results"
LEASE = "_compact.lease"
#: How long a compaction lease in a bucket holds if its holder dies (a compaction takes seconds).
LEASE_S = 600


@contextlib.contextmanager
def bucket_lease(storage: Storage) -> Iterator[bool]:
    """Hold ``results/_compact.lease`` in a bucket while this process compacts (yields whether it holds
    it; always True for a folder, whose ``flock`` does the job). Best effort, as object stores offer no
    lock: a lease another holder wrote less than :data:`LEASE_S` ago is respected; this one is written,
    read back and released (deleted) when done."""
    if not storage.remote:
        yield True
        return
    mine = {"owner": f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}", "at": time.time()}
    held = storage.read_json(RESULTS, LEASE)
    if held and held.get("owner") != mine["owner"] and time.time() - float(held.get("at", 0)) < LEASE_S:
        yield False
        return
    storage.write_json(mine, RESULTS, LEASE)
    try:
        yield (storage.read_json(RESULTS, LEASE) or {}).get("owner") == mine["owner"]
    finally:
        storage.delete(RESULTS, LEASE)


class ResultsStore:
    """Record trials and read them back as pandas DataFrames (or Arrow tables)."""

    def __init__(self, storage: "str | Path | Storage", auto_compact: int = AUTO_COMPACT):
        try:
            self.storage = Storage.at(storage)
        except ConfigError as err:
            raise ResultsError(str(err).replace("--storage: ", f"{storage}: ", 1)) from None
        self.root = self.storage.path("results")
        self.runs_dir = self.root / "runs"
        self.epochs_dir = self.root / "_epochs"  # "_": Arrow's discovery skips it (busray.results.layout)
        self.auto_compact = auto_compact
        self.tables = (
            Table("runs", self.runs_dir, RUN_SCHEMA, REQUIRED_RUN_COLUMNS, ("sweep_id", "trial_id")),
            Table("epochs", self.epochs_dir, EPOCH_SCHEMA, REQUIRED_EPOCH_COLUMNS,
                  ("sweep_id", "trial_id", "epoch"), legacy=self.root / "epochs"))

    # ----------------------------------------------------------------------------- writing
    def record_run(self, row: Mapping[str, Any],
                   epochs: Sequence[Mapping[str, Any]] | None = None) -> Path:
        """Write (or replace) one trial's run row and, if given, its epoch rows; returns the file.

        ``row`` is a :func:`busray.results.schema.run_row`. Everything is validated and typed
        before the first byte is written, so bad input leaves the store untouched. ``epochs=None``
        keeps an earlier epochs file of this trial; ``epochs=[]`` replaces it with an empty one.
        """
        row = flatten(dict(row))
        row.setdefault(VERSION, SCHEMA_VERSION)
        _check_run_row(row)
        run_table = typed_table([row], RUN_SCHEMA, f"run row of trial {row['trial_id']}")
        epoch_table = None if epochs is None else epoch_rows_table(row, epochs)
        self._pull()
        if not is_current(self.root, self.tables):
            with bucket_lease(self.storage) as leased:
                if leased:
                    upgrade_if_needed(self.root, self.tables)
        claim = (row["sweep_id"], row["trial_id"])
        name = loose_name(*claim)
        if epoch_table is not None:
            write_table(epoch_table, self.epochs_dir / name, claim=claim)
        path = write_table(run_table, self.runs_dir / name, claim=claim)
        self._maybe_compact()
        self.storage.push(RESULTS)
        return path

    def compact(self) -> CompactReport:
        """Merge every file of both tables into one part file each (see ``compact``)."""
        self._pull()
        with bucket_lease(self.storage) as leased, compaction_lock(self.root) as held:
            if not leased:
                raise ResultsError(f"{self.storage.location(RESULTS)}: another machine is compacting it "
                                   f"(it holds {LEASE}); try again in a minute")
            if not held:
                raise ResultsError(f"{self.root}: another compaction is running (it holds {self.root / LOCK})")
            return self._compact_locked()

    def _compact_locked(self) -> CompactReport:
        """Compact (lock and lease held) and push: in a bucket the intent first, so a push cut short
        leaves what the next opening needs to finish it."""
        report = compact_locked(self.root, self.tables, keep_intent=self.storage.remote)
        if self.storage.remote:
            self.storage.push(RESULTS, INTENT)
            self.storage.push(RESULTS)
            (self.root / INTENT).unlink(missing_ok=True)
        self.storage.push(RESULTS)
        return report

    @property
    def runs_location(self) -> str:
        """The runs table as a raw reader names it (a folder, or its bucket URI)."""
        return self.storage.location(RESULTS, "runs")

    def _maybe_compact(self) -> None:
        if self.auto_compact <= 0 or _loose_count(self.runs_dir) < self.auto_compact:
            return
        with bucket_lease(self.storage) as leased, compaction_lock(self.root) as held:
            if leased and held and _loose_count(self.runs_dir) >= self.auto_compact:
                self._compact_locked()

    def _pull(self) -> None:
        """A bucket's store: this machine's mirror brought up to date (whole files; a no-op for a folder);
        then a killed compaction finished (a stat when there is none)."""
        try:
            self.storage.pull(RESULTS)
        except FileNotFoundError:  # a file compaction removed while being listed: the next read retries
            pass
        if (self.root / INTENT).is_file():
            self._finish_killed_compaction()

    def _finish_killed_compaction(self) -> None:
        """Retire what a killed compaction merged (unless one is running now, or the store is read-only
        here: then raw readers keep seeing those rows twice until a writer opens it)."""
        try:
            with bucket_lease(self.storage) as leased, compaction_lock(self.root) as held:
                if leased and held and finish_killed(self.root):
                    self.storage.push(RESULTS)
        except OSError as err:  # a store this user can only read
            warn(f"{self.root / INTENT}: a killed compaction left rows twice for raw readers, and it cannot be "
                 f"finished here ({err.strerror or type(err).__name__}); any busray command with write access "
                 f"finishes it")

    def _read(self, table: Table) -> pa.Table:
        """One table as busray reads it; unreadable files set aside (pushed, in a bucket)."""
        self._pull()
        moved: list[Path] = []
        result = read_table(self.root, table, moved)
        if moved:
            self.storage.push(RESULTS)
        return result

    # ----------------------------------------------------------------------------- reading
    def run_table(self) -> pa.Table:
        """Every run row as an Arrow table of the declared schema."""
        return self._read(self.tables[0])

    def epoch_table(self) -> pa.Table:
        """Every epoch row as an Arrow table of the declared schema."""
        return self._read(self.tables[1])

    def runs(self, sweep: str | None = None, status: str | Sequence[str] | None = None,
             where: Where = None) -> pd.DataFrame:
        """Run rows (every declared column, plus ``extra`` keys as columns), optionally of one
        sweep (name or id), with these statuses and matching ``where`` filters."""
        table = self.run_table().sort_by([("sweep", "ascending"), ("finished_at", "ascending"),
                                          ("trial_id", "ascending")])
        df = with_extra_columns(table.to_pandas())
        return apply_filters(_select_status(_select_sweep(df, sweep), status), where)

    def epochs(self, sweep: str | None = None, where: Where = None) -> pd.DataFrame:
        """Epoch rows, optionally of one sweep (name or id) and matching ``where`` filters."""
        table = self.epoch_table().sort_by([("sweep", "ascending"), ("trial_id", "ascending"),
                                            ("epoch", "ascending")])
        return apply_filters(_select_sweep(with_extra_columns(table.to_pandas()), sweep), where)

    def is_recorded(self, sweep_id: str, trial_id: str) -> bool:
        """Whether the store holds a row of this trial (of any status)."""
        return trial_id in self.trial_ids(sweep_id)

    def trial_ids(self, sweep_id: str) -> set[str]:
        """The run ids (``trial_id``) sweep ``sweep_id`` recorded, of any status."""
        table = self.run_table()
        return set(table.filter(pc.equal(table["sweep_id"], sweep_id))["trial_id"].to_pylist())

    def trial_keys(self, sweep_id: str, statuses: Sequence[str] = ("completed",)) -> set[str]:
        """The experiments (trial keys) sweep ``sweep_id`` recorded with one of ``statuses``."""
        table = self.run_table()
        hit = pc.and_(pc.equal(table["sweep_id"], sweep_id),
                      pc.is_in(table["status"], value_set=pa.array(list(statuses), pa.string())))
        return set(table.filter(hit)["trial_key"].to_pylist())

    def has_run(self, sweep_id: str, trial_key: str,
                statuses: Sequence[str] = ("completed",)) -> bool:
        """Whether sweep ``sweep_id`` already recorded the experiment ``trial_key`` with a status
        in ``statuses`` (so a resumed sweep or an ablation can skip it)."""
        return trial_key in self.trial_keys(sweep_id, statuses)

    def sweeps(self) -> pd.DataFrame:
        """One row per sweep id: name, kind (``ablation`` when every row names its variant, else
        ``sweep``), trial counts by status, the objective (every metric of a multi-objective one) and
        the best value of its first metric, the one that ranks (over completed and stopped-early
        trials: a failed trial's metrics are not a result)."""
        table = self.run_table()  # config columns are not needed here: skip converting them
        runs = table.drop_columns(list(CONFIG_COLUMNS)).to_pandas()
        rows = []
        for (name, sweep_id), group in runs.groupby(["sweep", "sweep_id"], sort=False):
            counts = group["status"].value_counts()
            metrics = _metrics_or_none(group)
            usable = group[group["status"] != "failed"]
            rows.append({
                "sweep": name, "kind": kind_of(group),
                "sweep_id": sweep_id, "trials": len(group),
                **{s: int(counts.get(s, 0)) for s in STATUSES},
                "objective": ",".join(f"{metric}:{mode}" for metric, mode in metrics) or None,
                "best": best_value(usable, *metrics[0]) if metrics else None,
                "started_at": group["started_at"].dropna().min(),
                "finished_at": group["finished_at"].dropna().max(),
            })
        columns = ["sweep", "kind", "sweep_id", "trials", *STATUSES, "objective", "best",
                   "started_at", "finished_at"]
        return pd.DataFrame(rows, columns=columns).sort_values("started_at", ignore_index=True)


def kind_of(runs: pd.DataFrame) -> str:
    """``ablation`` when every row of one sweep id names its variant (``busray ablate``), else ``sweep``."""
    return "ablation" if runs["variant"].notna().all() else "sweep"


def epoch_rows_table(row: Mapping[str, Any], epochs: Sequence[Mapping[str, Any]]) -> pa.Table:
    """A trial's epoch rows (history.csv dicts) typed, with its identity; unknown keys -> extra."""
    identity = {k: row.get(k) for k in IDENTITY_COLUMNS}
    declared = set(EPOCH_SCHEMA.names)
    rows = []
    for i, epoch in enumerate(epochs):
        if epoch.get("epoch") is None:
            raise ResultsError(f"epoch row {i} of trial {row['trial_id']}: no 'epoch' value")
        extra = {k: v for k, v in epoch.items() if k not in declared}
        known = {k: v for k, v in epoch.items() if k in declared and k not in identity}
        rows.append({**known, **identity, VERSION: SCHEMA_VERSION,
                     EXTRA: json.dumps(extra, sort_keys=True, default=str) if extra else None})
    return typed_table(rows, EPOCH_SCHEMA, f"epochs of trial {row['trial_id']}")


def with_extra_columns(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with each key of its ``extra`` JSON objects as one more column (after the others)."""
    if EXTRA not in df.columns or df[EXTRA].isna().all():
        return df
    parsed = df[EXTRA].map(lambda text: json.loads(text) if isinstance(text, str) else {})
    keys = sorted({k for obj in parsed for k in obj} - set(df.columns))
    added = pd.DataFrame({k: parsed.map(lambda obj, k=k: obj.get(k)) for k in keys}, index=df.index)
    return pd.concat([df, added], axis=1)


def _check_run_row(row: Mapping[str, Any]) -> None:
    for name in REQUIRED_RUN_COLUMNS:
        if row.get(name) in (None, ""):
            raise ResultsError(f"run row: required column '{name}' is missing or empty")
    if row["status"] not in STATUSES:
        raise ResultsError(f"run row: status {row['status']!r} is not one of {', '.join(STATUSES)}")


def _loose_count(folder: Path) -> int:
    try:
        return sum(1 for e in os.scandir(folder) if "__" in e.name and e.name.endswith(".parquet")
                   and not e.name.startswith("."))
    except FileNotFoundError:
        return 0


def _select_sweep(df: pd.DataFrame, sweep: str | None) -> pd.DataFrame:
    if sweep is None:
        return df
    hit = df[(df["sweep"] == sweep) | (df["sweep_id"] == sweep)]
    if hit.empty:
        known = sorted(set(df["sweep"].dropna()))
        raise ResultsError(f"unknown sweep '{sweep}' (known: {', '.join(known) or 'none'})")
    return hit


def _select_status(df: pd.DataFrame, status: str | Sequence[str] | None) -> pd.DataFrame:
    if status is None:
        return df
    wanted = [status] if isinstance(status, str) else list(status)
    bad = [s for s in wanted if s not in STATUSES]
    if bad:
        raise ResultsError(f"unknown status '{bad[0]}' (one of {', '.join(STATUSES)})")
    return df[df["status"].isin(wanted)]


def _metrics_or_none(group: pd.DataFrame) -> list[tuple[str, str]]:
    try:
        return choose_metrics(group)
    except ResultsError:
        return []  # an objective naming a metric this sweep never recorded: no "best"

"""The Parquet results store: one file per recorded trial, written atomically, read as one table.

Layout under ``<storage>/results/``::

    runs/<sweep_id>__<trial_id>__<hash>.parquet     one run row (see ``schema``)
    epochs/<same name>.parquet                       that trial's per-epoch rows

Why one file per trial, named by ``(sweep_id, trial_id)``:

- Trials that finish at once, and two sweeps sharing a store, write different files, so no writer
  ever reads-modifies-writes a shared file and no lock is needed (Ray workers may be on other
  hosts; a shared filesystem is enough).
- Each file is written to a hidden temp name in the same folder (``.<name>.<pid>.<rand>.tmp``),
  fsynced, then ``os.replace``-d into place: readers see the old file or the new one, never half
  of one. A writer killed mid-write leaves only a hidden ``.tmp`` file, which readers ignore.
- Recording the same trial again (a resumed sweep re-running an interrupted trial, or the sweep
  layer re-reporting it) replaces its file, so a trial is never counted twice. The name is the
  trial *id*, not the config hash: two trials of one sweep that happen to draw the same config
  (Optuna repeats categorical draws) are still two rows; ``has_run(sweep_id, trial_key)`` is the
  config-level question ("has this experiment already completed?") for resume and ablations.
  Callers must therefore pass a trial id that survives a resume (Ray Tune's does).
- The epochs file is written before the run file, so a visible run row always has its epochs.

Reading with other tools: the files are plain Parquet, but their columns differ between sweeps
(each sweep's config keys), and ``pandas.read_parquet(dir)`` / ``pyarrow.dataset`` take one file's
schema and silently drop the other files' extra columns (fine while all files share their
columns, lossy across sweeps). Union the columns by name instead::

    ResultsStore("st").runs()                                                  # busray, pandas
    duckdb.sql("SELECT * FROM read_parquet('st/results/runs/*.parquet', union_by_name=true)")
    pl.concat([pl.read_parquet(p) for p in glob.glob("st/results/runs/*.parquet")],
              how="diagonal_relaxed")                                          # polars
    pd.concat([pd.read_parquet(p) for p in glob.glob("st/results/runs/*.parquet")])

(``*.parquet`` never matches the temp files, and pyarrow ignores names starting with ``.``.)
The store is local or on a mounted filesystem; object-store URIs are rejected.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from busray.configtools import flatten
from busray.results.filters import Filter, apply_filters
from busray.results.ranking import best_value, choose_metrics
from busray.results.schema import (
    EPOCH_KEY_COLUMNS, RUN_COLUMNS, SCHEMA_VERSION, STATUSES, ResultsError, check_run_row,
    config_columns, order_columns)
from busray.results.unify import concat_unified, read_parquet_files

Where = Mapping[str, Any] | Iterable[Filter | str] | None


class ResultsStore:
    """Record trials and read them back as pandas DataFrames."""

    def __init__(self, storage: str | Path):
        text = str(storage)
        if text.startswith("file://"):
            text = text[len("file://"):]
        elif re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]+://", text):
            raise ResultsError(f"{storage}: the results store needs a local or mounted path")
        self.root = Path(text).expanduser() / "results"
        self.runs_dir = self.root / "runs"
        self.epochs_dir = self.root / "epochs"

    # ----------------------------------------------------------------------------- writing
    def record_run(self, row: Mapping[str, Any],
                   epochs: Sequence[Mapping[str, Any]] | None = None) -> Path:
        """Write (or replace) one trial's run row and, if given, its epoch rows; returns the file.

        Everything is validated and converted before the first byte is written, so bad input
        leaves the store untouched. ``epochs=None`` keeps an earlier epochs file of this trial;
        ``epochs=[]`` replaces it with an empty one.
        """
        row = flatten(dict(row))
        row.setdefault("schema_version", SCHEMA_VERSION)
        check_run_row(row)
        run_table = _table([row], "run row")
        epoch_table = None if epochs is None else self._epoch_table(row, epochs)
        name = run_file_name(row["sweep_id"], row["trial_id"])
        if epoch_table is not None:
            atomic_write_table(epoch_table, self.epochs_dir / name)
        return atomic_write_table(run_table, self.runs_dir / name)

    @staticmethod
    def _epoch_table(row: Mapping[str, Any], epochs: Sequence[Mapping[str, Any]]) -> pa.Table:
        identity = {k: row.get(k) for k in EPOCH_KEY_COLUMNS}
        rows = []
        for i, epoch in enumerate(epochs):
            if "epoch" not in epoch:
                raise ResultsError(f"epoch row {i} of trial {row['trial_id']}: no 'epoch' column")
            # The trial's identity wins over same-named keys in what the trainer reported.
            rows.append({**dict(epoch), **identity, "schema_version": SCHEMA_VERSION})
        if not rows:  # an empty file that still names its columns
            row_shape = {**identity, "epoch": None, "schema_version": SCHEMA_VERSION}
            return _table([row_shape], "epoch row").slice(0, 0)
        return _table(rows, "epoch row")

    # ----------------------------------------------------------------------------- reading
    def runs(self, sweep: str | None = None, status: str | Sequence[str] | None = None,
             where: Where = None) -> pd.DataFrame:
        """Run rows, optionally of one sweep (name or id), with these statuses and filters.

        With ``sweep`` given, config and metric columns that are empty for that sweep (other
        sweeps' keys) are dropped.
        """
        df = self._read(self.runs_dir, RUN_COLUMNS)
        df = _select_sweep(df, sweep)
        df = _select_status(df, status)
        df = apply_filters(df, where)
        if sweep is not None:
            empty = [c for c in config_columns(list(df.columns)) + _metric_columns(df)
                     if df[c].isna().all()]
            df = df.drop(columns=empty)
        sort = [c for c in ("sweep", "finished_at", "trial_id") if c in df.columns]
        return df[order_columns(list(df.columns))].sort_values(sort, kind="stable",
                                                              ignore_index=True)

    def epochs(self, sweep: str | None = None, where: Where = None) -> pd.DataFrame:
        """Epoch rows, optionally of one sweep (name or id) and matching ``where`` filters."""
        df = self._read(self.epochs_dir, EPOCH_KEY_COLUMNS + ("epoch",))
        df = apply_filters(_select_sweep(df, sweep), where)
        front = [c for c in EPOCH_KEY_COLUMNS + ("epoch",) if c in df.columns]
        df = df[front + sorted(c for c in df.columns if c not in front)]
        return df.sort_values(["sweep", "trial_id", "epoch"], kind="stable", ignore_index=True)

    def has_run(self, sweep_id: str, trial_key: str,
                statuses: Sequence[str] = ("completed",)) -> bool:
        """Whether sweep ``sweep_id`` already recorded the experiment ``trial_key`` with a status
        in ``statuses`` (so a resumed sweep or an ablation can skip it)."""
        prefix = _slug(sweep_id) + "__"
        files = [p for p in self._files(self.runs_dir) if p.name.startswith(prefix)]
        if not files:
            return False
        df = concat_unified(read_parquet_files(files)).to_pandas()
        hit = (df["sweep_id"] == sweep_id) & (df["trial_key"] == trial_key)
        return bool((hit & df["status"].isin(list(statuses))).any())

    def sweeps(self) -> pd.DataFrame:
        """One row per sweep id: name, trial counts by status, objective and its best value
        (over completed and stopped-early trials: a failed trial's metrics are not a result)."""
        runs = self.runs()
        rows = []
        for (name, sweep_id), group in runs.groupby(["sweep", "sweep_id"], sort=False):
            counts = group["status"].value_counts()
            metrics = _metrics_or_none(group)
            usable = group[group["status"] != "failed"]
            rows.append({
                "sweep": name, "sweep_id": sweep_id, "trials": len(group),
                **{s: int(counts.get(s, 0)) for s in STATUSES},
                "objective": f"{metrics[0][0]}:{metrics[0][1]}" if metrics else None,
                "best": best_value(usable, *metrics[0]) if metrics else None,
                "started_at": group["started_at"].dropna().min(),
                "finished_at": group["finished_at"].dropna().max(),
            })
        columns = ["sweep", "sweep_id", "trials", *STATUSES, "objective", "best",
                   "started_at", "finished_at"]
        return pd.DataFrame(rows, columns=columns).sort_values("started_at", ignore_index=True)

    def _read(self, folder: Path, base_columns: Sequence[str]) -> pd.DataFrame:
        table = concat_unified(read_parquet_files(self._files(folder)))
        if table.num_columns == 0:
            return pd.DataFrame(columns=list(base_columns))
        return table.to_pandas()

    @staticmethod
    def _files(folder: Path) -> list[Path]:
        """Committed files only: temp files are hidden and do not end in ``.parquet``."""
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.iterdir()
                      if p.suffix == ".parquet" and not p.name.startswith((".", "_")))


def run_file_name(sweep_id: str, trial_id: str) -> str:
    """A file name unique to ``(sweep_id, trial_id)`` that is safe on every filesystem."""
    digest = hashlib.sha1(f"{sweep_id}\0{trial_id}".encode()).hexdigest()[:10]
    return f"{_slug(sweep_id)}__{_slug(str(trial_id))}__{digest}.parquet"


def atomic_write_table(table: pa.Table, path: Path) -> Path:
    """Write ``table`` to ``path`` via a hidden temp file, fsync and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as fh:
            pq.write_table(table, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _table(rows: list[dict[str, Any]], what: str) -> pa.Table:
    """Rows with possibly different keys -> an Arrow table; a bad value names its column."""
    names: dict[str, None] = {}
    for row in rows:
        names.update(dict.fromkeys(row))
    arrays = {}
    for name in names:
        values = [_arrow_value(row.get(name)) for row in rows]
        try:
            arrays[name] = pa.array(values)
        except (pa.ArrowException, TypeError, ValueError) as err:
            raise ResultsError(f"{what}: column '{name}' cannot be stored ({err})") from None
    return pa.table(arrays)


def _arrow_value(value: Any) -> Any:
    """numpy scalars/arrays, tuples and paths as plain Python values Arrow can infer."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, tuple):
        return [_arrow_value(v) for v in value]
    if isinstance(value, list):
        return [_arrow_value(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


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


def _metric_columns(df: pd.DataFrame) -> list[str]:
    return [c for c in df.columns if c.startswith(("val/", "test/"))]


def _metrics_or_none(group: pd.DataFrame) -> list[tuple[str, str]]:
    try:
        return choose_metrics(group)
    except ResultsError:
        return []  # an objective naming a metric this sweep never recorded: no "best"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")[:60] or "x"

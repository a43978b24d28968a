"""Any Parquet reader opens the store: pandas, pyarrow.dataset, DuckDB (no union_by_name), polars.

The store holds what a sweep leaves: completed, stopped-early and failed trials (a failed one has
no metrics, no dataset and no best epoch), of two sweeps that search different keys, as loose
per-trial files, after compaction, and after a compaction SIGKILLed between committing its part and
retiring what it merged, once a busray command opened the store. Every reader must see every row
once, with the declared types.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from busray.cli.main import main
from busray.config import Config, config_to_dict
from busray.results import EPOCH_SCHEMA, RUN_SCHEMA, ResultsStore

TRIALS = [  # (sweep, trial, status, model.tau, val metrics, epochs run)
    ("a", "t0", "completed", 0.3, {"seg/iou": 0.6, "score": 0.7}, 3),
    ("a", "t1", "stopped_early", 0.7, {"seg/iou": 0.4, "score": 0.5}, 1),
    ("a", "t2", "failed", 0.9, {}, 0),
    ("b", "u0", "completed", 0.5, {"clf/acc": 0.8}, 2),
]


def _fill(store: ResultsStore, make_row) -> None:
    for sweep, trial, status, tau, val, epochs in TRIALS:
        config = config_to_dict(Config())
        config["model"]["tau"] = tau
        if sweep == "b":
            config["loss"]["w_seg"] = 0.25
        row = make_row(sweep=sweep, sweep_id=f"{sweep}-1", trial_id=trial, status=status,
                       config=config, val=val, error="loss is NaN" if status == "failed" else None,
                       test={"seg/iou": 0.5} if status == "completed" else {},
                       dataset="" if status == "failed" else "busi")
        store.record_run(row, [{"epoch": e, "lr": 0.01, "train/loss": 1.0 / e, "val/score": 0.1 * e}
                               for e in range(1, epochs + 1)])


@pytest.fixture(params=["loose", "compacted", "killed-compaction"])
def filled(request, tmp_path, make_row) -> ResultsStore:
    if request.param == "killed-compaction":
        shutil.copytree(request.getfixturevalue("killed_then_opened"), tmp_path / "st")
        return ResultsStore(tmp_path / "st", auto_compact=0)
    store = ResultsStore(tmp_path / "st", auto_compact=0)
    _fill(store, make_row)
    if request.param == "compacted":
        store.compact()
    return store


# A compaction that stops, once its new parts are committed, where it would retire what it merged.
KILLED_COMPACTION = """
import sys, time
from pathlib import Path
from busray.results import ResultsStore
from busray.results import compact
def stop(*args):
    Path(sys.argv[2]).touch()
    time.sleep(600)
compact.retire = stop
ResultsStore(sys.argv[1]).compact()
"""


@pytest.fixture(scope="module")
def killed_then_opened(tmp_path_factory, make_row) -> Path:
    """A store whose compaction was SIGKILLed mid-way (raw readers see its rows twice), then opened by
    ``busray results list``."""
    folder = tmp_path_factory.mktemp("killed") / "st"
    store = ResultsStore(folder, auto_compact=0)
    _fill(store, make_row)
    ready = folder.parent / "ready"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_COMPACTION, str(folder), str(ready)],
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    deadline = time.time() + 120
    while not ready.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    assert ready.exists(), "the compaction never reached its retiring step"
    assert len(pd.read_parquet(store.runs_dir)) == 2 * len(TRIALS)  # in between: every row twice
    assert main(["results", "list", "--storage", str(folder)]) == 0
    return folder


TABLES = [("runs", RUN_SCHEMA, len(TRIALS)), ("_epochs", EPOCH_SCHEMA, 6)]  # folders under results/


def _same_types(got: pa.Schema, declared: pa.Schema) -> bool:
    """Equal schemas, where DuckDB may spell the UTC zone ``Etc/UTC``."""
    def norm(t: pa.DataType) -> pa.DataType:
        return pa.timestamp(t.unit, tz="UTC") if pa.types.is_timestamp(t) and t.tz else t
    return [(f.name, norm(f.type)) for f in got] == [(f.name, f.type) for f in declared]


@pytest.mark.parametrize("name, schema, rows", TABLES)
def test_pandas_reads_the_folder(filled, name, schema, rows):
    df = pd.read_parquet(filled.root / name)
    ours = filled.runs() if name == "runs" else filled.epochs()
    assert (filled.root / name) == (filled.runs_dir if name == "runs" else filled.epochs_dir)
    assert len(df) == rows and list(df.columns) == schema.names
    assert df.dtypes.to_dict() == ours[schema.names].dtypes.to_dict()


def test_pandas_reads_results_as_the_runs_table(filled):
    """What a user tries first: Arrow's discovery skips ``_epochs`` and the bookkeeping files."""
    df = pd.read_parquet(filled.root)
    assert len(df) == len(TRIALS) and list(df.columns) == RUN_SCHEMA.names
    assert sorted(df["trial_id"]) == sorted(filled.runs()["trial_id"])


@pytest.mark.parametrize("name, schema, rows", TABLES)
def test_pyarrow_dataset_reads_the_folder(filled, name, schema, rows):
    table = ds.dataset(filled.root / name, format="parquet").to_table()
    assert table.num_rows == rows and table.schema.equals(schema, check_metadata=False)


@pytest.mark.parametrize("name, schema, rows", TABLES)
def test_duckdb_reads_the_files_without_union_by_name(filled, name, schema, rows):
    con = duckdb.connect()
    rel = con.sql(f"SELECT * FROM read_parquet('{filled.root / name}/*.parquet')")
    table = rel.to_arrow_table()
    assert table.num_rows == rows and _same_types(table.schema, schema)


@pytest.mark.parametrize("name, schema, rows", TABLES)
def test_polars_reads_the_files(filled, name, schema, rows):
    df = pl.read_parquet(str(filled.root / name / "*.parquet"))
    assert df.height == rows and df.schema == pl.from_arrow(schema.empty_table()).schema


def test_values_survive_every_reader(filled):
    """The same cells through pandas, DuckDB and polars: typed, nulls where nothing was recorded."""
    con = duckdb.connect()
    glob = f"{filled.root / 'runs'}/*.parquet"
    duck = con.sql(f"SELECT trial_id, \"model.tau\", \"val/seg/iou\", best_epoch, dataset, "
                   f"\"model.tim_levels\" FROM read_parquet('{glob}') ORDER BY trial_id").fetchall()
    polars = pl.read_parquet(glob).sort("trial_id").select(["trial_id", "model.tau", "val/seg/iou",
                                                            "best_epoch", "dataset",
                                                            "model.tim_levels"]).rows()
    default_levels = config_to_dict(Config())["model"]["tim_levels"]
    expected = [("t0", 0.3, 0.6, 1, "busi", default_levels), ("t1", 0.7, 0.4, 1, "busi", default_levels),
                ("t2", 0.9, None, None, None, default_levels), ("u0", 0.5, None, 1, "busi", default_levels)]
    assert [tuple(r) for r in duck] == expected
    assert [tuple(r) for r in polars] == expected
    failed = pd.read_parquet(filled.root / "runs").set_index("trial_id").loc["t2"]
    assert failed["error"] == "loss is NaN" and not pd.isna(failed["started_at"])

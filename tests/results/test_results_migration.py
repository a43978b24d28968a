"""Stores written by schema version 1 (types inferred per file, only the swept config keys).

busray reads them as the current schema; the first write of the current version upgrades every
file, after which plain readers see one schema again.
"""

from __future__ import annotations

import json
import os

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from busray.results import EPOCH_SCHEMA, RUN_SCHEMA, SCHEMA_VERSION, ResultsStore
from busray.results.layout import loose_name, read_marker


def _v1_run(trial: str, status: str, tau, error=None, started="2025-01-01T09:00:00+00:00") -> dict:
    """A run row as version 1 wrote it: as busray 0.1 recorded it."""
    return {"sweep": "old", "sweep_id": "old-1", "trial_id": trial, "trial_key": f"k{trial}",
            "variant": None, "seed": 0, "status": status, "error": error,
            "objective": "val/seg/iou:max", "dataset": "busi", "split_hash": "h",
            "best_epoch": 2, "wall_time_s": 60.0, "device": "cpu", "busray_version": "0.1.0",
            "git_rev": None, "started_at": started, "finished_at": "2025-01-01T09:01:00+00:00",
            "run_dir": f"/runs/{trial}", "schema_version": 1, "model.tau": tau,
            "model.levels": [1, 2],                          # a key Config no longer has
            "val/seg/iou": None if status == "failed" else 0.5}


def _write_v1(store: ResultsStore) -> None:
    rows = [_v1_run("a", "completed", 1), _v1_run("b", "failed", 0.5, error="NaN loss",
                                                    started="2025-01-01T09:00:00")]
    for row in rows:
        name = loose_name(row["sweep_id"], row["trial_id"])
        table = pa.table({k: pa.array([v]) for k, v in row.items()})   # types inferred per file
        store.runs_dir.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, store.runs_dir / name)
        epochs = pa.table({"sweep": ["old"], "sweep_id": ["old-1"], "trial_id": [row["trial_id"]],
                           "trial_key": [row["trial_key"]], "variant": pa.nulls(1), "seed": [0],
                           "epoch": [1.0], "train/loss": [0.7], "schema_version": [1]})
        (store.root / "epochs").mkdir(parents=True, exist_ok=True)   # the folder before "_epochs"
        pq.write_table(epochs, store.root / "epochs" / name)


@pytest.fixture
def old_store(tmp_path) -> ResultsStore:
    store = ResultsStore(tmp_path / "st", auto_compact=0)
    _write_v1(store)
    return store


def test_version_1_files_read_as_the_current_schema(old_store):
    runs = old_store.runs()
    assert list(runs.columns) == RUN_SCHEMA.names + ["model.levels"]
    runs = runs.set_index("trial_id")
    assert runs.loc["a", "model.tau"] == 1.0 and str(runs["model.tau"].dtype) == "float64"
    assert runs.loc["b", "started_at"] == pd.Timestamp("2025-01-01T09:00:00", tz="UTC")
    assert runs.loc["a", "model.levels"] == [1, 2]            # kept in extra, shown as a column
    assert json.loads(runs.loc["a", "extra"]) == {"model.levels": [1, 2]}
    assert runs["schema_version"].tolist() == [1, 1]          # as recorded
    assert old_store.epochs()["epoch"].tolist() == [1, 1]


def test_the_first_write_upgrades_every_file(old_store, make_row):
    with pytest.raises(Exception):   # before: plain readers trip over the mixed, inferred types
        duckdb.sql(f"SELECT * FROM read_parquet('{old_store.runs_dir}/*.parquet')").fetchall()
    old_store.record_run(make_row(trial_id="new"), [{"epoch": 1}])
    assert not (old_store.root / "epochs").exists()           # its rows moved to _epochs
    assert sorted(pd.read_parquet(old_store.epochs_dir)["trial_id"]) == ["a", "b", "new"]
    for folder, schema in ((old_store.runs_dir, RUN_SCHEMA), (old_store.epochs_dir, EPOCH_SCHEMA)):
        for path in folder.glob("*.parquet"):
            assert pq.read_schema(path).equals(schema, check_metadata=False), path
    assert read_marker(old_store.root)["schema_version"] == SCHEMA_VERSION
    assert len(pd.read_parquet(old_store.runs_dir)) == 3
    rows = duckdb.sql(f"SELECT trial_id, schema_version FROM read_parquet("
                      f"'{old_store.runs_dir}/*.parquet') ORDER BY trial_id").fetchall()
    assert rows == [("a", 1), ("b", 1), ("new", SCHEMA_VERSION)]


def test_a_store_marked_by_a_newer_version_is_left_alone(old_store, make_row):
    (old_store.root / "_store.json").write_text(json.dumps({"schema_version": SCHEMA_VERSION + 1,
                                                            "fingerprint": "future"}))
    old_store.record_run(make_row(trial_id="new"))
    assert not list(old_store.runs_dir.glob("part-*"))        # nothing rewritten
    assert len(old_store.runs()) == 3


@pytest.mark.parametrize("live_temp", [False, True])
def test_epochs_folder_of_the_previous_layout_is_read_then_moved(tmp_path, make_row, live_temp):
    """Schema 2 stores kept the epoch rows in ``epochs/`` (which ``pd.read_parquet(results)`` mixed
    into the runs); they are read as they are, and the first write moves them to ``_epochs/``."""
    store = ResultsStore(tmp_path / "st", auto_compact=0)
    for trial in ("a", "b"):
        store.record_run(make_row(trial_id=trial), [{"epoch": 1}, {"epoch": 2}])
    legacy = store.root / "epochs"
    store.epochs_dir.rename(legacy)
    if live_temp:  # a writer of the old version, mid-write: its temp file must survive
        (legacy / f".x.parquet.{os.uname().nodename}.{os.getpid()}.00000000.tmp").write_bytes(b"")
    assert store.epochs()["trial_id"].tolist() == ["a", "a", "b", "b"]
    store.record_run(make_row(trial_id="c"), [{"epoch": 1}])
    assert store.epochs()["trial_id"].tolist() == ["a", "a", "b", "b", "c"]
    assert [p.name.startswith("part-") for p in sorted(store.epochs_dir.iterdir())] == [False, True]
    assert legacy.exists() is live_temp  # emptied, then removed unless a live writer's temp is there
    if live_temp:
        assert [p.suffix for p in legacy.iterdir()] == [".tmp"]
    store.record_run(make_row(trial_id="d"), [])        # no compaction on every write after it
    assert len([p for p in store.runs_dir.iterdir() if p.name.startswith("part-")]) == 1

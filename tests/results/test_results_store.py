"""Writing and reading the Parquet store: typed round trips, replacement, bad input, bad files."""

from __future__ import annotations

import datetime as dt
import warnings

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from busray.config import Config, config_to_dict
from busray.results import RUN_SCHEMA, ResultsError, ResultsStore
from busray.results import layout as layout_module
from busray.results.layout import loose_name

UTC = dt.timezone.utc


def _files(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_round_trip_keeps_every_typed_value(store, make_row):
    config = config_to_dict(Config())
    config["model"].update(tau=0.25, hmsf=False, tim_levels=[1, 3])
    row = make_row(config=config, best_epoch=5, epochs_run=6, wall_time_s=12.0, device="cpu",
                   dataset="busi", split_hash="abc", variant="full", test={"seg/dice": 0.6},
                   started_at="2025-03-01T10:00:00+00:00", finished_at="2025-03-01T10:05:00")
    store.record_run(row)
    got = store.runs().iloc[0]
    assert list(store.runs().columns) == RUN_SCHEMA.names
    assert got["started_at"] == pd.Timestamp("2025-03-01T10:00:00", tz=UTC)
    assert got["finished_at"] == pd.Timestamp("2025-03-01T10:05:00", tz=UTC)  # naive = UTC
    for column, value in row.items():
        if column in ("started_at", "finished_at"):
            continue
        if isinstance(value, list):
            assert list(got[column]) == value, column
        elif value is None:
            assert pd.isna(got[column]), column
        else:
            assert got[column] == value, column


def test_the_full_config_is_filterable(store, make_row):
    for i, hmsf in enumerate([True, False, True]):
        config = config_to_dict(Config())
        config["model"]["hmsf"] = hmsf
        store.record_run(make_row(trial_id=f"t{i}", config=config))
    hits = store.runs(sweep="demo", where=["model.hmsf=true", "train.debug_crash_at_epoch=null"])
    assert hits["trial_id"].tolist() == ["t0", "t2"]


def test_recording_a_trial_again_replaces_its_row(store, make_row):
    store.record_run(make_row(trial_id="t1", status="failed", error="killed"))
    store.record_run(make_row(trial_id="t1", val={"seg/iou": 0.9}))
    df = store.runs()
    assert len(df) == 1
    assert df.loc[0, "status"] == "completed" and df.loc[0, "val/seg/iou"] == 0.9
    assert len(_files(store.runs_dir)) == 1


def test_two_trials_with_the_same_config_stay_two_rows(store, make_row):
    store.record_run(make_row(trial_id="t1"))
    store.record_run(make_row(trial_id="t2"))
    df = store.runs()
    assert df["trial_id"].tolist() == ["t1", "t2"]
    assert df["trial_key"].nunique() == 1


def test_has_run_asks_about_completed_experiments_of_one_sweep(store, make_row):
    done, failed = make_row(trial_id="t1"), make_row(trial_id="t2", seed=1, status="failed")
    store.record_run(done)
    store.record_run(failed)
    assert store.has_run("demo-1", done["trial_key"])
    assert not store.has_run("demo-1", failed["trial_key"])
    assert store.has_run("demo-1", failed["trial_key"], statuses=("failed",))
    assert not store.has_run("other-sweep", done["trial_key"])
    assert store.trial_keys("demo-1", ("completed", "failed")) == {done["trial_key"],
                                                                   failed["trial_key"]}
    assert store.is_recorded("demo-1", "t2") and not store.is_recorded("demo-1", "t3")
    assert not ResultsStore(store.root.parent / "empty").has_run("demo-1", done["trial_key"])


def test_epochs_round_trip_and_are_replaced_with_their_run(store, make_row):
    row = make_row(trial_id="t1", variant="full")
    store.record_run(row, [{"epoch": e, "train/loss": 1.0 / (e + 1), "lr": 0.1, "odd": "x"}
                           for e in range(3)])
    store.record_run(make_row(trial_id="t2"), [{"epoch": 1.0, "val/seg/iou": 0.3}])  # CSV 1.0
    df = store.epochs(where={"trial_id": "t1"})
    assert df["epoch"].tolist() == [0, 1, 2] and str(df["epoch"].dtype) == "int64"
    assert df["train/loss"].tolist() == pytest.approx([1.0, 0.5, 1 / 3])
    assert set(df["trial_key"]) == {row["trial_key"]} and set(df["variant"]) == {"full"}
    assert df["val/seg/iou"].isna().all() and df["odd"].tolist() == ["x"] * 3  # extra -> column

    store.record_run(row, [{"epoch": 0, "train/loss": 2.0}])      # resumed: re-recorded
    assert store.epochs(where={"trial_id": "t1"})["train/loss"].tolist() == [2.0]
    store.record_run(row)                                           # epochs=None keeps them
    assert len(store.epochs(where={"trial_id": "t1"})) == 1
    store.record_run(row, [])                                       # [] clears them
    assert len(store.epochs(where={"trial_id": "t1"})) == 0
    assert len(store.epochs(sweep="demo")) == 1


@pytest.mark.parametrize("row_changes, epochs, message", [
    ({"status": "finished"}, None, "status 'finished'"),
    ({"trial_id": None}, None, "required column 'trial_id'"),
    ({"model.tim_levels": [1, "x"]}, None, "column 'model.tim_levels' holds list<item: int64>"),
    ({"model.hmsf": 1}, None, "column 'model.hmsf' holds bool, not 1"),
    ({"val/seg/iou": "high"}, None, "column 'val/seg/iou' holds double, not 'high'"),
    ({"started_at": "yesterday"}, None, "column 'started_at' holds timestamp"),
    ({"no_such": 1}, None, "unknown column 'no_such'"),
    ({}, [{"epoch": 0}, {"loss": 1.0}], "epoch row 1 of trial t0: no 'epoch' value"),
    ({}, [{"epoch": 0.5}], "epochs of trial t0: column 'epoch' holds int64, not 0.5"),
])
def test_bad_input_writes_nothing(store, row_changes, epochs, message, make_row):
    with pytest.raises(ResultsError, match=message) as err:
        store.record_run({**make_row(), **row_changes}, epochs)
    assert "\n" not in str(err.value)
    assert _files(store.runs_dir) == [] and _files(store.epochs_dir) == []


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(store, monkeypatch, make_row):
    store.record_run(make_row(trial_id="t1", val={"seg/iou": 0.1}))

    def crash(table, where, **kwargs):
        where.write(b"PAR1 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(layout_module.pq, "write_table", crash)
    with pytest.raises(OSError, match="disk full"):
        store.record_run(make_row(trial_id="t1", val={"seg/iou": 0.9}))
    monkeypatch.undo()
    assert len(_files(store.runs_dir)) == 1
    assert store.runs()["val/seg/iou"].tolist() == [0.1]


def test_temp_files_of_a_killed_writer_are_invisible(store, make_row):
    store.record_run(make_row(trial_id="t1"))
    name = loose_name("demo-1", "t2")
    (store.runs_dir / f".{name}.4242.deadbeef.tmp").write_bytes(b"PAR1 truncated")
    assert store.runs()["trial_id"].tolist() == ["t1"]
    assert len(pd.read_parquet(store.runs_dir)) == 1     # pyarrow skips dot files too


@pytest.mark.parametrize("name, content, message", [
    ("broken.parquet", b"not parquet", "broken.parquet: skipped, not a readable Parquet file"),
    ("other.parquet", pa.table({"x": [1]}), "other.parquet: skipped, not a busray results file"),
    ("retyped.parquet", pa.table({"sweep": ["demo"], "sweep_id": ["demo-1"], "trial_id": ["z"],
                                  "trial_key": ["k"], "status": ["completed"],
                                  "model.tau": ["high"]}),
     "retyped.parquet: skipped, column 'model.tau' holds double"),
])
def test_a_bad_file_is_set_aside_with_a_warning_naming_it(store, make_row, name, content, message, capsys,
                                                          monkeypatch):
    """A ``busray: warning:`` line that warning filters cannot hide; the file moves to ``_quarantine``,
    so pandas and DuckDB on the folder work again."""
    monkeypatch.setenv("PYTHONWARNINGS", "ignore")
    store.record_run(make_row())
    bad = store.runs_dir / name
    if isinstance(content, bytes):
        bad.write_bytes(content)
    else:
        pq.write_table(content, bad)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert store.runs()["trial_id"].tolist() == ["t0"]
    lines = capsys.readouterr().err.splitlines()
    aside = store.root / "_quarantine" / "runs" / name
    assert len(lines) == 1 and lines[0].startswith(f"busray: warning: {store.runs_dir}/{message}"), lines
    assert lines[0].endswith(f"; moved to {aside} (raw readers skip it)")
    assert aside.is_file() and not bad.exists()
    assert len(pd.read_parquet(store.runs_dir)) == 1 and len(pd.read_parquet(store.root)) == 1
    assert len(duckdb.sql(f"SELECT * FROM read_parquet('{store.runs_dir}/*.parquet')").df()) == 1
    assert store.runs()["trial_id"].tolist() == ["t0"] and capsys.readouterr().err == ""  # said once


@pytest.mark.parametrize("call, message", [
    (lambda s: s.runs(sweep="nope"), "unknown sweep 'nope' \\(known: demo\\)"),
    (lambda s: s.runs(status="ok"), "unknown status 'ok'"),
    (lambda s: s.runs(where=["model.tua>=1"]), "unknown column 'model.tua'.*model.tau"),
    (lambda s: s.runs(where=["started_at>noon"]), "column 'started_at' holds times"),
    (lambda s: s.epochs(sweep="nope"), "unknown sweep 'nope'"),
])
def test_bad_queries_name_the_culprit(store, call, message, make_row):
    store.record_run(make_row(), [{"epoch": 0}])
    with pytest.raises(ResultsError, match=message):
        call(store)


def test_empty_store_reads_as_empty_tables_with_every_column(store):
    assert store.runs().empty and store.epochs().empty and store.sweeps().empty
    assert list(store.runs().columns) == RUN_SCHEMA.names


def test_buckets_and_file_uris_are_storages_other_uris_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("BUSRAY_STORAGE_CACHE", str(tmp_path / "cache"))
    bucket = ResultsStore("s3://bucket/storage")  # nothing is opened until it is read or written
    assert bucket.runs_location == "s3://bucket/storage/results/runs"
    assert bucket.root.is_relative_to(tmp_path / "cache")  # the local mirror the store's code works in
    assert ResultsStore(f"file://{tmp_path}").root == tmp_path / "results"
    with pytest.raises(ResultsError, match="hdfs://nn/x: 'hdfs://nn/x' is a URI busray cannot store to"):
        ResultsStore("hdfs://nn/x")


def test_sweeps_summarises_counts_and_best_objective(store, make_row):
    for i, status in enumerate(["completed", "completed", "stopped_early", "failed"]):
        store.record_run(make_row(trial_id=f"t{i}", status=status, seed=i,
                                  objective="val/clf/acc:min",
                                  val={"seg/iou": 0.5, "clf/acc": 0.9 - 0.1 * i}))
    store.record_run(make_row(sweep="other", sweep_id="o-1", val={"score": 0.4}))
    store.record_run(make_row(sweep="pareto", sweep_id="p-1", objective="val/seg/iou:max,val/clf/acc:min",
                              val={"seg/iou": 0.3, "clf/acc": 0.6}))
    summary = store.sweeps().set_index("sweep")
    assert summary.loc["demo", ["trials", "completed", "failed", "stopped_early"]].tolist() \
        == [4, 2, 1, 1]
    assert summary.loc["demo", "objective"] == "val/clf/acc:min"
    assert summary.loc["demo", "best"] == pytest.approx(0.7)       # the failed 0.6 is ignored
    assert summary.loc["other", "objective"] == "val/score:max"    # the default objective
    assert summary.loc["other", "best"] == pytest.approx(0.4)
    assert summary.loc["pareto", "objective"] == "val/seg/iou:max,val/clf/acc:min"  # every metric
    assert summary.loc["pareto", "best"] == pytest.approx(0.3)                     # of the first

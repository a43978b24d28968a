"""Writing and reading the Parquet store: round trips, schema unification, replacement, crashes."""

from __future__ import annotations

import math

import pandas as pd
import pyarrow.parquet as pq
import pytest

from busray.results import ResultsError, ResultsStore
from busray.results import store as store_module


def _files(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_round_trip_keeps_every_value(store, make_row):
    row = make_row(config={"model": {"tau": 0.25, "hmsf": True, "levels": [1, 3]}},
                   best_epoch=5, wall_time_s=12.0, device="cpu", dataset="busi",
                   split_hash="abc", variant="full", test={"seg/dice": 0.6})
    store.record_run(row)
    got = store.runs().iloc[0]
    for column, value in row.items():
        if isinstance(value, list):
            assert list(got[column]) == value, column
        elif value is None:
            assert pd.isna(got[column]), column
        else:
            assert got[column] == value, column


def test_sweeps_with_different_config_columns_are_unified(store, make_row):
    store.record_run(make_row(sweep="a", sweep_id="a-1", trial_id="1",
                              config={"model": {"tau": 1}, "loss": {"w_seg": 0.5}}))
    store.record_run(make_row(sweep="b", sweep_id="b-1", trial_id="1",
                              config={"model": {"tau": 0.5, "backbone": "b0"}},
                              val={"seg/iou": 0.6}))
    store.record_run(make_row(sweep="b", sweep_id="b-1", trial_id="2",
                              config={"model": {"tau": None, "backbone": 7}}))
    df = store.runs()
    assert len(df) == 3
    assert df["model.tau"].dtype == "float64"                # int + double + null -> double
    assert df["model.tau"].tolist()[:2] == [1.0, 0.5] and math.isnan(df["model.tau"].iloc[2])
    assert pd.isna(df["model.backbone"].iloc[0])
    assert df["model.backbone"].tolist()[1:] == ["b0", "7"]   # string vs int -> string
    assert df["loss.w_seg"].isna().tolist() == [False, True, True]
    only_b = store.runs(sweep="b")
    assert "loss.w_seg" not in only_b.columns and "val/clf/acc" in only_b.columns
    assert set(store.runs(sweep="a-1")["sweep"]) == {"a"}    # a sweep id works as well


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
    assert not ResultsStore(store.root.parent / "empty").has_run("demo-1", done["trial_key"])


def test_epochs_round_trip_and_are_replaced_with_their_run(store, make_row):
    row = make_row(trial_id="t1", variant="full")
    store.record_run(row, [{"epoch": e, "train/loss": 1.0 / (e + 1)} for e in range(3)])
    store.record_run(make_row(trial_id="t2"), [{"epoch": 0, "val/seg/iou": 0.3}])
    df = store.epochs(where={"trial_id": "t1"})
    assert df["epoch"].tolist() == [0, 1, 2]
    assert df["train/loss"].tolist() == pytest.approx([1.0, 0.5, 1 / 3])
    assert set(df["trial_key"]) == {row["trial_key"]} and set(df["variant"]) == {"full"}
    assert "val/seg/iou" in df.columns and df["val/seg/iou"].isna().all()

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
    ({"model.levels": [1, "x"]}, None, "column 'model.levels' cannot be stored"),
    ({}, [{"epoch": 0}, {"loss": 1.0}], "epoch row 1 of trial t0: no 'epoch' column"),
])
def test_bad_input_writes_nothing(store, row_changes, epochs, message, make_row):
    with pytest.raises(ResultsError, match=message):
        store.record_run({**make_row(), **row_changes}, epochs)
    assert _files(store.runs_dir) == [] and _files(store.epochs_dir) == []


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(store, monkeypatch, make_row):
    store.record_run(make_row(trial_id="t1", val={"seg/iou": 0.1}))

    def crash(table, where, **kwargs):
        where.write(b"PAR1 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(store_module.pq, "write_table", crash)
    with pytest.raises(OSError, match="disk full"):
        store.record_run(make_row(trial_id="t1", val={"seg/iou": 0.9}))
    monkeypatch.undo()
    assert len(_files(store.runs_dir)) == 1
    assert store.runs()["val/seg/iou"].tolist() == [0.1]


def test_temp_files_of_a_killed_writer_are_invisible(store, make_row):
    store.record_run(make_row(trial_id="t1"))
    name = store_module.run_file_name("demo-1", "t2")
    (store.runs_dir / f".{name}.4242.deadbeef.tmp").write_bytes(b"PAR1 truncated")
    assert store.runs()["trial_id"].tolist() == ["t1"]
    assert len(pd.read_parquet(store.runs_dir)) == 1     # pyarrow skips dot files too


def test_pandas_reads_the_directory_directly(store, make_row):
    for i in range(3):
        store.record_run(make_row(trial_id=f"t{i}", seed=i))
    df = pd.read_parquet(store.runs_dir)
    assert sorted(df["trial_id"]) == ["t0", "t1", "t2"]
    assert pq.read_table(store.runs_dir / store_module.run_file_name("demo-1", "t0")).num_rows == 1


def test_a_corrupt_committed_file_is_reported_by_name(store, make_row):
    store.record_run(make_row())
    bad = store.runs_dir / "broken.parquet"
    bad.write_bytes(b"not parquet")
    with pytest.raises(ResultsError, match="broken.parquet: unreadable results file"):
        store.runs()


@pytest.mark.parametrize("call, message", [
    (lambda s: s.runs(sweep="nope"), "unknown sweep 'nope' \\(known: demo\\)"),
    (lambda s: s.runs(status="ok"), "unknown status 'ok'"),
    (lambda s: s.runs(where=["model.tua>=1"]), "unknown column 'model.tua'.*model.tau"),
    (lambda s: s.epochs(sweep="nope"), "unknown sweep 'nope'"),
])
def test_bad_queries_name_the_culprit(store, call, message, make_row):
    store.record_run(make_row(), [{"epoch": 0}])
    with pytest.raises(ResultsError, match=message):
        call(store)


def test_empty_store_reads_as_empty_tables(store):
    assert store.runs().empty and store.epochs().empty and store.sweeps().empty
    assert "sweep" in store.runs().columns


def test_object_store_uris_are_rejected_and_file_uris_accepted(tmp_path):
    with pytest.raises(ResultsError, match="local or mounted path"):
        ResultsStore("s3://bucket/storage")
    assert ResultsStore(f"file://{tmp_path}").root == tmp_path / "results"


def test_sweeps_summarises_counts_and_best_objective(store, make_row):
    for i, status in enumerate(["completed", "completed", "stopped_early", "failed"]):
        store.record_run(make_row(trial_id=f"t{i}", status=status, seed=i,
                                  objective="val/clf/acc:min",
                                  val={"seg/iou": 0.5, "clf/acc": 0.9 - 0.1 * i}))
    store.record_run(make_row(sweep="other", sweep_id="o-1"))
    summary = store.sweeps().set_index("sweep")
    assert summary.loc["demo", ["trials", "completed", "failed", "stopped_early"]].tolist() \
        == [4, 2, 1, 1]
    assert summary.loc["demo", "objective"] == "val/clf/acc:min"
    assert summary.loc["demo", "best"] == pytest.approx(0.7)       # the failed 0.6 is ignored
    assert summary.loc["other", "objective"] == "val/seg/iou:max"  # the default

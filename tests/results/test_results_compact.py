"""Compaction: one part file per table, nothing lost or doubled before, during or after it."""

from __future__ import annotations

import os
import time

import duckdb
import pandas as pd
import pytest

from busray.atomic import HOST
from busray.cli.main import main
from busray.results import ResultsError, ResultsStore
from busray.results import compact as compact_module
from busray.results import layout
from busray.results.compact import compaction_lock, retire
from busray.results.layout import read_file


# docs/STORE.md's query for raw readers: one row per trial, as busray's reader picks it.
LATEST_ROWS = """SELECT * EXCLUDE (filename) FROM read_parquet('{glob}', filename = true)
QUALIFY row_number() OVER (PARTITION BY sweep_id, trial_id
                           ORDER BY parse_filename(filename) LIKE 'part-%', filename DESC) = 1"""


def _names(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


@pytest.fixture
def filled(tmp_path, make_row) -> ResultsStore:
    store = ResultsStore(tmp_path / "st", auto_compact=0)
    for i in range(5):
        store.record_run(make_row(trial_id=f"t{i}", seed=i, val={"seg/iou": i / 10}),
                         [{"epoch": e, "train/loss": 1.0} for e in range(1, 3)])
    return store


def test_compaction_merges_every_file_into_one_part_and_keeps_every_row(filled):
    runs, epochs = filled.runs(), filled.epochs()
    report = filled.compact()
    assert report.rows == {"runs": 5, "epochs": 10} and report.merged == {"runs": 5, "epochs": 5}
    assert [n.startswith("part-") for n in _names(filled.runs_dir)] == [True]
    assert [n.startswith("part-") for n in _names(filled.epochs_dir)] == [True]
    pd.testing.assert_frame_equal(filled.runs(), runs)
    pd.testing.assert_frame_equal(filled.epochs(), epochs)
    assert filled.compact().rows == {"runs": 5, "epochs": 10}    # again: the same rows, one part
    assert len(_names(filled.runs_dir)) == 1


def test_a_trial_recorded_after_compaction_wins_over_its_part_row(filled, make_row):
    filled.compact()
    filled.record_run(make_row(trial_id="t1", seed=1, val={"seg/iou": 0.9}), [])
    runs = filled.runs()
    assert len(runs) == 5 and runs.set_index("trial_id").loc["t1", "val/seg/iou"] == 0.9
    assert len(filled.epochs(where={"trial_id": "t1"})) == 0      # its empty epochs file wins too
    assert len(pd.read_parquet(filled.runs_dir)) == 6             # a raw reader sees both rows
    latest = duckdb.sql(LATEST_ROWS.format(glob=f"{filled.runs_dir}/*.parquet")).df()
    assert len(latest) == 5 and latest.set_index("trial_id").loc["t1", "val/seg/iou"] == 0.9
    filled.compact()
    assert len(pd.read_parquet(filled.runs_dir)) == 5 and len(filled.epochs()) == 8


def test_a_crashed_compaction_is_finished_when_the_store_is_next_opened(filled, make_row, monkeypatch):
    filled.compact()
    filled.record_run(make_row(trial_id="t1", seed=1, val={"seg/iou": 0.9}))

    def crash(*args):
        raise KeyboardInterrupt
    monkeypatch.setattr(compact_module, "retire", crash)      # dies after writing the new part
    with pytest.raises(KeyboardInterrupt):
        filled.compact()
    monkeypatch.undo()
    assert sum(n.startswith("part-") for n in _names(filled.runs_dir)) == 2
    assert len(pd.read_parquet(filled.runs_dir)) == 11          # in between: old part + loose + new part
    runs = ResultsStore(filled.root.parent).runs()              # any opening finishes it
    assert sorted(runs["trial_id"]) == [f"t{i}" for i in range(5)]
    assert runs.set_index("trial_id").loc["t1", "val/seg/iou"] == 0.9
    assert [n.startswith("part-") for n in _names(filled.runs_dir)] == [True]
    assert len(pd.read_parquet(filled.runs_dir)) == 5 and len(pd.read_parquet(filled.epochs_dir)) == 10
    assert not (filled.root / compact_module.INTENT).exists()


def test_a_part_never_committed_leaves_its_files(filled, monkeypatch):
    """Killed between the runs part and the epochs part: the runs' files are retired, the epochs' kept."""
    written, write_table = [], compact_module.write_table

    def crash_on_the_second(*args, **kwargs):
        if written:
            raise KeyboardInterrupt
        written.append(write_table(*args, **kwargs))
    monkeypatch.setattr(compact_module, "write_table", crash_on_the_second)
    with pytest.raises(KeyboardInterrupt):
        filled.compact()
    monkeypatch.undo()
    assert len(pd.read_parquet(filled.runs_dir)) == 10          # the runs part beside the 5 loose files
    assert len(filled.runs()) == 5 and len(filled.epochs()) == 10
    assert [n.startswith("part-") for n in _names(filled.runs_dir)] == [True]
    assert len(_names(filled.epochs_dir)) == 5 and len(pd.read_parquet(filled.epochs_dir)) == 10


def test_a_running_compaction_is_left_to_finish(filled, monkeypatch):
    """The intent of a compaction that holds the lock is its own business: a reader only reads."""
    def crash(*args):
        raise KeyboardInterrupt
    monkeypatch.setattr(compact_module, "retire", crash)
    with pytest.raises(KeyboardInterrupt):
        filled.compact()
    monkeypatch.undo()
    with compaction_lock(filled.root) as held:
        assert held
        assert len(filled.runs()) == 5 and (filled.root / compact_module.INTENT).exists()
    assert len(filled.runs()) == 5 and not (filled.root / compact_module.INTENT).exists()


def test_a_reader_starts_over_when_a_compaction_removes_what_it_listed(filled, monkeypatch):
    listing, calls = layout.Table.files, []

    def listing_then_compaction(table):
        paths = listing(table)
        calls.append(table.name)
        if len(calls) == 1:
            ResultsStore(filled.root.parent).compact()   # another process, between list and read
        return paths

    monkeypatch.setattr(layout.Table, "files", listing_then_compaction)
    assert filled.runs()["trial_id"].tolist() == [f"t{i}" for i in range(5)]
    assert calls == ["runs", "runs", "epochs", "runs"]  # the reader's, compaction's two, the reader's again


@pytest.mark.parametrize("rewrite, deleted", [(False, True), (True, False)])
def test_retire_keeps_a_loose_file_written_again_meanwhile(filled, make_row, rewrite, deleted):
    path = filled.runs_dir / layout.loose_name("demo-1", "t2")
    seen = read_file(path, filled.tables[0].schema, ())
    if rewrite:
        filled.record_run(make_row(trial_id="t2", seed=2, val={"seg/iou": 0.99}))
    assert retire(seen) is deleted
    assert path.exists() is not deleted
    assert not [p for p in filled.runs_dir.iterdir() if p.name.endswith(".retired")]


def test_automatic_compaction_after_enough_loose_files(tmp_path, make_row):
    store = ResultsStore(tmp_path / "st", auto_compact=3)
    for i in range(4):
        store.record_run(make_row(trial_id=f"t{i}"), [])
    names = _names(store.runs_dir)
    assert sum(n.startswith("part-") for n in names) == 1 and len(names) == 2   # part + t3
    assert store.runs()["trial_id"].tolist() == ["t0", "t1", "t2", "t3"]


def test_one_compaction_at_a_time(filled):
    with compaction_lock(filled.root) as held:
        assert held
        with pytest.raises(ResultsError, match="another compaction is running"):
            filled.compact()
        filled.auto_compact = 1
        filled._maybe_compact()          # automatic compaction just skips
    assert len(_names(filled.runs_dir)) == 5


def test_a_bad_file_is_set_aside_by_compaction(filled, capsys):
    (filled.runs_dir / "broken.parquet").write_bytes(b"nope")
    filled.compact()
    aside = filled.root / "_quarantine" / "runs" / "broken.parquet"
    assert capsys.readouterr().err.startswith(f"busray: warning: {filled.runs_dir / 'broken.parquet'}: skipped, "
                                              "not a readable Parquet file")
    assert aside.read_bytes() == b"nope" and len(_names(filled.runs_dir)) == 1
    assert len(pd.read_parquet(filled.root)) == 5  # Arrow's discovery skips _quarantine


def test_cli_results_compact(filled, capsys):
    assert main(["results", "compact", "--storage", str(filled.root.parent)]) == 0
    out = capsys.readouterr().out
    assert out.strip() == ("compacted runs: 5 file(s) -> 1 part of 5 row(s), "
                           "epochs: 5 file(s) -> 1 part of 10 row(s)")
    assert main(["results", "list", "--storage", str(filled.root.parent)]) == 0
    assert "demo-1" in capsys.readouterr().out


@pytest.mark.parametrize("name, hours_old, removed", [
    (".t9.parquet.node-b.4242.0123abcd.tmp", 2, True),   # a writer on another host, killed long ago
    (".t9.parquet.node-b.4242.0123abcd.tmp", 0, False),  # maybe writing right now
    (".t9.parquet.{host}.{alive}.0123abcd.tmp", 0, False),  # a live writer on this host
    (".t9.parquet.0123abcd.retired", 2, True),           # retire() killed between rename and unlink
    (".t9.parquet.0123abcd.retired", 0, False),
    (".notes.txt", 2, False),                            # not busray's
])
def test_compaction_removes_old_leftovers_of_killed_writers(filled, capsys, name, hours_old, removed):
    leftover = filled.runs_dir / name.format(host=HOST, alive=os.getpid())
    leftover.write_bytes(b"half a file")
    then = time.time() - hours_old * 3600
    os.utime(leftover, (then, then))
    assert main(["results", "compact", "--storage", str(filled.root.parent)]) == 0
    assert leftover.exists() != removed
    said = "removed 1 leftover file(s) of killed writers" in capsys.readouterr().out
    assert said == removed

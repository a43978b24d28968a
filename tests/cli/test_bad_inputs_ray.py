"""Bad inputs of the bad-input corpus that only show once a sweep runs (tests/cli/test_bad_inputs.py holds
those refused before Ray starts): the same promise -- one ``busray: error:`` line naming the culprit,
exit 2 -- and nothing left that blocks the corrected command.

- a start that fails inside Tune's set-up (its round began, Tune saved nothing, no trial recorded):
  the same command, without ``--resume``, then runs, under the same sweep id;
- the storage turns read-only while a sweep runs (the driver cannot record a trial): one line, not
  Tune's traceback from inside its loop nor a relaunch of the trial; ``--resume`` records it once the
  storage works again.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from busray.cli import main
from busray.results import ResultsStore
from busray.sweep import recording

pytestmark = pytest.mark.ray

SPEC = Path(__file__).parents[1] / "sweep" / "fixtures" / "tiny.yaml"
ONE_TRIAL = ["num_trials=1", "max_concurrent=1", "scheduler.type=none", "base.train.epochs=1",
             "base.data.root=synthetic:n=24,size=64"]


def _sweep(storage: str, *extra: str) -> list[str]:
    sets = [a for o in ONE_TRIAL for a in ("--set", o)]
    return ["sweep", str(SPEC), "--storage", storage, "--no-progress", *sets, *extra]


def _sweep_id(storage: str) -> str:
    return json.loads((Path(storage) / "tiny" / "sweep.json").read_text())["sweep_id"]


def test_a_start_that_failed_inside_tune_does_not_block_the_same_command(local_ray, short_dir,
                                                                         monkeypatch, capsys):
    def setup_fails(self, **info):
        raise OSError(errno.EIO, os.strerror(errno.EIO), "tracker")
    monkeypatch.setattr(recording.RecordingCallback, "setup", setup_fails, raising=False)
    assert main(_sweep(short_dir)) == 2
    assert capsys.readouterr().err.splitlines() == ["busray: error: tracker: Input/output error"]
    failed_id = _sweep_id(short_dir)  # what it left: sweep.json with its round, Tune's tuner.pkl
    assert (Path(short_dir) / "tiny" / "tune" / "round-000" / "tuner.pkl").is_file()
    monkeypatch.undo()

    assert main(_sweep(short_dir)) == 0, capsys.readouterr().err
    runs = ResultsStore(short_dir).runs()
    assert list(runs["status"]) == ["completed"] and list(runs["sweep_id"]) == [failed_id] == [_sweep_id(short_dir)]


def test_storage_that_turns_read_only_mid_sweep_is_one_line_then_resume_records(local_ray, short_dir,
                                                                                 monkeypatch, capfd):
    """(capfd: Tune logs through a handler made before pytest's capsys, to the process's stderr.)"""
    def read_only(table, path, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
    monkeypatch.setattr("busray.results.store.write_table", read_only)  # the driver's writes of the store
    assert main(_sweep(short_dir)) == 2
    out, err = capfd.readouterr()
    assert len(err.splitlines()) == 1 and err.startswith("busray: error: ") and "Traceback" not in err, err
    assert err.rstrip().endswith(".parquet: read-only file system"), err
    assert out.count(" started ") == 1, out  # the trial was not relaunched to fail the same way again
    assert ResultsStore(short_dir).runs().empty
    monkeypatch.undo()

    assert main(_sweep(short_dir, "--resume")) == 0, capfd.readouterr().err
    runs = ResultsStore(short_dir).runs()
    assert list(runs["status"]) == ["completed"] and list(runs["sweep_id"]) == [_sweep_id(short_dir)]

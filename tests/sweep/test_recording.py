"""The recorder on a hand-made run folder (no Ray cluster): a store row is the run's request, whole --
every config column equals config.yaml, the trial key is the request's -- for a trial that finished
and for one ASHA stopped; the final report, not the trial's disk, says how a trial ended."""

from __future__ import annotations

import datetime as dt
import errno
from types import SimpleNamespace

import pytest

from busray.config import config_from_dict, save_config
from busray.experiment import ResourcesSpec, build_request
from busray.objective import Objective
from busray.results import ResultsStore
from busray.runfolder import RunOutcome
from busray.storage import Storage
from busray.sweep.job import REQUEST_KEY, TrialJob, final_result
from busray.sweep.recording import RecordingCallback, record_trial

from sweephelpers import config_differences

OBJECTIVE = Objective.parse("val/score:max")
HISTORY = [{"epoch": e, "lr": 1e-3, "train/loss": 1.0 / e, "val/score": s, "val/seg/iou": s / 2, "time/epoch_s": 2.0}
           for e, s in ((1, 0.3), (2, 0.5), (3, 0.4))]


@pytest.fixture
def job(tmp_path) -> TrialJob:
    return TrialJob(sweep="tiny", sweep_id="tiny-1", storage=Storage.at(tmp_path), objective=OBJECTIVE,
                    swept_keys=("model.tau", "loss.w_seg"))


def _run_folder(job: TrialJob, status: str):
    """A run folder as fit leaves it: config.yaml from the request, three epochs, its outcome."""
    request = build_request({"model": {"encoder": "test_efficientnet"}}, seed=1, objective=OBJECTIVE,
                            resources=ResourcesSpec(workers=2), values={"model.tau": 0.42, "loss.w_seg": 0.6,
                                                                        "loss.w_clf": 0.4}, name="a08529ac")
    folder = job.run_folder(request.name)
    folder.checkpoints.mkdir(parents=True)
    save_config(config_from_dict(request.config), folder.config)
    folder.write_history(HISTORY)
    started = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=30)).isoformat()
    outcome = RunOutcome(best_epoch=2, epochs_run=3, val={"score": 0.5, "seg/iou": 0.25}, test={"seg/iou": 0.3},
                         dataset="synth", split_hash="abc", wall_time_s=30.0, started_at=started,
                         run_dir=str(folder.path))
    folder.write_outcome(outcome if status == "running" else outcome.finish(status))
    return request, outcome


def _row(job):
    [row] = ResultsStore(job.storage).runs().to_dict("records")
    return row


@pytest.mark.parametrize("status", ["completed", "stopped_early"])
def test_the_row_is_the_request_whole(job, status):
    request, outcome = _run_folder(job, "completed" if status == "completed" else "running")
    last = final_result(outcome.finish("completed"), OBJECTIVE) if status == "completed" else {"epoch": 2}
    record_trial(job, request, last)
    row = _row(job)
    assert config_differences(row, job.run_folder(request.name).config) == {}
    assert (row["trial_key"], row["trial_id"], row["seed"], row["resources.workers"]) == \
           (request.key, "a08529ac", 1, 2)
    assert row["status"] == status and row["wall_time_s"] >= 29  # a stopped trial's real time too
    if status == "stopped_early":  # up to the epoch it was stopped at, its best epoch among those
        assert (row["epochs_run"], row["best_epoch"], row["val/score"]) == (2, 2, 0.5)
        assert job.run_folder(request.name).read_outcome().status == "stopped_early"
    else:
        assert (row["epochs_run"], row["test/seg/iou"]) == (3, 0.3)


def test_a_final_report_is_believed_over_the_trials_disk(job):
    """The outcome a trial reports is what is recorded (on a cluster the driver may not see the
    trial's disk, or see an older copy of it)."""
    request, outcome = _run_folder(job, "running")  # the folder still says running
    record_trial(job, request, final_result(outcome.finish("completed"), OBJECTIVE))
    row = _row(job)
    assert row["status"] == "completed" and row["test/seg/iou"] == 0.3 and row["best_epoch"] == 2


def test_a_trial_the_store_cannot_take_ends_the_experiment_at_the_next_step(job, monkeypatch):
    """Not raised inside Tune's stop_trial (Tune logs its traceback there and relaunches the trial):
    kept, nothing more recorded, raised out of Tune's loop at its next step and at its end."""
    request, outcome = _run_folder(job, "running")
    trial = SimpleNamespace(config={REQUEST_KEY: request.to_dict()}, trial_id=request.name, status="TERMINATED",
                            last_result=final_result(outcome.finish("completed"), OBJECTIVE), error_file=None)
    told, callback = [], RecordingCallback(job, listeners=[lambda *args: told.append(args)])
    callback.on_step_begin(0, [trial])  # nothing wrong yet
    monkeypatch.setattr("busray.results.store.write_table",
                        lambda *a, **k: (_ for _ in ()).throw(OSError(errno.EROFS, "Read-only file system")))
    callback.on_trial_complete(1, [trial], trial)  # Tune's stop_trial: must not raise
    with pytest.raises(OSError, match="Read-only"):
        callback.on_step_begin(2, [trial])
    monkeypatch.undo()
    callback.on_trial_error(3, [trial], trial)  # the store works again: still nothing more recorded
    with pytest.raises(OSError, match="Read-only"):
        callback.on_experiment_end([trial])
    assert told == [] and ResultsStore(job.storage).runs().empty

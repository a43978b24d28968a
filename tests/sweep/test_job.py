"""``TrialJob``: where a trial's run folder, TensorBoard run and Ray Train folder live; what a final
report carries (no Ray)."""

from __future__ import annotations

from pathlib import Path

from busray.runfolder import RunOutcome
from busray.storage import Storage
from busray.sweep.job import TrialJob, final_result, outcome_of
from busray.sweep.trial import _clear_failed_run


def _job(storage: str = "/st") -> TrialJob:
    return TrialJob(sweep="abl", sweep_id="abl-1", storage=Storage.at(storage), kind="ablation")


def test_a_runs_folders_are_named_by_its_run_id(tmp_path, monkeypatch):
    job = _job()
    assert job.run_folder("full-s0-3fa2b1c4").path.as_posix() == "/st/abl/runs/full-s0-3fa2b1c4"
    assert job.tb_dir("full-s0-3fa2b1c4").as_posix() == "/st/tb/abl/full-s0-3fa2b1c4"
    assert job.ray_train_dir("full-s0-3fa2b1c4") == "/st/abl/train/full-s0-3fa2b1c4"
    monkeypatch.setenv("BUSRAY_STORAGE_CACHE", str(tmp_path))
    bucket = _job("s3://lab/busi")  # a bucket: this machine's mirror, and Ray Train writes the bucket itself
    assert bucket.run_folder("r1").path.is_relative_to(tmp_path)
    assert bucket.ray_train_dir("r1") == "s3://lab/busi/abl/train/r1"


def test_a_failed_runs_retry_starts_from_nothing(tmp_path):
    """Before a resumed ablation runs a failed run again, its folder, TensorBoard run and (DDP) Ray
    Train folder are emptied; other runs' are not touched."""
    job = _job(str(tmp_path))
    ids = ["full-s0-3fa2b1c4", "other-s0-3fa2b1c4"]
    for run_id in ids:
        for folder in (job.run_folder(run_id).path, job.tb_dir(run_id), Path(job.ray_train_dir(run_id))):
            (folder / "x").mkdir(parents=True)
    _clear_failed_run(job, ids[0])
    left = [path.relative_to(tmp_path).as_posix() for path in sorted(tmp_path.rglob("x"))]
    assert left == ["abl/runs/other-s0-3fa2b1c4/x", "abl/train/other-s0-3fa2b1c4/x", "tb/abl/other-s0-3fa2b1c4/x"]


def test_the_final_report_carries_the_whole_outcome():
    """The driver learns how a trial ended from its final report, not from the trial's disk."""
    outcome = RunOutcome(best_epoch=2, epochs_run=3, val={"score": 0.5}, test={"seg/iou": 0.4}, dataset="d",
                         split_hash="h", wall_time_s=12.5, run_dir="/r").finish("completed")
    result = final_result(outcome, _job().objective)
    assert result["val/score"] == 0.5 and result["epoch"] == 3
    back = outcome_of(result)
    assert back.to_json() == outcome.to_json()
    assert outcome_of({"val/score": 0.5, "epoch": 3}) is None  # an epoch report carries none

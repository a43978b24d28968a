"""``TrialJob.run_id``: the name of a trial's run folder, TensorBoard run and store row (no Ray)."""

from __future__ import annotations

import pytest

from busray.sweep.trial import RUN_KEY, FixedRun, TrialJob, _clear_failed_run

KEY = "3fa2b1c4d5e6f708"


def _job(*variants: str, storage: str = "/st") -> TrialJob:
    fixed = {f"{v}-s0": FixedRun(config={}, seed=0, variant=v, key=KEY) for v in variants}
    return TrialJob(sweep="abl", sweep_id="abl-1", sweep_dir=f"{storage}/abl", storage=storage, base={},
                    fixed=fixed)


@pytest.mark.parametrize("trial_id, tune_config, run_id", [
    ("a08529ac", {"model.tau": 0.5}, "a08529ac"),                    # a searched trial: Tune's id
    ("a8c6e_00003", {RUN_KEY: "full-s0"}, "full-s0-3fa2b1c4"),       # an ablation run: name + key
    ("b1234_00000", {RUN_KEY: "full-s0"}, "full-s0-3fa2b1c4"),       # ... the same in a later round
    ("a8c6e_00001", {RUN_KEY: "w/o TIM-s0"}, "w_o_TIM-s0-3fa2b1c4"),  # a path-safe folder name
    ("a8c6e_00002", {RUN_KEY: "../up-s0"}, "up-s0-3fa2b1c4"),
])
def test_run_id(trial_id, tune_config, run_id):
    job = _job("full", "w/o TIM", "../up")
    assert job.run_id(trial_id, tune_config) == run_id
    assert job.run_folder(run_id).path.parent.as_posix() == "/st/abl/runs"
    assert job.tb_dir(run_id).parent.as_posix() == "/st/tb/abl"
    assert job.ray_train_dir(run_id).parent.as_posix() == "/st/abl/train"


def test_a_failed_runs_retry_starts_from_nothing(tmp_path):
    """Before a resumed ablation runs a failed run again, its folder, TensorBoard run and (DDP) Ray
    Train folder are emptied; other runs' are not touched."""
    job = _job("full", storage=str(tmp_path))
    ids = [job.run_id("t1", {RUN_KEY: "full-s0"}), "other-s0-3fa2b1c4"]
    for run_id in ids:
        for folder in (job.run_folder(run_id).path, job.tb_dir(run_id), job.ray_train_dir(run_id)):
            (folder / "x").mkdir(parents=True)
    _clear_failed_run(job, ids[0])
    left = [path.relative_to(tmp_path).as_posix() for path in sorted(tmp_path.rglob("x"))]
    assert left == ["abl/runs/other-s0-3fa2b1c4/x", "abl/train/other-s0-3fa2b1c4/x", "tb/abl/other-s0-3fa2b1c4/x"]

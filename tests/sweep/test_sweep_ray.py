"""Real local Ray (2 CPUs): an Optuna + ASHA sweep with the real ``busray.training.fit``, extended with
``add_trials``; fixed configs with a DDP trial, a worker crash and a NaN trial."""

from __future__ import annotations

import glob

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from busray.configtools import ConfigError
from busray.results import ResultsStore
from busray.sweep import run_configs, run_sweep
from busray.sweep.spec import ResourcesSpec

from sweephelpers import TINY_SPEC, tiny_run_config

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def _runs(storage, sweep_id):
    runs = ResultsStore(storage).runs()
    return runs[runs["sweep_id"] == sweep_id]


def test_optuna_asha_sweep_records_every_trial_then_add_trials_continues(local_ray, synth_root, short_dir):
    # The worker count is searched too, so the sweep mixes single-process and 2-worker DDP trials.
    overrides = [f"base.data.root={synth_root}", "space.resources.workers={type: categorical, choices: [1, 2]}"]
    out = run_sweep(TINY_SPEC, overrides, storage=short_dir, progress=False)

    runs = _runs(short_dir, out.sweep_id)
    assert len(runs) == 4 and runs["trial_id"].is_unique
    table = runs[["trial_id", "status", "resources.workers", "error"]].to_string()
    assert set(runs["status"]) <= {"completed", "stopped_early"}, table
    assert (runs["status"] == "completed").any(), table
    assert set(runs["resources.workers"]) == {1, 2}, table
    ddp = runs[runs["resources.workers"] == 2]
    assert (ddp["best_epoch"] >= 1).all(), table  # the DDP trials trained and reported epochs
    assert out.counts["completed"] + out.counts["stopped_early"] == 4
    assert runs["split_hash"].nunique() == 1 and runs["dataset"].notna().all(), table  # stopped trials too
    assert (runs["loss.w_seg"] + runs["loss.w_clf"]).round(9).eq(1.0).all()
    done = runs[runs["status"] == "completed"]
    assert done["test/seg/iou"].notna().all() and done["best_epoch"].between(1, 3).all()
    epochs = ResultsStore(short_dir).epochs()
    assert set(epochs["trial_id"]) == set(runs["trial_id"])
    for run_dir in runs["run_dir"]:  # fit's scalars and our HParams view, per trial
        assert glob.glob(f"{run_dir}/tb/events.out.tfevents.*")
        assert glob.glob(f"{run_dir}/tb/hparams/events.out.tfevents.*")
    journal = JournalStorage(JournalFileBackend(f"{short_dir}/tiny/optuna.journal"))
    study = optuna.load_study(study_name=out.sweep_id, storage=journal)
    assert len(study.trials) == 4 and all(t.state.is_finished() for t in study.trials)
    assert "best trials by val/score:max" in out.summary()

    with pytest.raises(ConfigError, match="already exists"):
        run_sweep(TINY_SPEC, overrides, storage=short_dir, progress=False)
    more = run_sweep(TINY_SPEC, overrides, storage=short_dir, add_trials=2, progress=False)
    assert more.sweep_id == out.sweep_id
    assert len(_runs(short_dir, out.sweep_id)) == 6
    study = optuna.load_study(study_name=out.sweep_id, storage=journal)
    assert [t.number for t in study.trials] == list(range(6))  # one study, old + new trials


def test_fixed_configs_worker_crash_and_nan(local_ray, synth_root, short_dir):
    crash = tiny_run_config(synth_root, debug_crash_at_epoch=2)
    nan = tiny_run_config(synth_root, debug_nan_at_epoch=2)
    out = run_configs("faults", [("crash", crash, 0, "crash"), ("nan", nan, 0, "nan")],
                      resources=ResourcesSpec(workers=1, max_failures=1), storage=short_dir,
                      objective="val/score:max", progress=False)
    runs = _runs(short_dir, out.sweep_id).set_index("variant")
    assert len(runs) == 2
    # The crashed worker was restarted and resumed from its epoch-1 checkpoint: a restart from
    # scratch would crash again (the switch fires on any run that did not resume) and fail the trial.
    assert runs.loc["crash", "status"] == "completed"
    assert runs.loc["crash", "train.debug_crash_at_epoch"] == 2
    epochs = ResultsStore(short_dir).epochs()
    crash_epochs = epochs[epochs["trial_id"] == runs.loc["crash", "trial_id"]]["epoch"].tolist()
    assert crash_epochs == [1, 2, 3]
    assert runs.loc["nan", "status"] == "failed"
    assert "finite" in runs.loc["nan", "error"].lower() or "nan" in runs.loc["nan", "error"].lower()


"""Real local Ray (2 CPUs): an Optuna + ASHA sweep with the real ``busray.training.fit`` on both trial
paths (in-actor and 2-worker DDP), checked for one truth per trial across store, run folder, Optuna and
TensorBoard; then ``add_trials``; fixed configs with a worker crash and a NaN on both paths (two trials
in-actor; one DDP trial that takes both, one after the other)."""

from __future__ import annotations

import glob
import json
import re
from pathlib import Path
from wsgiref.util import setup_testing_defaults

import optuna
import optuna_dashboard
import pandas as pd
import pytest
import ray
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState
from ray.util.state import list_actors
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from busray.cli import main
from busray.cli.errors import EXIT_ERROR
from busray.configtools import ConfigError, flatten, load_yaml
from busray.results import ResultsStore, trial_key
from busray.runfolder import RunFolder
from busray.ablation import run_ablation
from busray.sweep import run_sweep

from sweephelpers import TINY_SPEC, config_differences, tiny_ablation

pytestmark = [pytest.mark.ray, pytest.mark.slow]
# val/loss is continuous, so ASHA (grace 1, factor 2) has real decisions to take on tiny trials; one
# trial at a time makes those decisions (and so the stop the test expects) deterministic.
OBJECTIVE = "objective=val/loss:min"
SERIAL = "max_concurrent=1"
# TPE seed 10 draws resources.workers = 1, 2, 1, 1: both trial paths with one (slow to start) DDP trial
ONE_DDP_TRIAL = "search.seed=10"


def _runs(storage, sweep_id):
    runs = ResultsStore(storage).runs()
    return runs[runs["sweep_id"] == sweep_id].set_index("trial_id", drop=False)


@pytest.fixture(scope="module")
def sweep(local_ray, synth_root, tmp_path_factory):
    storage = str(tmp_path_factory.mktemp("sweep"))
    overrides = [f"base.data.root={synth_root}", OBJECTIVE, SERIAL, ONE_DDP_TRIAL, "base.train.epochs=4",
                 "space.resources.workers={type: categorical, choices: [1, 2]}",
                 f"tracking.mlflow.tracking_uri=file://{storage}/mlruns", "tracking.mlflow.experiment_name=tiny"]
    return storage, overrides, run_sweep(TINY_SPEC, overrides, storage=storage, progress=False)


def test_every_row_records_the_whole_config_its_run_trained(sweep):
    """The store row of a trial is its run's config.yaml, every key, and its resources; its trial key
    is that config's (the key an ablation of the same config gets)."""
    storage, _, out = sweep
    runs = _runs(storage, out.sweep_id)
    for trial_id, row in runs.iterrows():
        assert config_differences(row, Path(row["run_dir"]) / "config.yaml") == {}, trial_id
        config = flatten(load_yaml(Path(row["run_dir"]) / "config.yaml"))
        resources = {k: row[k] for k in row.index if k.startswith("resources.")}
        assert resources["resources.workers"] in (1, 2) and resources["resources.cpus_per_worker"] == 1.0
        assert row["trial_key"] == trial_key({**config, **resources}, row["seed"])


def test_mlflow_says_what_the_store_says(sweep):
    """Each MLflow run ends with its trial's status (a stopped trial KILLED, not FINISHED), the store's
    best-epoch value and test metrics, its whole config as params, and no point after its last epoch."""
    mlflow = pytest.importorskip("mlflow")
    storage, _, out = sweep
    runs = _runs(storage, out.sweep_id)
    mlflow.set_tracking_uri(f"file://{storage}/mlruns")
    tracked = mlflow.search_runs(experiment_names=["tiny"]).set_index("tags.trial_name")
    assert sorted(tracked.index) == sorted(runs.index)
    client = mlflow.tracking.MlflowClient()
    for trial_id, row in runs.iterrows():
        run = tracked.loc[trial_id]
        assert run["status"] == {"completed": "FINISHED", "stopped_early": "KILLED"}[row["status"]]
        assert run["tags.busray.status"] == row["status"]
        assert run["metrics.best/val/loss"] == pytest.approx(row["val/loss"])
        assert run["params.model.tau"] == str(row["model.tau"]) and run["params.train.epochs"] == "4"
        if row["status"] == "completed":
            assert run["metrics.test/seg/iou"] == pytest.approx(row["test/seg/iou"])
        steps = [m.step for m in client.get_metric_history(run["run_id"], "val/loss")]
        assert steps == list(range(1, row["epochs_run"] + 1))  # a point per epoch, none after the last


def _study(storage, sweep_id):
    journal = JournalStorage(JournalFileBackend(f"{storage}/tiny/optuna.journal"))
    return optuna.load_study(study_name=sweep_id, storage=journal)


def test_one_row_per_trial_on_both_paths(sweep):
    storage, _, out = sweep
    runs = _runs(storage, out.sweep_id)
    table = runs[["status", "resources.workers", "best_epoch", "error"]].to_string()
    assert len(runs) == 4 and set(runs["status"]) <= {"completed", "stopped_early"}, table
    assert set(runs["resources.workers"]) == {1, 2}, table
    assert (runs["best_epoch"] >= 1).all() and (runs["wall_time_s"] > 0).all(), table
    assert "stopped_early" in set(runs["status"]), table  # ASHA took at least one stop decision
    assert runs["split_hash"].nunique() == 1 and runs["dataset"].notna().all(), table
    assert (runs["loss.w_seg"] + runs["loss.w_clf"]).round(9).eq(1.0).all()
    assert (runs["train.monitor"] == "val/loss").all() and (runs["objective"] == "val/loss:min").all()
    done = runs[runs["status"] == "completed"]
    assert done["test/seg/iou"].notna().all()
    assert set(ResultsStore(storage).epochs()["trial_id"]) == set(runs["trial_id"])


def test_store_folder_and_optuna_tell_one_story(sweep):
    storage, _, out = sweep
    runs = _runs(storage, out.sweep_id)
    study = _study(storage, out.sweep_id)
    assert study.metric_names == ["val/loss"]
    by_id = {t.user_attrs["busray_trial_id"]: t for t in study.trials}
    assert set(by_id) == set(runs.index)
    for trial_id, row in runs.iterrows():
        folder = RunFolder(row["run_dir"])
        assert by_id[trial_id].user_attrs["run_dir"] == row["run_dir"]
        outcome, history = folder.read_outcome(), folder.read_history()
        assert outcome.status == row["status"] and outcome.best_epoch == row["best_epoch"]
        epochs = [r["epoch"] for r in history]
        ot = by_id[trial_id]
        # every reported epoch is an intermediate value, and no epoch ran after a stop decision
        assert sorted(ot.intermediate_values) == epochs == list(range(1, len(epochs) + 1))
        best = min(history, key=lambda r: r["val/loss"])
        assert row["best_epoch"] == best["epoch"] and row["val/loss"] == pytest.approx(best["val/loss"])
        assert ot.value == pytest.approx(row["val/loss"])  # a stopped trial's too: its best epoch's
        if row["status"] == "stopped_early":
            assert ot.state == TrialState.PRUNED and len(epochs) < 4
        else:
            assert ot.state == TrialState.COMPLETE and len(epochs) == 4


def _get_json(app, path: str):
    environ = {}
    setup_testing_defaults(environ)
    environ["PATH_INFO"] = path
    status = []
    body = b"".join(app(environ, lambda code, headers, exc_info=None: status.append(code)))
    assert status == ["200 OK"], (path, status, body[:300])
    return json.loads(body)


def test_optuna_dashboard_shows_what_the_store_says(sweep):
    """The journal the summary names, served by optuna-dashboard (its WSGI app, as the browser asks)."""
    storage, _, out = sweep
    runs = _runs(storage, out.sweep_id)
    app = optuna_dashboard.wsgi(f"{storage}/tiny/optuna.journal")
    (summary,) = _get_json(app, "/api/studies")["study_summaries"]
    assert summary["study_name"] == out.sweep_id and summary["directions"] == ["minimize"]
    study = _get_json(app, f"/api/studies/{summary['study_id']}")
    assert study["objective_names"] == ["val/loss"]
    shown = {next(a["value"] for a in t["user_attrs"] if a["key"] == "busray_trial_id"): t for t in study["trials"]}
    assert set(shown) == set(runs.index)
    state = {"completed": "Complete", "stopped_early": "Pruned"}
    for trial_id, row in runs.iterrows():
        assert shown[trial_id]["state"] == state[row["status"]]
        assert shown[trial_id]["values"] == [pytest.approx(row["val/loss"])]


def test_tensorboard_one_run_per_trial_with_its_hparams(sweep):
    storage, _, out = sweep
    runs = _runs(storage, out.sweep_id)
    tb_root = Path(storage) / "tb" / "tiny"
    assert sorted(p.name for p in tb_root.iterdir()) == sorted(runs.index)
    for trial_id in runs.index:
        events = EventAccumulator(str(tb_root / trial_id))
        events.Reload()
        assert "val/loss" in events.Tags()["scalars"]
        assert not [tag for tag in events.Tags()["scalars"] if tag.startswith("hparams/")]  # no one-point charts
        assert "_hparams_/session_start_info" in events.PluginTagToContent("hparams")
    tune_dir = Path(storage) / "tiny" / "tune"
    trial_dirs = [p.name for p in (tune_dir / "round-000").iterdir() if p.is_dir()]
    assert sorted(trial_dirs) == sorted(runs.index)  # Tune's own trial folders are named by run id too
    for pattern in ("**/events.out.tfevents.*", "**/result.json", "**/progress.csv"):
        assert not list(tune_dir.glob(pattern)), pattern  # Tune's own loggers are off
    assert not list((Path(storage) / "tiny").glob("train/**/checkpoint_*"))  # one copy of each checkpoint


def test_summary_points_at_what_exists(sweep):
    storage, _, out = sweep
    text = out.summary()
    assert text.startswith(f"sweep tiny ({out.sweep_id}): 4 trials (")
    hints = text.split("\nnext:\n")[1].splitlines()
    assert hints[0] == f"  busray results show tiny --storage {storage}"
    assert Path(hints[1].split("--logdir ")[1]).is_dir() and Path(hints[2].split("optuna-dashboard ")[1]).is_file()
    runs = pd.read_parquet(re.search(r'pd.read_parquet\("(.+)"\)', hints[3]).group(1))  # as a user pastes it
    assert sorted(runs.loc[runs["sweep_id"] == out.sweep_id, "trial_id"]) == sorted(_runs(storage, out.sweep_id).index)


def test_add_trials_continues_the_study(sweep):
    storage, overrides, out = sweep
    with pytest.raises(ConfigError, match="already exists"):
        run_sweep(TINY_SPEC, overrides, storage=storage, progress=False)
    one_worker = overrides + ["space.resources.workers={type: fixed, value: 1}"]  # a space of its own
    with pytest.raises(ConfigError, match=r"the space changed since round-000 \(space.resources.workers: type "
                                          r"'categorical' -> 'fixed'.* pass allow_new_space=True"):
        run_sweep(TINY_SPEC, one_worker, storage=storage, add_trials=2, progress=False)
    more = run_sweep(TINY_SPEC, one_worker, storage=storage, add_trials=2, progress=False, allow_new_space=True)
    assert more.sweep_id == out.sweep_id
    spaces = json.loads((Path(storage) / "tiny" / "sweep.json").read_text())["spaces"]
    assert [spaces[r]["resources.workers"]["type"] for r in ("round-000", "round-001")] == ["categorical", "fixed"]
    assert len(_runs(storage, out.sweep_id)) == 6
    trials = _study(storage, out.sweep_id).trials
    assert [t.number for t in trials] == list(range(6))
    points = [(t.params["loss.w_seg"], t.params["model.tau"]) for t in trials]
    assert len(set(points)) == 6, points  # the new round draws new points, not round 0's again
    assert "best trials by val/loss:min" in more.summary()


def test_worker_crash_resumes_and_nan_fails(local_ray, synth_root, short_dir):
    faults = tiny_ablation(synth_root, "faults", {"crash": {"train.debug_crash_at_epoch": 2},
                                                  "nan": {"train.debug_nan_at_epoch": 2}},
                           {"workers": 1, "max_failures": 1})
    out = run_ablation(faults, storage=short_dir, progress=False)
    runs = _runs(short_dir, out.sweep_id).set_index("variant")
    assert len(runs) == 2
    # The crashed process was restarted and resumed from its epoch-1 checkpoint: a restart from
    # scratch would crash again (the switch fires on any run that did not resume) and fail the trial.
    assert runs.loc["crash", "status"] == "completed", runs.loc["crash", "error"]
    assert _epochs(short_dir, runs.loc["crash", "trial_id"]) == [1, 2, 3]
    assert runs.loc["nan", "status"] == "failed"
    assert "finite" in runs.loc["nan", "error"].lower()
    assert RunFolder(runs.loc["nan", "run_dir"]).read_outcome().status == "failed"
    assert glob.glob(f"{short_dir}/faults/runs/*/checkpoints/last.pt")


def test_ddp_worker_crash_resumes_then_nan_fails(local_ray, synth_root, short_dir):
    # One 2-worker trial takes both faults (a DDP worker group costs ~35 CPU-seconds of Ray Train start-up
    # on the 2-core CI machine): a worker dies at epoch 2, the group restarts from the epoch-1
    # checkpoint, and the loss turns NaN at epoch 3. That the trial ends with the NaN reason proves the
    # resume: a restart from scratch would crash again at epoch 2 and, with max_failures 1, fail with
    # a crash. (The sweep going on after a failed trial is the driver's, the same on both paths.)
    faults = tiny_ablation(synth_root, "ddpfaults",
                           {"faults": {"train.debug_crash_at_epoch": 2, "train.debug_nan_at_epoch": 3}},
                           {"workers": 2, "max_failures": 1})
    out = run_ablation(faults, storage=short_dir, progress=False)
    row = _runs(short_dir, out.sweep_id).iloc[0]
    assert row["status"] == "failed" and "finite" in row["error"].lower() and "epoch 3" in row["error"], row["error"]
    assert row["resources.workers"] == 2
    assert _epochs(short_dir, row["trial_id"]) == [1, 2]  # epoch 1 once (resumed, not rerun), then epoch 2
    assert RunFolder(row["run_dir"]).read_outcome().status == "failed"
    assert glob.glob(f"{short_dir}/ddpfaults/runs/*/checkpoints/last.pt")
    # a local cluster runs Ray Train without its preemption watcher (busray.sweep.cluster)
    # the session cluster by address: another worker may run a second local Ray at the same time
    started = {a.class_name for a in list_actors(address=ray.get_runtime_context().gcs_address, limit=10_000)}
    assert "TrainController" in started and "PreemptionWatcher" not in started, sorted(started)


def _epochs(storage: str, trial_id: str) -> list[int]:
    epochs = ResultsStore(storage).epochs()
    return epochs[epochs["trial_id"] == trial_id]["epoch"].tolist()


def test_an_input_error_of_every_trial_ends_the_sweep_in_one_line(local_ray, synth_root, short_dir, capsys):
    """An unknown encoder passes the driver's checks (they do not import timm); the first two trials
    fail with it, no more are started, and the CLI keeps the one-line-error promise."""
    args = ["sweep", str(TINY_SPEC), "--storage", short_dir, "--no-progress"]
    for override in (f"base.data.root={synth_root}", SERIAL, "num_trials=8", "base.model.encoder=nope_net"):
        args += ["--set", override]
    assert main(args) == EXIT_ERROR
    out, err = capsys.readouterr()
    assert err.splitlines() == [
        "busray: error: sweep tiny: all 2 trials failed, e.g. ConfigError: model.encoder: unknown timm model 'nope_net'"]
    assert "sweep tiny (" in out and "2 trials (2 failed)" in out
    runs = ResultsStore(short_dir).runs()
    assert list(runs["status"]) == ["failed", "failed"] and runs["error"].str.contains("nope_net").all()
    assert sorted(p.name for p in (Path(short_dir) / "tiny" / "runs").iterdir()) == sorted(runs["trial_id"])
    study = _study(short_dir, runs["sweep_id"].iloc[0])
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.FAIL]

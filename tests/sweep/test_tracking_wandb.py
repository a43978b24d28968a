"""W&B, offline, on the local Ray: a real 3-trial sweep logged by ``BusrayWandbCallback``, read back from
the runs' transaction logs (``wandb leet inspect --json``: wandb's own reader of a ``.wandb`` file) and
checked against the store: one run per trial, named by its trial id; the row's config as the run's
config; a point per epoch, the store's epoch row, and none after the last; the best epoch's values and
the test metrics at the end; the status in the config (a trial ASHA stopped says ``stopped_early``).
The driver's ``WANDB_*`` settings reach the logging actors, and no wandb process outlives the sweep.
Nothing leaves the machine: offline, W&B does not log in (no API key, no ``~/.netrc``), and its error
reports are off."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from busray.configtools import flatten, load_yaml
from busray.results import ResultsStore
from busray.sweep import run_sweep

from sweephelpers import TINY_SPEC

pytest.importorskip("wandb", reason="wandb is not installed (pip install 'busray[wandb]'; "
                                    "the dev extra pins it)")

pytestmark = [pytest.mark.ray, pytest.mark.slow]

# TPE seed 5, one trial at a time (ASHA's decisions are then deterministic): trials 1 and 3 train their 3
# epochs, each best at epoch 2 (a best value that is not the last one); ASHA stops trial 2 after epoch 1
# (val/loss 0.84 against trial 1's 0.76 at that rung: no close call).
OVERRIDES = ["objective=val/loss:min", "max_concurrent=1", "num_trials=3", "base.train.epochs=3",
             "search.seed=5", "tracking.wandb.mode=offline", "tracking.wandb.project=busray-test"]
#: What a run's config holds beyond the store row's config columns: the outcome (and Ray's trial_log_path).
OUTCOME_CONFIG = ("busray.status", "busray.best_epoch")


@pytest.fixture(scope="module")
def sweep(local_ray, synth_root, tmp_path_factory):
    """The sweep, with W&B's folders (runs, cache, config, data) under a temp folder: set in the driver's
    environment only (the session's Ray started before), so the logging actors must be given them."""
    root = tmp_path_factory.mktemp("wandb")
    folders = {name: root / name.lower() for name in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR",
                                                      "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR")}
    for folder in folders.values():
        folder.mkdir()
    env = {**{k: str(v) for k, v in folders.items()}, "WANDB_MODE": "offline", "WANDB_SILENT": "true",
           "WANDB_ERROR_REPORTING": "false"}
    storage = str(root / "store")
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        mp.delenv("WANDB_API_KEY", raising=False)
        out = run_sweep(TINY_SPEC, [f"base.data.root={synth_root}", *OVERRIDES], storage=storage,
                        progress=False)
        leftovers = _wandb_processes_after(env["WANDB_DIR"], timeout=20)
        logs = sorted(folders["WANDB_DIR"].glob("wandb/offline-run-*/run-*.wandb"))
        tracked = {run["run_id"]: run for run in map(_read_run, logs)}
    store = ResultsStore(storage)
    runs = store.runs(sweep=out.sweep_id).set_index("trial_id", drop=False)
    epochs = store.epochs(sweep=out.sweep_id)
    return {"out": out, "storage": storage, "runs": runs, "epochs": epochs, "tracked": tracked, "logs": logs,
            "leftovers": leftovers}


def _read_run(path: Path) -> dict:
    """A run's ``.wandb`` log as wandb's reader prints it (one JSON record a line), folded: the run
    record, its config and summary (updates applied in order), its history rows by step, its exit code."""
    text = subprocess.run([sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(path)],
                          capture_output=True, text=True, timeout=60, check=True).stdout
    run, config, summary, history, exits = {}, {}, {}, [], []
    for record in map(json.loads, text.splitlines()):
        kind = record["type"]
        if kind == "run":
            run = record["run"]
            config.update(run.get("config", {}).get("update", {}))
        elif kind == "config":
            config.update(record["config"].get("update", {}))
        elif kind == "summary":
            summary.update(record["summary"].get("update", {}))
        elif kind == "history":
            history.append(record["history"]["item"])
        elif kind == "exit":
            exits.append(record["exit"].get("exit_code", 0))
    assert run and exits, f"{path}: no run or exit record"
    return {**run, "config": {k: v for k, v in config.items() if not k.startswith("_")}, "summary": summary,
            "history": history, "exit_codes": exits}


def _wandb_processes_after(wandb_dir: str, timeout: float) -> list[str]:
    """The processes started in this W&B environment (wandb-core, its system monitor) still alive after
    ``timeout`` s (killed then, so that a failing test leaves none behind): none once the sweep ended."""
    marker = f"WANDB_DIR={wandb_dir}".encode()
    deadline = time.time() + timeout
    while True:
        alive = {}
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                if marker in (proc / "environ").read_bytes().split(b"\0"):
                    alive[int(proc.name)] = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
        alive.pop(os.getpid(), None)
        if not alive or time.time() > deadline:
            break
        time.sleep(0.5)
    for pid in alive:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return [f"{pid}: {cmd}" for pid, cmd in alive.items()]


def _same(tracked, stored) -> bool:
    """A W&B config value as the store row holds it (a pandas row: lists as arrays, nulls as None/NaN)."""
    if isinstance(tracked, list):
        return stored is not None and list(stored) == tracked
    if tracked is None:
        return stored is None or stored != stored
    return stored == tracked


def test_one_run_per_trial_named_by_it(sweep):
    runs, tracked = sweep["runs"], sweep["tracked"]
    assert len(sweep["logs"]) == len(runs) == 3
    assert sorted(tracked) == sorted(runs.index)
    for trial_id, run in tracked.items():
        assert run["display_name"] == trial_id  # each run its own name (not the first trial's)
        assert (run["project"], run["run_group"]) == ("busray-test", "tiny")
        assert set(run["tags"]) == {"busray.sweep=tiny", f"busray.sweep_id={sweep['out'].sweep_id}"}
        # the driver's WANDB_DIR reached the logging actor: no run in the Tune folder, its working directory
        assert not (Path(run["config"]["trial_log_path"]) / "wandb").exists()
    assert not list(Path(sweep["storage"]).rglob("*.wandb"))  # nor in their copies in the storage


def test_config_is_the_store_rows(sweep):
    """A run's config: its run folder's config.yaml, resources and seed, values as the store row holds
    them (lists, nulls), and the outcome; not the Tune config (the nested request)."""
    for trial_id, row in sweep["runs"].iterrows():
        config = dict(sweep["tracked"][trial_id]["config"])
        outcome = {key: config.pop(key) for key in OUTCOME_CONFIG}
        assert Path(config.pop("trial_log_path")).name == trial_id  # Ray's: the trial's Tune folder
        yaml = flatten(load_yaml(Path(row["run_dir"]) / "config.yaml"))
        resources = {k: row[k] for k in row.index if k.startswith("resources.")}
        assert set(config) == {*yaml, *resources, "seed"}, trial_id
        assert {k: (v, config[k]) for k, v in yaml.items() if config[k] != v} == {}, trial_id
        assert {k: (v, row[k]) for k, v in config.items() if not _same(v, row[k])} == {}, trial_id
        assert outcome == {"busray.status": row["status"], "busray.best_epoch": row["best_epoch"]}, trial_id


def test_a_point_per_epoch_the_stores_and_none_after_the_last(sweep):
    epochs = sweep["epochs"]
    for trial_id, row in sweep["runs"].iterrows():
        history = sweep["tracked"][trial_id]["history"]
        stored = epochs[epochs["trial_id"] == trial_id].set_index("epoch")
        assert [h["_step"] for h in history] == list(range(1, row["epochs_run"] + 1)) == list(stored.index)
        for point in history:
            epoch = stored.loc[point["_step"]]
            for metric in ("val/loss", "val/score", "train/loss"):
                assert point[metric] == pytest.approx(epoch[metric], rel=1e-9, abs=1e-12), (trial_id, metric)


def test_the_end_is_the_stores_outcome(sweep):
    """At the last epoch's step: the best epoch's validation metrics, and the test metrics of a completed
    trial (a stopped one has none). Every run exits 0 (W&B ends each ``finished``); its config tells a
    stopped trial apart (test_config_is_the_store_rows)."""
    runs = sweep["runs"]
    assert sorted(runs["status"]) == ["completed", "completed", "stopped_early"], runs["status"]
    best_not_last = 0
    for trial_id, row in runs.iterrows():
        run = sweep["tracked"][trial_id]
        last, summary = run["history"][-1], run["summary"]
        assert last["_step"] == summary["_step"] == row["epochs_run"]
        for metric in ("val/loss", "val/score", "val/seg/iou", "val/clf/acc"):
            assert last[f"best/{metric}"] == summary[f"best/{metric}"] == pytest.approx(row[metric]), metric
        tests = {k: v for k, v in summary.items() if k.startswith("test/")}
        if row["status"] == "completed":
            for metric in ("test/loss", "test/seg/iou", "test/clf/acc"):
                assert last[metric] == tests[metric] == pytest.approx(row[metric]), metric
        else:
            assert tests == {} and row["epochs_run"] < 3 and row["test/seg/iou"] != row["test/seg/iou"]
        assert run["exit_codes"] == [0]
        if row["best_epoch"] < row["epochs_run"]:  # W&B's own val/loss summary is the last epoch's
            best_not_last += 1
            assert summary["val/loss"] == pytest.approx(run["history"][-1]["val/loss"])
            assert summary["val/loss"] != pytest.approx(summary["best/val/loss"])
    assert best_not_last >= 1


def test_no_wandb_process_outlives_the_sweep(sweep):
    assert sweep["leftovers"] == []


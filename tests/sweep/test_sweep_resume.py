"""A sweep interrupted twice and resumed twice: exactly N rows, one story per trial.

Runs the real CLI (``python -m busray sweep``) in subprocesses connected to the session's local Ray
(``RAY_ADDRESS``, as a driver of a running cluster does):

1. Ctrl-C (SIGINT) while a trial trains: the driver says so at once, exits 130, records nothing for
   the trials it cut short (their run folders still say ``running``) and prints the ``--resume``
   command;
2. that command, SIGKILLed once it has recorded a trial (Ray then ends the dead driver's actors);
3. the same command again (``Tuner.restore``): all N trials recorded once, folders and Optuna agree.

And an ablation cut by Ctrl-C, then ``--resume``-d: its run continues in the folder it was cut in.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
import ray
import yaml
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from busray.results import ResultsStore
from busray.runfolder import RunFolder
from busray.sweep.console import INTERRUPT_NOTICE

from sweephelpers import TINY_SPEC

pytestmark = [pytest.mark.ray, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def _sweep_cmd(root: str, storage: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "busray", "sweep", str(TINY_SPEC), "--set", f"base.data.root={root}",
            "--storage", storage, "--no-progress", *extra]


def _env() -> dict:
    return {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_ADDRESS": ray.get_runtime_context().gcs_address,
            "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def test_interrupted_then_killed_then_resumed_gives_exactly_n_rows(local_ray, synth_root, short_dir):
    storage = f"{short_dir}/st"
    store = ResultsStore(storage)
    unfinished = _interrupt_while_a_trial_trains(synth_root, storage)
    recorded = set(store.runs()["trial_id"]) if not store.runs().empty else set()
    assert not recorded & set(unfinished)
    for trial_id in unfinished:  # cut short: the folder says so, nothing claims it stopped or failed
        assert RunFolder(f"{storage}/tiny/runs/{trial_id}").read_outcome().status == "running"

    rows_at_kill = _kill_once_it_records(_sweep_cmd(synth_root, storage, "--resume"), store, len(recorded))
    assert rows_at_kill < 4

    resumed = subprocess.run(_sweep_cmd(synth_root, storage, "--resume"), env=_env(), cwd=ROOT,
                             capture_output=True, text=True, timeout=500, start_new_session=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    runs = ResultsStore(storage).runs()
    assert len(runs) == 4 and runs["trial_id"].is_unique and runs["sweep_id"].nunique() == 1
    assert set(runs["status"]) <= {"completed", "stopped_early"} and set(unfinished) <= set(runs["trial_id"])
    assert "4 trials" in resumed.stdout and "interrupted" not in resumed.stdout
    for run_dir in runs["run_dir"]:  # the run folders agree with the store, re-launched trials included
        folder = RunFolder(run_dir)
        assert folder.read_outcome().status in {"completed", "stopped_early"}
        epochs = [int(row["epoch"]) for row in folder.read_history()]
        assert epochs == list(range(1, len(epochs) + 1))  # continued, never repeated
    journal = JournalStorage(JournalFileBackend(f"{storage}/tiny/optuna.journal"))
    study = optuna.load_study(study_name=runs["sweep_id"].iloc[0], storage=journal)
    finished = [t for t in study.trials if t.state.is_finished()]
    assert len(finished) >= 4 - rows_at_kill  # every trial the resumed run finished was told to Optuna


def test_an_interrupted_ablation_continues_its_cut_run_in_the_same_folder(synth_root, short_dir):
    """An ablation's run has one folder and one row however often it is cut: ``--resume`` starts a
    new Tune round, whose trial finds the cut run's ``last.pt`` in that folder and goes on from it."""
    base = yaml.safe_load(TINY_SPEC.read_text())["base"]
    base["data"]["root"] = synth_root
    base["train"]["epochs"] = 12
    spec = Path(short_dir) / "cut.yaml"
    spec.write_text(yaml.safe_dump({"kind": "ablation", "name": "cut", "base": base, "variants": {"only": {}},
                                    "seeds": 1, "max_concurrent": 1}))
    storage = f"{short_dir}/abl"
    cmd = [sys.executable, "-m", "busray", "ablate", str(spec), "--storage", storage, "--no-progress"]
    out = _interrupt_once_training(cmd, Path(storage) / "cut" / "runs")
    (folder,) = (Path(storage) / "cut" / "runs").iterdir()
    assert re.match(r"only-s0-[0-9a-f]{8}$", folder.name) and f"1 unfinished ({folder.name})" in out
    before, cut_started = RunFolder(folder).read_history(), RunFolder(folder).read_outcome().started_at

    resumed = subprocess.run([*cmd, "--resume"], env=_env(), cwd=ROOT, capture_output=True, text=True,
                             timeout=300, start_new_session=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert [p.name for p in (Path(storage) / "cut" / "runs").iterdir()] == [folder.name]
    history = RunFolder(folder).read_history()
    assert [int(row["epoch"]) for row in history] == list(range(1, 13))
    assert history[:len(before)] == before  # the epochs trained before the cut were not trained again
    runs = ResultsStore(storage).runs(sweep="cut")
    assert list(runs["trial_id"]) == [folder.name] and list(runs["status"]) == ["completed"]
    assert runs["started_at"].iloc[0] == pd.Timestamp(cut_started)  # the run began in the first process


def _interrupt_once_training(cmd: list[str], runs: Path) -> str:
    """Run ``cmd``, SIGINT it once a run has trained an epoch; return its stdout (exit 130)."""
    driver = subprocess.Popen(cmd, env=_env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, start_new_session=True)
    try:
        deadline = time.time() + 300
        while not _a_trial_is_training(runs) and time.time() < deadline:
            assert driver.poll() is None, "it ended before it could be interrupted"
            time.sleep(0.2)
        driver.send_signal(signal.SIGINT)
        out, err = driver.communicate(timeout=120)
    finally:
        _kill_group(driver.pid)
    assert driver.returncode == 130, err[-3000:]
    return out


def _interrupt_while_a_trial_trains(root: str, storage: str) -> list[str]:
    """SIGINT the driver once a trial has trained an epoch; return the trials it left unfinished."""
    out = _interrupt_once_training(_sweep_cmd(root, storage), Path(storage) / "tiny" / "runs")
    assert INTERRUPT_NOTICE in out
    summary = re.search(r"interrupted by Ctrl-C; .* recorded, (\d+) unfinished \(([^)]*)\)", out)
    assert summary, out
    again = shlex.join(["busray", "sweep", str(TINY_SPEC), "--set", f"base.data.root={root}", "--storage",
                        str(Path(storage).resolve())])
    assert f"  {again} --resume   # runs what is left" in out.splitlines()
    return summary.group(2).split(", ")


def _a_trial_is_training(runs: Path) -> bool:
    for folder in runs.glob("*"):
        try:
            status = json.loads((folder / "metrics.json").read_text())["status"]
        except (OSError, ValueError, KeyError):
            continue
        if status == "running" and len(RunFolder(folder).read_history()) >= 1:
            return True
    return False


def _kill_once_it_records(cmd: list[str], store: ResultsStore, rows_before: int) -> int:
    """Run ``cmd``, SIGKILL it once it has recorded one more trial; return the rows recorded then."""
    driver = subprocess.Popen(cmd, env=_env(), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        deadline = time.time() + 400
        while len(store.runs()) <= rows_before and driver.poll() is None and time.time() < deadline:
            time.sleep(0.5)
        assert driver.poll() is None, "the sweep ended before it could be killed"
        assert len(store.runs()) > rows_before, "no trial finished in time"
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
    finally:
        _kill_group(driver.pid)  # whatever the killed driver had started
    return len(store.runs())


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass

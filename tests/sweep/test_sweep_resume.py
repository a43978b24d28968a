"""A sweep interrupted twice and resumed twice: exactly N rows, one story per trial.

Runs the real CLI (``python -m busray sweep``) in subprocesses connected to the session's local Ray
(``RAY_ADDRESS``, as a driver of a running cluster does):

1. Ctrl-C (SIGINT) while a trial trains: the driver says so at once, exits 130, records nothing for
   the trials it cut short (their run folders still say ``running``) and prints the ``--resume``
   command;
2. that command, SIGKILLed once it has recorded a trial (Ray then ends the dead driver's actors);
3. the same command again (``Tuner.restore``): all N trials recorded once, folders and Optuna agree.
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
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from busray.results import ResultsStore
from busray.runfolder import RunFolder
from busray.sweep.console import INTERRUPT_NOTICE

from sweephelpers import ROOT, TINY_SPEC, cli_env, interrupt_once_training, kill_group

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def _sweep_cmd(root: str, storage: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "busray", "sweep", str(TINY_SPEC), "--set", f"base.data.root={root}",
            "--storage", storage, "--no-progress", *extra]


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
    # what the next --resume restores knows every trial the killed driver recorded (else it would start
    # one trial too many: busray.sweep.runner.SNAPSHOT_TUNE)
    assert set(store.runs()["trial_id"]) <= _snapshot_trial_ids(Path(storage) / "tiny" / "tune")

    resumed = subprocess.run(_sweep_cmd(synth_root, storage, "--resume"), env=cli_env(), cwd=ROOT,
                             capture_output=True, text=True, timeout=500, start_new_session=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    runs = ResultsStore(storage).runs()
    assert len(runs) == 4 and runs["trial_id"].is_unique and runs["sweep_id"].nunique() == 1
    assert set(runs["status"]) <= {"completed", "stopped_early"} and set(unfinished) <= set(runs["trial_id"])
    assert "4 trials" in resumed.stdout and "interrupted" not in resumed.stdout
    first = int(re.search(r"^\[(\d+)/4\]", resumed.stdout, re.M).group(1))
    assert first > rows_at_kill  # numbered on from the trials that ended before the resume
    for run_dir in runs["run_dir"]:  # the run folders agree with the store, re-launched trials included
        folder = RunFolder(run_dir)
        assert folder.read_outcome().status in {"completed", "stopped_early"}
        epochs = [int(row["epoch"]) for row in folder.read_history()]
        assert epochs == list(range(1, len(epochs) + 1))  # continued, never repeated
    journal = JournalStorage(JournalFileBackend(f"{storage}/tiny/optuna.journal"))
    study = optuna.load_study(study_name=runs["sweep_id"].iloc[0], storage=journal)
    finished = [t for t in study.trials if t.state.is_finished()]
    assert len(finished) >= 4 - rows_at_kill  # every trial the resumed run finished was told to Optuna


def _snapshot_trial_ids(tune_dir: Path) -> set[str]:
    """The trial ids in Tune's newest experiment snapshot of the sweep's last round."""
    newest = sorted(sorted(tune_dir.glob("round-*"))[-1].glob("experiment_state-*.json"))[-1]
    return {json.loads(state)["trial_id"] for state, _ in json.loads(newest.read_text())["trial_data"]}


def _interrupt_while_a_trial_trains(root: str, storage: str) -> list[str]:
    """SIGINT the driver once a trial has trained an epoch; return the trials it left unfinished."""
    out = interrupt_once_training(_sweep_cmd(root, storage), Path(storage) / "tiny" / "runs")
    assert INTERRUPT_NOTICE in out
    summary = re.search(r"interrupted by Ctrl-C; .* recorded, (\d+) unfinished \(([^)]*)\)", out)
    assert summary, out
    again = shlex.join(["busray", "sweep", str(TINY_SPEC), "--set", f"base.data.root={root}", "--storage",
                        str(Path(storage).resolve())])
    assert f"  {again} --resume   # runs what is left" in out.splitlines()
    return summary.group(2).split(", ")


def _kill_once_it_records(cmd: list[str], store: ResultsStore, rows_before: int) -> int:
    """Run ``cmd``, SIGKILL it once it has recorded one more trial; return the rows recorded then."""
    driver = subprocess.Popen(cmd, env=cli_env(), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
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
        kill_group(driver.pid)  # whatever the killed driver had started
    return len(store.runs())



"""The sweep driver SIGKILLed mid-sweep, then the same command with ``--resume``: exactly N rows.

Runs the real CLI (``python -m busray sweep``) in a subprocess connected to the session's local Ray
(``RAY_ADDRESS``, as a driver of a running cluster does), kills the driver with SIGKILL once the first
trial row is in the store (Ray then ends the dead driver's trial actors), and resumes
(``Tuner.restore``) from a second driver.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import ray
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from busray.results import ResultsStore
from busray.runfolder import RunFolder

from sweephelpers import TINY_SPEC

pytestmark = [pytest.mark.ray, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def _sweep_cmd(root: str, storage: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "busray", "sweep", str(TINY_SPEC), "--set", f"base.data.root={root}",
            "--storage", storage, "--no-progress", *extra]


def _env() -> dict:
    return {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_ADDRESS": ray.get_runtime_context().gcs_address,
            "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def test_killed_driver_then_resume_gives_exactly_n_rows(local_ray, synth_root, short_dir):
    storage = f"{short_dir}/st"
    store = ResultsStore(storage)
    driver = subprocess.Popen(_sweep_cmd(synth_root, storage), env=_env(), cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 400
        while store.runs().empty and driver.poll() is None and time.time() < deadline:
            time.sleep(0.5)
        assert driver.poll() is None, "the sweep ended before it could be killed"
        assert not store.runs().empty, "no trial finished in time"
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
    finally:
        _kill_group(driver.pid)  # whatever the killed driver had started
    rows_at_kill = len(store.runs())
    assert rows_at_kill < 4

    resumed = subprocess.run(_sweep_cmd(synth_root, storage, "--resume"), env=_env(), cwd=ROOT,
                             capture_output=True, text=True, timeout=500, start_new_session=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    runs = ResultsStore(storage).runs()
    assert len(runs) == 4 and runs["trial_id"].is_unique and runs["sweep_id"].nunique() == 1
    assert set(runs["status"]) <= {"completed", "stopped_early"}
    assert "4 trials" in resumed.stdout
    for run_dir in runs["run_dir"]:  # the run folders agree with the store, re-launched trials included
        assert RunFolder(run_dir).read_outcome().status in {"completed", "stopped_early"}
    journal = JournalStorage(JournalFileBackend(f"{storage}/tiny/optuna.journal"))
    study = optuna.load_study(study_name=runs["sweep_id"].iloc[0], storage=journal)
    finished = [t for t in study.trials if t.state.is_finished()]
    assert len(finished) >= 4 - rows_at_kill  # every trial the resumed run finished was told to Optuna


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass

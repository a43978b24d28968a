"""``ray job submit --working-dir . -- busray sweep sweeps/smoke.yaml`` against a local head (127.0.0.1).

The head is started the way the README shows (with trial-slot resources); the job runs the shipped smoke
sweep, shrunk by ``--set`` overrides to two short trials one after the other, and must leave two rows in
the store. It is submitted with ``--no-wait`` and followed through the job API, so that a request the
head drops (:data:`DROPPED`) is asked again rather than taken for the job's outcome.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
import requests
from ray.job_submission import JobStatus, JobSubmissionClient

from busray.results import ResultsStore

pytestmark = [pytest.mark.ray, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# What `ray job submit` prints when the head dropped the request: the job agent registers a few seconds
# after the dashboard first answers ("No available agent"), and on a loaded 2-core machine the dashboard
# has dropped connections (its job module failing a 1-s health check is restarted, failing the requests
# it had). Submitting again under the same --submission-id is safe: a job that did reach the head
# makes the next try say "already exists", and the test then waits for that job.
DROPPED = ("No available agent", "Failed to connect to Ray at address", "Connection aborted")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ray_head():
    """``ray start --head --block`` in its own process group; the group is killed afterwards (never
    ``ray stop``, which stops every Ray on the machine, the test session's own included)."""
    temp = tempfile.mkdtemp(prefix="brhead", dir="/tmp")
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}
    # its own dashboard-agent port: the default (52365) belongs to the session's other test cluster
    port, dash, agent = _free_port(), _free_port(), _free_port()
    start = [str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", str(port),
             "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dash),
             "--dashboard-agent-listen-port", str(agent), "--num-cpus", "2",
             "--resources", '{"busray_trial_slot": 2}', "--temp-dir", temp, "--disable-usage-stats"]
    head = subprocess.Popen(start, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        _wait_for_dashboard(dash, head)
        yield f"http://127.0.0.1:{dash}", env
    finally:
        _kill_group(head)
        shutil.rmtree(temp, ignore_errors=True)


def _wait_for_dashboard(port: int, head: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert head.poll() is None, "ray start --head exited"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/version", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise AssertionError("the Ray head's dashboard did not come up")


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait(timeout=30)


def test_job_submit_runs_the_smoke_sweep(ray_head, tmp_path):
    address, env = ray_head
    storage = tmp_path / "store"
    shrink = ["--set", "num_trials=2", "--set", "base.train.epochs=2", "--set", "base.train.steps_per_epoch=2",
              "--set", "base.data.root=synthetic:n=36,size=64", "--set", "scheduler.type=none",
              "--set", "max_concurrent=1"]  # one trial actor for both: each new one imports torch (~7 CPU-s)
    submit = [str(BIN / "ray"), "job", "submit", "--address", address, "--submission-id", "busray-smoke",
              "--no-wait", "--working-dir", str(REPO), "--",
              "python", "-m", "busray", "sweep", "sweeps/smoke.yaml", "--storage", str(storage),
              "--no-progress", *shrink]
    _submit_once(submit, env)
    status, logs = _wait_for_job(address, "busray-smoke")
    assert status == JobStatus.SUCCEEDED, logs[-3000:]
    assert "sweep smoke (" in logs and "2 trials (2 completed)" in logs, logs[-3000:]
    runs = ResultsStore(storage).runs(sweep="smoke")
    assert len(runs) == 2 and (runs["status"] == "completed").all(), runs[["status", "error"]]
    assert "best trials" in logs


def _submit_once(submit: list[str], env: dict) -> None:
    """``ray job submit``, again while the head dropped the request (:data:`DROPPED`)."""
    for _ in range(20):
        done = subprocess.run(submit, env=env, capture_output=True, text=True, timeout=300)
        if done.returncode == 0 or "already exists" in done.stderr:
            return
        if not any(note in done.stderr for note in DROPPED):
            break
        time.sleep(2)
    raise AssertionError(done.stdout[-3000:] + done.stderr[-3000:])


def _wait_for_job(address: str, job_id: str, timeout: float = 600) -> tuple[JobStatus, str]:
    """The job's final status and its logs (the driver's console), asked again where a request is dropped."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            client = JobSubmissionClient(address)
            status = client.get_job_status(job_id)
            if status.is_terminal():
                return status, client.get_job_logs(job_id)
        except (requests.exceptions.RequestException, ConnectionError):
            pass
        time.sleep(2)
    raise AssertionError(f"job {job_id} did not end within {timeout:.0f} s")

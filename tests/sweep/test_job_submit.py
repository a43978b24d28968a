"""``ray job submit --working-dir . -- busray sweep sweeps/smoke.yaml`` against a local head (127.0.0.1).

The head is started the way the README shows (with trial-slot resources); the job runs the shipped smoke
sweep, shrunk by ``--set`` overrides to two short trials one after the other, and must leave two rows in
the store.
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

from busray.results import ResultsStore

pytestmark = [pytest.mark.ray, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# What `ray job submit` prints when the job never reached the head, so submitting again is safe: the
# head's job agent registers a few seconds after its dashboard first answers, and on a loaded 2-core
# machine the dashboard has reset the client's first connection (once in a fresh-clone CI run).
NOT_SUBMITTED_YET = ("No available agent", "Failed to connect to Ray at address")


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
    submit = [str(BIN / "ray"), "job", "submit", "--address", address, "--working-dir", str(REPO), "--",
              "python", "-m", "busray", "sweep", "sweeps/smoke.yaml", "--storage", str(storage),
              "--no-progress", *shrink]
    for _ in range(20):
        done = subprocess.run(submit, env=env, capture_output=True, text=True, timeout=600)
        if not any(note in done.stderr for note in NOT_SUBMITTED_YET):
            break
        time.sleep(2)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "succeeded" in done.stdout.lower()
    runs = ResultsStore(storage).runs(sweep="smoke")
    assert len(runs) == 2 and (runs["status"] == "completed").all(), runs[["status", "error"]]
    assert "best trials" in done.stdout

"""Fault injection through the real console script: ``kill -9`` of ``busray train``, then ``--resume``;
and SIGTERM, which stops it like Ctrl-C.

The killed run keeps its folder (it has a checkpoint; ``metrics.json`` still says ``running``), and
``busray train --resume --out RUN`` -- with no ``--config`` -- continues it with the saved config, which
it must not rewrite.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tinyrun import tiny

BUSRAY = Path(sys.executable).with_name("busray")


@pytest.mark.slow
def test_kill_9_then_resume_as_saved(tmp_path):
    run = tmp_path / "run"
    sets = [a for o in tiny("train.epochs=3") for a in ("--set", o)]
    proc = subprocess.Popen([str(BUSRAY), "train", *sets, "--out", str(run)], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while not (run / "checkpoints" / "last.pt").is_file() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, proc.stderr.read().decode()
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert json.loads((run / "metrics.json").read_text())["status"] == "running"
    saved = (run / "config.yaml").read_bytes()

    resumed = subprocess.run([str(BUSRAY), "train", "--resume", "--out", str(run)], cwd=tmp_path,
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    outcome = json.loads((run / "metrics.json").read_text())
    assert outcome["status"] == "completed" and outcome["epochs_run"] == 3
    assert (run / "config.yaml").read_bytes() == saved
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    assert not [p for p in run.rglob(".*") if p.name.endswith(".tmp")]   # no temp file left


@pytest.mark.slow
def test_sigterm_stops_train_cleanly_and_says_how_to_resume(tmp_path):
    """SIGTERM (``timeout``, a scheduler) is a Ctrl-C: the folder says interrupted, exit 143, the hint."""
    run = tmp_path / "run"
    sets = [a for o in tiny("train.epochs=20") for a in ("--set", o)]
    proc = subprocess.Popen([str(BUSRAY), "train", *sets, "--out", str(run)], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not (run / "checkpoints" / "last.pt").is_file() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, proc.stderr.read()
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == 143, err
    assert err.splitlines()[-2:] == [
        f"interrupted; the run keeps its last checkpoint: busray train --out {run} --resume continues it",
        "busray: terminated (SIGTERM)"]
    outcome = json.loads((run / "metrics.json").read_text())
    assert (outcome["status"], outcome["error"]) == ("failed", "interrupted") and 1 <= outcome["epochs_run"] < 20

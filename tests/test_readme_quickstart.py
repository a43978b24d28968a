"""The README's quick start trains as written on a machine with no network: its step-3 command, run on a
small synthetic dataset in BUSI's layout, shortened by --set (not changed)."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from busray.data.synth import synthesize

ROOT = Path(__file__).resolve().parents[1]


def _step3() -> list[str]:
    text = (ROOT / "README.md").read_text()
    step = text[text.index("3. **Train once**"):text.index("4. **Sweep**")]
    [command] = re.findall(r"^\s*(busray train .+)$", step, re.M)
    return shlex.split(command)


@pytest.mark.slow
def test_the_quick_start_trains_offline(tmp_path):
    argv = _step3()
    assert argv[:4] == ["busray", "train", "--config", "configs/cpu_lite0.yaml"]
    data = synthesize(tmp_path / "my_data", n=24, size=64, seed=1)
    argv = [a.replace("my_data", str(data)).replace("runs/first", str(tmp_path / "runs" / "first")) for a in argv]
    shorter = ["--set", "train.epochs=1", "--set", "data.image_size=64", "--set", "train.steps_per_epoch=2",
               "--set", "train.progress=false"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}  # no hub: the weights came with pip
    out = subprocess.run([sys.executable, "-m", "busray", *argv[1:], *shorter], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    outcome = json.loads((tmp_path / "runs" / "first" / "metrics.json").read_text())
    assert outcome["status"] == "completed"

"""The benchmarks run in tiny form, so they cannot rot (figures are printed, never asserted on timing)."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
from pathlib import Path

import pytest
import ray

pytestmark = [pytest.mark.ray, pytest.mark.slow]
BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sweep_overhead_tiny(local_ray, tmp_path, capsys, monkeypatch):
    # (b) connects to the session's Ray like a driver of a running cluster, instead of starting its own
    monkeypatch.setenv("RAY_ADDRESS", ray.get_runtime_context().gcs_address)
    out = tmp_path / "overhead.json"
    assert _load("sweep_overhead").main(["--trials", "2", "--epochs", "1", "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    for key in ("optuna_loop_s", "busray_sweep_s", "busray_train_s", "sweep_over_loop",
                "ray_cost_per_extra_trial_s", "fit_in_trial_over_train", "pacing_ratio", "fit_share_of_slot_s"):
        assert math.isfinite(figures[key]) and figures[key] >= 0, key
    assert 0 < figures["fit_share_of_slot_s"] <= 1
    assert "(b)/(a)" in capsys.readouterr().out


def test_gpu_suite_tiny(local_ray, tmp_path, capsys):
    out = tmp_path / "gpu.json"
    assert _load("gpu_suite").main(["--tiny", "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert figures["throughput"]["fp32"] > 0 and figures["throughput"]["bf16+channels_last"] > 0
    assert figures["one_trial_s"] is None and figures["packed_trials_per_h"] > 0  # --tiny: no long trial
    assert figures["stacking"]["k"] == 2 and figures["stacking"]["stacked_img_s"] > 0
    assert figures["stacking"]["amp"] in ("bf16", "off")  # CPU: vmap refuses bf16 batch norm, fp32 is used
    table = capsys.readouterr().out
    assert "| train img/s, fp32 |" in table and "trials packed" in table and "stacked (vmap)" in table


@pytest.mark.parametrize("argv, message", [
    (["--sections", "throughput,warp"], "--sections: unknown warp"),
    (["--sections", "trials", "--data", "/nonexistent/busi"], "--data: BUSI not found at /nonexistent/busi"),
])
def test_gpu_suite_refuses_bad_arguments_in_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _load("gpu_suite").main(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_gpu_session_script_parses_and_refuses_an_unknown_step(tmp_path):
    script = BENCHMARKS / "gpu_session.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    done = subprocess.run(["bash", str(script), "warmup"], capture_output=True, text=True,
                          env={**os.environ, "OUT": str(tmp_path)})
    assert done.returncode == 2 and "unknown step 'warmup' (prepare|install|trials|table2)" in done.stderr

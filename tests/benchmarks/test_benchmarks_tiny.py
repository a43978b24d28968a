"""The benchmarks run in tiny form, so they cannot rot (figures are printed, never asserted on timing)."""

from __future__ import annotations

import json
import math
import os

import pytest
import ray
from benchhelpers import load_benchmark

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def test_sweep_overhead_tiny(local_ray, tmp_path, capsys, monkeypatch):
    # (b) connects to the session's Ray like a driver of a running cluster, instead of starting its own
    monkeypatch.setenv("RAY_ADDRESS", ray.get_runtime_context().gcs_address)
    out = tmp_path / "overhead.json"
    assert load_benchmark("sweep_overhead").main(["--trials", "2", "--epochs", "1", "--images", "48",
                                                         "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    for key in ("optuna_loop_s", "busray_sweep_s", "busray_train_s", "sweep_over_loop",
                "ray_cost_per_extra_trial_s", "fit_in_trial_over_train", "pacing_ratio", "fit_share_of_slot_s"):
        assert math.isfinite(figures[key]) and figures[key] >= 0, key
    assert 0 < figures["fit_share_of_slot_s"] <= 1
    assert "(b)/(a)" in capsys.readouterr().out


def test_gpu_suite_trials_tiny(local_ray, tmp_path, capsys):
    # the sections without Ray (throughput, stacking) run in test_gpu_suite_tiny.py, beside this worker
    out = tmp_path / "gpu.json"
    assert load_benchmark("gpu_suite").main(["--tiny", "--sections", "trials", "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert figures["one_trial_s"] is None and figures["packed_trials_per_h"] > 0  # --tiny: no long trial
    assert figures["sequential_trials_per_h"] > 0 and "throughput" not in figures
    table = capsys.readouterr().out
    assert "trials packed" in table and "not run (--tiny)" in table and "train img/s" not in table


def test_sweep_memory_tiny(local_ray, tmp_path, capsys):
    # on the session's Ray: the trial actor's RSS is read from its own process after each trial
    out = tmp_path / "memory.json"
    assert load_benchmark("sweep_memory").main(["--tiny", "--trials", "3", "--epochs", "1",
                                                        "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    trials = figures["trials"]
    assert len(trials) == 3 and figures["actors"] == 1  # one reused actor ran them all
    assert all(t["pid"] not in (None, os.getpid()) and t["rss_after_mib"] > 0 and t["peak_mib"] > 0
               for t in trials)  # sampled in the trial actor's process, not in the driver
    assert math.isfinite(figures["growth_after_mib_per_trial"])
    assert "growth per extra trial" in capsys.readouterr().out

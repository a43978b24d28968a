"""Trial keys, run-row assembly and row validation."""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

import busray.results
from busray.results import ResultsError, build_run_row, fit_fields, trial_key
from busray.results.schema import SCHEMA_VERSION, order_columns

REPO_ROOT = Path(busray.results.__file__).resolve().parents[2]
CONFIG = {"model": {"tau": 0.5, "levels": [1, 2]}, "loss": {"w_seg": 0.6}}


@pytest.mark.parametrize("other, seed, same", [
    ({"model.tau": 0.5, "model.levels": [1, 2], "loss.w_seg": 0.6}, 0, True),   # flat form
    ({"loss": {"w_seg": 0.6}, "model": {"levels": (1, 2), "tau": 0.5}}, 0, True),  # order, tuple
    (CONFIG, 1, False),                                                           # other seed
    ({"model": {"tau": 0.51, "levels": [1, 2]}, "loss": {"w_seg": 0.6}}, 0, False),
    ({"model": {"tau": 0.5, "levels": [2, 1]}, "loss": {"w_seg": 0.6}}, 0, False),
])
def test_trial_key_depends_on_config_and_seed_only(other, seed, same):
    assert (trial_key(other, seed) == trial_key(CONFIG, 0)) is same
    assert re.fullmatch(r"[0-9a-f]{16}", trial_key(CONFIG, 0))


def test_trial_key_is_stable_across_processes():
    code = ("from busray.results import trial_key; "
            "print(trial_key({'model': {'tau': 0.5, 'levels': [1, 2]}, "
            "'loss': {'w_seg': 0.6}}, 0))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONHASHSEED": "123", "PYTHONPATH": str(REPO_ROOT)})
    assert out.stdout.strip() == trial_key(CONFIG, 0)


def test_build_run_row_flattens_config_and_prefixes_metrics():
    row = build_run_row(sweep="s", sweep_id="s-1", trial_id=7, config=CONFIG, seed=3,
                        status="completed", best_epoch=4, val={"seg/iou": 0.7},
                        test={"test/clf/acc": 0.9}, wall_time_s=90.0, device="cpu",
                        run_dir="/tmp/run", objective="val/seg/iou:max",
                        finished_at="2025-01-01T10:00:00+00:00")
    assert row["trial_id"] == "7"
    assert row["model.tau"] == 0.5 and row["model.levels"] == [1, 2]
    assert row["val/seg/iou"] == 0.7 and row["test/clf/acc"] == 0.9
    assert row["trial_key"] == trial_key(CONFIG, 3)
    assert row["started_at"] == "2025-01-01T09:58:30+00:00"
    assert row["schema_version"] == SCHEMA_VERSION
    assert isinstance(row["busray_version"], str) and row["busray_version"]
    assert row["git_rev"] is None or re.fullmatch(r"[0-9a-f]{40}", row["git_rev"])


def test_build_run_row_defaults_finish_time_to_now_utc():
    row = build_run_row(sweep="s", sweep_id="s-1", trial_id="a", config={}, seed=None,
                        status="failed", error="loss is NaN")
    finished = dt.datetime.fromisoformat(row["finished_at"])
    assert finished.tzinfo is not None
    assert abs((dt.datetime.now(dt.timezone.utc) - finished).total_seconds()) < 60
    assert row["started_at"] is None and row["error"] == "loss is NaN"


@pytest.mark.parametrize("changes, message", [
    ({"status": "done"}, "status 'done' is not one of"),
    ({"sweep_id": ""}, "required column 'sweep_id'"),
])
def test_build_run_row_rejects_bad_rows(changes, message):
    kwargs = dict(sweep="s", sweep_id="s-1", trial_id="a", config={}, seed=0,
                  status="completed")
    with pytest.raises(ResultsError, match=message):
        build_run_row(**{**kwargs, **changes})


@pytest.mark.parametrize("source", [
    SimpleNamespace(status="stopped_early", error=None, best_epoch=2, best_val={"seg/iou": 0.4},
                    test={}, run_dir="/r", wall_time_s=3.0, device="cuda:0"),
    {"status": "stopped_early", "error": None, "best_epoch": 2, "val": {"seg/iou": 0.4},
     "test": {}, "run_dir": "/r", "wall_time_s": 3.0, "device": "cuda:0"},
])
def test_fit_fields_reads_fit_results_and_metrics_json(source):
    fields = fit_fields(source)
    assert fields == {"status": "stopped_early", "error": None, "best_epoch": 2,
                      "val": {"seg/iou": 0.4}, "test": {}, "run_dir": "/r",
                      "wall_time_s": 3.0, "device": "cuda:0"}
    row = build_run_row(sweep="s", sweep_id="s-1", trial_id="a", config={}, seed=0, **fields)
    assert row["val/seg/iou"] == 0.4 and row["status"] == "stopped_early"


def test_order_columns_puts_config_between_fixed_and_metrics():
    columns = ["val/seg/iou", "schema_version", "model.tau", "status", "sweep", "test/clf/acc",
               "loss.w_seg"]
    assert order_columns(columns) == ["sweep", "status", "loss.w_seg", "model.tau",
                                      "test/clf/acc", "val/seg/iou", "schema_version"]

"""The declared schema, trial keys, and ``run_row`` (identity, config, outcome) -> store row."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

import busray.results
from busray.config import Config, config_keys, config_to_dict
from busray.configtools import flatten
from busray.results import (
    EPOCH_SCHEMA, RUN_SCHEMA, SCHEMA_VERSION, RunIdentity, run_row, trial_key)
from busray.objective import EVAL_KEYS, LOSS_TERMS, METRIC_KEYS
from busray.results.columns import CONFIG_COLUMNS, arrow_type, config_column_types
from busray.results.schema import in_store_order
from busray.runfolder import RunOutcome

REPO_ROOT = Path(busray.results.__file__).resolve().parents[2]
CONFIG = {"model": {"tau": 0.5, "tim_levels": [1, 2]}, "loss": {"w_seg": 0.6}}

# Version 2's fixed columns: a later version may add columns, never rename, retype or drop these.
V2_FIXED = {
    "sweep": "string", "sweep_id": "string", "trial_id": "string", "trial_key": "string",
    "variant": "string", "seed": "int64", "status": "string", "error": "string",
    "objective": "string", "dataset": "string", "split_hash": "string", "best_epoch": "int64",
    "epochs_run": "int64", "early_stopped": "bool", "wall_time_s": "double", "device": "string",
    "busray_version": "string", "git_rev": "string", "started_at": "timestamp[us, tz=UTC]",
    "finished_at": "timestamp[us, tz=UTC]", "run_dir": "string", "extra": "string",
    "schema_version": "int64",
}


@pytest.mark.parametrize("other, seed, same", [
    ({"model.tau": 0.5, "model.tim_levels": [1, 2], "loss.w_seg": 0.6}, 0, True),   # flat form
    ({"loss": {"w_seg": 0.6}, "model": {"tim_levels": (1, 2), "tau": 0.5}}, 0, True),  # tuple
    (CONFIG, 1, False),                                                               # other seed
    ({"model": {"tau": 0.51, "tim_levels": [1, 2]}, "loss": {"w_seg": 0.6}}, 0, False),
    ({"model": {"tau": 0.5, "tim_levels": [2, 1]}, "loss": {"w_seg": 0.6}}, 0, False),
])
def test_trial_key_depends_on_config_and_seed_only(other, seed, same):
    assert (trial_key(other, seed) == trial_key(CONFIG, 0)) is same
    assert re.fullmatch(r"[0-9a-f]{16}", trial_key(CONFIG, 0))


def test_trial_key_is_stable_across_processes():
    code = ("from busray.results import trial_key; "
            "print(trial_key({'model': {'tau': 0.5, 'tim_levels': [1, 2]}, "
            "'loss': {'w_seg': 0.6}}, 0))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONHASHSEED": "123", "PYTHONPATH": str(REPO_ROOT)})
    assert out.stdout.strip() == trial_key(CONFIG, 0)


def test_every_config_key_is_a_typed_column():
    types = config_column_types()
    assert [k for k, _, _ in config_keys()] == list(types)
    assert set(types) <= set(CONFIG_COLUMNS) <= set(RUN_SCHEMA.names)
    assert {"resources.workers", "resources.cpus_per_worker"} <= set(CONFIG_COLUMNS)
    expected = {"model.tau": pa.float64(), "model.hmsf": pa.bool_(), "model.in_chans": pa.int64(),
                "model.tim_levels": pa.list_(pa.int64()), "data.root": pa.string(),
                "loss.class_weights": pa.list_(pa.float64()), "data.classes": pa.list_(pa.string())}
    assert {k: RUN_SCHEMA.field(k).type for k in expected} == expected


def test_a_config_type_without_a_column_type_is_refused():
    with pytest.raises(TypeError, match="model.odd: config type"):
        arrow_type(dict[str, int], "model.odd")


def test_declared_metrics_are_the_ones_training_reports():
    from busray.losses import LOSS_KEYS
    from busray.metrics import METRIC_KEYS as TRAINING_METRICS

    assert set(METRIC_KEYS) == set(TRAINING_METRICS) and LOSS_TERMS == LOSS_KEYS
    for split in ("val", "test"):
        assert {f"{split}/{k}" for k in EVAL_KEYS} <= set(RUN_SCHEMA.names)
    assert {"epoch", "lr", "train/loss", "val/score", "val/seg/iou_pooled",
            "time/epoch_s"} <= set(EPOCH_SCHEMA.names)


def test_version_2_columns_are_kept_with_their_types():
    current = {f.name: str(f.type) for f in RUN_SCHEMA}
    assert {k: current.get(k) for k in V2_FIXED} == V2_FIXED
    assert all(current[f"{s}/{k}"] == "double" for s in ("val", "test") for k in EVAL_KEYS)
    assert RUN_SCHEMA.names[-2:] == ["extra", "schema_version"] and SCHEMA_VERSION >= 2


def test_run_row_holds_every_column_of_the_full_config_in_order():
    config = config_to_dict(Config())
    outcome = RunOutcome(status="completed", best_epoch=4, epochs_run=5, wall_time_s=90.0,
                         val={"seg/iou": 0.7, "score": 0.75}, test={"clf/acc": 0.9},
                         device="cpu", dataset="busi", split_hash="abc", run_dir="/tmp/run",
                         started_at="2025-01-01T09:58:30+00:00",
                         finished_at="2025-01-01T10:00:00+00:00")
    row = run_row(RunIdentity("s", "s-1", "7", seed=3, objective="val/score:max"), config, outcome)
    assert list(row) == RUN_SCHEMA.names
    flat = flatten(config)
    assert {k: row[k] for k in flat} == flat
    assert row["val/seg/iou"] == 0.7 and row["val/score"] == 0.75 and row["test/clf/acc"] == 0.9
    assert row["val/clf/acc"] is None and row["extra"] is None
    assert row["trial_key"] == trial_key(config, 3) and row["best_epoch"] == 4
    assert row["schema_version"] == SCHEMA_VERSION and row["objective"] == "val/score:max"
    assert row["git_rev"] is None or re.fullmatch(r"[0-9a-f]{40}", row["git_rev"])


@pytest.mark.parametrize("outcome, column, value", [
    (RunOutcome(status="failed", error="loss is NaN"), "best_epoch", None),   # no epoch: null
    (RunOutcome(status="failed", error="x"), "dataset", None),                # "" -> null
    (RunOutcome(status="completed", val={"seg/iou": float("nan")}), "val/seg/iou", None),
    (RunOutcome(status="stopped_early", best_epoch=2), "best_epoch", 2),
])
def test_run_row_values(outcome, column, value):
    assert run_row(RunIdentity("s", "s-1", "a"), {}, outcome)[column] == value


def test_unknown_keys_go_to_extra_as_json():
    outcome = RunOutcome(status="completed", val={"seg/hd95": 4.5})
    row = run_row(RunIdentity("s", "s-1", "a"), {"model": {"tau": 0.5}, "custom": {"k": 1}},
                  outcome)
    assert json.loads(row["extra"]) == {"custom.k": 1, "val/seg/hd95": 4.5}
    assert row["model.tau"] == 0.5 and "custom.k" not in row


def test_finish_time_defaults_to_now_utc():
    row = run_row(RunIdentity("s", "s-1", "a"), {}, RunOutcome(status="failed"))
    finished = dt.datetime.fromisoformat(row["finished_at"])
    assert abs((dt.datetime.now(dt.timezone.utc) - finished).total_seconds()) < 60


@pytest.mark.parametrize("keys, ordered", [
    (["loss.w_seg", "model.tau", "train.lr"], ["model.tau", "loss.w_seg", "train.lr"]),   # the smoke sweep's space
    (["resources.workers", "train.lr", "model.upa_norm"], ["model.upa_norm", "train.lr", "resources.workers"]),
    (["model.not_declared", "loss.w_seg"], ["loss.w_seg", "model.not_declared"]),       # undeclared keys last
])
def test_keys_in_the_order_of_the_stores_columns(keys, ordered):
    assert in_store_order(keys) == ordered

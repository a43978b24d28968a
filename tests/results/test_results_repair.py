"""Rows an older busray recorded without their whole config (a sweep's driver rebuilt it from the base
and the drawn values) are completed by compaction from each run's config.yaml."""

from __future__ import annotations

import pandas as pd

from busray.cli import main
from busray.config import Config, config_to_dict, save_config
from busray.configtools import flatten
from busray.results import trial_key
from busray.results.columns import always_set_columns


def _old_sweep_row(make_row, store, run_dir, trial_id="a1"):
    """What the old driver recorded: the base and the drawn values only (plus resources)."""
    partial = {"model": {"encoder": "test_efficientnet", "tau": 0.42}, "loss": {"w_seg": 0.6, "w_clf": 0.4},
               "train": {"seed": 0, "monitor": "val/score", "monitor_mode": "max"},
               "resources": {"workers": 1, "cpus_per_worker": 1.0, "gpus_per_worker": 0.0}}
    row = make_row(trial_id=trial_id, config=partial, run_dir=str(run_dir) if run_dir else None)
    store.record_run(row)
    return row


def test_compaction_fills_an_old_rows_config_from_its_config_yaml(tmp_path, store, make_row, capsys):
    cfg = Config()
    cfg.model.encoder, cfg.model.tau, cfg.loss.w_seg, cfg.loss.w_clf = "test_efficientnet", 0.42, 0.6, 0.4
    run_dir = tmp_path / "runs" / "a1"
    run_dir.mkdir(parents=True)
    save_config(cfg, run_dir / "config.yaml")
    old = _old_sweep_row(make_row, store, run_dir)
    _old_sweep_row(make_row, store, None, trial_id="gone")  # its folder is gone: left as it is
    before = store.runs().set_index("trial_id")
    assert before.loc["a1", ["model.upa", "model.hmsf", "train.lr_min"]].isna().all()  # the bug it repairs
    assert main(["results", "compact", "--storage", str(store.root.parent)]) == 0
    assert "1 run row(s) completed from their config.yaml" in capsys.readouterr().out
    after = store.runs().set_index("trial_id")
    row, config = after.loc["a1"], flatten(config_to_dict(cfg))
    assert not row[list(always_set_columns())].isna().any()
    assert (row["model.upa"], row["model.tau"], row["train.lr_min"]) == (True, 0.42, config["train.lr_min"])
    resources = {"resources.workers": 1, "resources.cpus_per_worker": 1.0, "resources.gpus_per_worker": 0.0}
    assert row["trial_key"] == trial_key({**config, **resources}, 0) != old["trial_key"]
    assert pd.isna(after.loc["gone", "model.upa"])
    assert main(["results", "compact", "--storage", str(store.root.parent)]) == 0  # nothing more to repair
    assert "completed from their config.yaml" not in capsys.readouterr().out


def test_the_first_write_to_a_store_of_an_older_busray_repairs_it(tmp_path, store, make_row):
    """A sweep that goes on in an older store (--add-trials) shows its old trials whole at once."""
    from busray.results.columns import EPOCH_SCHEMA, RUN_SCHEMA, fingerprint
    from busray.results.layout import write_marker

    cfg = Config()
    run_dir = tmp_path / "runs" / "a1"
    run_dir.mkdir(parents=True)
    save_config(cfg, run_dir / "config.yaml")
    _old_sweep_row(make_row, store, run_dir)
    write_marker(store.root, fingerprint(RUN_SCHEMA) + fingerprint(EPOCH_SCHEMA))  # what an older busray wrote
    store.record_run(make_row(trial_id="new", config=config_to_dict(cfg)))
    runs = store.runs().set_index("trial_id")
    assert not runs.loc["a1", list(always_set_columns())].isna().any()

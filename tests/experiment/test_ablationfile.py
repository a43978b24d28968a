"""Ablation files: the grammar a sweep file has (objective in both forms), run settings outside ``base``
named as ``base.`` keys; an existing ablation needs ``--resume`` (no Ray is started to find that out)."""

from __future__ import annotations

import re

import pytest
import yaml

from busray.ablation import run_ablation
from busray.configtools import ConfigError
from busray.experiment import load_ablation_spec, open_sweep
from tinyrun import round_saved_by_tune

SPEC = {"kind": "ablation", "name": "mini", "base": {"train": {"epochs": 2}},
        "variants": {"baseline": {"model.hmsf": False}, "full": {}}}


@pytest.fixture
def spec_file(tmp_path):
    path = tmp_path / "mini.yaml"
    path.write_text(yaml.safe_dump(SPEC))
    return path


@pytest.mark.parametrize("override, hint", [
    ("train.epochs=1", "'train.epochs': run settings go under 'base', e.g. --set base.train.epochs=1"),
    ("model.hmsf=false", "e.g. --set base.model.hmsf=false"),
    ("data.split_fractions=[0.8,0.1,0.1]", "e.g. --set base.data.split_fractions=[0.8, 0.1, 0.1]"),
    ("loss.w_seg=0.3", "e.g. --set base.loss.w_seg=0.3"),
    ("trian.epochs=1", "unknown config key 'trian' (known: base, baseline"),
])
def test_misplaced_run_key_names_the_base_key(spec_file, override, hint):
    with pytest.raises(ConfigError) as err:
        load_ablation_spec(spec_file, [override])
    assert str(err.value).startswith(f"--set {override}: unknown config key")  # named after the --set
    assert hint in str(err.value)


def test_run_settings_at_the_top_of_the_file_name_base_too(tmp_path):
    path = tmp_path / "flat.yaml"
    path.write_text(yaml.safe_dump({**SPEC, "train": {"epochs": 3}}))
    with pytest.raises(ConfigError, match=r"e\.g\. --set base\.train\.epochs=3"):
        load_ablation_spec(path)


@pytest.mark.parametrize("override, message", [
    # a mistake in base is named there, not in the first variant that inherits it
    ("base.modle.tau=1", "base: unknown config key 'modle'; did you mean 'model'?"),
    ("base.model.tau=9", "base.model.tau: 9.0 is outside"),
    ("variants.full.model.tua=1", "variants.full: unknown config key 'model.tua'; did you mean 'model.tau'?"),
])
def test_a_bad_run_key_names_where_it_is(spec_file, override, message):
    with pytest.raises(ConfigError) as err:
        load_ablation_spec(spec_file, [override])
    assert str(err.value).startswith(f"--set {override}: {message}")


def test_base_key_override_applies(spec_file):
    spec = load_ablation_spec(spec_file, ["base.train.epochs=1"])
    assert spec.base["train"]["epochs"] == 1


def test_existing_ablation_needs_resume(spec_file, tmp_path):
    storage = tmp_path / "store"
    state = open_sweep(storage, "mini", resume=False, add_trials=None, kind="ablation")
    state.new_round()
    round_saved_by_tune(state)  # it ran
    with pytest.raises(ConfigError, match="ablation 'mini' already exists in .*: use resume=True to finish it, "
                                          "or another storage=$"):  # Python words (the CLI: --resume, --storage)
        run_ablation(spec_file, storage=str(storage), progress=False)


@pytest.mark.parametrize("objective, label", [
    ("val/seg/iou:max", "val/seg/iou:max"),
    ({"metrics": ["val/seg/iou", "val/clf/acc"], "modes": ["max", "max"]}, "val/seg/iou:max,val/clf/acc:max"),
    ({"metrics": "val/loss"}, "val/loss:min"),
])
def test_an_ablation_takes_the_objective_a_sweep_takes(tmp_path, objective, label):
    path = tmp_path / "obj.yaml"
    path.write_text(yaml.safe_dump({**SPEC, "objective": objective}))
    spec = load_ablation_spec(path)
    assert spec.objective.label() == label
    assert all(r.config["train"]["monitor"] == spec.objective.metric for r in spec.requests())


@pytest.mark.parametrize("override, message", [
    ("objective={metrics: [test/seg/iou]}", "objective.metrics: 'test/seg/iou' is not a val/<metric> key"),
    ("objective.colour=1", "objective.colour: unknown key"),
    ("base.train.monitor=val/loss", "base.train.monitor: 'val/loss' disagrees with objective"),
])
def test_objective_mistakes_read_as_in_a_sweep(spec_file, override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_ablation_spec(spec_file, [override])

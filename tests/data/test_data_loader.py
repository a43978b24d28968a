"""Decoded-tensor cache: reused when current, rebuilt when files or settings change, kept in the
user cache folder and never written into a dataset folder unless ``data.cache_dir`` says so."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import busray.data.loader as loader
from busray.configtools import ConfigError, from_dict
from busray.data import DataConfig, load_dataset
from databuild import build_busi, lesion_pair, make_cfg, write_png


def _no_decoding(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("decoded although a current cache exists")
    monkeypatch.setattr(loader, "decode_records", fail)


def test_cache_is_written_then_reused(tmp_path, monkeypatch):
    root = build_busi(tmp_path / "ds")
    cfg = make_cfg(cache=True, cache_dir=str(tmp_path / "cache"))
    first = load_dataset(cfg, root)
    assert len(list((tmp_path / "cache").glob("decoded-*.npz"))) == 1
    _no_decoding(monkeypatch)
    second = load_dataset(cfg, root)
    assert torch.equal(first.images, second.images) and torch.equal(first.masks, second.masks)
    assert first.names == second.names and torch.equal(first.labels, second.labels)
    assert np.array_equal(first.hashes, second.hashes) and first.hashes.shape == (6, 64)


@pytest.mark.parametrize("change", ["file", "size", "mode"])
def test_cache_key_follows_files_and_settings(tmp_path, change):
    root = build_busi(tmp_path / "ds")
    cfg = make_cfg(cache=True, cache_dir=str(tmp_path / "cache"))
    load_dataset(cfg, root)
    if change == "file":
        write_png(root / "benign" / "benign (1).png", lesion_pair(41, 50, value=10)[0])
    else:
        cfg = make_cfg(cache=True, cache_dir=str(tmp_path / "cache"),
                       **({"image_size": 32} if change == "size" else {"resize_mode": "stretch"}))
    ds = load_dataset(cfg, root)
    assert len(list((tmp_path / "cache").glob("decoded-*.npz"))) == 2
    if change == "file":
        assert ds.images[ds.names.index("benign/benign (1).png")].min() <= 12


def _tree(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize("read_only", [False, True])
def test_default_cache_is_the_user_cache_not_the_dataset(tmp_path, monkeypatch, read_only):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user"))
    root = build_busi(tmp_path / "ds")
    before = _tree(root)
    if read_only:
        root.chmod(0o555)                      # as the shared dataset is (even for root)
    try:
        load_dataset(make_cfg(cache=True), root)
        _no_decoding(monkeypatch)
        assert len(load_dataset(make_cfg(cache=True), root)) == 6
    finally:
        root.chmod(0o755)
    assert _tree(root) == before               # nothing written into the dataset folder
    assert len(list((tmp_path / "user" / "busray").glob("decoded-*.npz"))) == 1


def test_cache_dir_inside_the_dataset_when_asked(tmp_path):
    root = build_busi(tmp_path / "ds")
    cfg = make_cfg(cache=True, cache_dir=str(root / ".cache"))
    load_dataset(cfg, root)
    assert len(list((root / ".cache").glob("decoded-*.npz"))) == 1
    assert len(load_dataset(cfg, root)) == 6     # the cache folder is not read as data


def test_unwritable_cache_folder_warns_and_still_loads(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    ds = load_dataset(make_cfg(cache=True, cache_dir=str(blocker / "cache")), build_busi(tmp_path / "ds"))
    assert len(ds) == 6
    assert "cannot write the decoded-image cache" in caplog.text


def test_corrupt_cache_is_ignored(tmp_path):
    root = build_busi(tmp_path / "ds")
    cfg = make_cfg(cache=True, cache_dir=str(tmp_path / "cache"))
    good = load_dataset(cfg, root)
    cached = next((tmp_path / "cache").glob("decoded-*.npz"))
    cached.write_bytes(b"garbage")
    again = load_dataset(cfg, root)
    assert torch.equal(good.images, again.images)
    with np.load(cached) as data:                  # rewritten with valid content
        assert data["images"].shape == (6, 1, 64, 64)


@pytest.mark.parametrize("data,message", [
    ({"split_fractions": [0.7, 0.2, 0.2]}, "data.split_fractions: [0.7, 0.2, 0.2] must sum to 1"),
    ({"split_fractions": [0.5, 0.5]}, "data.split_fractions: expected 3 values"),
    ({"split_fractions": [0.0, 0.5, 0.5]}, "data.split_fractions: the train fraction"),
    ({"resize_mode": "crop"}, "data.resize_mode: 'crop' is not one of"),
    ({"image_size": 8}, "data.image_size: 8 is outside"),
    ({"augment": {"rotation_deg": 200}}, "data.augment.rotation_deg: 200.0 is outside"),
    ({"augment": {"shear": 1}}, "unknown config key 'data.augment.shear'"),
    ({"classes": ["a", "a"]}, "data.classes:"),
    ({"near_duplicate_threshold": 40}, "data.near_duplicate_threshold: 40 is outside"),
])
def test_bad_config_names_the_key(data, message):
    with pytest.raises(ConfigError) as err:
        from_dict(DataConfig, data, "data.")
    assert message in str(err.value)


def test_defaults_follow_the_paper():
    cfg = DataConfig()
    assert cfg.image_size == 224 and cfg.split_fractions == [0.7, 0.15, 0.15]
    assert cfg.keep_near_duplicates_together and cfg.augment.enabled

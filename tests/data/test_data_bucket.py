"""A dataset in a bucket (``data.root: s3://...``, a real S3 server): each machine stages it into its own
cache once and decodes the same images as from the folder."""

from __future__ import annotations

import shutil

import pytest
import torch

from busray.config import resolve_run_paths
from busray.configtools import ConfigError
from busray.data import load_dataset
from busray.data.config import DataConfig
from busray.data.synth import synthesize
from busray.storage import Storage


def test_a_bucket_dataset_loads_as_its_folder_does(s3, tmp_path, monkeypatch):
    folder = synthesize(tmp_path / "busi", n=12, size=64, seed=3)
    uri = f"{s3}/Dataset_BUSI_with_GT"
    bucket = Storage.at(uri)
    shutil.copytree(folder, bucket.local)
    bucket.push()
    monkeypatch.setenv("BUSRAY_STORAGE_CACHE", str(tmp_path / "node-b"))  # a trial's node: nothing staged yet
    cfg = DataConfig(root=uri, image_size=64, cache=False, detect_near_duplicates=False)
    here, there = load_dataset(DataConfig(root=str(folder), image_size=64, cache=False,
                                          detect_near_duplicates=False)), load_dataset(cfg)
    assert there.names == here.names and torch.equal(there.images, here.images)
    assert there.root.startswith(str(tmp_path / "node-b"))


def test_a_missing_bucket_dataset_is_refused_before_ray_starts(s3):
    with pytest.raises(ConfigError, match=rf"^base.data.root: dataset folder or manifest not found: {s3}/nope$"):
        resolve_run_paths({"data": {"root": f"{s3}/nope"}}, "base.")

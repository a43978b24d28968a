"""Stratified, seeded, near-duplicate-aware splits; split.json round trip; k folds."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from busray.configtools import ConfigError
from busray.data import DataError, ImageSet, Split, kfold_splits, load_split, make_split
from busray.data.dedup import hamming_matrix, phash
from databuild import make_cfg

COUNTS = (30, 40, 20)                       # normal, benign, malignant


def _patterns(n: int, seed: int) -> torch.Tensor:
    """``n`` distinct smooth random images, uint8 (n, 1, 32, 32)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 1, 6, 6, generator=g)
    return (F.interpolate(coarse, size=32, mode="bicubic", align_corners=False)
            .clamp(0, 1) * 255).to(torch.uint8)


def _dataset(images: torch.Tensor, labels: list[int]) -> ImageSet:
    n = len(labels)
    return ImageSet(images=images, masks=torch.zeros_like(images),
                    labels=torch.tensor(labels, dtype=torch.int64),
                    names=[f"img_{i:03d}.png" for i in range(n)],
                    class_names=("normal", "benign", "malignant"), source="test", root="mem")


@pytest.fixture(scope="module")
def plain():
    labels = [c for c, n in enumerate(COUNTS) for _ in range(n)]
    return _dataset(_patterns(len(labels), 0), labels)


PLANTED = [[3, 50], [10, 11, 12], [40, 41], [60, 85], [5, 45]]   # the last mixes two classes


@pytest.fixture(scope="module")
def with_copies(plain):
    """``plain`` with planted near-duplicate groups: exact copies and copies with noise."""
    images = plain.images.clone()
    g = torch.Generator().manual_seed(1)
    for group in PLANTED:
        for k, i in enumerate(group[1:]):
            noise = torch.randint(-3, 4, images[0].shape, generator=g) if k % 2 == 0 else 0
            images[i] = (images[group[0]].int() + noise).clamp(0, 255).to(torch.uint8)
    return _dataset(images, plain.labels.tolist())


def _parts(split):
    return [set(split.indices(p)) for p in ("train", "val", "test")]


def test_stratified_fractions_disjoint_and_complete(plain):
    split = make_split(plain, make_cfg())
    parts = _parts(split)
    assert set().union(*parts) == set(range(len(plain))) and sum(map(len, parts)) == len(plain)
    counts = split.class_counts(plain.labels.tolist(), plain.class_names)
    assert [counts["train"][c] for c in plain.class_names] == [21, 28, 14]
    assert [counts["val"][c] for c in plain.class_names] == [5, 6, 3]   # 4.5 -> 5 before 6.0
    assert [counts["test"][c] for c in plain.class_names] == [4, 6, 3]
    assert split.n_groups == 0


def test_split_is_seeded(plain):
    a, b = make_split(plain, make_cfg()), make_split(plain, make_cfg())
    c = make_split(plain, make_cfg(split_seed=7))
    assert _parts(a) == _parts(b) and a.split_hash == b.split_hash
    assert _parts(a) != _parts(c) and a.split_hash != c.split_hash


def test_split_hash_is_pinned_and_order_free():
    names = ["b.png", "a.png", "c.png"]
    split = Split(train=[0], val=[1], test=[2], names=names)
    reordered = Split(train=[1], val=[2], test=[0], names=["c.png", "b.png", "a.png"])
    assert split.split_hash == reordered.split_hash == "0546e3dedd53177f"
    assert Split(train=[1], val=[0], test=[2], names=names).split_hash != split.split_hash


def test_save_and_load_maps_by_name(plain, tmp_path):
    split = make_split(plain, make_cfg())
    path = split.save(tmp_path / "split.json", plain)
    data = json.loads(path.read_text())
    assert data["split_hash"] == split.split_hash
    assert data["class_counts"]["train"] == {"normal": 21, "benign": 28, "malignant": 14}
    assert data["splits"]["test"]["names"] == [plain.names[i] for i in split.test]
    order = np.random.default_rng(0).permutation(len(plain))
    shuffled = plain.subset(order)
    again = load_split(path, shuffled)
    assert again.split_hash == split.split_hash
    assert {shuffled.names[i] for i in again.test} == {plain.names[i] for i in split.test}
    reused = make_split(shuffled, make_cfg(split_file=str(path)))
    assert reused.split_hash == split.split_hash


def test_loading_a_split_of_another_dataset_fails(plain, tmp_path):
    path = make_split(plain, make_cfg()).save(tmp_path / "split.json")
    expected = r"img_080.png' is not in the dataset at mem \(10 missing\)"
    with pytest.raises(DataError, match=expected):
        load_split(path, plain.subset(range(80)))


def test_planted_near_duplicates_are_found(with_copies):
    dist = hamming_matrix(phash(with_copies.images))
    for group in PLANTED:
        assert all(dist[group[0], i] <= 6 for i in group[1:])
    split = make_split(with_copies, make_cfg())
    assert split.groups == sorted(PLANTED, key=lambda g: g[0])
    assert split.n_groups == 5


def test_near_duplicates_stay_together_unless_the_protocol_is_random(with_copies, tmp_path):
    together = make_split(with_copies, make_cfg())
    for group in together.groups:
        assert sum(set(group) <= part for part in _parts(together)) == 1
    assert together.groups_across_splits() == 0
    report = together.to_json()["near_duplicates"]
    assert report["n_groups"] == 5 and report["n_images"] == 11 and report["kept_together"]
    randoms = [make_split(with_copies, make_cfg(split_protocol="random", split_seed=s))
               for s in range(5)]
    assert max(r.groups_across_splits() for r in randoms) > 0   # the authors' random split leaks
    assert all(r.groups == together.groups for r in randoms)     # groups are still found and counted


@pytest.mark.parametrize("protocol", ["grouped", "random"])
def test_protocol_is_recorded_in_split_json_and_read_back(with_copies, tmp_path, protocol):
    split = make_split(with_copies, make_cfg(split_protocol=protocol))
    data = json.loads(split.save(tmp_path / "split.json", with_copies).read_text())
    assert data["protocol"] == protocol
    assert data["near_duplicates"]["kept_together"] == (protocol == "grouped")
    back = load_split(tmp_path / "split.json", with_copies)
    assert back.protocol == protocol and back.split_hash == split.split_hash
    folds = kfold_splits(with_copies, make_cfg(split_protocol=protocol), 2)
    assert all(f.protocol == protocol for f in folds)


def test_grouped_protocol_that_does_not_group_is_refused():
    with pytest.raises(ConfigError, match="data.split_protocol: 'grouped' with keep_near_duplicates"):
        make_cfg(keep_near_duplicates_together=False)


def test_official_split_is_honoured_when_asked(plain):
    preset = ["train"] * 60 + ["val"] * 15 + ["test"] * 15
    ds = ImageSet(**{**plain.__dict__, "preset_split": preset,
                     "labels": torch.tensor([i % 3 for i in range(90)])})
    official = make_split(ds, make_cfg())
    assert official.strategy == "official"
    assert official.train == list(range(60)) and official.test == list(range(75, 90))
    fresh = make_split(ds, make_cfg(use_official_split=False))
    assert fresh.strategy == "stratified" and fresh.train != official.train


def test_kfold_shares_test_and_partitions_the_rest(with_copies):
    cfg = make_cfg()
    base = make_split(with_copies, cfg)
    folds = kfold_splits(with_copies, cfg, 3)
    pool = set(base.train) | set(base.val)
    vals = [set(f.val) for f in folds]
    assert all(f.test == base.test for f in folds)
    assert set().union(*vals) == pool and sum(map(len, vals)) == len(pool)
    for fold, val in zip(folds, vals):
        assert set(fold.train) == pool - val
        assert fold.groups_across_splits() == 0
        labels = with_copies.labels[sorted(val)]
        assert torch.bincount(labels, minlength=3).min() >= 5   # every class in every fold
    assert len({f.split_hash for f in folds}) == 3


def test_parts_returns_image_subsets(plain):
    split = make_split(plain, make_cfg())
    parts = split.parts(plain)
    assert [len(parts[p]) for p in ("train", "val", "test")] == [63, 14, 13]
    assert parts["test"].names == [plain.names[i] for i in split.test]

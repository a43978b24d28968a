"""``data inspect``'s summary: class table per split, near-duplicates, image sizes, mask coverage."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from busray.data import ImageSet, Split
from busray.data.summary import Range, mask_coverage, original_sizes, render_summary, summarize
from databuild import write_png

CLASSES = ("normal", "benign", "malignant")
LABELS = [0, 0, 1, 1, 1, 2]
LESION_SIDE = [0, 0, 8, 16, 32, 16]            # square lesion of this side in a 64 x 64 mask
FILE_SIZES = [(40, 30), (50, 30), (60, 45), (64, 64), (80, 20), (50, 50)]  # (width, height)


def _dataset(root) -> ImageSet:
    masks = torch.zeros(len(LABELS), 1, 64, 64, dtype=torch.uint8)
    for i, side in enumerate(LESION_SIDE):
        masks[i, 0, :side, :side] = 1
    names = [f"{CLASSES[k]}/img{i}.png" for i, k in enumerate(LABELS)]
    for name, (w, h) in zip(names, FILE_SIZES):
        write_png(root / name, np.full((h, w), 100, dtype=np.uint8))
    return ImageSet(images=torch.zeros_like(masks), masks=masks, labels=torch.tensor(LABELS),
                    names=names, class_names=CLASSES, source="busi", root=str(root))


def _split(groups) -> Split:
    return Split(train=[0, 2, 3, 5], val=[4], test=[1], names=[f"n{i}" for i in range(6)],
                 groups=groups, threshold=6, seed=3)


@pytest.fixture
def ds(tmp_path):
    return _dataset(tmp_path)


def test_class_table_per_split(ds):
    table = summarize(ds, _split([])).class_table
    assert table == {"train": {"normal": 1, "benign": 2, "malignant": 1},
                     "val": {"normal": 0, "benign": 1, "malignant": 0},
                     "test": {"normal": 1, "benign": 0, "malignant": 0}}


@pytest.mark.parametrize("groups, across, mixed", [
    ([], 0, 0),
    ([[2, 3]], 0, 0),                            # both in train, both benign
    ([[0, 1]], 1, 0),                            # train + test: a leak
    ([[3, 4], [0, 5]], 1, 1),                    # one leaks (train/val), one mixes normal/malignant
])
def test_near_duplicate_counts(ds, groups, across, mixed):
    d = summarize(ds, _split(groups)).duplicates
    assert (d.groups, d.images, d.across_splits, d.mixed_class) == (
        len(groups), sum(map(len, groups)), across, mixed)


def test_original_sizes_from_file_headers(ds):
    assert original_sizes(ds).tolist() == [list(s) for s in FILE_SIZES]
    summary = summarize(ds, _split([]))
    assert (summary.width, summary.height) == (Range(40, 55, 80), Range(20, 37.5, 64))
    assert summary.unreadable_sizes == 0


def test_missing_files_count_as_unreadable(tmp_path):
    ds = _dataset(tmp_path)
    (tmp_path / ds.names[0]).unlink()
    summary = summarize(ds, _split([]))
    assert summary.unreadable_sizes == 1 and summary.width.min == 50


def test_mask_coverage_per_class(ds):
    cov = mask_coverage(ds)
    assert (cov["normal"].images, cov["normal"].with_lesion) == (2, 0)
    assert cov["normal"].percent == Range(None, None, None)
    assert (cov["benign"].images, cov["benign"].with_lesion) == (3, 3)
    assert cov["benign"].percent == Range(100 * 64 / 4096, 100 * 256 / 4096, 100 * 1024 / 4096)
    assert cov["malignant"].percent.median == pytest.approx(6.25)


def test_rendered_summary_reads_as_tables(ds):
    text = render_summary(summarize(ds, _split([[0, 1], [2, 3, 5]])))
    lines = text.splitlines()
    assert lines[1].startswith("split ") and "seed 3" in lines[1]
    assert lines.index("images per split and class:") > 0
    assert any(line.split() == ["train", "1", "2", "1", "4"] for line in lines)
    assert any(line.split() == ["total", "2", "3", "1", "6"] for line in lines)
    assert "2 group(s) of 5 images; 1 straddle splits (train/test leakage)" in text
    assert "1 group(s) mix classes" in text
    assert "3 images: benign/img2.png, benign/img3.png, malignant/img5.png" in text
    assert "width 40-80 (median 55), height 20-64 (median 38) px; decoded to 64x64" in text
    assert any(line.split() == ["normal", "0/2", "-", "-", "-"] for line in lines)
    assert any(line.split() == ["benign", "3/3", "1.6", "6.2", "25.0"] for line in lines)


def test_not_searched_and_json(ds):
    split = _split([])
    split.threshold = None
    summary = summarize(ds, split)
    assert "near-duplicates: not searched" in render_summary(summary)
    data = json.loads(json.dumps(summary.to_json(), allow_nan=False))   # no NaN: strict JSON
    assert data["coverage"]["normal"]["percent"]["median"] is None

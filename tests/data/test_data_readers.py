"""Readers: BUSI (synthetic, hand-built, real subset), BUSI-WHU and CSV manifests -> ImageSet."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from busray.data import load_dataset
from busray.data.images import fit_square
from databuild import REAL_BUSI, build_busi, lesion_pair, make_cfg, write_png


def _check_contract(ds, n, size=64):
    assert ds.images.shape == ds.masks.shape == (n, 1, size, size)
    assert ds.images.dtype == ds.masks.dtype == torch.uint8
    assert ds.labels.dtype == torch.int64 and ds.labels.shape == (n,)
    assert set(ds.masks.unique().tolist()) <= {0, 1}
    assert len(ds.names) == n


def test_busi_reader_on_synthetic_folder(synth_root):
    ds = load_dataset(make_cfg(), synth_root)
    _check_contract(ds, 24)
    assert ds.source == "synthetic" and ds.class_names == ("normal", "benign", "malignant")
    assert ds.class_counts() == {"normal": 8, "benign": 8, "malignant": 8}
    assert ds.names[:3] == ["normal/normal (1).png", "normal/normal (2).png",
                            "normal/normal (3).png"]
    assert not ds.masks[ds.labels == 0].any() and ds.masks[ds.labels > 0].flatten(1).any(1).all()


def test_busi_accepts_parent_folder_and_root_from_config(tmp_path):
    build_busi(tmp_path / "Dataset_BUSI_with_GT")
    ds = load_dataset(make_cfg(root=str(tmp_path)))
    assert ds.source == "busi" and len(ds) == 6
    assert ds.root == str(tmp_path / "Dataset_BUSI_with_GT")


def test_mask_union_of_several_mask_files(tmp_path):
    root = build_busi(tmp_path, per_class=1)
    image, first = lesion_pair(40, 40, box=(5, 15, 5, 15))
    second = np.zeros_like(first)
    second[25:35, 25:35] = 255
    write_png(root / "benign" / "benign (1).png", image)
    write_png(root / "benign" / "benign (1)_mask.png", first)
    write_png(root / "benign" / "benign (1)_mask_1.png", second)
    ds = load_dataset(make_cfg(image_size=40, resize_mode="stretch"), root)
    mask = ds.masks[ds.names.index("benign/benign (1).png"), 0].numpy()
    np.testing.assert_array_equal(mask, ((first > 0) | (second > 0)).astype(np.uint8))


def test_rgb_image_becomes_gray_and_pad_letterboxes(tmp_path):
    root = build_busi(tmp_path, per_class=1)
    rgb = np.zeros((20, 40, 3), dtype=np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 100, 150, 200
    write_png(root / "normal" / "normal (1).png", rgb)
    write_png(root / "normal" / "normal (1)_mask.png", np.zeros((20, 40), np.uint8))
    ds = load_dataset(make_cfg(image_size=40), root)
    image = ds.images[0, 0]
    assert image[0].eq(0).all() and image[-1].eq(0).all()      # 10-pixel bands of padding
    assert abs(int(image[20, 20]) - 141) <= 1                   # ITU-R 601 luma of the colour


@pytest.mark.parametrize("mode,expect", [("stretch", 0.25), ("pad", 0.125)])
def test_resize_modes_scale_mask_area(tmp_path, mode, expect):
    root = build_busi(tmp_path, per_class=1)
    image = np.full((32, 64), 150, np.uint8)
    mask = np.zeros((32, 64), np.uint8)
    mask[:16, :32] = 255                                       # a quarter of the image
    write_png(root / "benign" / "benign (1).png", image)
    write_png(root / "benign" / "benign (1)_mask.png", mask)
    ds = load_dataset(make_cfg(image_size=32, resize_mode=mode), root)
    area = ds.masks[ds.names.index("benign/benign (1).png")].float().mean().item()
    assert area == pytest.approx(expect, abs=0.01)


@pytest.mark.parametrize("shape, mode", [((50, 70), "stretch"), ((50, 70), "pad"), ((64, 64), "stretch")])
@pytest.mark.parametrize("is_mask", [False, True])
def test_fit_square_gives_a_writable_array(shape, mode, is_mask):
    """torch.from_numpy (predict) warns on a read-only array, as numpy views of Pillow images are."""
    out = fit_square(np.zeros(shape, np.uint8), 64, mode, is_mask=is_mask)
    assert out.shape == (64, 64) and out.flags.writeable


@pytest.mark.skipif(not REAL_BUSI.is_dir(), reason="real BUSI copy not present")
def test_real_busi_subset():
    ds = load_dataset(make_cfg(limit_per_class=10, image_size=96), REAL_BUSI)
    _check_contract(ds, 30, size=96)
    assert ds.source == "busi"
    assert ds.class_counts() == {"normal": 10, "benign": 10, "malignant": 10}
    assert "benign/benign (10).png" in ds.names                 # natural order: 1, 2, ..., 10
    assert "benign/benign (11).png" not in ds.names
    assert ds.masks[ds.labels > 0].flatten(1).any(1).all()
    assert not ds.masks[ds.labels == 0].any()
    inside = ds.images[ds.masks.bool()].float().mean()
    assert inside < ds.images[(ds.masks == 0) & (ds.images > 0)].float().mean()  # hypoechoic


def _build_whu(root, split_names=("train", "val", "test")):
    rows = ["image,label"]
    for s, split in enumerate(split_names):
        for k in range(2):
            image, mask = lesion_pair(30, 30 + k)
            name = f"{split[:2]}{k}.bmp"
            write_png(root / split / "img" / name, image)
            write_png(root / split / "mask" / name, mask)
            rows.append(f"{name},{'malignant' if (s + k) % 2 else 'Benign'}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def test_busi_whu_reader_keeps_official_split(tmp_path):
    ds = load_dataset(make_cfg(), _build_whu(tmp_path))
    _check_contract(ds, 6)
    assert ds.source == "busi_whu" and ds.class_names == ("benign", "malignant")
    assert sorted(ds.preset_split) == ["test", "test", "train", "train", "val", "val"]
    i = ds.names.index("val/img/va1.bmp")
    assert ds.preset_split[i] == "val" and ds.labels[i] == 0     # (1 + 1) % 2 -> Benign


def test_busi_whu_accepts_valid_folder_and_relative_names(tmp_path):
    root = _build_whu(tmp_path, ("train", "valid", "test"))
    table = (root / "labels.csv").read_text().replace("va0.bmp", "valid/img/va0.bmp")
    (root / "labels.csv").write_text(table)
    ds = load_dataset(make_cfg(format="busi_whu"), root)
    assert ds.preset_split[ds.names.index("valid/img/va0.bmp")] == "val"


def test_csv_manifest_with_empty_and_multiple_masks(tmp_path):
    a, ma = lesion_pair(30, 30, box=(2, 8, 2, 8))
    b, mb = lesion_pair(30, 30, box=(20, 28, 20, 28))
    write_png(tmp_path / "img" / "a.png", a)
    write_png(tmp_path / "img" / "b.png", b)
    write_png(tmp_path / "m" / "a1.png", ma)
    write_png(tmp_path / "m" / "a2.png", mb)
    (tmp_path / "manifest.csv").write_text(
        "image,mask,label,site\nimg/a.png,m/a1.png;m/a2.png,malignant,x\nimg/b.png,,normal,y\n")
    for root in (tmp_path, tmp_path / "manifest.csv"):
        ds = load_dataset(make_cfg(image_size=30, resize_mode="stretch"), root)
        assert ds.source == "csv" and ds.class_names == ("normal", "malignant")
        assert ds.names == ["img/b.png", "img/a.png"]            # sorted by label, then name
        assert ds.masks[0].sum() == 0
        assert ds.masks[1].sum() == (ma > 0).sum() + (mb > 0).sum()


def test_csv_custom_classes_order(tmp_path):
    image, mask = lesion_pair()
    write_png(tmp_path / "x.png", image)
    write_png(tmp_path / "x_m.png", mask)
    (tmp_path / "list.csv").write_text("image,mask,label\nx.png,x_m.png,cyst\n")
    ds = load_dataset(make_cfg(classes=["tumour", "cyst"]), tmp_path / "list.csv")
    assert ds.class_names == ("tumour", "cyst") and ds.labels.tolist() == [1]


@pytest.mark.slow
@pytest.mark.skipif(not REAL_BUSI.is_dir(), reason="real BUSI copy not present")
def test_real_busi_full_split_groups_repeated_scans():
    from busray.data import make_split
    cfg = make_cfg(image_size=224)
    ds = load_dataset(cfg, REAL_BUSI)
    assert ds.class_counts() == {"normal": 133, "benign": 437, "malignant": 210}
    split = make_split(ds, cfg)
    assert 100 <= split.n_groups <= 200 and split.groups_across_splits() == 0
    # the same scan is filed as normal (1) and benign (269) in BUSI: one group, one split
    pair = {ds.names.index("normal/normal (1).png"), ds.names.index("benign/benign (269).png")}
    assert any(pair <= set(g) for g in split.groups)

"""One split per dataset and seed at every ``data.image_size``: near-duplicates are hashed on the
decoded originals (a fixed letterboxed view), so 64, 128 and 224 px runs score the same test images;
split.json files of older versions (hashes of the resized tensors) still load, with their own hash."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from busray.cli import main
from busray.data import load_dataset, load_split, make_split, synthesize
from busray.data.dedup import HASH_VIEW
from busray.data.split import LEGACY_HASHED_ON
from databuild import make_cfg
from tinyrun import busi_root

SIZES = (64, 128, 224)
# planted near-copies: (original, copy, how the copy was made)
COPIES = [("benign/benign (1).png", "benign/benign (101).png", "noise"),
          ("malignant/malignant (2).png", "malignant/malignant (102).png", "smaller"),
          ("normal/normal (1).png", "normal/normal (103).png", "same")]


def _copy(root, src: str, dst: str, how: str) -> None:
    """Write ``dst`` (and its mask) as a near-copy of ``src``: re-saved with noise, at 3/4 the size,
    or byte-identical pixels."""
    image = np.asarray(Image.open(root / src))
    mask = Image.open(root / src.replace(".png", "_mask.png"))
    if how == "noise":
        noise = np.random.default_rng(0).integers(-3, 4, image.shape)
        image = np.clip(image.astype(int) + noise, 0, 255).astype(np.uint8)
    picture = Image.fromarray(image)
    if how == "smaller":
        side = image.shape[0] * 3 // 4
        picture, mask = picture.resize((side, side), Image.BICUBIC), mask.resize((side, side))
    picture.save(root / dst)
    mask.save(root / dst.replace(".png", "_mask.png"))


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    root = synthesize(tmp_path_factory.mktemp("res") / "s", n=36, size=96, seed=3)
    for src, dst, how in COPIES:
        _copy(root, src, dst, how)
    return root


def test_hashes_groups_and_split_are_the_same_at_every_size(planted):
    loaded = {size: load_dataset(make_cfg(image_size=size), planted) for size in SIZES}
    splits = {size: make_split(ds, make_cfg(image_size=size)) for size, ds in loaded.items()}
    first = loaded[SIZES[0]]
    for size in SIZES:
        assert loaded[size].image_size == size
        assert np.array_equal(loaded[size].hashes, first.hashes)
        assert splits[size].split_hash == splits[SIZES[0]].split_hash
        assert splits[size].hashed_on == HASH_VIEW
    names, split = first.names, splits[SIZES[0]]
    for src, dst, _ in COPIES:   # every planted copy was found, with its original, in one group
        pair = {names.index(src), names.index(dst)}
        assert any(pair <= set(group) for group in split.groups), (src, dst)
    assert split.groups_across_splits() == 0


def test_a_version_1_split_file_loads_with_its_own_hash(planted, tmp_path):
    ds = load_dataset(make_cfg(), planted)
    split = make_split(ds, make_cfg())
    data = json.loads(split.save(tmp_path / "split.json", ds).read_text())
    assert data["version"] == 2 and data["near_duplicates"]["hashed_on"] == HASH_VIEW
    old = dict(data, version=1, near_duplicates={k: v for k, v in data["near_duplicates"].items()
                                                 if k != "hashed_on"})
    moved = sorted(data["splits"]["train"]["names"])[:2]   # a v1 split of other test images
    old["splits"] = {part: {"names": [n for n in data["splits"][part]["names"] if n not in moved]
                            + (moved if part == "test" else [])} for part in data["splits"]}
    (tmp_path / "v1.json").write_text(json.dumps(old))
    back = load_split(tmp_path / "v1.json", ds)
    assert back.hashed_on == LEGACY_HASHED_ON
    assert back.split_hash != split.split_hash            # the hash tells the two splits apart
    assert {ds.names[i] for i in back.test} == set(data["splits"]["test"]["names"]) | set(moved)
    assert json.loads(back.save(tmp_path / "again.json").read_text())["split_hash"] == back.split_hash


@pytest.mark.slow
def test_real_busi_lists_the_same_test_images_at_every_size(capsys):
    root = busi_root()
    if root is None:
        pytest.skip("real BUSI not found (../shared/data or $BUSRAY_BUSI_ROOT)")
    tests = {}
    for size in SIZES:   # 100 per class: 300 images, where hashing the resized tensors gave 2 splits
        assert main(["data", "inspect", str(root / "Dataset_BUSI_with_GT"), "--json",
                     "--set", f"data.image_size={size}", "--set", "data.limit_per_class=100",
                     "--set", "data.cache=false"]) == 0
        split = json.loads(capsys.readouterr().out)["split"]
        assert split["near_duplicates"]["n_groups"] > 10
        tests[size] = (split["split_hash"], split["splits"]["test"]["names"])
    assert len(set(map(str, tests.values()))) == 1, {s: t[0] for s, t in tests.items()}

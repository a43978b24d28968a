"""The synthetic generator writes the BUSI layout deterministically, with learnable class cues."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from busray.data import BUSI_CLASSES, DataError, synthesize
from busray.data.synth import class_counts


def _files(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png"))


def test_writes_busi_layout_with_marker(synth_root):
    files = _files(synth_root)
    assert len(files) == 48                                   # 24 images + 24 masks
    for cls in BUSI_CLASSES:
        assert f"{cls}/{cls} (1).png" in files and f"{cls}/{cls} (1)_mask.png" in files
    info = json.loads((synth_root / "busray_synth.json").read_text())
    assert info["counts"] == {"normal": 8, "benign": 8, "malignant": 8}
    image = Image.open(synth_root / "benign" / "benign (3).png")
    assert image.size == (64, 64) and image.mode == "L"


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a = synthesize(tmp_path / "a", n=6, size=48, seed=3)
    b = synthesize(tmp_path / "b", n=6, size=48, seed=3)
    c = synthesize(tmp_path / "c", n=6, size=48, seed=4)
    assert _files(a) == _files(b) == _files(c)
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in _files(a))
    assert any((a / f).read_bytes() != (c / f).read_bytes() for f in _files(a))


def _load(root, cls, k):
    image = np.asarray(Image.open(root / cls / f"{cls} ({k}).png"), dtype=np.float64)
    mask = np.asarray(Image.open(root / cls / f"{cls} ({k})_mask.png")) > 0
    return image, mask


@pytest.mark.parametrize("cls", ["benign", "malignant"])
def test_lesions_are_hypoechoic_and_masked(synth_root, cls):
    for k in range(1, 9):
        image, mask = _load(synth_root, cls, k)
        assert 0.005 < mask.mean() < 0.25
        rows = np.flatnonzero(mask.any(axis=1))
        above = image[max(0, rows[0] - 8):rows[0], mask.any(axis=0)]   # tissue just above
        assert image[mask].mean() < above.mean() - 25


def test_normal_masks_are_empty(synth_root):
    for k in range(1, 9):
        assert not _load(synth_root, "normal", k)[1].any()


def test_malignant_shadows_and_benign_enhances_below(synth_root):
    """Posterior shadowing vs enhancement: tissue under the lesion relative to beside it."""
    def below_vs_beside(cls):
        ratios = []
        for k in range(1, 9):
            image, mask = _load(synth_root, cls, k)
            cols = mask.any(axis=0)
            bottom = np.flatnonzero(mask.any(axis=1))[-1]
            strip = image[bottom + 2:bottom + 14]
            ratios.append(strip[:, cols].mean() / strip[:, ~cols].mean())
        return np.mean(ratios)
    assert below_vs_beside("malignant") < 0.85 < below_vs_beside("benign")


def test_class_counts_follow_ratio():
    assert class_counts(780, (133, 437, 210)) == [133, 437, 210]
    assert class_counts(3, (0.01, 0.98, 0.01)) == [1, 1, 1]
    with pytest.raises(ValueError):
        class_counts(2, (1, 1, 1))


def test_refuses_to_overwrite_foreign_folder_but_reruns_cleanly(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(DataError, match="not empty"):
        synthesize(tmp_path / "mine", n=3, size=32)
    out = synthesize(tmp_path / "s", n=9, size=32)
    synthesize(out, n=3, size=32)                             # smaller rerun: no stale files
    assert len(_files(out)) == 6

"""Builders of tiny datasets for the data-layer tests (``from databuild import ...``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from busray.configtools import from_dict
from busray.data import DataConfig

REAL_BUSI = Path(__file__).resolve().parents[3] / "shared" / "data"


def make_cfg(**overrides) -> DataConfig:
    """A validated DataConfig with small images and no disk cache unless asked for."""
    base = {"image_size": 64, "cache": False, "decode_workers": 2}
    base.update(overrides)
    return from_dict(DataConfig, base, "data.")


def write_png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def lesion_pair(h: int = 40, w: int = 50, box=(10, 20, 15, 30), value: int = 60):
    """A random gray image with a dark box and the box's 0/255 mask."""
    rng = np.random.default_rng(h * 1000 + w)
    image = rng.integers(120, 200, (h, w), dtype=np.uint8)
    mask = np.zeros((h, w), dtype=np.uint8)
    y0, y1, x0, x1 = box
    image[y0:y1, x0:x1] = value
    mask[y0:y1, x0:x1] = 255
    return image, mask


def build_busi(root: Path, per_class: int = 2, classes=("normal", "benign", "malignant")) -> Path:
    """A tiny BUSI-layout folder: ``per_class`` images per class with one mask each."""
    for cls in classes:
        for k in range(1, per_class + 1):
            image, mask = lesion_pair(40 + k, 50)
            if cls == "normal":
                mask[:] = 0
            write_png(root / cls / f"{cls} ({k}).png", image)
            write_png(root / cls / f"{cls} ({k})_mask.png", mask)
    return root

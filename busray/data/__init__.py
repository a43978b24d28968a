"""busray's data layer: readers, decoding, synthetic data, splits and on-device augmentation.

Typical use (what ``busray.training`` does)::

    ds = load_dataset(cfg.data)              # ImageSet: uint8 (N, 1, S, S) images and masks
    split = make_split(ds, cfg.data)         # stratified, near-duplicate aware, seeded
    split.save(run_dir / "split.json", ds)
    parts = split.parts(ds)                  # {"train": ImageSet, "val": ..., "test": ...}
    x, m = augment_batch(x, m, cfg.data.augment, generator)   # on the training device

No Ray here: the Ray layer wraps this unchanged.
"""

from busray.data.augment import augment_batch
from busray.data.config import AugmentConfig, DataConfig
from busray.data.dedup import near_duplicate_groups, phash
from busray.data.errors import DataError
from busray.data.imageset import ImageSet
from busray.data.loader import load_dataset
from busray.data.readers import BUSI_CLASSES, WHU_CLASSES
from busray.data.split import Split, load_split
from busray.data.stratify import kfold_splits, make_split
from busray.data.synth import synthesize

__all__ = [
    "AugmentConfig", "BUSI_CLASSES", "DataConfig", "DataError", "ImageSet", "Split",
    "WHU_CLASSES", "augment_batch", "kfold_splits", "load_dataset", "load_split", "make_split",
    "near_duplicate_groups", "phash", "synthesize",
]

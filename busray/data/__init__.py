"""busray's data layer: readers, decoding, synthetic data, splits and on-device augmentation.

Typical use (what ``busray.training`` does)::

    ds = load_dataset(cfg.data)              # ImageSet: uint8 (N, 1, S, S) images and masks
    split = make_split(ds, cfg.data)         # stratified, near-duplicate aware, seeded
    split.save(run_dir / "split.json", ds)
    parts = split.parts(ds)                  # {"train": ImageSet, "val": ..., "test": ...}
    x, m = augment_batch(x, m, cfg.data.augment, generator)   # on the training device

No Ray here: the Ray layer wraps this unchanged.
"""

from busray.data.config import AugmentConfig, DataConfig
from busray.data.errors import DataError
from busray.lazy import lazy_exports

# torch/PIL load on first use of these (busray/lazy.py says why)
__getattr__ = lazy_exports(__name__, {
    "augment_batch": "augment", "near_duplicate_groups": "dedup", "phash": "dedup", "ImageSet": "imageset",
    "load_dataset": "loader", "BUSI_CLASSES": "readers", "WHU_CLASSES": "readers", "Split": "split",
    "load_split": "split", "kfold_splits": "stratify", "make_split": "stratify", "synthesize": "synth"})

__all__ = [
    "AugmentConfig", "BUSI_CLASSES", "DataConfig", "DataError", "ImageSet", "Split",
    "WHU_CLASSES", "augment_batch", "kfold_splits", "load_dataset", "load_split", "make_split",
    "near_duplicate_groups", "phash", "synthesize",
]

"""``data.*`` config: where the images are, how they are decoded, split and augmented.

The paper (Sec. 3.1) fixes only the input size (224 x 224), the 70/15/15 split and the kinds of
augmentation (rotation, flipping, elastic deformation). Everything else here is a documented choice
of this reimplementation, exposed as an option:

- ``resize_mode="pad"`` letterboxes (keeps the aspect ratio, zero padding) instead of stretching,
  because lesion shape is a diagnostic cue (an irregular or "taller-than-wide" lesion suggests
  malignancy) that anisotropic scaling would distort.
- near-duplicate scans (BUSI holds repeated scans) are detected with a 64-bit DCT perceptual hash
  and kept in one split by default, so a random split does not leak near-copies into the test set.
- vertical flips are off by default: in ultrasound the depth axis is physical (posterior acoustic
  shadowing/enhancement lies below a lesion), so an upside-down image is not a plausible scan.
"""

from __future__ import annotations

from dataclasses import dataclass

from busray.configtools import ConfigError, option

FORMATS = ("auto", "busi", "busi_whu", "csv")
SPLIT_PROTOCOLS = ("grouped", "random")
RESIZE_MODES = ("pad", "stretch")


@dataclass
class AugmentConfig:
    """``data.augment.*``: batched on-device augmentation (see :mod:`busray.data.augment`)."""

    enabled: bool = option(True, "apply augmentation to training batches")
    rotation_deg: float = option(15.0, "maximum rotation angle in degrees (uniform in +-value)",
                                 range=(0.0, 180.0))
    rotation_prob: float = option(0.5, "probability that a sample is rotated", range=(0.0, 1.0))
    hflip_prob: float = option(0.5, "probability of a left-right flip", range=(0.0, 1.0))
    vflip_prob: float = option(0.0, "probability of an up-down flip (off: depth is physical)",
                               range=(0.0, 1.0))
    elastic_prob: float = option(0.3, "probability of an elastic deformation", range=(0.0, 1.0))
    elastic_alpha: float = option(0.01, "elastic displacement std, as a fraction of the image side",
                                  range=(0.0, 0.25))
    elastic_sigma: float = option(0.08, "smoothing of the displacement field (gaussian "
                                  "sigma), as a fraction of the image side", range=(0.005, 0.5))


@dataclass
class DataConfig:
    """``data.*``: dataset location and format, decoding, split and augmentation."""

    root: str | None = option("synthetic", "dataset folder (BUSI root or its parent, BUSI-WHU root, "
                              "or a folder with a CSV manifest) or a CSV file; the CLI's --data sets "
                              "it. 'synthetic[:n=120,size=128,seed=0]' (the default) is the embedded "
                              "BUSI-like generator, materialised once in the user cache (n <= 100,000, "
                              "size 32..4096, n x size^2 <= 2^32 pixels)")
    format: str = option("auto", "dataset layout; auto detects it from the folder", choices=FORMATS)
    classes: list[str] | None = option(None, "class names in label order; None: the layout's own "
                                       "(BUSI: normal, benign, malignant; BUSI-WHU: benign, "
                                       "malignant; CSV: the labels found)")
    image_size: int = option(224, "side of the square images the dataset is resized to once",
                             range=(16, 2048))
    resize_mode: str = option("pad", "pad: letterbox keeping the aspect ratio; stretch: ignore it",
                              choices=RESIZE_MODES)
    limit_per_class: int | None = option(None, "read at most this many images per class (in name "
                                         "order); for quick tests", range=(1, None))
    manifest: str = option("manifest.csv", "CSV manifest file name (columns image, mask, label) "
                           "when root is a folder")
    label_table: str = option("labels.csv", "BUSI-WHU label table in its root (columns image, "
                              "label)")
    use_official_split: bool = option(True, "honour a layout's own train/val/test folders "
                                      "(BUSI-WHU) instead of a new stratified split")
    cache: bool = option(True, "cache decoded tensors on disk, in cache_dir (never in the "
                         "dataset folder unless cache_dir points there)")
    cache_dir: str | None = option(None, "folder for the decoded-tensor cache; None: the user cache "
                                   "folder $XDG_CACHE_HOME/busray (~/.cache/busray)")
    decode_workers: int = option(4, "threads decoding images", range=(1, 64))
    split_fractions: list[float] = option([0.7, 0.15, 0.15], "train/val/test fractions "
                                          "(stratified by class)", range=(0.0, 1.0))
    split_seed: int = option(0, "seed of the split (independent of the training seed)",
                             range=(0, None))
    split_file: str | None = option(None, "reuse this split.json instead of making a new split")
    detect_near_duplicates: bool = option(True, "find near-duplicate images with a perceptual hash "
                                          "of the decoded originals letterboxed to 224 x 224, "
                                          "whatever image_size is: one split at every size")
    near_duplicate_threshold: int = option(6, "max Hamming distance (of 64 pHash bits) for two "
                                           "images to count as near-duplicates", range=(0, 32))
    keep_near_duplicates_together: bool = option(True, "put each near-duplicate group in a "
                                                 "single split (avoids train/test leakage)")
    split_protocol: str = option("grouped", "grouped: stratified, each near-duplicate group whole in "
                                 "one split (no near-copy of a test image is trained on); random: "
                                 "stratified at random per image, as the authors' code (leaks are "
                                 "counted in split.json)", choices=SPLIT_PROTOCOLS)
    augment: AugmentConfig = option(AugmentConfig(), "on-device training augmentation")

    def check(self) -> None:
        if self.split_protocol == "grouped" and not self.keep_near_duplicates_together:
            raise ConfigError("split_protocol: 'grouped' with keep_near_duplicates_together=false; "
                              "set split_protocol: random instead")
        if len(self.split_fractions) != 3:
            raise ConfigError(f"split_fractions: expected 3 values (train, val, test), "
                              f"got {self.split_fractions!r}")
        if abs(sum(self.split_fractions) - 1.0) > 1e-6:
            raise ConfigError(f"split_fractions: {self.split_fractions!r} must sum to 1")
        if self.split_fractions[0] <= 0:
            raise ConfigError("split_fractions: the train fraction must be > 0")
        if self.classes is not None and len(set(self.classes)) != len(self.classes):
            raise ConfigError(f"classes: {self.classes!r} has duplicates")
        if self.classes is not None and len(self.classes) < 2:
            raise ConfigError(f"classes: {self.classes!r} needs at least 2 classes")

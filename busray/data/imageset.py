"""``ImageSet``: a whole decoded dataset held as uint8 tensors (see docs/ARCHITECTURE.md).

Images are decoded and resized once, then kept compactly (1 byte per pixel: the 780 BUSI images
at 224 x 224 take 39 MB, their masks as much) so the training layer can move the whole set to the
device and build and augment batches there, instead of decoding per step.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch


@dataclass
class ImageSet:
    """A decoded dataset.

    images: ``uint8 (N, 1, S, S)`` grayscale; masks: ``uint8 (N, 1, S, S)`` in {0, 1};
    labels: ``int64 (N,)`` indices into ``class_names``; names: paths relative to ``root``;
    source: ``"busi" | "busi_whu" | "csv" | "synthetic"``; preset_split: per-image
    ``"train" | "val" | "test"`` when the layout ships its own split (BUSI-WHU), else None;
    hashes: ``bool (N, 64)`` perceptual hashes of the decoded originals on the fixed view of
    :func:`busray.data.dedup.original_hash` (what near-duplicate search uses, so the split does not
    depend on the image size), or None for a set built in memory (its images are hashed as held).
    """

    images: torch.Tensor
    masks: torch.Tensor
    labels: torch.Tensor
    names: list[str]
    class_names: tuple[str, ...]
    source: str
    root: str = ""
    preset_split: list[str] | None = None
    hashes: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.names)
        if not (self.images.shape[0] == self.masks.shape[0] == self.labels.shape[0] == n):
            raise ValueError(f"ImageSet: inconsistent lengths images={self.images.shape[0]} "
                             f"masks={self.masks.shape[0]} labels={self.labels.shape[0]} names={n}")
        if self.images.dtype != torch.uint8 or self.masks.dtype != torch.uint8:
            raise ValueError("ImageSet: images and masks must be uint8")
        if self.hashes is not None and len(self.hashes) != n:
            raise ValueError(f"ImageSet: {len(self.hashes)} hashes for {n} images")

    def __len__(self) -> int:
        return len(self.names)

    @property
    def image_size(self) -> int:
        return int(self.images.shape[-1])

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.labels.numpy(), minlength=len(self.class_names))
        return {name: int(c) for name, c in zip(self.class_names, counts)}

    def subset(self, indices) -> "ImageSet":
        """The images at ``indices`` (a sequence or array of ints), in that order."""
        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        preset = [self.preset_split[i] for i in idx.tolist()] if self.preset_split else None
        hashes = self.hashes[idx.numpy()] if self.hashes is not None else None
        return replace(self, images=self.images[idx], masks=self.masks[idx],
                       labels=self.labels[idx], names=[self.names[i] for i in idx.tolist()],
                       preset_split=preset, hashes=hashes)

    def summary(self) -> str:
        counts = ", ".join(f"{k} {v}" for k, v in self.class_counts().items())
        return (f"{self.source} dataset at {self.root or '?'}: {len(self)} images "
                f"({counts}) at {self.image_size}x{self.image_size}")

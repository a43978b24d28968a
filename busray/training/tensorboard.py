"""TensorBoard logging for a run: per-epoch scalars and a few validation prediction overlays.

Overlays show the image in gray, the ground-truth contour region in green and the thresholded prediction
in red, so segmentation progress can be watched epoch by epoch in TensorBoard's Images tab.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


class TensorBoardLogger:
    """A thin wrapper that does nothing when disabled (non-zero DDP ranks)."""

    def __init__(self, log_dir: Path | None) -> None:
        self.writer = None
        if log_dir is not None:
            from torch.utils.tensorboard import SummaryWriter  # tensorboard is a core dependency

            self.writer = SummaryWriter(log_dir=str(log_dir))

    def scalars(self, metrics: dict[str, float], step: int) -> None:
        if self.writer is None:
            return
        for key, value in metrics.items():
            if key != "epoch" and isinstance(value, (int, float)) and np.isfinite(value):
                self.writer.add_scalar(key, value, step)

    def overlays(self, images: torch.Tensor, masks: torch.Tensor, probs: np.ndarray, step: int) -> None:
        """images/masks: (K, 1, S, S) uint8 on any device; probs: (K, S, S) in [0, 1]."""
        if self.writer is None or probs is None or len(probs) == 0:
            return
        self.writer.add_images("val/overlay", overlay_rgb(images, masks, probs), step, dataformats="NHWC")

    def text(self, tag: str, text: str) -> None:
        if self.writer is not None:
            self.writer.add_text(tag, text)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def overlay_rgb(images: torch.Tensor, masks: torch.Tensor, probs: np.ndarray) -> np.ndarray:
    """(K, S, S, 3) float in [0, 1]: gray image, ground truth tinted green, prediction tinted red."""
    k = len(probs)
    gray = images[:k, 0].float().cpu().numpy() / 255.0
    gt = masks[:k, 0].float().cpu().numpy() > 0.5
    pred = probs > 0.5
    rgb = np.repeat(gray[..., None], 3, axis=-1) * 0.7
    rgb[..., 1] += 0.3 * gt
    rgb[..., 0] += 0.3 * pred
    return np.clip(rgb, 0.0, 1.0)

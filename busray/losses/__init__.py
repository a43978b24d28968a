"""The multi-task loss of the paper (Sec. 2.4, Eq. 11-12): config, terms and the combined module."""

from busray.losses.config import BOUNDARY_MODES, LossConfig
from busray.losses.multitask import LOSS_KEYS, MultiTaskLoss
from busray.losses.terms import (boundary_loss, curvature_kernel, focal_cross_entropy,
                                 focal_tversky_loss, sobel_x_kernel, texture_loss, tversky_index)

__all__ = ["BOUNDARY_MODES", "LOSS_KEYS", "LossConfig", "MultiTaskLoss", "boundary_loss",
           "curvature_kernel", "focal_cross_entropy", "focal_tversky_loss", "sobel_x_kernel",
           "texture_loss", "tversky_index"]

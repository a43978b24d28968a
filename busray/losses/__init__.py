"""The multi-task loss of the paper (Sec. 2.4, Eq. 11-12): config, terms and the combined module."""

from busray.losses.config import BOUNDARY_MODES, LossConfig
from busray.lazy import lazy_exports

# torch loads on first use of these (busray/lazy.py says why)
__getattr__ = lazy_exports(__name__, {
    "LOSS_KEYS": "multitask", "MultiTaskLoss": "multitask",
    **{name: "terms" for name in ("boundary_loss", "curvature_kernel", "focal_cross_entropy",
                                  "focal_tversky_loss", "sobel_x_kernel", "texture_loss", "tversky_index")}})

__all__ = ["BOUNDARY_MODES", "LOSS_KEYS", "LossConfig", "MultiTaskLoss", "boundary_loss",
           "curvature_kernel", "focal_cross_entropy", "focal_tversky_loss", "sobel_x_kernel",
           "texture_loss", "tversky_index"]

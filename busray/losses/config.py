"""``loss.*`` config: every weight, exponent and kernel parameter of the multi-task loss (Sec. 2.4).

The paper fixes the four weights (0.80/0.20/0.25/0.15), the Tversky asymmetries (alpha=0.3, beta=0.7),
the focal exponent (gamma=0.75) and the curvature kernel's sigma (1.0). What it leaves open is chosen
here as a careful reimplementation would, and exposed as an option so sweeps can search it:

- ``tversky_smooth=1.0``: the smoothing constant of the Tversky index (Abraham & Khan's own value).
  It is what makes a normal image (empty mask) behave: with an empty prediction TI = s/s = 1, so the
  loss is ~0; predicted foreground mass ``m`` gives TI = s/(alpha*m + s), a loss that grows smoothly
  towards 1. A tiny constant (the authors' code uses 1e-7) would make any faint prediction on a
  normal image cost ~1.
- ``focal_gamma=2.0``: the classification focal exponent (Lin et al.'s default; the authors' code too).
- ``boundary_kernel_size=5`` (the authors' code, which however sets sigma = size/4; we keep the
  paper's sigma=1.0); the kernel is L1-normalised by default (also the authors' code) so the
  boundary term lies in [0, 1] whatever sigma and size are.
- ``boundary_mode="soft"`` applies the kernel to the sigmoid probabilities, so the term has a
  gradient; ``"binary"`` is Eq. 11 read literally (and the authors' code): both masks are thresholded,
  the term is logged and added to the total but gives no gradient.
- ``class_weights``: optional per-class weights of the focal cross-entropy (None: unweighted).
"""

from __future__ import annotations

from dataclasses import dataclass

from busray.configtools import ConfigError, option

BOUNDARY_MODES = ("soft", "binary")


@dataclass
class LossConfig:
    """``loss.*``: L = w_seg*L_seg + w_clf*L_clf, L_seg = L_FT + w_boundary*L_bd + w_texture*L_tex."""

    w_seg: float = option(0.80, "weight of the segmentation loss in the total (paper: 0.80)",
                          range=(0.0, 10.0))
    w_clf: float = option(0.20, "weight of the classification loss in the total (paper: 0.20)",
                          range=(0.0, 10.0))
    w_boundary: float = option(0.25, "weight of the curvature boundary term, Eq. 11, inside L_seg "
                               "(paper: 0.25)", range=(0.0, 10.0))
    w_texture: float = option(0.15, "weight of the Sobel texture term, Eq. 12, inside L_seg "
                              "(paper: 0.15)", range=(0.0, 10.0))
    tversky_alpha: float = option(0.3, "Tversky weight of false positives, "
                                  "TI = TP/(TP + alpha*FP + beta*FN) (paper: 0.3)", range=(0.0, 1.0))
    tversky_beta: float = option(0.7, "Tversky weight of false negatives (paper: 0.7; > alpha favours "
                                 "recall of small lesions)", range=(0.0, 1.0))
    tversky_gamma: float = option(0.75, "focal Tversky exponent: L_FT = (1 - TI)^gamma; 1 is the "
                                  "plain Tversky loss (paper: 0.75)", range=(0.1, 4.0))
    tversky_smooth: float = option(1.0, "smoothing constant of the Tversky index; makes empty mask + "
                                   "empty prediction score TI = 1 (loss ~0)", range=(1e-7, 100.0))
    focal_gamma: float = option(2.0, "focal cross-entropy exponent (0: plain cross-entropy; "
                                "Lin et al. and the authors' code: 2.0)", range=(0.0, 5.0))
    class_weights: list[float] | None = option(None, "per-class weights of the focal cross-entropy, "
                                               "in label order (None: all 1)", range=(0.0, None))
    boundary_mode: str = option("soft", "soft: curvature kernel on sigmoid probabilities "
                                "(differentiable); binary: on thresholded masks as Eq. 11 and the "
                                "authors' code (no gradient)", choices=BOUNDARY_MODES)
    boundary_sigma: float = option(1.0, "sigma of the curvature kernel (x^2-y^2)exp(-r^2/2sigma^2) "
                                   "(paper: 1.0)", range=(0.1, 10.0))
    boundary_kernel_size: int = option(5, "side of the curvature kernel, odd (authors' code: 5)",
                                       range=(3, 31))
    boundary_normalize: bool = option(True, "divide the curvature kernel by its L1 norm so the "
                                      "boundary term lies in [0, 1] (authors' code)")

    def check(self) -> None:
        """Cross-field rules that a single field's range cannot express."""
        if self.w_seg + self.w_clf <= 0:
            raise ConfigError("w_seg: w_seg and w_clf are both 0, so the loss would be constant")
        if self.tversky_alpha + self.tversky_beta <= 0:
            raise ConfigError("tversky_alpha: alpha and beta are both 0, so the Tversky index "
                              "would ignore every error")
        if self.boundary_kernel_size % 2 == 0:
            raise ConfigError(f"boundary_kernel_size: {self.boundary_kernel_size} must be odd "
                              "(the kernel is centred on a pixel)")
        if self.class_weights is not None:
            if not self.class_weights:
                raise ConfigError("class_weights: an empty list; use null for unweighted")
            if sum(self.class_weights) <= 0:
                raise ConfigError("class_weights: all weights are 0")

"""The multi-task loss of paper Sec. 2.4 as an ``nn.Module`` that returns every term for logging.

    L     = w_seg * L_seg + w_clf * L_clf                      (0.80 / 0.20)
    L_seg = L_FT + w_boundary * L_boundary + w_texture * L_texture   (0.25 / 0.15; Eq. 11, 12)
    L_clf = focal cross-entropy

Each segmentation term is computed per image and then averaged over the batch, so a normal image
(empty mask) is judged on its own: with an empty prediction its focal Tversky term is ~0 (see
:class:`~busray.losses.config.LossConfig`), instead of being diluted into a batch-wide ratio.

Everything runs in float32 with autocast disabled, whatever precision the model ran in: the Tversky
ratios and the std of the Sobel response underflow or lose precision in float16.
"""

from __future__ import annotations

import torch
from torch import nn

from busray.losses.config import LossConfig
from busray.losses.terms import (boundary_loss, curvature_kernel, focal_cross_entropy,
                                 focal_tversky_loss, sobel_x_kernel, texture_loss)

# The two task losses are ``seg_loss``/``clf_loss``, not ``seg``/``clf``: reported as ``val/seg`` they would
# sit beside the metric keys ``val/seg/iou``..., a name that is both a value and a group (MLflow's file
# store, for one, cannot hold both).
LOSS_KEYS = ("loss", "seg_loss", "clf_loss", "focal_tversky", "boundary", "texture")


class MultiTaskLoss(nn.Module):
    """``forward(seg_logits, clf_logits, masks, labels) -> dict`` of scalar terms (``LOSS_KEYS``).

    Inputs: ``seg_logits (B, 1, H, W)``, ``clf_logits (B, C)``, ``masks (B, 1, H, W)`` in {0, 1}
    (any dtype; a soft mask in [0, 1] is accepted and binarised at 0.5 only for Eq. 11), ``labels
    (B,)`` integer class indices.
    """

    def __init__(self, cfg: LossConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or LossConfig()
        # Buffers, not parameters: they follow .to(device) but are neither trained nor checkpointed.
        kernel = curvature_kernel(self.cfg.boundary_kernel_size, self.cfg.boundary_sigma,
                                  self.cfg.boundary_normalize)
        self.register_buffer("curvature", kernel, persistent=False)
        self.register_buffer("sobel_x", sobel_x_kernel(), persistent=False)
        weights = self.cfg.class_weights
        self.register_buffer("class_weights", None if weights is None else
                             torch.tensor(weights, dtype=torch.float32), persistent=False)

    def forward(self, seg_logits: torch.Tensor, clf_logits: torch.Tensor, masks: torch.Tensor,
                labels: torch.Tensor) -> dict[str, torch.Tensor]:
        self._check_inputs(seg_logits, clf_logits, masks, labels)
        with torch.autocast(device_type=seg_logits.device.type, enabled=False):
            probs = torch.sigmoid(seg_logits.float())
            target = masks.float()
            seg_terms = self._segmentation_terms(probs, target)
            clf = focal_cross_entropy(clf_logits.float(), labels.long(), self.cfg.focal_gamma,
                                      self.class_weights)
        cfg = self.cfg
        seg = (seg_terms["focal_tversky"] + cfg.w_boundary * seg_terms["boundary"]
               + cfg.w_texture * seg_terms["texture"])
        total = cfg.w_seg * seg + cfg.w_clf * clf
        return {"loss": total, "seg_loss": seg, "clf_loss": clf, **seg_terms}

    def _segmentation_terms(self, probs: torch.Tensor, target: torch.Tensor
                            ) -> dict[str, torch.Tensor]:
        """Batch means of the three per-image segmentation terms."""
        cfg = self.cfg
        ft = focal_tversky_loss(probs, target, cfg.tversky_alpha, cfg.tversky_beta,
                                cfg.tversky_gamma, cfg.tversky_smooth)
        # Eq. 11 names M_bin: the ground truth is always thresholded; the prediction only in
        # "binary" mode, where the comparison cuts the graph (the authors' variant, no gradient).
        target_bin = (target > 0.5).float()
        pred = probs if cfg.boundary_mode == "soft" else (probs > 0.5).float()
        boundary = boundary_loss(pred, target_bin, self.curvature)
        texture = texture_loss(probs, target, self.sobel_x)
        return {"focal_tversky": ft.mean(), "boundary": boundary.mean(), "texture": texture.mean()}

    def _check_inputs(self, seg_logits: torch.Tensor, clf_logits: torch.Tensor,
                      masks: torch.Tensor, labels: torch.Tensor) -> None:
        if seg_logits.dim() != 4 or seg_logits.shape[1] != 1:
            raise ValueError(f"MultiTaskLoss: seg_logits must be (B, 1, H, W), "
                             f"got {tuple(seg_logits.shape)}")
        if masks.shape != seg_logits.shape:
            raise ValueError(f"MultiTaskLoss: masks {tuple(masks.shape)} do not match seg_logits "
                             f"{tuple(seg_logits.shape)}")
        batch = seg_logits.shape[0]
        if clf_logits.dim() != 2 or clf_logits.shape[0] != batch:
            raise ValueError(f"MultiTaskLoss: clf_logits must be (B={batch}, C), "
                             f"got {tuple(clf_logits.shape)}")
        if labels.shape != (batch,):
            raise ValueError(f"MultiTaskLoss: labels must be (B={batch},), got {tuple(labels.shape)}")
        if self.class_weights is not None and len(self.class_weights) != clf_logits.shape[1]:
            raise ValueError(f"loss.class_weights has {len(self.class_weights)} entries but the "
                             f"model has {clf_logits.shape[1]} classes")

    def extra_repr(self) -> str:
        c = self.cfg
        return (f"w_seg={c.w_seg}, w_clf={c.w_clf}, w_boundary={c.w_boundary}, "
                f"w_texture={c.w_texture}, boundary_mode={c.boundary_mode!r}")

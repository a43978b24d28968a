"""The dual heads (Sec. 2) and the per-level classification streams' initialisation (Sec. 2.1).

- ``LevelClfInit``: ``f_clf^l = ReLU(Dense_clf_dim(GAP(E)))`` from one encoder stage ("initialized
  from each encoder stage via global average pooling and MLP projection"). Level l reads the encoder
  feature that enters that level from below, i.e. the deepest feature available to it:
  D1 <- stride 32 (the bridge), D2 <- stride 16, D3 <- stride 8, D4 <- stride 4, as in the authors'
  code and Fig. 1 (each level pairs semantic context one stage deeper than its skip connection).
- ``SegmentationHead``: from D4 (stride 2) to full input resolution with one more transposed conv,
  a 3x3 conv and a 1x1 conv to one logit channel.
- ``ClassificationHead``: on the concatenation of GAP features of the encoder stages at strides
  4..32 and the four level streams ("classification aggregates multi-scale encoder features with
  task-interaction streams from all decoder levels"): Dense -> ReLU -> BN -> Dropout -> Dense.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

CLF_ENCODER_TAPS = (1, 2, 3, 4)
"""Encoder taps (0 = stride 2 ... 4 = stride 32) whose GAP feeds the classification head."""

LEVEL_SOURCE_TAP = {1: 4, 2: 3, 3: 2, 4: 1}
"""Decoder level -> encoder tap that initialises its classification stream."""


def global_pool(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C)."""
    return x.mean(dim=(2, 3))


class LevelClfInit(nn.Module):
    """GAP + Dense + ReLU: an encoder stage (B, C, H, W) -> a classification stream (B, clf_dim)."""

    def __init__(self, in_channels: int, clf_dim: int):
        super().__init__()
        self.proj = nn.Sequential(nn.Linear(in_channels, clf_dim), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(global_pool(x))


class SegmentationHead(nn.Module):
    """D4 features -> (B, 1, H, W) logits at the input resolution."""

    def __init__(self, in_channels: int):
        super().__init__()
        mid = max(in_channels // 2, 1)
        self.body = nn.Sequential(
            nn.ConvTranspose2d(in_channels, mid, 2, stride=2, bias=False),
            nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
            nn.Conv2d(mid, mid, 3, padding=1, bias=False),
            nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
            nn.Conv2d(mid, 1, 1),
        )

    def forward(self, x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        logits = self.body(x)
        if tuple(logits.shape[-2:]) != tuple(size):
            logits = F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)
        return logits


class ClassificationHead(nn.Module):
    """Concatenated pooled features (B, in_features) -> (B, num_classes) logits."""

    def __init__(self, in_features: int, hidden: int, num_classes: int, dropout: float):
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(in_features, hidden), nn.ReLU(inplace=True), nn.BatchNorm1d(hidden),
            nn.Dropout(dropout), nn.Linear(hidden, num_classes),
        )

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.body(torch.cat(list(features), dim=1))

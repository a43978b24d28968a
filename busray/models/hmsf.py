"""Hierarchical multi-scale fusion (HMSF, Sec. 2.3, Eq. 9-10) of one encoder feature map.

Three parallel dilated separable 3x3 convolutions (r = 1, 2, 4: receptive fields 3, 5 and 9 pixels)
see the same input; a squeeze-and-excitation style branch, GAP -> MLP(C/8) -> ReLU -> MLP(3) ->
softmax, turns the input into per-sample weights of the three scales (Eq. 9-10), and a 1x1
convolution fuses their weighted sum. Unlike SE-Net the softmax makes the scales compete rather than
recalibrating channels.

Choices the paper leaves open: each separable conv is depthwise(dilated) -> pointwise -> BatchNorm ->
ReLU, the scale-attention MLP has at least ``MIN_HIDDEN`` units, the fusing 1x1 conv is followed by
BatchNorm, and the output is added to the input (the residual of Fig. 1), so HMSF refines the
pretrained encoder features rather than replacing them.
"""

from __future__ import annotations

import torch
from torch import nn

DILATIONS = (1, 2, 4)
MIN_HIDDEN = 8
"""Floor of the scale-attention MLP width: C/8 alone leaves 2-3 units on narrow taps (B4's stride-2
tap has 24 channels), where a couple of dead ReLUs would freeze the scale weights."""


class SeparableConv(nn.Sequential):
    """Depthwise dilated 3x3 then pointwise 1x1, BatchNorm, ReLU; keeps size and channels."""

    def __init__(self, channels: int, dilation: int):
        super().__init__(
            nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation, groups=channels,
                      bias=False),
            nn.Conv2d(channels, channels, 1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
        )


class HMSF(nn.Module):
    """``Y = X + BN(Conv1x1(sum_i alpha_i * SepConv_{r_i}(X)))`` with alpha from Eq. 10."""

    def __init__(self, channels: int, reduction: int = 8):
        super().__init__()
        hidden = max(channels // reduction, MIN_HIDDEN)
        self.branches = nn.ModuleList(SeparableConv(channels, r) for r in DILATIONS)
        self.scale_attention = nn.Sequential(            # Eq. 9 (g) and Eq. 10 (alpha, before softmax)
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(channels, hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, len(DILATIONS)),
        )
        self.fuse = nn.Sequential(nn.Conv2d(channels, channels, 1, bias=False), nn.BatchNorm2d(channels))

    def scale_weights(self, x: torch.Tensor) -> torch.Tensor:
        """alpha: (B, 3), a softmax over the dilation rates per sample."""
        return torch.softmax(self.scale_attention(x), dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = self.scale_weights(x)
        mixed = sum(alpha[:, i, None, None, None] * branch(x) for i, branch in enumerate(self.branches))
        return x + self.fuse(mixed)

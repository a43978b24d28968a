"""Decoder levels D1..D4: transposed-conv upsampling, attention-gated skip, residual conv block (Sec. 2).

Each level doubles the resolution of the previous one with a 2x2 stride-2 transposed convolution,
gates the encoder skip connection with an additive attention gate (Oktay et al., ref. 21: "suppress
background speckle while preserving lesion boundaries using decoder-level semantic guidance"),
concatenates both and refines them with a residual block of two 3x3 convolutions.

Choices the paper leaves open (following the authors' code where it is explicit):
- the gating signal is the upsampled decoder feature, already at the skip's resolution, so the gate
  needs no resampling; its inner width is half the level's width;
- a residual block (conv-BN-ReLU-conv-BN plus a 1x1 projection, then ReLU) after the concatenation,
  and dropout after each level (``model.decoder_dropout``);
- inputs whose size is not a multiple of 32 are handled by resizing the upsampled map to the skip's
  size (bilinear) instead of failing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class AttentionGate(nn.Module):
    """Additive attention gate: ``skip * sigmoid(psi(ReLU(W_x skip + W_g gate)))``, one map per sample."""

    def __init__(self, skip_channels: int, gate_channels: int, inner_channels: int):
        super().__init__()
        self.skip_proj = nn.Conv2d(skip_channels, inner_channels, 1, bias=False)
        self.gate_proj = nn.Conv2d(gate_channels, inner_channels, 1)
        self.psi = nn.Sequential(nn.Conv2d(inner_channels, 1, 1, bias=False), nn.BatchNorm2d(1), nn.Sigmoid())

    def attention(self, skip: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        """The gate's coefficients, (B, 1, H, W) in [0, 1]."""
        return self.psi(F.relu(self.skip_proj(skip) + self.gate_proj(gate)))

    def forward(self, skip: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        return skip * self.attention(skip, gate)


class ResidualConvBlock(nn.Module):
    """Two 3x3 conv-BN layers with a 1x1 projected shortcut; changes channels, keeps the size."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False),
                                      nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.shortcut(x))


class DecoderBlock(nn.Module):
    """One decoder level: ``x`` (stride 2s) and the encoder ``skip`` (stride s) -> (B, out, H_s, W_s)."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int,
                 attention_gate: bool = True, dropout: float = 0.0):
        super().__init__()
        self.upsample = nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2)
        self.gate = (AttentionGate(skip_channels, out_channels, max(out_channels // 2, 1))
                     if attention_gate else None)
        self.conv = ResidualConvBlock(out_channels + skip_channels, out_channels)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.upsample(x)
        if x.shape[-2:] != skip.shape[-2:]:
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        if self.gate is not None:
            skip = self.gate(skip, x)
        return self.dropout(self.conv(torch.cat([x, skip], dim=1)))

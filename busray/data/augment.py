"""Batched, on-device training augmentation: rotation, flips and elastic deformation (Sec. 3.1).

The paper's GPU step is launch-bound at batch 24, so augmentation must not be a per-sample Python
loop on the CPU. Here every sample's rotation and flips are folded into one ``(B, 2, 3)`` affine
matrix, an elastic displacement field (one per sample) is added to the sampling grid, and images
and masks are resampled with a single ``grid_sample`` call each -- a handful of kernel launches per
batch whatever the batch size, and one interpolation (no compounded blur).

Elastic deformation follows Simard et al. (2003): white noise smoothed by a gaussian gives a smooth
random displacement field. To keep the gaussian small the noise is drawn and smoothed on a grid
coarser by ``~sigma/4`` and upsampled bilinearly (the field is smooth at that scale anyway); it is
scaled per sample to a standard deviation of ``elastic_alpha`` (a fraction of the image side), so
the strength does not depend on the resolution. Masks are resampled bilinearly and thresholded at
0.5, which keeps them binary. Samples that draw no transform are returned bit-exact.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from busray.data.config import AugmentConfig, DataConfig


def augment_batch(images: torch.Tensor, masks: torch.Tensor, cfg: AugmentConfig | DataConfig,
                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment ``images`` float ``(B, C, H, W)`` and ``masks`` float ``(B, 1, H, W)`` in {0, 1}.

    ``cfg`` is ``data.augment`` (or the whole ``DataConfig``). ``generator`` must live on the
    tensors' device; with the same generator state the result is the same.
    """
    cfg = cfg.augment if isinstance(cfg, DataConfig) else cfg
    if not _any_transform(cfg):
        return images, masks
    b, _, h, w = images.shape
    draw = lambda: torch.rand(b, generator=generator, device=images.device)  # noqa: E731
    rotate = draw() < cfg.rotation_prob
    angle = (draw() * 2 - 1) * math.radians(cfg.rotation_deg) * rotate
    hflip, vflip, elastic = draw() < cfg.hflip_prob, draw() < cfg.vflip_prob, \
        draw() < cfg.elastic_prob
    theta = _affine(angle, hflip, vflip, h, w)
    grid = F.affine_grid(theta.to(images.dtype), [b, 1, h, w], align_corners=False)
    if cfg.elastic_prob > 0 and cfg.elastic_alpha > 0:
        field = elastic_field(b, h, w, cfg.elastic_alpha, cfg.elastic_sigma, generator,
                              images.device)
        grid = grid + field.to(grid.dtype) * elastic[:, None, None, None]
    warped = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros",
                           align_corners=False)
    warped_masks = (F.grid_sample(masks, grid, mode="bilinear", padding_mode="zeros",
                                  align_corners=False) > 0.5).to(masks.dtype)
    active = (rotate | hflip | vflip | elastic)[:, None, None, None]
    return torch.where(active, warped, images), torch.where(active, warped_masks, masks)


def _any_transform(cfg: AugmentConfig) -> bool:
    return cfg.enabled and ((cfg.rotation_prob > 0 and cfg.rotation_deg > 0)
                            or cfg.hflip_prob > 0 or cfg.vflip_prob > 0
                            or (cfg.elastic_prob > 0 and cfg.elastic_alpha > 0))


def _affine(angle: torch.Tensor, hflip: torch.Tensor, vflip: torch.Tensor,
            h: int, w: int) -> torch.Tensor:
    """``(B, 2, 3)`` output->input maps in normalised coordinates: rotation about the centre
    (corrected for a non-square aspect so it is a true rotation in pixels) composed with flips."""
    cos, sin = torch.cos(angle), torch.sin(angle)
    sx = 1.0 - 2.0 * hflip.to(angle.dtype)
    sy = 1.0 - 2.0 * vflip.to(angle.dtype)
    zero = torch.zeros_like(angle)
    row0 = torch.stack([cos * sx, -sin * (h / w) * sy, zero], dim=1)
    row1 = torch.stack([sin * (w / h) * sx, cos * sy, zero], dim=1)
    return torch.stack([row0, row1], dim=1)


def elastic_field(b: int, h: int, w: int, alpha: float, sigma: float,
                  generator: torch.Generator | None, device) -> torch.Tensor:
    """Smooth random displacements ``(B, H, W, 2)`` in normalised grid units (x, y).

    ``alpha`` (std) and ``sigma`` (gaussian smoothing) are fractions of the shorter image side.
    """
    side = min(h, w)
    sigma_px = sigma * side
    factor = max(1, int(sigma_px // 4))                 # coarse grid keeps the kernel ~25 taps
    ch, cw = math.ceil(h / factor), math.ceil(w / factor)
    noise = torch.randn(b * 2, 1, ch, cw, generator=generator, device=device)
    smooth = _gaussian_blur(noise, sigma_px / factor).view(b, 2, ch, cw)
    # unit std per sample, measured on the coarse grid (bilinear upsampling barely changes it)
    smooth = smooth / smooth.flatten(1).std(dim=1).clamp_min(1e-8)[:, None, None, None]
    pixels = F.interpolate(smooth * (alpha * side), size=(h, w), mode="bilinear",
                           align_corners=False)
    scale = torch.tensor([2.0 / w, 2.0 / h], device=device)  # pixels -> normalised units
    return pixels.permute(0, 2, 3, 1) * scale


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable gaussian blur of ``(N, 1, H, W)`` with replicate padding."""
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    kernel = kernel / kernel.sum()
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), kernel.view(1, 1, 1, -1))
    return F.conv2d(F.pad(x, (0, 0, radius, radius), mode="replicate"), kernel.view(1, 1, -1, 1))

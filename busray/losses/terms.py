"""The terms of the multi-task loss (paper Sec. 2.4) as plain functions on float32 tensors.

Segmentation terms take probabilities ``probs`` and a target mask, both ``(B, 1, H, W)`` in [0, 1],
and return one value per image ``(B,)``, so the caller decides how images are averaged.

- Focal Tversky (Abraham & Khan 2019, ref. [1]): TI = (TP + s) / (TP + alpha*FP + beta*FN + s) and
  L_FT = (1 - TI)^gamma. Convention: the exponent is applied as written, so the paper's gamma=0.75
  is Abraham & Khan's 1/gamma with their gamma=4/3 (their best value), which is also how their code
  and the authors' code apply it. alpha weights false positives and beta false negatives (Salehi et
  al.'s convention, and the authors' code), so the paper's beta=0.7 > alpha=0.3 favours recall.
- Boundary (Eq. 11): mean |K_curv * M - K_curv * M_hat| with the curvature kernel
  K(x, y) = (x^2 - y^2) exp(-r^2 / 2 sigma^2); zero padding, so a mask touching the border is
  treated as ending there.
- Texture (Eq. 12): |std(S_x * M) - std(S_x * M_hat)| with the horizontal Sobel operator S_x, the
  population std over all pixels of one image.
- Focal cross-entropy (Lin et al. 2017, ref. [18]) for classification: -(1 - p_t)^gamma log p_t.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Keeps (1 - TI)^gamma and (1 - p_t)^gamma differentiable at 0 when the exponent is below 1.
_POW_FLOOR = 1e-12
# sqrt(var + eps): the gradient of sqrt is infinite at 0 (e.g. an empty mask has zero Sobel variance).
_STD_EPS = 1e-8

SOBEL_X = ((-1.0, 0.0, 1.0),
           (-2.0, 0.0, 2.0),
           (-1.0, 0.0, 1.0))


def tversky_index(probs: torch.Tensor, target: torch.Tensor, alpha: float, beta: float,
                  smooth: float) -> torch.Tensor:
    """Per-image soft Tversky index ``(B,)``; alpha weights false positives, beta false negatives."""
    dims = (1, 2, 3)
    tp = (probs * target).sum(dims)
    fp = (probs * (1.0 - target)).sum(dims)
    fn = ((1.0 - probs) * target).sum(dims)
    return (tp + smooth) / (tp + alpha * fp + beta * fn + smooth)


def focal_tversky_loss(probs: torch.Tensor, target: torch.Tensor, alpha: float, beta: float,
                       gamma: float, smooth: float) -> torch.Tensor:
    """Per-image focal Tversky loss ``(B,)`` = (1 - TI)^gamma, in [0, 1]."""
    ti = tversky_index(probs, target, alpha, beta, smooth)
    return (1.0 - ti).clamp_min(_POW_FLOOR).pow(gamma)


def curvature_kernel(size: int, sigma: float, normalize: bool = True) -> torch.Tensor:
    """The curvature kernel of Eq. 11 as a conv weight ``(1, 1, size, size)``.

    x runs along the width (columns) and y along the height (rows), both centred on the middle
    pixel. The kernel sums to zero (it is antisymmetric under swapping x and y), so a uniform region
    gives no response; with ``normalize`` it is divided by its L1 norm.
    """
    if size < 3 or size % 2 == 0:
        raise ValueError(f"curvature kernel size must be odd and >= 3, got {size}")
    offsets = torch.arange(size, dtype=torch.float64) - size // 2
    y, x = torch.meshgrid(offsets, offsets, indexing="ij")
    kernel = (x ** 2 - y ** 2) * torch.exp(-(x ** 2 + y ** 2) / (2.0 * sigma ** 2))
    if normalize:
        kernel = kernel / kernel.abs().sum()
    return kernel.to(torch.float32).view(1, 1, size, size)


def sobel_x_kernel() -> torch.Tensor:
    """The horizontal Sobel operator as a conv weight ``(1, 1, 3, 3)``."""
    return torch.tensor(SOBEL_X, dtype=torch.float32).view(1, 1, 3, 3)


def _filter(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Same-size 2-D filtering (cross-correlation, zero padding) of ``(B, 1, H, W)``."""
    return F.conv2d(x, kernel.to(dtype=x.dtype, device=x.device), padding=kernel.shape[-1] // 2)


def boundary_loss(pred: torch.Tensor, target: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Per-image Eq. 11 ``(B,)``: mean over pixels of |K * target - K * pred|.

    ``pred`` is either the probabilities (differentiable, "soft") or a thresholded mask ("binary").
    """
    diff = _filter(target, kernel) - _filter(pred, kernel)
    return diff.abs().mean(dim=(1, 2, 3))


def _image_std(x: torch.Tensor) -> torch.Tensor:
    """Population std over all pixels of each image ``(B,)``, with an epsilon inside the sqrt."""
    flat = x.flatten(1)
    var = (flat - flat.mean(dim=1, keepdim=True)).pow(2).mean(dim=1)
    return torch.sqrt(var + _STD_EPS)


def texture_loss(probs: torch.Tensor, target: torch.Tensor,
                 sobel: torch.Tensor | None = None) -> torch.Tensor:
    """Per-image Eq. 12 ``(B,)``: |std(S_x * target) - std(S_x * probs)|."""
    sobel = sobel_x_kernel() if sobel is None else sobel
    return (_image_std(_filter(target, sobel)) - _image_std(_filter(probs, sobel))).abs()


def focal_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, gamma: float,
                        class_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Focal cross-entropy, a scalar: the (class-weighted) mean of -(1 - p_t)^gamma log p_t.

    With ``class_weights`` the mean is normalised by the summed weights of the batch's labels (as
    ``F.cross_entropy(weight=...)`` does), so weights change the balance, not the loss scale.
    gamma = 0 gives plain cross-entropy.
    """
    log_p_t = F.log_softmax(logits, dim=1).gather(1, labels.view(-1, 1)).squeeze(1)
    focal = (1.0 - log_p_t.exp()).clamp_min(_POW_FLOOR).pow(gamma)
    per_sample = -focal * log_p_t
    if class_weights is None:
        return per_sample.mean()
    w = class_weights.to(per_sample.device, per_sample.dtype)[labels]
    return (w * per_sample).sum() / w.sum().clamp_min(torch.finfo(per_sample.dtype).tiny)


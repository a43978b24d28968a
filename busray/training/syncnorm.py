"""Batch statistics over the global batch of a DDP step (``train.sync_batchnorm``).

A DDP step of ``W`` ranks with ``b`` images each should train like one process with ``W * b``
images. Gradients are averaged by DDP, but two parts of the model normalise by statistics of *the
batch*: every BatchNorm layer (mean and variance per channel) and UPA's ``u_bar`` (the batch mean of
the uncertainty proxies, Eq. 7). Computed per rank they are statistics of ``b`` images, so the
forward pass, the gradients and the BatchNorm running statistics all differ from the single-process
run (issue 26 measured 0.5-1 % in the training loss and 0.06 in validation AUC after one epoch).
:func:`sync_batch_statistics` makes both global:

- BatchNorm layers (``nn.BatchNorm1d/2d/3d`` and timm's ``BatchNormAct2d``, which every timm
  EfficientNet uses: BatchNorm2d + activation in one module) are converted *in place*: each keeps its
  object, parameters and buffers and gets a subclass of its own class whose training forward
  normalises with the statistics of all ranks' images. In place, because the encoder holds its
  frozen norms in a list (kept in eval mode) and ``model.encoder_taps: expansion`` hooks
  ``BatchNormAct2d`` modules; replacing them would lose both. (``nn.SyncBatchNorm.
  convert_sync_batchnorm`` replaces modules, and turns a ``BatchNormAct2d`` into a plain
  SyncBatchNorm: the activation after every encoder norm would be dropped.)
  On CUDA the forward is torch's ``nn.SyncBatchNorm`` (fused kernels; the converted class is one).
  On CPU torch's SyncBatchNorm refuses to run ("expected input tensor to be on GPU"; its kernels
  ``batch_norm_stats``/``batch_norm_elemt`` have no CPU implementation in torch 2.14, and DDP refuses
  a CPU module holding one), so :func:`_batch_norm_over_ranks` computes the statistics with two
  differentiable all-reduces: sums and count, then the centred sum of squares.
- UPA modules compute ``u_bar`` over every rank's batch (:meth:`UncertaintyProxyAttention.batch_mean`).

Only training-mode forwards with ``world > 1`` synchronise: in evaluation each rank scores whole
splits on its own (and rank 0 alone runs the test pass), so no collective may run there. The running
statistics are updated from the global batch, so they end equal on every rank (and equal to a
single-process run's, up to float summation order).
"""

from __future__ import annotations

from functools import cache

import torch
from timm.layers import BatchNormAct2d
from torch import nn

from busray.models.upa import UncertaintyProxyAttention
from busray.training.distributed import differentiable_sum_over_ranks, distributed

#: Norm layers whose forward is "normalise with batch statistics (then, for timm's, drop + act)".
#: Any other BatchNorm subclass is refused: its forward may do more, which a conversion would lose.
SUPPORTED_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, BatchNormAct2d)


class SyncBatchStatisticsError(ValueError):
    """A norm layer that cannot be synchronised (names ``train.sync_batchnorm``)."""


def sync_batch_statistics(model: nn.Module, device: torch.device) -> int:
    """Make ``model``'s BatchNorm layers and UPA modules use global-batch statistics in training.

    Converts in place; returns the number of converted modules. ``device`` picks the BatchNorm
    implementation (torch's SyncBatchNorm on CUDA, all-reduces on CPU).
    """
    converted = 0
    for name, module in model.named_modules():
        if isinstance(module, (_SyncedNorm, _GlobalMeanUPA)):
            continue
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            if type(module) not in SUPPORTED_NORMS:
                raise SyncBatchStatisticsError(
                    f"train.sync_batchnorm: cannot synchronise {type(module).__name__} ({name}); "
                    f"supported: {', '.join(c.__name__ for c in SUPPORTED_NORMS)}. "
                    "Set train.sync_batchnorm=false")
            module.__class__ = _synced_class(type(module), device.type != "cpu")
            module.process_group = None  # nn.SyncBatchNorm's attribute: the whole world
            converted += 1
        elif type(module) is UncertaintyProxyAttention:
            module.__class__ = _GlobalMeanUPA
            converted += 1
    return converted


class _SyncedNorm:
    """The forward of a converted norm layer; mixed into a subclass of the layer's own class."""

    _plain: type  # the layer's class before conversion

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and distributed()):
            return self._plain.forward(self, x)
        if isinstance(self, nn.SyncBatchNorm):
            y = nn.SyncBatchNorm.forward(self, x)
        else:
            y = _batch_norm_over_ranks(self, x)
        if isinstance(self, BatchNormAct2d):  # timm's layer: normalise, then drop and activation
            y = self.act(self.drop(y))
        return y


@cache
def _synced_class(plain: type, torch_sync: bool) -> type:
    """``Synced<Plain>``: the plain class with :class:`_SyncedNorm`'s forward (and, for CUDA, torch's
    ``nn.SyncBatchNorm`` as a base, whose forward it then uses)."""
    bases = (_SyncedNorm, plain) + ((nn.SyncBatchNorm,) if torch_sync else ())
    return type(f"Synced{plain.__name__}", bases, {"_plain": plain, "__module__": __name__})


def _batch_norm_over_ranks(bn: nn.modules.batchnorm._BatchNorm, x: torch.Tensor) -> torch.Tensor:
    """Training-mode batch norm of ``x`` (N, C, ...) with mean and biased variance over every rank's
    images, in float32; updates the running statistics as ``F.batch_norm`` does (unbiased variance)."""
    c = x.shape[1]
    dims = [0, *range(2, x.dim())]
    shape = (1, c) + (1,) * (x.dim() - 2)
    xf = x.float()
    local = torch.cat([xf.sum(dims), xf.new_full((1,), x.numel() // c)])  # (C + 1): sums, count
    sums = differentiable_sum_over_ranks(local)
    n = sums[c].detach()
    mean = sums[:c] / n
    centred = xf - mean.view(shape)
    # two passes, as BatchNorm's own kernels, not E[x^2] - E[x]^2 (cancellation when |mean| >> std)
    var = differentiable_sum_over_ranks(centred.square().sum(dims)) / n
    y = centred * torch.rsqrt(var + bn.eps).view(shape)
    if bn.affine:
        y = y * bn.weight.view(shape) + bn.bias.view(shape)
    if bn.track_running_stats:
        _update_running_stats(bn, mean.detach(), var.detach(), n)
    return y.to(x.dtype)


@torch.no_grad()
def _update_running_stats(bn: nn.modules.batchnorm._BatchNorm, mean: torch.Tensor, var: torch.Tensor,
                          n: torch.Tensor) -> None:
    bn.num_batches_tracked.add_(1)
    factor = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
    unbiased = var * n / (n - 1).clamp_min(1)
    bn.running_mean.mul_(1 - factor).add_(mean.to(bn.running_mean.dtype), alpha=factor)
    bn.running_var.mul_(1 - factor).add_(unbiased.to(bn.running_var.dtype), alpha=factor)


class _GlobalMeanUPA(UncertaintyProxyAttention):
    """UPA whose training-mode ``u_bar`` is the mean over every rank's batch (Eq. 7)."""

    def batch_mean(self, u: torch.Tensor) -> torch.Tensor:
        if not (self.training and distributed()):
            return super().batch_mean(u)
        local = torch.cat([u.sum(dim=0), u.new_full((1,), u.shape[0])])  # (3,): sums, count
        sums = differentiable_sum_over_ranks(local)
        return sums[:-1] / sums[-1].detach()

"""What DDP ranks share besides gradients: the rank/world of this process, and sums over ranks.

``fit`` runs distributed when ``torch.distributed`` is already initialised (Ray Train does that for a
trial with ``resources.workers > 1``; the DDP test does it with two gloo processes). Every rank runs
the same steps, so a collective called here is called by every rank in the same order.

- :func:`sum_over_ranks`: a sum over ranks for reporting (no gradient), e.g. the epoch's ``train/*``
  sums and image count, so every rank reports the global epoch's mean;
- :func:`differentiable_sum_over_ranks`: a sum over ranks whose gradient is the sum over ranks of
  the incoming gradients, for batch statistics computed over the global batch
  (:mod:`busray.training.syncnorm`). Why summing gradients is right: DDP averages parameter gradients,
  i.e. optimises ``(1/W) sum_r L_r``; a statistic ``s = sum_r x_r`` is seen by every rank's loss, so
  ``dL/dx_r = (1/W) sum_r' dL_r'/ds``: rank ``r`` back-propagates ``sum_r' dL_r'/ds`` into its own
  ``x_r`` and DDP's averaging supplies the ``1/W``. (Torch's deprecated
  ``torch.distributed.nn.functional.all_reduce`` is the same function; its replacement,
  ``_functional_collectives.all_reduce``, has no gradient.)
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def rank_and_world() -> tuple[int, int]:
    """``(rank, world size)`` of this process; ``(0, 1)`` when not distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def distributed() -> bool:
    """True when this process is one of several ranks of an initialised process group."""
    return rank_and_world()[1] > 1


@torch.no_grad()
def sum_over_ranks(values: torch.Tensor) -> torch.Tensor:
    """``values`` summed element-wise over every rank (a copy; unchanged when not distributed)."""
    if not distributed():
        return values
    total = values.clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total


class _SumOverRanks(torch.autograd.Function):
    """All-reduce (sum) forward, all-reduce (sum) of the gradient backward (see the module docstring)."""

    @staticmethod
    def forward(ctx, values: torch.Tensor) -> torch.Tensor:
        total = values.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        total = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total


def differentiable_sum_over_ranks(values: torch.Tensor) -> torch.Tensor:
    """``values`` summed over ranks, with gradients flowing back to every rank's ``values``."""
    if not distributed():
        return values
    return _SumOverRanks.apply(values)

"""One training epoch and one evaluation pass, on device-resident splits.

Loss terms are summed on the device and read back once per epoch (plus a cheap finiteness check every
``NAN_CHECK_EVERY`` steps), so the step itself does not synchronise with the host.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from torch import nn

from busray.data import augment_batch
from busray.metrics import MetricAccumulator
from busray.models import DIAGNOSTIC_KEYS
from busray.training.batches import DeviceSplit, eval_batches, to_model_input
from busray.training.distributed import sum_over_ranks

NAN_CHECK_EVERY = 10


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or infinite; the run stops instead of training on garbage."""


@dataclass
class StepContext:
    """Everything a training or evaluation step needs besides the data."""

    model: nn.Module
    loss_fn: nn.Module
    optimizer: torch.optim.Optimizer
    device: torch.device
    in_chans: int
    mean: tuple
    std: tuple
    data_cfg: object
    amp_dtype: torch.dtype | None = None
    scaler: torch.amp.GradScaler | None = None
    grad_clip: float = 0.0
    generator: torch.Generator | None = None
    nan_at_epoch: int | None = None
    raw_model: nn.Module | None = None  # the model without its DDP wrapper, for evaluation

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)


def train_epoch(ctx: StepContext, split: DeviceSplit, batches: list[torch.Tensor], epoch: int,
                progress=None) -> dict[str, float]:
    """Run one epoch of optimisation; returns every loss term's epoch mean as ``train/<term>``.

    The mean is over the epoch's images of every DDP rank (each step's batch-mean term weighted by its
    batch size, sums and counts added over ranks), so all ranks return the global epoch's number,
    the one a single process training on the union of the ranks' batches reports.
    """
    ctx.model.train()
    sums: dict[str, torch.Tensor] = {}
    seen = 0  # images trained on by this rank
    finite = torch.ones((), dtype=torch.bool, device=ctx.device)
    for step, idx in enumerate(batches, start=1):
        idx = idx.to(ctx.device)
        images, masks = augment_batch(split.images[idx].float(), split.masks[idx].float(),
                                      ctx.data_cfg, ctx.generator)
        terms = _forward_loss(ctx, images, masks, split.labels[idx])
        if ctx.nan_at_epoch == epoch:
            terms["loss"] = terms["loss"] * float("nan")
        finite &= torch.isfinite(terms["loss"])
        _backward_step(ctx, terms["loss"])
        for k, v in terms.items():
            sums[k] = sums.get(k, 0.0) + v.detach().float() * len(idx)
        seen += len(idx)
        if step % NAN_CHECK_EVERY == 0 or step == len(batches):
            if not bool(finite):
                raise NonFiniteLoss(f"non-finite training loss at epoch {epoch}, step {step}")
        if progress is not None:
            progress.update(1)
    return _epoch_means(sums, seen, ctx.device)


def _epoch_means(sums: dict[str, torch.Tensor], images: int, device: torch.device) -> dict[str, float]:
    """``train/<term>`` = (sum over ranks of the term's image-weighted sum) / (images over ranks)."""
    if not sums:
        return {}
    keys = list(sums)
    local = torch.stack([sums[k] for k in keys] + [torch.tensor(float(images), device=device)])
    totals = sum_over_ranks(local).tolist()  # one collective per epoch, one read-back
    return {f"train/{k}": totals[i] / max(1.0, totals[-1]) for i, k in enumerate(keys)}


def _forward_loss(ctx: StepContext, images: torch.Tensor, masks: torch.Tensor,
                  labels: torch.Tensor) -> dict[str, torch.Tensor]:
    x = to_model_input(images, ctx.in_chans, ctx.mean, ctx.std)
    with ctx.autocast():
        out = ctx.model(x)
    # The loss is computed in fp32 whatever the autocast dtype (Tversky ratios underflow in fp16).
    return ctx.loss_fn(out.seg.float(), out.clf.float(), masks, labels)


def _backward_step(ctx: StepContext, loss: torch.Tensor) -> None:
    ctx.optimizer.zero_grad(set_to_none=True)
    if ctx.scaler is not None:
        ctx.scaler.scale(loss).backward()
        ctx.scaler.unscale_(ctx.optimizer)
    else:
        loss.backward()
    if ctx.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(ctx.model.parameters(), ctx.grad_clip)
    if ctx.scaler is not None:
        ctx.scaler.step(ctx.optimizer)
        ctx.scaler.update()
    else:
        ctx.optimizer.step()


@dataclass
class EvalResult:
    """Metrics of one pass over a split, and (when collected) per-image outputs."""

    metrics: dict[str, float]
    per_image: dict[str, np.ndarray] = field(default_factory=dict)
    diagnostics: dict[str, np.ndarray] = field(default_factory=dict)  # key -> (N, 4)
    sample_probs: np.ndarray | None = None  # (K, S, S) float in [0, 1] for the ``keep`` images, in order


EVAL_ORDER_SEED = 0


def sample_picks(labels: torch.Tensor, k: int) -> list[int]:
    """Up to ``k`` split indices for figures and TensorBoard overlays, one class after another.

    Splits are stored class by class, so the first ``k`` images would all be of the first class (on
    BUSI: eight normal images, no lesion to look at). Round robin over the classes, each class's images
    in split order: a fixed, class-balanced selection, the same for every run on the same split.
    """
    by_class: dict[int, list[int]] = {}
    for index, label in enumerate(labels.tolist()):
        by_class.setdefault(int(label), []).append(index)
    queues = [by_class[c] for c in sorted(by_class)]
    picks: list[int] = []
    for rank in range(max((len(q) for q in queues), default=0)):
        picks += [q[rank] for q in queues if rank < len(q)]
    return picks[:k]


def eval_order(n: int) -> torch.Tensor:
    """The fixed shuffled order in which a split of ``n`` images is evaluated.

    Splits are stored class by class, so index order makes each batch nearly one class. With the
    default ``model.upa_norm: running`` (and BatchNorm in eval mode) every image is scored on its own
    and the order does not matter; with ``upa_norm: batch`` it does, and a fixed shuffle gives mixed
    batches like training's instead of single-class ones, the same on every call.
    """
    return torch.randperm(n, generator=torch.Generator().manual_seed(EVAL_ORDER_SEED))


@torch.inference_mode()
def evaluate(ctx: StepContext, split: DeviceSplit, batch_size: int, num_classes: int,
             prefix: str = "val", collect: bool = False, keep: Sequence[int] = ()) -> EvalResult:
    """Loss terms and metrics (``<prefix>/loss``, ``<prefix>/seg/iou``, ...) over a whole split.

    Images are visited in :func:`eval_order`; per-image outputs come back in the split's own order
    (``split.names``), and ``sample_probs`` are those of the split's images ``keep`` (in that order).
    """
    model = ctx.raw_model or ctx.model
    model.eval()
    acc = MetricAccumulator(num_classes)
    sums: dict[str, torch.Tensor] = {}
    diags: dict[str, list[torch.Tensor]] = {k: [] for k in DIAGNOSTIC_KEYS}
    order = eval_order(len(split))
    samples: dict[int, torch.Tensor] = {}
    wanted = set(keep)
    for chunk in eval_batches(len(split), batch_size):
        idx = order[chunk].to(ctx.device)
        masks = split.masks[idx].float()
        x = to_model_input(split.images[idx], ctx.in_chans, ctx.mean, ctx.std)
        with ctx.autocast():
            out = model(x)
        seg, clf = out.seg.float(), out.clf.float()
        terms = ctx.loss_fn(seg, clf, masks, split.labels[idx])
        for k, v in terms.items():
            sums[k] = sums.get(k, 0.0) + v.float() * len(idx)
        acc.update(seg, masks, clf, split.labels[idx])
        if collect:
            for k in DIAGNOSTIC_KEYS:
                diags[k].append(out.diagnostics[k].float().cpu())
        for row, i in enumerate(order[chunk].tolist()):
            if i in wanted:
                samples[i] = torch.sigmoid(seg[row, 0]).cpu()
    metrics = {f"{prefix}/{k}": float(v) / max(1, len(split)) for k, v in sums.items()}
    metrics.update({f"{prefix}/{k}": v for k, v in acc.compute().items()})
    result = EvalResult(metrics=metrics)
    if collect:
        back = torch.argsort(order).numpy()        # processed order -> split order
        result.per_image = {k: v[back] for k, v in acc.per_image().items()}
        result.diagnostics = {k: torch.cat(v).numpy()[back] for k, v in diags.items() if v}
    if samples:
        result.sample_probs = torch.stack([samples[i] for i in keep]).numpy()
    return result


def monitor_score(metrics: dict[str, float], prefix: str = "val") -> float:
    """``<prefix>/score``: mean of lesion IoU and classification accuracy (see TrainConfig.monitor)."""
    return 0.5 * (metrics[f"{prefix}/seg/iou"] + metrics[f"{prefix}/clf/acc"])

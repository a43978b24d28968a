"""Building everything ``fit`` needs (device, data, model, optimiser, schedule) and the final test pass.

Kept apart from the epoch loop in :mod:`busray.training.fit` so that ``busray evaluate`` and the
benchmarks can reuse the same construction.
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from busray.config import Config
from busray.data import load_dataset, make_split
from busray.losses import MultiTaskLoss
from busray.models import create_model, param_groups_summary
from busray.runfolder import RunFolder, predictions_frame
from busray.training.batches import DeviceSplit
from busray.training.checkpoint import BEST, LAST, TrainingState, load_checkpoint
from busray.training.distributed import rank_and_world
from busray.training.epoch import StepContext, evaluate, sample_picks
from busray.training.syncnorm import sync_batch_statistics

log = logging.getLogger(__name__)
TEST_SAMPLES = 8


@dataclass
class TrainingSetup:
    ctx: StepContext
    raw_model: nn.Module
    scheduler: torch.optim.lr_scheduler.LRScheduler
    splits: dict[str, DeviceSplit]
    class_names: tuple
    device: torch.device
    device_name: str
    dataset_name: str
    split_hash: str
    run_dir: Path | None
    rank: int = 0
    world: int = 1
    num_classes: int = 3
    eval_batch_size: int = 32
    val_picks: list[int] = field(default_factory=list)  # the val images shown in TensorBoard
    val_samples: np.ndarray | None = field(default=None, repr=False)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"train.device: '{name}' requested but CUDA is not available")
    return torch.device(name)


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "cpu"


def seed_everything(seed: int, deterministic: bool = False) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)


def amp_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    if mode == "off" or (mode == "auto" and device.type != "cuda"):
        return None
    return torch.float16 if mode == "fp16" else torch.bfloat16


def use_channels_last(setting: bool | None, device: torch.device, dtype: torch.dtype | None) -> bool:
    """``train.channels_last``: true/false as given; auto (None) on CPU, and on CUDA with mixed
    precision (see busray/training/config.py for the measurements and reasons)."""
    if setting is not None:
        return setting
    return device.type == "cpu" or (device.type == "cuda" and dtype is not None)


def build_scheduler(optimizer, cfg: Config) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-epoch linear warm-up, then cosine annealing from lr (first epoch) to the floor (last epoch):
    ``lr_min``, or ``lr_floor_fraction * lr`` when set (the authors' code)."""
    t = cfg.train
    floor = t.lr_floor_fraction if t.lr_floor_fraction is not None else t.lr_min / t.lr

    def factor(epoch: int) -> float:
        if epoch < t.warmup_epochs:
            return (epoch + 1) / (t.warmup_epochs + 1)
        if t.scheduler == "constant":
            return 1.0
        span = max(1, t.epochs - t.warmup_epochs - 1)  # the last epoch trains at lr_min
        progress = min(1.0, (epoch - t.warmup_epochs) / span)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def load_splits(cfg: Config, device: torch.device, run_dir: Path | None):
    """Decode the dataset, split it (saving split.json), and move each split to ``device``."""
    ds = load_dataset(cfg.data)
    split = make_split(ds, cfg.data)
    if run_dir is not None:
        split.save(RunFolder(run_dir).split, ds)
    splits = {name: DeviceSplit.from_dataset(ds, getattr(split, name), device)
              for name in ("train", "val", "test")}
    return ds, split, splits


def build_setup(cfg: Config, run_dir: Path | None) -> TrainingSetup:
    t = cfg.train
    seed_everything(t.seed, t.deterministic)
    if t.num_threads:
        torch.set_num_threads(t.num_threads)
    device = resolve_device(t.device)
    ds, split, splits = load_splits(cfg, device, run_dir)
    if len(ds.class_names) != cfg.model.num_classes:
        raise ValueError(f"model.num_classes: {cfg.model.num_classes} but the dataset has "
                         f"{len(ds.class_names)} classes {ds.class_names}")
    dtype = amp_dtype(t.amp, device)
    raw = create_model(cfg.model).to(device)
    if use_channels_last(t.channels_last, device, dtype):  # NHWC conv weights: every convolution runs NHWC
        raw = raw.to(memory_format=torch.channels_last)
    log.info("parameters per module group: %s", param_groups_summary(raw))
    rank, world = rank_and_world()
    model = raw
    if world > 1:
        if t.sync_batchnorm:  # before the wrap: DDP inspects the norm layers it is given
            log.info("train.sync_batchnorm: %d norm/UPA modules use global-batch statistics",
                     sync_batch_statistics(raw, device))
        model = nn.parallel.DistributedDataParallel(
            raw, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=False)
    if t.compile:
        model = torch.compile(model)
    optimizer = torch.optim.Adam([p for p in raw.parameters() if p.requires_grad], lr=t.lr,
                                 weight_decay=t.weight_decay)
    ctx = StepContext(
        model=model, raw_model=raw, loss_fn=MultiTaskLoss(cfg.loss).to(device), optimizer=optimizer,
        device=device, in_chans=cfg.model.in_chans,
        mean=raw.input_mean, std=raw.input_std,
        data_cfg=cfg.data.augment, amp_dtype=dtype, grad_clip=t.grad_clip,
        scaler=torch.amp.GradScaler(device.type) if dtype == torch.float16 else None,
        generator=torch.Generator(device=device).manual_seed(t.seed + 7919 * rank),
        nan_at_epoch=t.debug_nan_at_epoch)
    return TrainingSetup(ctx=ctx, raw_model=raw, scheduler=build_scheduler(optimizer, cfg), splits=splits,
                         class_names=ds.class_names, device=device, device_name=device_description(device),
                         dataset_name=ds.source, split_hash=split.split_hash, run_dir=run_dir, rank=rank,
                         world=world, num_classes=cfg.model.num_classes,
                         eval_batch_size=t.eval_batch_size,
                         val_picks=sample_picks(splits["val"].labels, t.tb_images))


def finish_with_test(setup: TrainingSetup, run_dir: Path, state: TrainingState) -> dict:
    """Evaluate the best checkpoint on the test split; write per-image predictions and samples."""
    ckpt = RunFolder(run_dir).checkpoints
    best = ckpt / BEST if (ckpt / BEST).is_file() else ckpt / LAST
    setup.raw_model.load_state_dict(load_checkpoint(best, map_location=setup.device)["model"])
    test = setup.splits["test"]
    picks = sample_picks(test.labels, TEST_SAMPLES)
    res = evaluate(setup.ctx, test, setup.eval_batch_size, setup.num_classes, prefix="test",
                   collect=True, keep=picks)
    folder = RunFolder(run_dir)
    folder.write_predictions(predictions_frame(test.names, setup.class_names, res.per_image, res.diagnostics))
    if res.sample_probs is not None:
        folder.write_samples([test.names[i] for i in picks], test.images[picks, 0].cpu().numpy(),
                             test.masks[picks, 0].cpu().numpy(), res.sample_probs)
    return {k.removeprefix("test/"): v for k, v in res.metrics.items()}

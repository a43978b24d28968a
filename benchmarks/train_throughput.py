"""Training-step throughput: a naive reference pipeline vs busray's, measured in one run.

(a) naive: the same model and loss, eager fp32 in NCHW, a ``torch.utils.data.DataLoader`` whose dataset
    augments each sample on the CPU (the same rotation/flip/elastic transform, one sample at a time),
    batches copied to the device every step;
(b) busray: the dataset resident on the device, batches gathered by index, batched on-device
    augmentation, mixed precision where the device supports it (bf16 on CUDA) — exactly
    ``busray.training.epoch.train_epoch`` as ``fit`` runs it.

Prints images/s for each and the ratio b/a. Runs on CPU here and on a GPU when one is present.

    python benchmarks/train_throughput.py                         # CPU-sized defaults
    python benchmarks/train_throughput.py --encoder tf_efficientnet_b4 --size 224 --batch 24 --steps 30
"""

from __future__ import annotations

import argparse
import time
from typing import NamedTuple

import torch
from torch.utils.data import DataLoader, Dataset

from busray.config import load_config
from busray.data import augment_batch
from busray.training.batches import epoch_batches, to_model_input
from busray.training.epoch import train_epoch
from busray.training.setup import build_setup, use_channels_last


class PerSampleAugmented(Dataset):
    """The naive reference: decode-free, but augmentation per sample on the CPU, in the DataLoader."""

    def __init__(self, split, aug_cfg, in_chans, mean, std):
        self.images, self.masks = split.images.cpu(), split.masks.cpu()
        self.labels = split.labels.cpu()
        self.aug_cfg, self.in_chans, self.mean, self.std = aug_cfg, in_chans, mean, std

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        image, mask = augment_batch(self.images[i:i + 1].float(), self.masks[i:i + 1].float(), self.aug_cfg)
        x = to_model_input(image, self.in_chans, self.mean, self.std)[0]
        return x, mask[0], self.labels[i]


def naive_throughput(setup, batch: int, steps: int, workers: int) -> float:
    ctx = setup.ctx
    ds = PerSampleAugmented(setup.splits["train"], ctx.data_cfg, ctx.in_chans, ctx.mean, ctx.std)
    loader = DataLoader(ds, batch_size=batch, shuffle=True, drop_last=True, num_workers=workers,
                        persistent_workers=workers > 0)
    model, opt = ctx.model, ctx.optimizer
    model.train()

    def run(n):
        done = 0
        while done < n:
            for x, m, y in loader:
                x, m, y = x.to(ctx.device), m.to(ctx.device), y.to(ctx.device)
                out = model(x)
                loss = ctx.loss_fn(out.seg, out.clf, m, y)["loss"]
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                done += 1
                if done >= n:
                    break
        _sync(ctx.device)

    run(2)  # warm-up
    t0 = time.perf_counter()
    run(steps)
    return steps * batch / (time.perf_counter() - t0)


def step_batches(n_images: int, batch: int, steps: int, generator: torch.Generator) -> list[torch.Tensor]:
    """``steps`` training batches drawn epoch after epoch as ``fit`` draws them: an epoch's last batch
    holds what is left of the split (fewer than ``batch`` images), so ``steps * batch`` overcounts."""
    batches: list[torch.Tensor] = []
    while len(batches) < steps:
        batches += epoch_batches(n_images, batch, generator)
    return batches[:steps]


class Timed(NamedTuple):
    images: int     # the images the timed steps processed (partial batches counted as they are)
    seconds: float

    @property
    def per_s(self) -> float:
        return self.images / self.seconds


def busray_throughput(setup, batch: int, steps: int, warmup: int = 2) -> Timed:
    """``fit``'s epoch code over ``steps`` batches after ``warmup`` untimed ones: images and seconds."""
    split = setup.splits["train"]
    gen = torch.Generator().manual_seed(0)
    if warmup:
        train_epoch(setup.ctx, split, step_batches(len(split), batch, warmup, gen), 1)
        _sync(setup.device)
    timed = step_batches(len(split), batch, steps, gen)
    t0 = time.perf_counter()
    train_epoch(setup.ctx, split, timed, 2)
    _sync(setup.device)
    return Timed(sum(len(b) for b in timed), time.perf_counter() - t0)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--encoder", default="tf_efficientnet_b0")
    p.add_argument("--size", type=int, default=None, help="image side (default 224 on GPU, 128 on CPU)")
    p.add_argument("--batch", type=int, default=None, help="batch (default 24 on GPU, 8 on CPU)")
    p.add_argument("--steps", type=int, default=None, help="timed steps (default 30 on GPU, 6 on CPU)")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers of the naive pipeline")
    args = p.parse_args()
    gpu = torch.cuda.is_available()
    size = args.size or (224 if gpu else 128)
    batch = args.batch or (24 if gpu else 8)
    steps = args.steps or (30 if gpu else 6)
    n = max(4 * batch, 96)
    overrides = [f"model.encoder={args.encoder}", "model.weights=none", f"data.image_size={size}",
                 f"data.root=synthetic:n={n},size={size}", "data.detect_near_duplicates=false",
                 "data.split_fractions=[0.8,0.1,0.1]"]
    results = {}
    # the naive reference in plain NCHW fp32; busray with its defaults (NHWC on CPU, bf16 on CUDA)
    for name, layout in (("naive", ["train.amp=off", "train.channels_last=false"]), ("busray", [])):
        cfg = load_config(None, [*overrides, *layout])
        setup = build_setup(cfg, run_dir=None)
        results[name] = naive_throughput(setup, batch, steps, args.workers) if name == "naive" \
            else busray_throughput(setup, batch, steps).per_s
    print(f"device={setup.device_name} encoder={args.encoder} size={size} batch={batch} steps={steps}")
    print(f"(a) naive reference : {results['naive']:8.1f} img/s  (eager fp32, NCHW, per-sample CPU augmentation, "
          f"DataLoader x{args.workers} workers)")
    print(f"(b) busray pipeline : {results['busray']:8.1f} img/s  (device-resident data, batched on-device "
          f"augmentation, amp={setup.ctx.amp_dtype}, "
          f"channels_last={use_channels_last(cfg.train.channels_last, setup.device, setup.ctx.amp_dtype)})")
    print(f"ratio b/a           : {results['busray'] / results['naive']:8.2f}x")


if __name__ == "__main__":
    main()

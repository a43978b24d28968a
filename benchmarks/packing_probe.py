"""Trial packing inside one process: K models stacked under vmap vs the same K stepped one by one.

Both arms train K models of one architecture (different seeds, different ``tau``), each with its own
Adam optimizer, on the same device-resident synthetic data, with busray's on-device augmentation and
loss, in the same precision:

(a) one after another: for each model, augment its batch, forward, loss, backward, optimizer step;
(b) stacked: the K batches augmented in one call, one ``StackedModels`` forward over ``(K, B, ...)``,
    the K losses summed, one backward, then the K optimizer steps.

Prints the training img/s of each (all K models' images counted) and the ratio b/a. The ratio says
whether fusing trials into one process is worth wiring into the sweep engine (issue 8, item 3); on a
2-core CPU it is not expected to pay (the cores are busy either way), on a launch-bound GPU it may.

    python benchmarks/packing_probe.py                                      # CPU-sized defaults
    python benchmarks/packing_probe.py --encoder tf_efficientnet_b4 --size 224 --batch 24 --k 4
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

import torch

from busray.config import load_config
from busray.data import augment_batch
from busray.losses import MultiTaskLoss
from busray.models import StackedModels, create_model
from busray.training.batches import to_model_input
from busray.training.setup import amp_dtype, load_splits, resolve_device


def probe_config(encoder: str, size: int, batch: int, *overrides: str):
    """The benchmarks' run config: ``encoder`` from scratch on synthetic data sized for ``batch``."""
    return load_config(None, [f"model.encoder={encoder}", "model.weights=none", f"data.image_size={size}",
                              f"data.root=synthetic:n={max(4 * batch, 48)},size={size}",
                              "data.detect_near_duplicates=false", "data.split_fractions=[0.8,0.1,0.1]",
                              *overrides])


def stacked_vs_sequential(cfg, k: int, batch: int, steps: int) -> dict[str, float]:
    """img/s of K models stepped one by one (a) and stacked (b), measured in one run."""
    device = resolve_device(cfg.train.device)
    _, _, splits = load_splits(cfg, device, run_dir=None)
    split = splits["train"]
    models, optimizers = [], []
    for i in range(k):
        torch.manual_seed(i)
        models.append(create_model(dataclasses.replace(cfg.model, tau=0.2 + 0.2 * i)).to(device))
        optimizers.append(torch.optim.Adam(models[-1].parameters(), lr=cfg.train.lr))
    loss_fn = MultiTaskLoss(cfg.loss).to(device)
    dtype = amp_dtype(cfg.train.amp, device)
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)
    gen = torch.Generator(device=device).manual_seed(0)
    stacked = StackedModels(models)
    for m in models:
        m.train()

    def batches():  # K batches of B images: (K*B, ...) indices drawn with replacement
        idx = torch.randint(len(split), (k * batch,), device=device, generator=gen)
        images, masks = augment_batch(split.images[idx].float(), split.masks[idx].float(), cfg.data.augment, gen)
        x = to_model_input(images, cfg.model.in_chans, models[0].input_mean, models[0].input_std)
        return x, masks, split.labels[idx]

    def sequential_step():
        x, masks, labels = batches()
        for j, (model, opt) in enumerate(zip(models, optimizers)):
            part = slice(j * batch, (j + 1) * batch)
            with autocast:
                out = model(x[part])
            loss = loss_fn(out.seg.float(), out.clf.float(), masks[part], labels[part])["loss"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    def stacked_step():
        x, masks, labels = batches()
        with autocast:
            outs = stacked(x.view(k, batch, *x.shape[1:]))
        masks, labels = masks.view(k, batch, *masks.shape[1:]), labels.view(k, batch)
        loss = sum(loss_fn(o.seg.float(), o.clf.float(), masks[j], labels[j])["loss"] for j, o in enumerate(outs))
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        loss.backward()
        for opt in optimizers:
            opt.step()

    seconds = {name: _timed(step, steps, device) for name, step in
               (("sequential", sequential_step), ("stacked", stacked_step))}
    images = k * batch * steps
    return {"k": k, "precision": "fp32" if dtype is None else str(dtype).removeprefix("torch."),
            "sequential_img_s": images / seconds["sequential"],
            "stacked_img_s": images / seconds["stacked"],
            "stacked_over_sequential": seconds["sequential"] / seconds["stacked"]}


def _timed(step, steps: int, device: torch.device) -> float:
    for _ in range(2 if device.type == "cuda" else 1):  # warm-up: cuDNN algorithm choice, allocator
        step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return time.perf_counter() - start


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: list[str] | None = None) -> int:
    gpu = torch.cuda.is_available()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--encoder", default="tf_efficientnet_b4" if gpu else "test_efficientnet")
    p.add_argument("--size", type=int, default=224 if gpu else 64)
    p.add_argument("--batch", type=int, default=24 if gpu else 2)
    p.add_argument("--k", type=int, default=4, help="models packed together")
    p.add_argument("--steps", type=int, default=20 if gpu else 3, help="timed steps of each arm")
    p.add_argument("--amp", default="auto", help="train.amp of both arms (auto: bf16 on CUDA)")
    args = p.parse_args(argv)
    r = stacked_vs_sequential(probe_config(args.encoder, args.size, args.batch, f"train.amp={args.amp}"), args.k,
                              args.batch, args.steps)
    print(f"encoder={args.encoder} size={args.size} batch={args.batch} k={args.k} steps={args.steps} "
          f"device={'cuda' if gpu else 'cpu'} precision={r['precision']}")
    print(f"(a) {args.k} models one after another : {r['sequential_img_s']:8.1f} img/s")
    print(f"(b) {args.k} models stacked (vmap)    : {r['stacked_img_s']:8.1f} img/s")
    print(f"ratio b/a                        : {r['stacked_over_sequential']:8.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``train.*``: optimisation, schedule, early stopping, checkpoints and logging (paper Sec. 3.1).

Defaults follow the paper: Adam, lr 3e-4, cosine annealing to 1.5e-6, 100 epochs, batch 24, early stopping
with patience 10. The paper also lists "α = 0.03" beside Adam without saying what it is; in the authors'
code it is the cosine schedule's floor as a fraction of lr, lr(t) = lr * (α + (1 - α) * cos-decay), i.e.
a floor of 9e-6 rather than the text's 1.5e-6. ``lr_floor_fraction`` selects that reading (default None:
the text's ``lr_min``).

Not a paper question: ``sync_batchnorm`` (on) makes a DDP trial of W workers x ``batch_size`` b train
like one process with batch W*b (:mod:`busray.training.syncnorm`). A bool, not ``auto``: it acts
only when ``torch.distributed`` runs more than one rank, so ``auto`` would mean ``true``.

Where the paper is silent:
- ``monitor``: the paper early-stops "on validation performance" without naming the metric. The default
  ``val/score`` is the mean of validation lesion IoU and classification accuracy, so neither task alone
  decides which epoch is "best" in a multi-task model; any ``val/<metric>`` key may be chosen instead.
- ``grad_clip`` (global norm 1.0), ``warmup_epochs`` (0) and mixed precision (``amp: auto`` = bfloat16
  autocast on CUDA, full fp32 on CPU where bf16 autocast is slower) are careful-reimplementation defaults.
- ``channels_last: auto`` (None): NHWC where it pays. On CPU, in fp32, epochs of ``busray train`` ran
  1.00-1.37x as fast in NHWC in six interleaved NCHW/NHWC pairs (a seventh, 1.94x, met a load spike),
  never slower (Lite0 at 128 px, one thread: ``benchmarks/cpu_channels_last.py``, README
  "Performance"). On CUDA, NHWC is the layout of the tensor-core convolution kernels cuDNN runs in
  bf16 and fp16, hence on with mixed precision; fp32 on CUDA stays NCHW (not measured on this
  project's GPUs yet).
"""

from __future__ import annotations

from dataclasses import dataclass

from busray.configtools import ConfigError, option
from busray.objective import check_reported


@dataclass
class TrainConfig:
    epochs: int = option(100, "Maximum number of epochs (paper: 100).", range=(1, 100_000))
    batch_size: int = option(24, "Training batch size per worker (paper: 24).", range=(1, 4096))
    eval_batch_size: int = option(32, "Batch size for validation/test inference.", range=(1, 4096))
    lr: float = option(3e-4, "Adam learning rate (paper: 3e-4).", range=(1e-8, 1.0))
    lr_min: float = option(1.5e-6, "Cosine annealing floor (paper: 1.5e-6).", range=(0.0, 1.0))
    lr_floor_fraction: float | None = option(
        None, "Cosine floor as a fraction of lr: lr(t) = lr * (f + (1 - f) * (1 + cos(pi t)) / 2). "
        "None: f = lr_min / lr (the paper's text); 0.03: the authors' code (the paper's 'alpha = 0.03').",
        range=(0.0, 1.0))
    scheduler: str = option("cosine", "Learning-rate schedule after warm-up.", choices=("cosine", "constant"))
    warmup_epochs: int = option(0, "Linear warm-up epochs before the schedule.", range=(0, 1000))
    weight_decay: float = option(0.0, "Adam weight decay (paper: none stated).", range=(0.0, 1.0))
    grad_clip: float = option(1.0, "Clip the global gradient norm to this (0 = off).", range=(0.0, 1e6))
    monitor: str = option("val/score", "Validation metric for best checkpoint and early stopping; "
                          "val/score = (val/seg/iou + val/clf/acc) / 2.")
    monitor_mode: str = option("max", "Whether a larger or smaller monitor value is better.",
                               choices=("max", "min"))
    patience: int = option(10, "Early-stopping patience in epochs (paper: 10; 0 = off).", range=(0, 100_000))
    amp: str = option("auto", "Mixed precision: auto (bf16 on CUDA, off on CPU), bf16, fp16 or off.",
                      choices=("auto", "bf16", "fp16", "off"))
    device: str = option("auto", "auto (cuda if available), cpu, cuda or cuda:N.")
    seed: int = option(0, "Seed for weights, split-independent sampling and augmentation.", range=(0, 2**31 - 1))
    deterministic: bool = option(False, "Ask torch for deterministic kernels (slower on GPU).")
    sync_batchnorm: bool = option(
        True, "DDP trials (resources.workers > 1): BatchNorm statistics and UPA's u_bar over the global "
        "batch of each step (every rank's images; running statistics equal on every rank), so W workers "
        "x batch_size b train like one worker x batch W*b. Acts only when torch.distributed is "
        "initialised with more than one rank: single-process runs are unaffected. false: per-rank "
        "statistics (fewer collectives per step; DDP runs before this key).")
    num_threads: int = option(0, "torch CPU threads (0 = torch default).", range=(0, 1024))
    compile: bool = option(False, "torch.compile the model (GPU; adds start-up time).")
    channels_last: bool | None = option(
        None, "Keep the model's weights (hence its activations) in NHWC memory layout. auto: on for CPU "
        "(epochs 1.0-1.4x as fast, never slower: Lite0 at 128 px, benchmarks/cpu_channels_last.py) and "
        "for CUDA with mixed precision (NHWC is the tensor cores' layout), off for CUDA in fp32; true/false "
        "force it.",
        none_word="auto")
    tb_images: int = option(4, "Validation overlays logged to TensorBoard per epoch (0 = none).",
                            range=(0, 64))
    progress: bool = option(True, "Show a progress bar of the epochs (on a terminal, also of the "
                                  "running epoch's steps).")
    steps_per_epoch: int = option(0, "Cap on optimisation steps per epoch (0 = one pass; for smoke runs).",
                                  range=(0, 10_000_000))
    debug_crash_at_epoch: int | None = option(
        None, "TEST ONLY: kill the process at this epoch on a run that did not resume from a checkpoint "
        "(exercises fault tolerance).", range=(1, 100_000))
    debug_nan_at_epoch: int | None = option(
        None, "TEST ONLY: make the loss NaN at this epoch (exercises the failed-run path).", range=(1, 100_000))

    def check(self) -> None:
        if self.lr_min > self.lr:
            raise ConfigError(f"lr_min: {self.lr_min} is larger than lr {self.lr}")
        if self.warmup_epochs >= self.epochs and self.warmup_epochs > 0:
            raise ConfigError(f"warmup_epochs: {self.warmup_epochs} must be below epochs {self.epochs}")
        if not (self.monitor.startswith("val/")):
            raise ConfigError(f"monitor: '{self.monitor}' must be a val/<metric> key")
        check_reported(self.monitor, "monitor")
        dev = self.device
        if not (dev in ("auto", "cpu", "cuda") or (dev.startswith("cuda:") and dev[5:].isdigit())):
            raise ConfigError(f"device: '{dev}' is not auto, cpu, cuda or cuda:N")

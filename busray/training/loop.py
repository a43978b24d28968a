"""``fit(cfg, reporter)``: the plain training loop (paper Sec. 3.1), with no Ray import.

One call loads and splits the data, builds the model, and trains with Adam + warm-up/cosine annealing,
gradient clipping, mixed precision where the device supports it, early stopping on a validation metric,
best/last checkpoints, TensorBoard scalars and overlays, and a final test evaluation of the best
checkpoint. The run folder it writes is described in docs/ARCHITECTURE.md.

Distributed: when ``torch.distributed`` is already initialised (Ray Train does that for DDP trials), the
model is wrapped in DDP and each rank trains on its shard of every epoch's permutation. Every rank
evaluates the full validation split with identical weights, so all ranks take the same early-stopping
decision without extra communication; only the main rank (``reporter.is_main()``) writes files.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from busray.config import Config, config_to_dict, save_config
from busray.training.batches import epoch_batches
from busray.training.checkpoint import BEST, LAST, TrainingState, load_checkpoint, restore_training_state, \
    save_checkpoint
from busray.training.epoch import NonFiniteLoss, evaluate, monitor_score, train_epoch
from busray.training.reporter import NullReporter, Reporter
from busray.training.run_folder import write_history, write_json
from busray.training.setup import TrainingSetup, build_setup, finish_with_test
from busray.training.tensorboard import TensorBoardLogger


@dataclass
class FitResult:
    status: str  # completed | failed
    error: str | None = None
    best_epoch: int = 0
    epochs_run: int = 0
    early_stopped: bool = False
    best_val: dict = field(default_factory=dict)
    test: dict = field(default_factory=dict)
    history: list = field(default_factory=list)
    run_dir: str | None = None
    wall_time_s: float = 0.0
    device: str = "cpu"
    dataset: str = ""
    split_hash: str = ""


def fit(cfg: Config, reporter: Reporter | None = None, run_dir: str | Path | None = None) -> FitResult:
    """Train ``cfg`` to completion (or early stop / failure) and return what happened."""
    reporter = reporter or NullReporter()
    start = time.time()
    main = reporter.is_main()
    run_path = _prepare_run_dir(cfg, run_dir, main)
    setup = build_setup(cfg, run_path if main else None)
    result = FitResult(status="completed", run_dir=str(run_path) if run_path else None,
                       device=setup.device_name, dataset=setup.dataset_name, split_hash=setup.split_hash)
    state, resumed = _resume_if_asked(setup, reporter)
    tb = TensorBoardLogger(run_path / "tb" if main else None)
    try:
        _train_epochs(cfg, setup, state, reporter, tb, resumed, result)
    except NonFiniteLoss as err:
        result.status, result.error = "failed", str(err)
    result.history = state.history
    result.best_epoch, result.epochs_run = state.best_epoch, state.epoch
    result.best_val = _best_row(state)
    if main and result.status == "completed":
        result.test = finish_with_test(setup, run_path, state)
    tb.close()
    result.wall_time_s = time.time() - start
    if main:
        _write_metrics(run_path, result)
    return result


def _prepare_run_dir(cfg: Config, run_dir, main: bool) -> Path | None:
    if not main:
        return None
    path = Path(run_dir) if run_dir else Path("runs") / time.strftime("%Y%m%d-%H%M%S")
    (path / "checkpoints").mkdir(parents=True, exist_ok=True)
    save_config(cfg, path / "config.yaml")
    return path


def _resume_if_asked(setup: TrainingSetup, reporter: Reporter) -> tuple[TrainingState, bool]:
    ckpt_dir = reporter.resume_checkpoint_dir()
    if not ckpt_dir or not (Path(ckpt_dir) / LAST).is_file():
        return TrainingState(), False
    payload = load_checkpoint(Path(ckpt_dir) / LAST, map_location=setup.device)
    state = restore_training_state(payload, setup.raw_model, setup.ctx.optimizer, setup.scheduler)
    if setup.run_dir is not None and (Path(ckpt_dir) / BEST).is_file() and \
            Path(ckpt_dir).resolve() != (setup.run_dir / "checkpoints").resolve():
        (setup.run_dir / "checkpoints" / BEST).write_bytes((Path(ckpt_dir) / BEST).read_bytes())
    return state, True


def _train_epochs(cfg: Config, setup: TrainingSetup, state: TrainingState, reporter: Reporter,
                  tb: TensorBoardLogger, resumed: bool, result: FitResult) -> None:
    tcfg = cfg.train
    bar = tqdm(total=tcfg.epochs, initial=state.epoch, desc="epochs", unit="ep", dynamic_ncols=True,
               disable=not (tcfg.progress and setup.run_dir is not None))
    for epoch in range(state.epoch + 1, tcfg.epochs + 1):
        if tcfg.debug_crash_at_epoch == epoch and not resumed:
            os._exit(17)  # test-only: a worker dying mid-trial (see TrainConfig.debug_crash_at_epoch)
        metrics = _one_epoch(cfg, setup, epoch)
        improved = _update_state(state, metrics, tcfg.monitor, tcfg.monitor_mode)
        ckpt_dir = _save(setup, state, improved, cfg)
        tb.scalars(metrics, epoch)
        if setup.run_dir is not None and setup.val_samples is not None:
            tb.overlays(setup.splits["val"].images, setup.splits["val"].masks, setup.val_samples, epoch)
        reporter.report(epoch, metrics, ckpt_dir)
        bar.update(1)
        bar.set_postfix({k.split("/")[-1]: f"{metrics[k]:.3f}" for k in
                         ("train/loss", "val/seg/iou", "val/clf/acc") if k in metrics})
        if tcfg.patience and state.bad_epochs >= tcfg.patience:
            result.early_stopped = True
            break
    bar.close()


def _one_epoch(cfg: Config, setup: TrainingSetup, epoch: int) -> dict[str, float]:
    t0 = time.time()
    gen = torch.Generator().manual_seed(cfg.train.seed * 100_003 + epoch)
    train = setup.splits["train"]
    batches = epoch_batches(len(train), cfg.train.batch_size, gen, setup.rank, setup.world,
                            cfg.train.steps_per_epoch)
    lr = setup.ctx.optimizer.param_groups[0]["lr"]
    metrics = {"epoch": epoch, "lr": lr}
    metrics.update(train_epoch(setup.ctx, train, batches, epoch))
    setup.scheduler.step()
    keep = cfg.train.tb_images if setup.run_dir is not None else 0
    val = evaluate(setup.ctx, setup.splits["val"], cfg.train.eval_batch_size, cfg.model.num_classes,
                   prefix="val", keep_samples=keep)
    setup.val_samples = val.sample_probs
    metrics.update(val.metrics)
    metrics["val/score"] = monitor_score(val.metrics)
    metrics["time/epoch_s"] = time.time() - t0
    metrics["time/train_img_per_s"] = sum(len(b) for b in batches) * setup.world / max(1e-9, time.time() - t0)
    return metrics


def _update_state(state: TrainingState, metrics: dict, monitor: str, mode: str) -> bool:
    state.epoch = int(metrics["epoch"])
    state.history.append(dict(metrics))
    value = metrics.get(monitor, float("nan"))
    better = value is not None and math.isfinite(value) and (
        state.best_value is None or (value > state.best_value if mode == "max" else value < state.best_value))
    if better:
        state.best_value, state.best_epoch, state.bad_epochs = float(value), state.epoch, 0
    else:
        state.bad_epochs += 1
    return better


def _save(setup: TrainingSetup, state: TrainingState, improved: bool, cfg: Config) -> str | None:
    if setup.run_dir is None:
        return None
    ckpt = setup.run_dir / "checkpoints"
    cfg_dict = config_to_dict(cfg)
    if improved:
        save_checkpoint(ckpt / BEST, setup.raw_model, cfg_dict, state)
    save_checkpoint(ckpt / LAST, setup.raw_model, cfg_dict, state, setup.ctx.optimizer, setup.scheduler)
    write_history(setup.run_dir / "history.csv", state.history)
    return str(ckpt)


def _best_row(state: TrainingState) -> dict:
    for row in state.history:
        if row["epoch"] == state.best_epoch:
            return {k.removeprefix("val/"): v for k, v in row.items() if k.startswith("val/")}
    return {}


def _write_metrics(run_path: Path, result: FitResult) -> None:
    write_json(run_path / "metrics.json", {
        "status": result.status, "error": result.error, "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run, "early_stopped": result.early_stopped,
        "val": result.best_val, "test": result.test, "dataset": result.dataset,
        "split_hash": result.split_hash, "device": result.device, "wall_time_s": result.wall_time_s})

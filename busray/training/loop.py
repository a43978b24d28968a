"""``fit(cfg, reporter)``: the plain training loop (paper Sec. 3.1), with no Ray import.

One call loads and splits the data, builds the model, and trains with Adam + warm-up/cosine annealing,
gradient clipping, mixed precision where the device supports it, early stopping on a validation metric,
best/last checkpoints, TensorBoard scalars and overlays, and a final test evaluation of the best
checkpoint. The run folder it writes is described in docs/ARCHITECTURE.md.

Distributed: when ``torch.distributed`` is already initialised (Ray Train does that for DDP trials), the
model is wrapped in DDP and each rank trains on its shard of every epoch's permutation, with batch
statistics over the global batch (``train.sync_batchnorm``, :mod:`busray.training.syncnorm`) and
``train/*`` averaged over every rank's images: W ranks x batch b train and report like one process x
batch W*b. Every rank evaluates the full validation split with identical weights (and running
statistics), so all ranks take the same early-stopping decision without extra communication; only the
main rank (``reporter.is_main()``) writes files.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from busray.atomic import atomic_write, remove_stale_temps
from busray.config import Config, config_to_dict, save_config
from busray.objective import Objective
from busray.runfolder import BEST, LAST, RunFolder, RunOutcome, best_val
from busray.training.batches import epoch_batches
from busray.training.calibration import calibrate_for_evaluation
from busray.training.checkpoint import (TrainingState, load_checkpoint, restore_rng, restore_training_state,
                                       rng_state, save_checkpoint)
from busray.training.epoch import NonFiniteLoss, evaluate, monitor_score, train_epoch
from busray.training.memory import release_memory
from busray.training.reporter import NullReporter, Reporter, ResumeFromDir
from busray.training.runguard import PYTHON_WORDS, default_run_dir, plan_run, run_planned
from busray.training.setup import TrainingSetup, build_setup, finish_with_test
from busray.training.tensorboard import TensorBoardLogger

#: ``fit`` returns the run folder's outcome record itself (one type, see busray/runfolder.py).
FitResult = RunOutcome


def fit(cfg: Config, reporter: Reporter | None = None, run_dir: str | Path | None = None,
        tb_dir: str | Path | None = None, *, resume: bool = False, overwrite: bool = False) -> RunOutcome:
    """Train ``cfg`` to completion (or early stop / failure) and return what happened.

    The run folder says what is going on at every moment: ``metrics.json`` holds status ``running``
    from the start, then the final outcome. A non-finite loss ends the run as ``failed`` (returned);
    any other exception is recorded as ``failed`` with its message and re-raised. ``tb_dir`` puts the
    TensorBoard events elsewhere than ``<run>/tb`` (a sweep gathers its trials under one log dir).

    Without a ``reporter``, ``run_dir`` (default ``runs/<timestamp>``) follows ``busray train``'s
    rules (:mod:`busray.training.runguard`): a folder that already holds a run is refused unless
    ``resume=True`` (continue it from ``checkpoints/last.pt``; ``cfg`` may differ only in keys such
    as ``train.epochs``) or ``overwrite=True`` (replace it; the old run is kept until the new one
    completes). With a ``reporter`` the caller owns the folder and the reporter says what to resume
    from: a Ray trial, or ``busray train``, which applied the same rules naming its flags.

    Nothing of the run outlives the call, and the memory it freed goes back to the system
    (:mod:`busray.training.memory`): a warm sweep process stays flat from trial to trial.
    """
    if reporter is not None:
        if resume or overwrite:
            raise ValueError("fit: resume= and overwrite= are for a run without reporter=; a reporter "
                             "says itself what to resume from (resume_checkpoint_dir)")
        return _fit_folder(cfg, reporter, run_dir, tb_dir)
    plan = plan_run(run_dir, lambda saved: cfg, resume=resume, overwrite=overwrite, words=PYTHON_WORDS)
    steer = ResumeFromDir(str(plan.folder.checkpoints)) if resume else NullReporter()
    return run_planned(plan, lambda planned, folder: _fit_folder(planned, steer, folder, tb_dir))


def _fit_folder(cfg: Config, reporter: Reporter, run_dir, tb_dir) -> RunOutcome:
    """``fit`` in a folder whose use was settled by the caller."""
    release_memory()  # what an earlier run in this process freed (one that raised, see below)
    clock = RunClock()
    folder = _prepare_run_dir(cfg, run_dir, reporter.is_main())
    outcome = RunOutcome(run_dir=str(folder.path) if folder else None)
    try:
        _fit_into(cfg, reporter, folder, outcome, tb_dir, clock)
    except Exception as err:
        _finish(folder, outcome, clock, "failed", f"{type(err).__name__}: {err}".splitlines()[0])
        raise
    except KeyboardInterrupt:
        _finish(folder, outcome, clock, "failed", "interrupted")
        raise
    finally:
        # the run's model, optimiser and data are garbage now (unless an exception's traceback
        # still holds them: then the next fit's first call releases them)
        release_memory()
    return _finish(folder, outcome, clock, outcome.status, outcome.error)


@dataclass
class RunClock:
    """A run's wall time over every process that trained it: a resumed run's ``wall_time_s``
    includes its earlier processes' (up to the checkpoint it resumed from)."""
    start: float = field(default_factory=time.time)
    before: float = 0.0  # seconds earlier processes trained, as saved in the checkpoint resumed from

    def seconds(self) -> float:
        return self.before + time.time() - self.start


def _fit_into(cfg: Config, reporter: Reporter, folder: RunFolder | None, outcome: RunOutcome,
              tb_dir, clock: RunClock) -> None:
    setup = build_setup(cfg, folder.path if folder else None)
    outcome.device, outcome.dataset, outcome.split_hash = setup.device_name, setup.dataset_name, setup.split_hash
    state, resumed = _resume_if_asked(setup, reporter)
    if resumed:  # the run began, and trained, in earlier processes too
        clock.before = state.wall_s
        outcome.started_at = state.started_at or outcome.started_at
    state.started_at = outcome.started_at
    if folder:
        folder.write_outcome(outcome)
    tb = TensorBoardLogger(Path(tb_dir or folder.tensorboard) if folder else None)
    try:
        outcome.early_stopped = _train_epochs(cfg, setup, state, reporter, tb, resumed, clock)
        outcome.status = "completed"
    except NonFiniteLoss as err:
        outcome.status, outcome.error = "failed", str(err)
    finally:
        tb.close()
        # also when an exception or Ctrl-C ends the run: metrics.json says how far it got
        outcome.history = state.history
        outcome.best_epoch, outcome.epochs_run = state.best_epoch, state.epoch
        outcome.val = best_val(state.history, state.best_epoch)
    if folder and outcome.status == "completed":
        outcome.test = finish_with_test(setup, folder.path, state)


def _finish(folder: RunFolder | None, outcome: RunOutcome, clock: RunClock, status: str,
            error: str | None) -> RunOutcome:
    outcome.wall_time_s = clock.seconds()
    outcome.finish(status, error)
    if folder:
        folder.write_outcome(outcome)
    return outcome


def _prepare_run_dir(cfg: Config, run_dir, main: bool) -> RunFolder | None:
    if not main:
        return None
    folder = RunFolder(Path(run_dir) if run_dir else default_run_dir())
    folder.checkpoints.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(folder.path)     # a killed earlier attempt's half-written files
    save_config(cfg, folder.config)
    return folder


def _resume_if_asked(setup: TrainingSetup, reporter: Reporter) -> tuple[TrainingState, bool]:
    ckpt_dir = reporter.resume_checkpoint_dir()
    if not ckpt_dir or not (Path(ckpt_dir) / LAST).is_file():
        return TrainingState(), False
    payload = load_checkpoint(Path(ckpt_dir) / LAST, map_location=setup.device)
    state = restore_training_state(payload, setup.raw_model, setup.ctx.optimizer, setup.scheduler)
    if setup.world == 1:  # rank 0 saved only its own streams; DDP ranks keep their fresh seeds
        restore_rng(payload, setup.ctx.generator)
    own = RunFolder(setup.run_dir).checkpoints if setup.run_dir is not None else None
    if own is not None and (Path(ckpt_dir) / BEST).is_file() and Path(ckpt_dir).resolve() != own.resolve():
        atomic_write(own / BEST, (Path(ckpt_dir) / BEST).read_bytes())
    return state, True


def _train_epochs(cfg: Config, setup: TrainingSetup, state: TrainingState, reporter: Reporter,
                  tb: TensorBoardLogger, resumed: bool, clock: RunClock) -> bool:
    """Run the remaining epochs; True when early stopping ended them."""
    tcfg = cfg.train
    objective = Objective.parse(f"{tcfg.monitor}:{tcfg.monitor_mode}", "train.monitor")
    bar = tqdm(total=tcfg.epochs, initial=state.epoch, desc="epochs", unit="ep", dynamic_ncols=True,
               disable=not (tcfg.progress and setup.run_dir is not None))
    # the steps of the running epoch under it (a CPU epoch can take minutes); a terminal only, since
    # in a log file each refresh of a bar is another line
    show_steps = not bar.disable and sys.stderr.isatty()
    for epoch in range(state.epoch + 1, tcfg.epochs + 1):
        if tcfg.debug_crash_at_epoch == epoch and not resumed:
            os._exit(17)  # test-only: a worker dying mid-trial (see TrainConfig.debug_crash_at_epoch)
        metrics = _one_epoch(cfg, setup, epoch, show_steps)
        improved = _update_state(state, metrics, objective)
        state.wall_s = clock.seconds()
        ckpt_dir = _save(setup, state, improved, cfg)
        tb.scalars(metrics, epoch)
        if setup.run_dir is not None and setup.val_samples is not None:
            val_split, picks = setup.splits["val"], setup.val_picks
            tb.overlays(val_split.images[picks], val_split.masks[picks], setup.val_samples, epoch)
        reporter.report(epoch, metrics, ckpt_dir)
        bar.update(1)
        bar.set_postfix({k.split("/")[-1]: f"{metrics[k]:.3f}" for k in
                         ("train/loss", "val/seg/iou", "val/clf/acc") if k in metrics})
        if tcfg.patience and state.bad_epochs >= tcfg.patience:
            bar.close()
            return True
    bar.close()
    return False


def _one_epoch(cfg: Config, setup: TrainingSetup, epoch: int, show_steps: bool = False) -> dict[str, float]:
    """Train one epoch, then (UPA calibration and) validation. ``time/train_img_per_s`` counts the
    training steps only; ``time/epoch_s`` is the whole epoch, evaluation included."""
    t0 = time.time()
    gen = torch.Generator().manual_seed(cfg.train.seed * 100_003 + epoch)
    train = setup.splits["train"]
    batches = epoch_batches(len(train), cfg.train.batch_size, gen, setup.rank, setup.world,
                            cfg.train.steps_per_epoch)
    lr = setup.ctx.optimizer.param_groups[0]["lr"]
    metrics = {"epoch": epoch, "lr": lr}
    with tqdm(total=len(batches), desc=f"epoch {epoch}", unit="step", leave=False, dynamic_ncols=True,
              disable=not show_steps) as steps:
        metrics.update(train_epoch(setup.ctx, train, batches, epoch, progress=steps))
    train_s = time.time() - t0
    setup.scheduler.step()
    calibrate_for_evaluation(setup.ctx, train, cfg.model, cfg.train.eval_batch_size)
    picks = setup.val_picks if setup.run_dir is not None else []
    val = evaluate(setup.ctx, setup.splits["val"], cfg.train.eval_batch_size, cfg.model.num_classes,
                   prefix="val", keep=picks)
    setup.val_samples = val.sample_probs
    metrics.update(val.metrics)
    metrics["val/score"] = monitor_score(val.metrics)
    metrics["time/epoch_s"] = time.time() - t0
    metrics["time/train_img_per_s"] = sum(len(b) for b in batches) * setup.world / max(1e-9, train_s)
    return metrics


def _update_state(state: TrainingState, metrics: dict, objective: Objective) -> bool:
    state.epoch = int(metrics["epoch"])
    state.history.append(dict(metrics))
    value = objective.value(metrics)
    better = objective.better(value, state.best_value)
    if better:
        state.best_value, state.best_epoch, state.bad_epochs = float(value), state.epoch, 0
    else:
        state.bad_epochs += 1
    return better


def _save(setup: TrainingSetup, state: TrainingState, improved: bool, cfg: Config) -> str | None:
    if setup.run_dir is None:
        return None
    folder = RunFolder(setup.run_dir)
    cfg_dict = config_to_dict(cfg)
    if improved:
        save_checkpoint(folder.checkpoints / BEST, setup.raw_model, cfg_dict, state)
    save_checkpoint(folder.checkpoints / LAST, setup.raw_model, cfg_dict, state, setup.ctx.optimizer,
                    setup.scheduler, rng=rng_state(setup.ctx.generator))
    folder.write_history(state.history)
    return str(folder.checkpoints)

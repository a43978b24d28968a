"""Before an evaluation in training: re-estimate UPA's ``u_bar`` on training images, in eval mode.

``model.upa_calibration: eval_pass`` (with ``upa_norm: running``) runs
:func:`busray.models.calibration.calibrate_upa` over a fixed shuffled subset of the training split
(``model.upa_calibration_images``; the same images every epoch) just before each validation pass, so
the checkpoints saved after it carry the mean ``u`` of evaluation-mode features, and the test pass of
the best checkpoint divides by it. Why: busray/models/calibration.py.
"""

from __future__ import annotations

import logging

import torch

from busray.models.calibration import calibrate_upa
from busray.models.config import ModelConfig
from busray.training.batches import DeviceSplit, eval_batches, to_model_input
from busray.training.epoch import StepContext, eval_order

log = logging.getLogger(__name__)


def calibrates(cfg: ModelConfig) -> bool:
    """Whether training re-estimates UPA's running mean in evaluation mode."""
    return (cfg.upa and cfg.tim and cfg.upa_norm == "running"
            and cfg.upa_calibration == "eval_pass")


def calibrate_for_evaluation(ctx: StepContext, train: DeviceSplit, cfg: ModelConfig,
                             batch_size: int) -> dict[str, torch.Tensor]:
    """Calibrate ``ctx``'s model on training images when ``cfg`` asks for it; returns the new
    ``u_bar`` per UPA module (empty when nothing was calibrated)."""
    if not calibrates(cfg) or len(train) == 0:
        return {}
    n = len(train) if cfg.upa_calibration_images == 0 else min(len(train), cfg.upa_calibration_images)
    picks = eval_order(len(train))[:n]          # fixed and class-mixed (splits are stored by class)
    inputs = (to_model_input(train.images[picks[chunk].to(ctx.device)], ctx.in_chans, ctx.mean, ctx.std)
              for chunk in eval_batches(n, batch_size))
    with ctx.autocast():
        means = calibrate_upa(ctx.raw_model or ctx.model, inputs)
    log.debug("UPA u_bar calibrated on %d training images: %s", n,
              {name: [round(float(v), 4) for v in mean] for name, mean in means.items()})
    return means

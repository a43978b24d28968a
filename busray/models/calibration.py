"""UPA calibration: estimate the ``u_bar`` of evaluation in evaluation mode (Sec. 2.2, Eq. 6-7).

UPA feeds its MLP ``u~ = u / (u_bar + eps)`` (Eq. 7). With ``model.upa_norm: running``, evaluation
divides by a running mean, and that mean must describe what evaluation sees: features computed with
dropout off and BatchNorm on its running statistics. A mean tracked during training (train-mode
features) does not: measured on BUSI, evaluation's mean u~_seg was 0.59-0.69 and u~_clf up to 1.6.

:func:`calibrate_upa` runs the model once in evaluation mode, without gradients, over some training
images and sets each UPA's ``u_bar`` to the mean of ``u = [u_seg, u_clf]`` (Eq. 6) it saw there, like
BatchNorm recalibration after training; over those images the mean ``u~`` is then 1 by construction.
:func:`mean_normalised_uncertainty` measures the mean ``u~`` a model's evaluation produces on any
images (a diagnostic, and what the tests check). Both read ``u`` with forward pre-hooks on the UPA
modules, so the model's own forward is unchanged. No data or training code here: callers pass model
inputs (see :mod:`busray.training.calibration`).
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from busray.models.upa import EPS, UncertaintyProxyAttention


def upa_modules(model: nn.Module) -> dict[str, UncertaintyProxyAttention]:
    """The model's UPA modules by name (``upa.1`` ... ``upa.4``; empty when UPA is off)."""
    return {name: m for name, m in model.named_modules() if isinstance(m, UncertaintyProxyAttention)}


@torch.no_grad()
def mean_uncertainty(model: nn.Module, inputs: Iterable[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Evaluation-mode mean of ``[u_seg, u_clf]`` (float32, (2,)) per UPA module over ``inputs``
    (model-input batches). The model's train/eval mode is restored afterwards."""
    modules = upa_modules(model)
    sums = {name: torch.zeros(2) for name in modules}
    count = 0

    def hook(name: str):
        def accumulate(module: UncertaintyProxyAttention, args) -> None:
            _, d_enh, _, f_enh = args           # forward(d, d_enh, f, f_enh)
            sums[name] += module.uncertainty(d_enh, f_enh).sum(dim=0).cpu()
        return accumulate

    handles = [m.register_forward_pre_hook(hook(name)) for name, m in modules.items()]
    was_training = model.training
    model.eval()
    try:
        for x in inputs:
            model(x)
            count += len(x)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    if modules and count == 0:
        raise ValueError("mean_uncertainty: no images to average over")
    return {name: total / max(1, count) for name, total in sums.items()}


def calibrate_upa(model: nn.Module, inputs: Iterable[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Set every running-mean UPA's ``u_bar`` to its evaluation-mode mean ``u`` over ``inputs``;
    returns those means (empty when the model has no running-mean UPA)."""
    modules = {name: m for name, m in upa_modules(model).items() if m.norm == "running"}
    if not modules:
        return {}
    means = mean_uncertainty(model, inputs)
    for name, module in modules.items():
        module.set_reference(means[name].to(module.running_u.device))
    return {name: means[name] for name in modules}


def mean_normalised_uncertainty(model: nn.Module, inputs: Iterable[torch.Tensor]
                                ) -> dict[str, torch.Tensor]:
    """Mean ``u~ = u / (u_bar + eps)`` per running-mean UPA module, as evaluation computes it on
    ``inputs`` (``u_bar`` is a constant there, so this is the mean ``u`` over ``u_bar + eps``)."""
    modules = {name: m for name, m in upa_modules(model).items() if m.norm == "running"}
    means = mean_uncertainty(model, inputs)
    return {name: means[name] / (m.running_u.detach().float().cpu() + EPS)
            for name, m in modules.items()}

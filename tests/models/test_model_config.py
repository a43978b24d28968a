"""``ModelConfig``: documented defaults, dict/YAML round trip, and one-line errors naming the key."""

from __future__ import annotations

import dataclasses

import pytest

from busray.configtools import ConfigError, from_dict, load_yaml, save_yaml, to_dict
from busray.models import ModelConfig, create_model


def test_defaults_are_the_paper_setup_and_documented():
    cfg = ModelConfig()
    assert (cfg.encoder, cfg.weights, cfg.tau, cfg.clf_dim) == ("tf_efficientnet_b4", "imagenet", 0.7, 256)
    assert cfg.decoder_channels == [384, 192, 96, 48]
    assert cfg.encoder_taps == "blocks" and cfg.upa_norm == "running"   # docs/SCIENCE.md says why
    assert cfg.hmsf and cfg.tim and cfg.upa and cfg.attention_gates and not cfg.encoder_only
    assert cfg.active_tim_levels() == (1, 2, 3, 4)
    assert all(f.metadata["help"] for f in dataclasses.fields(ModelConfig))
    cfg.check()


def test_round_trip_through_dict_and_yaml(tmp_path):
    cfg = from_dict(ModelConfig, {"encoder": "efficientnet_b0", "tau": 0.35, "tim_levels": [4, 2],
                                  "upa_norm": "running", "weights": str(tmp_path / "w.pth")})
    assert from_dict(ModelConfig, to_dict(cfg)) == cfg
    save_yaml({"model": to_dict(cfg)}, tmp_path / "c.yaml")
    assert from_dict(ModelConfig, load_yaml(tmp_path / "c.yaml")["model"], "model.") == cfg


@pytest.mark.parametrize("bad, key", [
    ({"tau": 3.0}, "model.tau"),
    ({"tau": "high"}, "model.tau"),
    ({"bogus": 1}, "model.bogus"),
    ({"decoder_channels": [64, 32, 16]}, "model.decoder_channels"),
    ({"decoder_channels": [64, 32, 16, 0]}, "model.decoder_channels"),
    ({"tim_levels": [0, 5]}, "model.tim_levels"),
    ({"tim_levels": []}, "model.tim_levels"),
    ({"tim_levels": [2, 2]}, "model.tim_levels"),
    ({"tim_seg2clf": False, "tim_clf2seg": False}, "model.tim_seg2clf"),
    ({"tim": False}, "model.upa"),
    ({"encoder_only": True}, "model.encoder_only"),
    ({"upa_norm": "layer"}, "model.upa_norm"),
    ({"freeze_stages": 6}, "model.freeze_stages"),
    ({"num_classes": 1}, "model.num_classes"),
    ({"weights": " "}, "model.weights"),
])
def test_bad_values_raise_one_line_errors_naming_the_key(bad, key):
    with pytest.raises(ConfigError) as err:
        from_dict(ModelConfig, bad, "model.")
    message = str(err.value)
    assert key in message and "\n" not in message


def test_tim_off_with_upa_off_is_valid_and_ignores_levels():
    cfg = from_dict(ModelConfig, {"tim": False, "upa": False, "tim_levels": []})
    assert cfg.active_tim_levels() == ()


def test_create_model_validates_configs_built_in_code():
    cfg = dataclasses.replace(ModelConfig(encoder="test_efficientnet", weights="none"), tau=-1.0)
    with pytest.raises(ConfigError, match="tau"):
        create_model(cfg)


def test_unknown_encoder_names_the_key():
    with pytest.raises(ConfigError, match="model.encoder: unknown timm model 'efficientnet_b99'"):
        create_model(ModelConfig(encoder="efficientnet_b99", weights="none"))


def test_non_halving_encoder_is_rejected():
    """The decoder upsamples by 2 per level; an encoder whose taps do not halve cannot feed it."""
    with pytest.raises(ConfigError, match="model.encoder: 'test_vit' gives taps"):
        create_model(ModelConfig(encoder="test_vit", weights="none"))

"""Gradients reach every enabled module; disabled modules do not exist; frozen stages stay frozen."""

from __future__ import annotations

import pytest
import torch

from busray.models import create_model, param_groups_summary
from tinymodels import ABLATIONS, tiny_config


def _backward(model, batch=2):
    out = model(torch.randn(batch, model.cfg.in_chans, 64, 64))
    (out.seg.mean() + out.clf.pow(2).mean()).backward()
    return out


@pytest.mark.parametrize("name", ABLATIONS)
def test_every_trainable_tensor_gets_a_nonzero_gradient(name):
    model = create_model(tiny_config(**ABLATIONS[name]))
    _backward(model)
    dead = [n for n, p in model.named_parameters()
            if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)]
    assert not dead, f"no gradient reaches {dead[:5]}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("name, group", [
    ("tim_only", "upa"), ("tim_upa", "hmsf"), ("streams_without_tim", "tim"),
    ("baseline_encoder_only", "tim"), ("baseline_encoder_only", "hmsf"),
])
def test_disabled_groups_hold_no_parameters_to_train(name, group):
    model = create_model(tiny_config(**ABLATIONS[name]))
    _backward(model)
    assert param_groups_summary(model)[group] == 0
    assert getattr(model, group) is None


def test_encoder_only_has_no_level_streams():
    model = create_model(tiny_config(**ABLATIONS["baseline_encoder_only"]))
    assert model.level_clf is None
    assert not any(n.startswith("level_clf") for n, _ in model.named_parameters())


def test_classification_loss_reaches_the_decoder_only_through_task_interaction():
    """Multi-level decoder interaction: with TIM the clf logits depend on the decoder; without it
    (encoder-only sharing) they cannot."""
    for overrides, reaches in [({}, True), (ABLATIONS["baseline_encoder_only"], False)]:
        model = create_model(tiny_config(**overrides))
        model(torch.randn(2, 3, 64, 64)).clf.pow(2).mean().backward()
        grads = [p.grad for n, p in model.named_parameters() if n.startswith("decoder.0.")]
        assert any(g is not None and g.abs().sum() > 0 for g in grads) == reaches


@pytest.mark.parametrize("stages", [1, 3, 5])
def test_freeze_stages_freezes_exactly_the_early_encoder(stages):
    model = create_model(tiny_config(freeze_stages=stages))
    features = model.encoder.features
    last = features.feature_info.module_name()[stages - 1]
    names = [n for n, _ in features.named_parameters()]
    last_index = max(i for i, n in enumerate(names) if n.startswith(last + "."))
    flags = [p.requires_grad for _, p in features.named_parameters()]
    assert flags == [i > last_index for i in range(len(names))]
    _backward(model.train())
    assert all(p.grad is None for p in features.parameters() if not p.requires_grad)


def test_frozen_batchnorm_statistics_do_not_move_in_training():
    model = create_model(tiny_config(freeze_stages=2)).train()
    frozen_bn = model.encoder.features.bn1
    assert not frozen_bn.training
    before = frozen_bn.running_mean.clone()
    _backward(model)
    torch.testing.assert_close(frozen_bn.running_mean, before, rtol=0, atol=0)
    assert model.decoder.training and model.encoder.features.blocks[-1].training

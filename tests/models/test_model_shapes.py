"""Output contract of ``model(x)`` for every ablation and several encoders (docs/ARCHITECTURE.md)."""

from __future__ import annotations

import pytest
import torch

from busray.models import DIAGNOSTIC_KEYS, ModelOutput, create_model, param_groups_summary
from tinymodels import ABLATIONS, expected_active, tiny_config


def _run(cfg, batch=2, size=(64, 64)) -> ModelOutput:
    model = create_model(cfg)
    return model(torch.randn(batch, cfg.in_chans, *size))


@pytest.mark.parametrize("name", ABLATIONS)
def test_each_ablation_returns_the_contract(name):
    cfg = tiny_config(**ABLATIONS[name])
    out = _run(cfg)
    assert isinstance(out, ModelOutput)
    assert out.seg.shape == (2, 1, 64, 64)
    assert out.clf.shape == (2, cfg.num_classes)
    assert set(out.diagnostics) == set(DIAGNOSTIC_KEYS)
    for key, active in expected_active(cfg).items():
        values = out.diagnostics[key]
        assert values.shape == (2, 4) and not values.requires_grad
        assert (~values.isnan()).all(dim=0).tolist() == active, key
        assert values.isnan().all(dim=0).tolist() == [not a for a in active], key


@pytest.mark.parametrize("name, absent", [
    ("baseline_encoder_only", {"hmsf", "tim", "upa"}),
    ("hmsf_encoder_only", {"tim", "upa"}),
    ("tim_only", {"hmsf", "upa"}),
    ("full", set()),
])
def test_switched_off_modules_have_no_parameters(name, absent):
    counts = param_groups_summary(create_model(tiny_config(**ABLATIONS[name])))
    for group in ("encoder", "hmsf", "decoder", "tim", "upa", "heads"):
        assert (counts[group] == 0) == (group in absent), group
    assert counts["total"] == sum(counts[g] for g in ("encoder", "hmsf", "decoder", "tim", "upa", "heads"))


def test_disabled_pieces_inside_modules_are_not_built():
    """Single level, one TIM direction, no gates: the unused layers do not exist at all."""
    model = create_model(tiny_config(tim_levels=[3], tim_seg2clf=False, attention_gates=False))
    names = [n for n, _ in model.named_parameters()]
    assert {n.split(".")[1] for n in names if n.startswith(("tim.", "upa."))} == {"3"}
    assert not any("seg_context" in n or "clf_gate" in n for n in names)
    assert not any(".gate." in n for n in names if n.startswith("decoder."))


@pytest.mark.parametrize("encoder", ["test_efficientnet", "test_efficientnet_gn", "efficientnet_b0"])
def test_encoders(encoder):
    out = _run(tiny_config(encoder=encoder))
    assert out.seg.shape == (2, 1, 64, 64) and out.clf.shape == (2, 3)
    assert torch.isfinite(out.seg).all() and torch.isfinite(out.clf).all()


@pytest.mark.parametrize("size", [(64, 64), (96, 64), (72, 56)])
def test_seg_logits_match_any_input_size(size):
    """Sizes that are not multiples of 32 are resized inside, never cropped or failed."""
    assert _run(tiny_config(), size=size).seg.shape == (2, 1, *size)


def test_single_channel_input_and_two_classes():
    out = _run(tiny_config(in_chans=1, num_classes=2))
    assert out.seg.shape == (2, 1, 64, 64) and out.clf.shape == (2, 2)


def test_normalisation_constants_come_from_the_encoder():
    assert create_model(tiny_config()).input_mean == (0.485, 0.456, 0.406)
    assert create_model(tiny_config(encoder="test_efficientnet_gn")).input_std == (0.5, 0.5, 0.5)
    gray = create_model(tiny_config(in_chans=1))
    assert gray.input_mean == pytest.approx((sum((0.485, 0.456, 0.406)) / 3,))


def test_mixed_precision_forward_and_backward():
    """Under bf16 autocast the diagnostics stay float32 and running UPA statistics stay finite."""
    model = create_model(tiny_config(upa_norm="running")).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.randn(2, 3, 64, 64))
    (out.seg.float().mean() + out.clf.float().mean()).backward()
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in out.diagnostics.values())
    assert torch.isfinite(model.upa["1"].running_u).all()

"""The full default network (paper setup, tf_efficientnet_b4 at 224x224) on CPU."""

from __future__ import annotations

import logging

import pytest
import torch

from busray.models import ModelConfig, create_model, param_groups_summary

log = logging.getLogger(__name__)


@pytest.mark.slow
def test_full_default_model_forward_and_backward(caplog):
    caplog.set_level(logging.INFO)
    model = create_model(ModelConfig(weights="none")).train()
    counts = param_groups_summary(model)
    log.info("parameters per group (tf_efficientnet_b4, 224x224): %s", counts)
    for group in ("encoder", "hmsf", "decoder", "tim", "upa", "heads"):
        assert counts[group] > 0, group
    assert counts["trainable"] < counts["total"]           # freeze_stages=1 by default

    out = model(torch.randn(2, 3, 224, 224))
    assert out.seg.shape == (2, 1, 224, 224) and out.clf.shape == (2, 3)
    assert all(v.shape == (2, 4) and not v.isnan().any() for v in out.diagnostics.values())
    (out.seg.mean() + out.clf.logsumexp(dim=1).mean()).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all()
               for p in model.parameters() if p.requires_grad)

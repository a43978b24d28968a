"""K models stacked under vmap give what the K models give one after another: outputs, gradients and
the running statistics they update; models of different architectures are refused."""

from __future__ import annotations

import copy

import pytest
import torch

from busray.models import StackedModels, create_model
from tinymodels import ABLATIONS, tiny_config

TOL = dict(rtol=1e-4, atol=1e-5)


def _assert_close_to_scale(actual, expected, what):
    """Gradients of a grouped convolution sum in another order: compare against the tensor's scale
    (a slice of the wrong model, or a missing update, is off by the scale itself)."""
    error = (actual - expected).abs().max().item()
    assert error <= 1e-6 + 2e-3 * expected.abs().max().item(), f"{what}: off by {error:.3g}"


def _pair(name: str, taus=(0.3, 0.9)):
    models = []
    for seed, tau in zip((0, 1), taus):
        torch.manual_seed(seed)
        models.append(create_model(tiny_config(**ABLATIONS[name], tau=tau)))
    return models


def _loss(out):
    return out.seg.mean() + out.clf.pow(2).mean()


@pytest.mark.parametrize("name", ["full", "upa_running", "baseline_encoder_only", "seg2clf_only"])
@pytest.mark.parametrize("train", [True, False])
def test_stacked_equals_one_after_another(name, train):
    stacked_models = _pair(name)
    alone = [copy.deepcopy(m) for m in stacked_models]
    for m in stacked_models + alone:
        m.train(train)
    x = torch.randn(2, 2, 3, 64, 64)

    outs = StackedModels(stacked_models)(x)
    sum(_loss(o) for o in outs).backward()
    for k, (model, reference) in enumerate(zip(stacked_models, alone)):
        expected = reference(x[k])
        _loss(expected).backward()
        torch.testing.assert_close(outs[k].seg, expected.seg, **TOL)
        torch.testing.assert_close(outs[k].clf, expected.clf, **TOL)
        for key, value in expected.diagnostics.items():
            torch.testing.assert_close(outs[k].diagnostics[key], value, equal_nan=True, **TOL)
        for (pname, p), q in zip(model.named_parameters(), reference.parameters()):
            _assert_close_to_scale(p.grad, q.grad, f"model {k} grad {pname}")
        for (bname, b), c in zip(model.named_buffers(), reference.buffers()):
            _assert_close_to_scale(b.float(), c.float(), f"model {k} buffer {bname}")


def test_each_model_uses_its_own_tau():
    a, b = _pair("full", taus=(0.2, 0.2))
    b.load_state_dict(a.state_dict())
    b.tim["1"].tau.fill_(1.4)  # same weights; the clf->seg displacement at D1 scales with tau
    x = torch.randn(1, 2, 3, 64, 64).expand(2, -1, -1, -1, -1)
    outs = StackedModels([a.eval(), b.eval()])(x)
    ratio = outs[1].diagnostics["tim_clf2seg"][:, 0] / outs[0].diagnostics["tim_clf2seg"][:, 0]
    torch.testing.assert_close(ratio, torch.full_like(ratio, 7.0))


@pytest.mark.parametrize("models, call, message", [
    (lambda: [create_model(tiny_config()), create_model(tiny_config(hmsf=False))], None,
     "model 1 differs from model 0 in parameter 'hmsf"),
    (lambda: _pair("full"), lambda s: s(torch.randn(3, 2, 3, 64, 64)), "stacked for 2 models, got leading size 3"),
    (lambda: [m.train(k == 0) for k, m in enumerate(_pair("full"))], lambda s: s(torch.randn(2, 2, 3, 64, 64)),
     "all be in train mode or all in eval mode"),
    (lambda: [], None, "at least one model"),
])
def test_refusals_name_the_problem(models, call, message):
    with pytest.raises(ValueError, match=message):
        stacked = StackedModels(models())
        call(stacked)

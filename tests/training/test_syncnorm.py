"""``train.sync_batchnorm``: converted norm layers and UPA keep their identity, and over two gloo ranks
on CPU compute what one process computes on the whole batch (outputs, gradients, running statistics)."""

from __future__ import annotations

import pytest
import torch
from timm.layers import BatchNormAct2d
from torch import nn

from busray.config import load_config
from busray.models import create_model
from busray.training.syncnorm import SUPPORTED_NORMS, SyncBatchStatisticsError, sync_batch_statistics

from ddp_rank import layer_cases, output_weights, outputs_of, run_ranks
from tinyrun import tiny

CPU = torch.device("cpu")
WORLD = 2


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """Every layer case run on two ranks, each on its rows ``r::2`` of the batch."""
    tmp = tmp_path_factory.mktemp("syncnorm")
    outs = [tmp / f"rank{r}.pt" for r in range(WORLD)]
    run_ranks("layers", WORLD, tmp / "store", outs)
    return [torch.load(o) for o in outs]


def _reference(module: nn.Module, inputs: list[torch.Tensor]) -> dict:
    """One process on the whole batch: outputs, input and parameter gradients, buffers."""
    inputs = [x.clone().requires_grad_() for x in inputs]
    outputs = outputs_of(module, inputs)
    sum((w * o).sum() for w, o in zip(output_weights(outputs), outputs)).backward()
    return {"outputs": [o.detach() for o in outputs], "input_grads": [x.grad for x in inputs],
            "param_grads": {k: p.grad for k, p in module.named_parameters()},
            "buffers": dict(module.named_buffers())}


# float32 sums in another order (two partial sums added by the all-reduce): rounding only
CLOSE = dict(rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("case", list(layer_cases()))
def test_two_ranks_compute_what_one_process_computes_on_the_whole_batch(two_ranks, case):
    module, inputs = layer_cases()[case]
    ref = _reference(module, inputs)
    for rank, saved in enumerate(two_ranks):
        got = saved[case]
        for out, ref_out in zip(got["outputs"], ref["outputs"]):
            torch.testing.assert_close(out, ref_out[rank::WORLD], **CLOSE)
        for grad, ref_grad in zip(got["input_grads"], ref["input_grads"]):
            torch.testing.assert_close(grad, ref_grad[rank::WORLD], **CLOSE)
        assert got["param_grads"].keys() == ref["param_grads"].keys()
        for name, grad in got["param_grads"].items():
            torch.testing.assert_close(grad, ref["param_grads"][name], **CLOSE, msg=f"{case} {name}")
        for name, buf in got["buffers"].items():  # running statistics of the global batch on every rank
            torch.testing.assert_close(buf, ref["buffers"][name], **CLOSE, msg=f"{case} {name}")
            assert torch.equal(buf, two_ranks[0][case]["buffers"][name])


def test_per_rank_statistics_would_differ(two_ranks):
    """The cases can tell: BatchNorm on a rank's half alone gives other outputs than the global batch."""
    module, (x,) = layer_cases()["BatchNorm2d"]
    half = module(x[0::WORLD])
    assert (half - two_ranks[0]["BatchNorm2d"]["outputs"][0]).abs().max() > 1e-2


def test_conversion_keeps_modules_hooks_frozen_norms_and_state():
    """In place: the same module objects (the encoder's list of frozen norms still holds them, so they
    stay in eval mode; forward hooks, as ``model.encoder_taps: expansion`` puts on BatchNormAct2d
    layers, still fire), the same state dict, and the same forward outside DDP."""
    cfg = load_config(None, tiny("model.freeze_stages=2"))
    torch.manual_seed(0)
    model = create_model(cfg.model)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    norms = {name: m for name, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}
    kinds = {name: type(m) for name, m in norms.items()}
    hooked = next(m for m in norms.values() if isinstance(m, BatchNormAct2d) and m.weight.requires_grad)
    seen = []
    hooked.register_forward_hook(lambda module, inputs, output: seen.append(output.shape))
    x = torch.randn(2, 3, 64, 64)
    model.eval()
    before = model(x).seg
    upa = sum(1 for m in model.modules() if type(m).__name__ == "UncertaintyProxyAttention")
    assert sync_batch_statistics(model, CPU) == len(norms) + upa
    assert {n: m for n, m in model.named_modules() if n in norms} == norms  # the same objects
    assert all(isinstance(m, kinds[n]) and type(m) is not kinds[n] for n, m in norms.items())
    assert model.state_dict().keys() == state.keys()
    torch.testing.assert_close(model(x).seg, before, rtol=0, atol=0)  # not distributed: the plain forward
    assert len(seen) == 2
    model.train()
    frozen = model.encoder._frozen_norms
    assert frozen and all(not m.training for m in frozen) and hooked.training
    assert any(isinstance(m, BatchNormAct2d) for m in frozen)


@pytest.mark.parametrize("plain", SUPPORTED_NORMS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("device", ["cuda", "cpu"])
def test_on_cuda_the_layer_becomes_torchs_sync_batchnorm_and_on_cpu_not(plain, device):
    """CUDA: an ``nn.SyncBatchNorm`` (torch's forward under DDP); CPU: not one, as DDP refuses a CPU
    module holding one. Either way the plain layer's forward outside DDP, in train and eval mode."""
    shape = {nn.BatchNorm1d: (4, 3), nn.BatchNorm3d: (4, 3, 2, 5, 5)}.get(plain, (4, 3, 5, 5))
    x = torch.randn(shape)
    torch.manual_seed(0)
    layer, reference = plain(3), plain(3)
    reference.load_state_dict(layer.state_dict())
    sync_batch_statistics(layer, torch.device(device))
    assert isinstance(layer, nn.SyncBatchNorm) == (device == "cuda") and isinstance(layer, plain)
    for mode in (True, False):
        layer.train(mode), reference.train(mode)
        torch.testing.assert_close(layer(x), reference(x), rtol=0, atol=0)
    torch.testing.assert_close(layer.running_var, reference.running_var, rtol=0, atol=0)


def test_an_unknown_batchnorm_subclass_is_refused_naming_the_key():
    class Odd(nn.BatchNorm2d):
        pass

    with pytest.raises(SyncBatchStatisticsError, match="train.sync_batchnorm.*Odd"):
        sync_batch_statistics(nn.Sequential(nn.Conv2d(1, 2, 1), Odd(2)), CPU)

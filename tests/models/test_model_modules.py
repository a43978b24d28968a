"""Unit behaviour of HMSF, attention gates, TIM (Eq. 1-5) and UPA (Eq. 6-8)."""

from __future__ import annotations

import math

import pytest
import torch

from busray.models.decoder import AttentionGate, DecoderBlock
from busray.models.hmsf import HMSF
from busray.models.tim import TaskInteraction
from busray.models.upa import UncertaintyProxyAttention


def test_hmsf_keeps_shape_and_scale_weights_are_a_softmax():
    module = HMSF(16, reduction=8)
    x = torch.randn(2, 16, 12, 12)
    assert module(x).shape == x.shape
    alpha = module.scale_weights(x)
    assert alpha.shape == (2, 3) and (alpha >= 0).all()
    torch.testing.assert_close(alpha.sum(dim=1), torch.ones(2))


def test_hmsf_is_residual():
    """With the fusing BatchNorm scaled to zero, HMSF returns its input (the residual of Fig. 1)."""
    module = HMSF(8)
    torch.nn.init.zeros_(module.fuse[1].weight)
    x = torch.randn(2, 8, 10, 10)
    torch.testing.assert_close(module(x), x)


def test_attention_gate_scales_the_skip_by_coefficients_in_0_1():
    gate = AttentionGate(skip_channels=6, gate_channels=4, inner_channels=3)
    skip, g = torch.randn(2, 6, 8, 8), torch.randn(2, 4, 8, 8)
    coeff = gate.attention(skip, g)
    assert coeff.shape == (2, 1, 8, 8) and coeff.min() >= 0 and coeff.max() <= 1
    torch.testing.assert_close(gate(skip, g), skip * coeff)


def test_decoder_block_doubles_resolution():
    block = DecoderBlock(in_channels=10, skip_channels=6, out_channels=8)
    assert block(torch.randn(2, 10, 4, 4), torch.randn(2, 6, 8, 8)).shape == (2, 8, 8, 8)


@pytest.mark.parametrize("tau", [0.0, 0.7, 1.5])
@pytest.mark.parametrize("scale", [1.0, 1e4])
def test_mu_stays_within_1_and_1_plus_tau(tau, scale):
    """Eq. 4: both factors are sigmoid-bounded, so mu is in [1, 1 + tau] even for huge inputs."""
    tim = TaskInteraction(channels=12, clf_dim=16, tau=tau)
    d, f = scale * torch.randn(4, 12, 6, 6), scale * torch.randn(4, 16)
    mu = tim.modulation(d, f)
    assert mu.shape == (4, 12, 1, 1)
    assert mu.min() >= 1.0 and mu.max() <= 1.0 + tau + 1e-6
    d_enh, _, _, _ = tim(d, f)
    torch.testing.assert_close(d_enh, d * mu)


def test_tim_displacements_are_normalised_l2_shifts():
    tim = TaskInteraction(channels=8, clf_dim=10, tau=0.7)
    d, f = torch.randn(3, 8, 5, 5), torch.randn(3, 10)
    d_enh, f_enh, disp_s2c, disp_c2s = tim(d, f)
    torch.testing.assert_close(disp_s2c, (f_enh - f).norm(dim=1) / f.norm(dim=1))
    torch.testing.assert_close(disp_c2s, (d_enh - d).flatten(1).norm(dim=1) / d.flatten(1).norm(dim=1))
    assert not disp_s2c.requires_grad and not disp_c2s.requires_grad


@pytest.mark.parametrize("seg2clf, clf2seg", [(True, False), (False, True)])
def test_tim_direction_off_passes_its_stream_through(seg2clf, clf2seg):
    tim = TaskInteraction(channels=8, clf_dim=10, tau=0.7, seg2clf=seg2clf, clf2seg=clf2seg)
    d, f = torch.randn(2, 8, 5, 5), torch.randn(2, 10)
    d_enh, f_enh, disp_s2c, disp_c2s = tim(d, f)
    assert (d_enh is d) == (not clf2seg) and (f_enh is f) == (not seg2clf)
    assert disp_s2c.isnan().all() == (not seg2clf) and disp_c2s.isnan().all() == (not clf2seg)


def test_tim_seg2clf_follows_eq_2():
    tim = TaskInteraction(channels=8, clf_dim=10, tau=0.7).eval()
    d, f = torch.randn(2, 8, 5, 5), torch.randn(2, 10)
    ctx = tim.seg_context(tim.seg_attention(d).mean(dim=(2, 3)))
    _, f_enh, _, _ = tim(d, f)
    torch.testing.assert_close(f_enh, f + tim.clf_gate(ctx) * ctx)


def _upa_inputs(batch=4):
    d = torch.randn(batch, 6, 7, 7)
    f = torch.randn(batch, 10)
    return d, 1.3 * d + 0.1, f, f + torch.randn(batch, 10)


@pytest.mark.parametrize("norm", ["batch", "running"])
def test_upa_weights_sum_to_one_and_interpolate(norm):
    upa = UncertaintyProxyAttention(hidden=32, norm=norm)
    d, d_enh, f, f_enh = _upa_inputs()
    d_final, f_final, w = upa(d, d_enh, f, f_enh)
    assert w.shape == (4, 2) and (w >= 0).all()
    torch.testing.assert_close(w.sum(dim=1), torch.ones(4))
    torch.testing.assert_close(d_final, d + w[:, 0, None, None, None] * (d_enh - d))
    torch.testing.assert_close(f_final, f + w[:, 1, None] * (f_enh - f))


def test_upa_variance_proxies_follow_eq_6():
    d_enh, f_enh = torch.randn(3, 4, 5, 5), torch.randn(3, 9)
    u = UncertaintyProxyAttention.uncertainty(d_enh, f_enh)
    per_channel = ((d_enh - d_enh.mean(dim=(2, 3), keepdim=True)) ** 2).mean(dim=(2, 3))
    torch.testing.assert_close(u[:, 0], per_channel.mean(dim=1))
    torch.testing.assert_close(u[:, 1], ((f_enh - f_enh.mean(1, keepdim=True)) ** 2).mean(1))


def test_upa_with_zero_segmentation_weight_keeps_decoder_features():
    """Eq. 8 with w_seg = 0: D_final == D (uncertain enhancement rejected), f fully enhanced."""
    upa = UncertaintyProxyAttention()
    last = upa.weight_mlp[-1]
    torch.nn.init.zeros_(last.weight)
    with torch.no_grad():
        last.bias.copy_(torch.tensor([-100.0, 100.0]))
    d, d_enh, f, f_enh = _upa_inputs()
    d_final, f_final, w = upa(d, d_enh, f, f_enh)
    assert (w[:, 0] == 0).all()
    torch.testing.assert_close(d_final, d, rtol=0, atol=0)
    torch.testing.assert_close(f_final, f_enh)


def test_running_upa_tracks_the_batch_mean():
    upa = UncertaintyProxyAttention(norm="running", momentum=0.25).train()
    batches = [_upa_inputs() for _ in range(2)]
    means = [upa.uncertainty(b[1], b[3]).mean(dim=0) for b in batches]
    upa(*batches[0])
    torch.testing.assert_close(upa.running_u, means[0])          # first batch initialises it
    upa(*batches[1])
    torch.testing.assert_close(upa.running_u, 0.75 * means[0] + 0.25 * means[1])
    assert int(upa.num_batches_tracked) == 2


def test_running_upa_distinguishes_single_images_in_eval_where_batch_mode_cannot():
    """A batch of one normalised by its own mean always gives u~ = 1, whatever the image."""
    running = UncertaintyProxyAttention(norm="running")
    batch = UncertaintyProxyAttention(norm="batch")
    batch.load_state_dict({k: v for k, v in running.state_dict().items() if k.startswith("weight_mlp")})
    running.train()(*_upa_inputs(8))
    running.eval(), batch.eval()
    def image(spread):   # one sample whose enhanced features have the given spread
        d, f = torch.zeros(1, 6, 7, 7), torch.zeros(1, 10)
        return d, spread * torch.randn(1, 6, 7, 7), f, spread * torch.randn(1, 10)

    calm, noisy = image(0.1), image(5.0)
    w_batch = [batch(*x)[2] for x in (calm, noisy)]
    w_running = [running(*x)[2] for x in (calm, noisy)]
    torch.testing.assert_close(w_batch[0], w_batch[1])
    assert not torch.allclose(w_running[0], w_running[1])
    assert all(math.isfinite(v) for w in w_running for v in w.flatten().tolist())


def test_running_and_batch_upa_train_identically_and_running_eval_is_per_image():
    """Same weights: training outputs agree (both divide by the batch mean); in evaluation only
    ``running`` gives each image the weights it gets alone, whatever shares its batch."""
    running, batch = UncertaintyProxyAttention(norm="running"), UncertaintyProxyAttention(norm="batch")
    batch.load_state_dict({k: v for k, v in running.state_dict().items() if k.startswith("weight_mlp")})
    inputs = _upa_inputs(6)
    for a, b in zip(running.train()(*inputs), batch.train()(*inputs)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    running.eval(), batch.eval()
    alone = {name: torch.cat([m(*(t[i:i + 1] for t in inputs))[2] for i in range(6)])
             for name, m in (("running", running), ("batch", batch))}
    torch.testing.assert_close(running(*inputs)[2], alone["running"], rtol=1e-6, atol=1e-6)
    assert not torch.allclose(batch(*inputs)[2], alone["batch"], atol=1e-3)

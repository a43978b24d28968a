"""The multi-task loss (paper Sec. 2.4): each term against values worked out by hand."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from busray.configtools import ConfigError, from_dict
from busray.losses import (LOSS_KEYS, LossConfig, MultiTaskLoss, boundary_loss, curvature_kernel,
                           focal_cross_entropy, focal_tversky_loss, texture_loss, tversky_index)


def img(rows: list[list[float]]) -> torch.Tensor:
    """A (1, 1, H, W) float32 image from nested lists."""
    return torch.tensor(rows, dtype=torch.float32).view(1, 1, len(rows), len(rows[0]))


def logit(p: torch.Tensor) -> torch.Tensor:
    return torch.log(p) - torch.log1p(-p)


HALF = torch.zeros(1, 1, 64, 64)
HALF[..., :32] = 1.0


# --- focal Tversky -------------------------------------------------------------------------------

@pytest.mark.parametrize("probs, target, smooth, expected_ti", [
    # partial overlap: TP = 1 + 0.5, FP = 0.5, FN = 0.5 -> (1.5 + 1) / (1.5 + .3*.5 + .7*.5 + 1)
    ([[1.0, 0.5, 0.5, 0.0]], [[1, 1, 0, 0]], 1.0, 2.5 / 3.0),
    # one missed pixel (FN = 1) is weighted by beta = 0.7 ...
    ([[1.0, 0.0, 0.0, 0.0]], [[1, 1, 0, 0]], 1.0, 2.0 / 2.7),
    # ... one extra pixel (FP = 1) only by alpha = 0.3
    ([[1.0, 1.0, 1.0, 0.0]], [[1, 1, 0, 0]], 1.0, 3.0 / 3.3),
    # the complement: TP = 0, FP = FN = 2 -> s / (0.3*2 + 0.7*2 + s)
    ([[0.0, 0.0, 1.0, 1.0]], [[1, 1, 0, 0]], 1.0, 1.0 / 3.0),
    # empty mask, faint prediction mass 0.4: s / (0.3*0.4 + s)
    ([[0.1, 0.1, 0.1, 0.1]], [[0, 0, 0, 0]], 1.0, 1.0 / 1.12),
    ([[0.1, 0.1, 0.1, 0.1]], [[0, 0, 0, 0]], 0.5, 0.5 / 0.62),
])
def test_tversky_index_by_hand(probs, target, smooth, expected_ti):
    ti = tversky_index(img(probs), img(target), alpha=0.3, beta=0.7, smooth=smooth)
    assert ti.shape == (1,)
    assert ti.item() == pytest.approx(expected_ti, rel=1e-6)
    ft = focal_tversky_loss(img(probs), img(target), 0.3, 0.7, 0.75, smooth)
    assert ft.item() == pytest.approx((1 - expected_ti) ** 0.75, rel=1e-5)


@pytest.mark.parametrize("probs, target, low, high", [
    (HALF, HALF, 0.0, 1e-6),                 # perfect prediction
    (1 - HALF, HALF, 0.99, 1.0),             # complement on a 64x64 image: TI = 1/2049
    (torch.full_like(HALF, 2e-9), torch.zeros_like(HALF), 0.0, 1e-3),  # normal image, empty pred
    (torch.ones_like(HALF), torch.zeros_like(HALF), 0.99, 1.0),        # normal image, all lesion
])
def test_focal_tversky_limits(probs, target, low, high):
    ft = focal_tversky_loss(probs, target, 0.3, 0.7, 0.75, 1.0).item()
    assert low <= ft <= high


def test_focal_tversky_is_per_image_mean():
    probs = torch.cat([HALF, torch.full_like(HALF, 2e-9)])
    target = torch.cat([1 - HALF, torch.zeros_like(HALF)])
    ft = focal_tversky_loss(probs, target, 0.3, 0.7, 0.75, 1.0)
    assert ft.shape == (2,)
    out = MultiTaskLoss()(logit(probs.clamp(1e-7, 1 - 1e-7)), torch.zeros(2, 3), target,
                          torch.tensor([1, 0]))
    assert out["focal_tversky"].item() == pytest.approx(ft.mean().item(), abs=1e-3)
    assert out["focal_tversky"].item() == pytest.approx(0.5, abs=0.01)  # (~1 + ~0) / 2


def test_normal_image_with_empty_prediction_is_finite_and_low():
    masks = torch.zeros(2, 1, 64, 64)
    seg = torch.full_like(masks, -20.0, requires_grad=True)
    out = MultiTaskLoss()(seg, torch.zeros(2, 3), masks, torch.tensor([0, 0]))
    assert all(torch.isfinite(v) for v in out.values())
    assert out["focal_tversky"].item() < 1e-3
    assert out["boundary"].item() < 1e-6 and out["texture"].item() < 1e-3
    out["loss"].backward()
    assert torch.isfinite(seg.grad).all()


# --- boundary (Eq. 11) ---------------------------------------------------------------------------

def test_curvature_kernel_values_by_hand():
    k = curvature_kernel(5, sigma=1.0, normalize=False)[0, 0]  # rows = y, columns = x
    assert k[2, 2].item() == 0.0
    assert k[2, 3].item() == pytest.approx(math.exp(-0.5))        # x=1, y=0
    assert k[3, 2].item() == pytest.approx(-math.exp(-0.5))       # x=0, y=1
    assert k[2, 4].item() == pytest.approx(4 * math.exp(-2.0))    # x=2, y=0
    assert k[3, 4].item() == pytest.approx(3 * math.exp(-2.5))    # x=2, y=1
    assert k[1, 1].item() == pytest.approx(0.0)                   # |x| = |y|
    assert k.sum().item() == pytest.approx(0.0, abs=1e-6)
    norm = curvature_kernel(5, sigma=1.0)[0, 0]
    assert norm.abs().sum().item() == pytest.approx(1.0)


def test_boundary_single_pixel_by_hand():
    # One stray pixel in the middle of an empty 9x9 image: K * pred is the kernel itself, so the
    # mean over the 81 pixels is sum|K| / 81 = (4 e^-0.5 + 16 e^-2 + 24 e^-2.5) / 81.
    pred = torch.zeros(1, 1, 9, 9)
    pred[..., 4, 4] = 1.0
    target = torch.zeros_like(pred)
    l1 = 4 * math.exp(-0.5) + 16 * math.exp(-2.0) + 24 * math.exp(-2.5)
    raw = boundary_loss(pred, target, curvature_kernel(5, 1.0, normalize=False))
    assert raw.item() == pytest.approx(l1 / 81, rel=1e-5)
    normalised = boundary_loss(pred, target, curvature_kernel(5, 1.0))
    assert normalised.item() == pytest.approx(1 / 81, rel=1e-5)


@pytest.mark.parametrize("pred, target, positive", [
    (HALF, HALF, False),
    (torch.zeros_like(HALF), torch.zeros_like(HALF), False),
    (HALF, torch.zeros_like(HALF), True),
    (HALF, HALF.transpose(-1, -2), True),
])
def test_boundary_zero_iff_masks_identical(pred, target, positive):
    value = boundary_loss(pred, target, curvature_kernel(5, 1.0)).item()
    assert (value > 1e-4) == positive
    assert 0.0 <= value <= 1.0


@pytest.mark.parametrize("mode, has_grad", [("soft", True), ("binary", False)])
def test_boundary_gradient_only_in_soft_mode(mode, has_grad):
    masks = HALF.repeat(2, 1, 1, 1)
    seg = torch.randn(2, 1, 64, 64, requires_grad=True)
    out = MultiTaskLoss(LossConfig(boundary_mode=mode))(seg, torch.zeros(2, 3), masks,
                                                       torch.tensor([1, 2]))
    assert out["boundary"].item() > 0
    assert out["boundary"].requires_grad == has_grad
    if has_grad:
        (grad,) = torch.autograd.grad(out["boundary"], seg)
        assert grad.abs().sum() > 0


# --- texture (Eq. 12) ----------------------------------------------------------------------------

def test_texture_by_hand():
    # A vertical line: S_x (zero padding) gives [[3, 0, -3], [4, 0, -4], [3, 0, -3]], mean 0,
    # population variance (4*9 + 2*16) / 9 = 68/9. An empty prediction has std 0.
    line = img([[0, 1, 0], [0, 1, 0], [0, 1, 0]])
    std = math.sqrt(68 / 9)
    assert texture_loss(torch.zeros_like(line), line).item() == pytest.approx(std, abs=1e-3)
    assert texture_loss(0.5 * line, line).item() == pytest.approx(std / 2, abs=1e-3)
    assert texture_loss(line, line).item() == pytest.approx(0.0, abs=1e-6)
    # a horizontal line is invisible to S_x except at its ends: much smaller std than the vertical
    assert texture_loss(line.transpose(-1, -2), line).item() > 0.5


# --- focal cross-entropy -------------------------------------------------------------------------

def test_focal_cross_entropy_by_hand():
    logits = torch.log(torch.tensor([[0.7, 0.2, 0.1], [0.2, 0.2, 0.6]]))
    labels = torch.tensor([0, 1])
    # -(1 - p_t)^2 log p_t with p_t = 0.7 and 0.2
    terms = [-(0.3 ** 2) * math.log(0.7), -(0.8 ** 2) * math.log(0.2)]
    assert focal_cross_entropy(logits, labels, 2.0).item() == pytest.approx(sum(terms) / 2, rel=1e-5)
    plain = torch.nn.functional.cross_entropy(logits, labels)
    assert focal_cross_entropy(logits, labels, 0.0).item() == pytest.approx(plain.item(), rel=1e-6)
    weights = torch.tensor([1.0, 3.0, 1.0])
    weighted = (terms[0] + 3 * terms[1]) / 4
    assert focal_cross_entropy(logits, labels, 2.0, weights).item() == pytest.approx(weighted,
                                                                                     rel=1e-5)


# --- the combined module -------------------------------------------------------------------------

@pytest.fixture
def batch():
    torch.manual_seed(0)
    masks = torch.zeros(2, 1, 32, 32)
    masks[0, :, 8:20, 10:24] = 1.0  # a lesion; image 1 is normal
    return torch.randn(2, 1, 32, 32), torch.randn(2, 3), masks, torch.tensor([1, 0])


def test_total_is_the_weighted_sum_of_terms(batch):
    cfg = LossConfig()
    out = MultiTaskLoss(cfg)(*batch)
    assert set(out) == set(LOSS_KEYS)
    assert all(v.dim() == 0 and v.dtype == torch.float32 for v in out.values())
    seg = out["focal_tversky"] + 0.25 * out["boundary"] + 0.15 * out["texture"]
    assert out["seg_loss"].item() == pytest.approx(seg.item(), rel=1e-6)
    assert out["loss"].item() == pytest.approx(0.8 * seg.item() + 0.2 * out["clf_loss"].item(), rel=1e-6)


@pytest.mark.parametrize("key, value", [
    ("w_seg", 0.3), ("w_clf", 0.9), ("w_boundary", 2.0), ("w_texture", 1.5),
])
def test_each_weight_scales_its_term(batch, key, value):
    base = MultiTaskLoss(LossConfig())(*batch)
    cfg = dataclasses.replace(LossConfig(), **{key: value})
    out = MultiTaskLoss(cfg)(*batch)
    for term in ("focal_tversky", "boundary", "texture", "clf_loss"):  # weights leave the terms alone
        assert out[term].item() == pytest.approx(base[term].item(), rel=1e-6)
    seg = out["focal_tversky"] + cfg.w_boundary * out["boundary"] + cfg.w_texture * out["texture"]
    total = cfg.w_seg * seg + cfg.w_clf * out["clf_loss"]
    assert out["loss"].item() == pytest.approx(total.item(), rel=1e-6)
    assert out["loss"].item() != pytest.approx(base["loss"].item(), rel=1e-4)


@pytest.mark.parametrize("key, value, changed", [
    ("tversky_alpha", 0.7, "focal_tversky"),
    ("tversky_beta", 0.3, "focal_tversky"),
    ("tversky_gamma", 1.5, "focal_tversky"),
    ("tversky_smooth", 10.0, "focal_tversky"),
    ("focal_gamma", 0.0, "clf_loss"),
    ("class_weights", [1.0, 5.0, 1.0], "clf_loss"),
    ("boundary_sigma", 2.0, "boundary"),
    ("boundary_kernel_size", 9, "boundary"),
    ("boundary_normalize", False, "boundary"),
    ("boundary_mode", "binary", "boundary"),
])
def test_each_shape_parameter_changes_only_its_term(batch, key, value, changed):
    base = MultiTaskLoss(LossConfig())(*batch)
    out = MultiTaskLoss(from_dict(LossConfig, {key: value}))(*batch)
    for term in ("focal_tversky", "boundary", "texture", "clf_loss"):
        same = out[term].item() == pytest.approx(base[term].item(), rel=1e-6)
        assert same != (term == changed), term


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_inputs_are_computed_in_float32(batch, dtype):
    seg, clf, masks, labels = batch
    ref = MultiTaskLoss()(seg.to(dtype).float(), clf.to(dtype).float(), masks, labels)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = MultiTaskLoss()(seg.to(dtype), clf.to(dtype), masks.to(torch.uint8), labels)
    for key in LOSS_KEYS:
        assert out[key].dtype == torch.float32
        assert out[key].item() == pytest.approx(ref[key].item(), rel=1e-5)


def test_gradients_reach_both_heads(batch):
    seg, clf, masks, labels = batch
    seg, clf = seg.requires_grad_(), clf.requires_grad_()
    MultiTaskLoss()(seg, clf, masks, labels)["loss"].backward()
    assert seg.grad.abs().sum() > 0 and clf.grad.abs().sum() > 0


@pytest.mark.parametrize("seg_shape, clf_shape, mask_shape, label_shape, match", [
    ((2, 3, 8, 8), (2, 3), (2, 3, 8, 8), (2,), "seg_logits"),
    ((2, 1, 8, 8), (2, 3), (2, 1, 4, 4), (2,), "masks"),
    ((2, 1, 8, 8), (3, 3), (2, 1, 8, 8), (2,), "clf_logits"),
    ((2, 1, 8, 8), (2, 3), (2, 1, 8, 8), (2, 1), "labels"),
])
def test_bad_shapes_are_named(seg_shape, clf_shape, mask_shape, label_shape, match):
    with pytest.raises(ValueError, match=match):
        MultiTaskLoss()(torch.zeros(seg_shape), torch.zeros(clf_shape), torch.zeros(mask_shape),
                        torch.zeros(label_shape, dtype=torch.long))


def test_class_weights_must_match_classes(batch):
    loss = MultiTaskLoss(from_dict(LossConfig, {"class_weights": [1.0, 2.0]}))
    with pytest.raises(ValueError, match="loss.class_weights has 2 entries"):
        loss(*batch)


@pytest.mark.parametrize("data, match", [
    ({"w_seg": -0.1}, "w_seg"),
    ({"tversky_alpha": 1.5}, "tversky_alpha"),
    ({"tversky_gamma": 0.0}, "tversky_gamma"),
    ({"boundary_kernel_size": 4}, "boundary_kernel_size: 4 must be odd"),
    ({"boundary_mode": "hard"}, "boundary_mode"),
    ({"class_weights": [1.0, -1.0]}, "class_weights: -1.0 is outside"),
    ({"class_weights": [0.0, 0.0]}, "class_weights: all weights are 0"),
    ({"w_seg": 0.0, "w_clf": 0.0}, "w_seg"),
    ({"tversky_alpha": 0.0, "tversky_beta": 0.0}, "tversky_alpha"),
    ({"focal": 2.0}, "unknown config key 'focal'"),
])
def test_config_rejects_bad_values(data, match):
    with pytest.raises(ConfigError, match=match):
        from_dict(LossConfig, data)


def test_config_defaults_are_the_papers():
    cfg = LossConfig()
    assert (cfg.w_seg, cfg.w_clf, cfg.w_boundary, cfg.w_texture) == (0.80, 0.20, 0.25, 0.15)
    assert (cfg.tversky_alpha, cfg.tversky_beta, cfg.tversky_gamma) == (0.3, 0.7, 0.75)
    assert cfg.boundary_sigma == 1.0 and cfg.boundary_mode == "soft"

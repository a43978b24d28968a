"""Batched on-device augmentation: shapes, determinism, binary masks, exact identities."""

from __future__ import annotations

import pytest
import torch

from busray.data import AugmentConfig, augment_batch
from busray.data.augment import elastic_field
from databuild import make_cfg

OFF = dict(rotation_prob=0.0, hflip_prob=0.0, vflip_prob=0.0, elastic_prob=0.0)


def _batch(b=6, c=3, size=48):
    g = torch.Generator().manual_seed(0)
    images = torch.rand(b, c, size, size, generator=g)
    masks = torch.zeros(b, 1, size, size)
    masks[:, :, 12:30, 16:36] = 1.0
    return images, masks


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_shapes_dtypes_and_binary_masks():
    images, masks = _batch()
    cfg = AugmentConfig(rotation_prob=1.0, elastic_prob=1.0, vflip_prob=0.5)
    out, out_masks = augment_batch(images, masks, cfg, _gen())
    assert out.shape == images.shape and out_masks.shape == masks.shape
    assert out.dtype == images.dtype and out_masks.dtype == masks.dtype
    assert set(out_masks.unique().tolist()) <= {0.0, 1.0}
    area = out_masks.flatten(1).mean(1) / masks.flatten(1).mean(1)
    assert ((area > 0.8) & (area < 1.2)).all()                 # the lesion is moved, not lost


def test_same_generator_state_same_result_other_seed_differs():
    images, masks = _batch()
    cfg = AugmentConfig(rotation_prob=1.0, elastic_prob=1.0)
    a = augment_batch(images, masks, cfg, _gen(1))
    b = augment_batch(images, masks, cfg, _gen(1))
    c = augment_batch(images, masks, cfg, _gen(2))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


@pytest.mark.parametrize("cfg", [AugmentConfig(**OFF), AugmentConfig(enabled=False),
                                 AugmentConfig(**{**OFF, "rotation_prob": 1.0,
                                                  "rotation_deg": 0.0})])
def test_identity_when_nothing_can_happen(cfg):
    images, masks = _batch()
    out, out_masks = augment_batch(images, masks, cfg, _gen())
    assert torch.equal(out, images) and torch.equal(out_masks, masks)


@pytest.mark.parametrize("key,dim", [("hflip_prob", -1), ("vflip_prob", -2)])
def test_certain_flip_is_an_exact_flip(key, dim):
    images, masks = _batch()
    out, out_masks = augment_batch(images, masks, AugmentConfig(**{**OFF, key: 1.0}), _gen())
    torch.testing.assert_close(out, images.flip(dim), atol=1e-5, rtol=0)
    assert torch.equal(out_masks, masks.flip(dim))


def test_untouched_samples_are_bit_exact():
    images, masks = _batch(b=32)
    out, _ = augment_batch(images, masks, AugmentConfig(**{**OFF, "elastic_prob": 0.5}), _gen())
    same = (out == images).flatten(1).all(1)
    assert 0 < same.sum() < 32                                 # some kept, some deformed


def test_rotation_stays_within_its_angle():
    """A 1-pixel dot at radius 20 may move along the arc by at most r * angle."""
    image = torch.zeros(8, 1, 64, 64)
    image[:, :, 31:33, 51:53] = 1.0                            # centre at (32, 52): radius 20
    out, _ = augment_batch(image, torch.zeros_like(image),
                           AugmentConfig(**{**OFF, "rotation_prob": 1.0, "rotation_deg": 10.0}),
                           _gen())
    ys, xs = torch.meshgrid(torch.arange(64.0) + 0.5, torch.arange(64.0) + 0.5, indexing="ij")
    mass = out[:, 0].flatten(1).sum(1)
    cy = (out[:, 0] * ys).flatten(1).sum(1) / mass
    cx = (out[:, 0] * xs).flatten(1).sum(1) / mass
    angle = torch.rad2deg(torch.atan2(cy - 32, cx - 32)).abs()
    assert (angle <= 10.5).all() and (angle > 0.2).any()


def test_elastic_field_strength_matches_alpha():
    field = elastic_field(4, 96, 96, alpha=0.02, sigma=0.1, generator=_gen(), device="cpu")
    assert field.shape == (4, 96, 96, 2)
    pixels = field * 48                                        # normalised units -> pixels
    assert pixels.std().item() == pytest.approx(0.02 * 96, rel=0.15)
    step = (pixels[:, 1:] - pixels[:, :-1]).abs().mean()
    assert step < 0.1 * pixels.abs().mean()                   # smooth, not white noise


def test_accepts_the_whole_data_config():
    images, masks = _batch()
    cfg = make_cfg(augment={"rotation_prob": 0.0, "hflip_prob": 1.0, "elastic_prob": 0.0})
    out, _ = augment_batch(images, masks, cfg, _gen())
    torch.testing.assert_close(out, images.flip(-1), atol=1e-5, rtol=0)

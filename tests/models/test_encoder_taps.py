"""``model.encoder_taps``: timm's stage outputs vs the authors' expansion activations."""

from __future__ import annotations

import pytest
import torch

from busray.configtools import ConfigError
from busray.models import create_model
from busray.models.encoder import Encoder
from busray.models.heads import CLF_ENCODER_TAPS
from tinymodels import tiny_config

LITE = "tf_efficientnet_lite0"   # the smallest timm EfficientNet with inverted-residual stages


def test_b4_expansion_taps_are_the_authors_channels():
    """authors_code.md: block2a/3a/4a/6a_expand_activation and top_activation of Keras B4."""
    enc = Encoder("tf_efficientnet_b4", taps="expansion")
    assert enc.channels == [144, 192, 336, 960, 1792]
    assert enc.reductions == [2, 4, 8, 16, 32]
    assert Encoder("tf_efficientnet_b4", taps="blocks").channels == [24, 32, 56, 160, 448]


def test_expansion_taps_are_the_expansion_activations():
    """Each hooked tap equals the first block's BN+act after its 1x1 expansion, computed by hand."""
    enc = Encoder(LITE, taps="expansion").eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        feats = enc(x)
        net = enc.features
        h = net.bn1(net.conv_stem(x))
        manual = []
        for i, stage in enumerate(net.blocks):
            if f"blocks.{i}.0.bn1" in enc.tap_modules:
                manual.append(stage[0].bn1(stage[0].conv_pw(h)))
            h = stage(h)
        manual.append(net.bn2(net.conv_head(h)))
    assert len(feats) == 5
    for got, want, channels, stride in zip(feats, manual, enc.channels, enc.reductions):
        torch.testing.assert_close(got, want)
        assert got.shape == (2, channels, 64 // stride, 64 // stride)


def test_full_model_with_expansion_taps_sizes_its_heads_from_the_taps():
    cfg = tiny_config(encoder=LITE, encoder_taps="expansion", hmsf=False)
    model = create_model(cfg).eval()
    taps = model.encoder.channels
    first = model.clf_head.body[0]
    assert first.in_features == sum(taps[i] for i in CLF_ENCODER_TAPS) + 4 * cfg.clf_dim
    out = model(torch.randn(2, 3, 64, 64))
    assert out.seg.shape == (2, 1, 64, 64) and out.clf.shape == (2, 3)


def test_freezing_reaches_the_expansion_tap():
    enc = Encoder(LITE, taps="expansion", freeze_stages=1)
    frozen = {n for n, p in enc.features.named_parameters() if not p.requires_grad}
    assert "blocks.1.0.bn1.weight" in frozen and "conv_stem.weight" in frozen
    assert "blocks.1.0.conv_dw.weight" not in frozen


@pytest.mark.parametrize("encoder, taps, needle", [
    ("test_efficientnet", "expansion", "model.encoder_taps: 'expansion' needs an inverted-residual block"),
    (LITE, "stages", "model.encoder_taps: 'stages' is not one of"),
])
def test_encoders_without_such_taps_are_refused_in_one_line(encoder, taps, needle):
    with pytest.raises(ConfigError, match=needle) as err:
        Encoder(encoder, taps=taps)
    assert "\n" not in str(err.value)

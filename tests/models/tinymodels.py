"""Tiny model configs for the model tests (imported by name: ``from tinymodels import ...``)."""

from __future__ import annotations

import dataclasses

from busray.configtools import validate
from busray.models import LEVELS, ModelConfig

TINY = dict(encoder="test_efficientnet", weights="none", freeze_stages=0,
            decoder_channels=[32, 16, 16, 8], clf_dim=32, decoder_dropout=0.0, clf_dropout=0.0)

ABLATIONS = {
    # name: overrides of the tiny full model (Table 2 rows, single/multi-level, directions, norms)
    "full": {},
    "baseline_encoder_only": dict(encoder_only=True, hmsf=False, attention_gates=False, tim=False, upa=False),
    "hmsf_encoder_only": dict(encoder_only=True, tim=False, upa=False),
    "streams_without_tim": dict(tim=False, upa=False),
    "tim_only": dict(hmsf=False, upa=False),
    "tim_upa": dict(hmsf=False),
    "single_level_d1": dict(tim_levels=[1]),
    "levels_2_4": dict(tim_levels=[4, 2]),
    "seg2clf_only": dict(tim_clf2seg=False),
    "clf2seg_only": dict(tim_seg2clf=False),
    "no_attention_gates": dict(attention_gates=False),
    "upa_running": dict(upa_norm="running"),
}


def tiny_config(**overrides) -> ModelConfig:
    return validate(dataclasses.replace(ModelConfig(**TINY), **overrides))


def expected_active(cfg: ModelConfig) -> dict[str, list[bool]]:
    """Per diagnostic key, whether each level D1..D4 should carry a value (else NaN)."""
    tim = [cfg.tim and level in cfg.tim_levels for level in LEVELS]
    return {
        "tim_seg2clf": [t and cfg.tim_seg2clf for t in tim],
        "tim_clf2seg": [t and cfg.tim_clf2seg for t in tim],
        "upa_w_seg": [t and cfg.upa for t in tim],
        "upa_w_clf": [t and cfg.upa for t in tim],
    }

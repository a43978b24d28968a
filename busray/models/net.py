"""The assembled multi-task network (Fig. 1), its output contract and ``create_model``.

Data flow for an input (B, in_chans, H, W):

    encoder -> taps e0..e4 (strides 2..32; ``model.encoder_taps``) -> HMSF on each tap (optional)
    D1 = Dec(e4, skip e3), D2 = Dec(D1', skip e2), D3 = Dec(D2', skip e1), D4 = Dec(D3', skip e0)
    at level l: f_l = LevelClfInit(e_{5-l}); with TIM: (D_enh, f_enh) = TIM(D_l, f_l);
                with UPA: (D_l', f_l') = UPA(D_l, D_enh, f_l, f_enh), else (D_enh, f_enh)
    seg = SegmentationHead(D4')                    (B, 1, H, W) logits
    clf = ClassificationHead([GAP e1..e4, f_1'..f_4'])  (B, num_classes) logits

``encoder_only`` (Table 2's baseline, the "encoder-only parameter sharing" of Sec. 4) builds the same
encoder and decoder but no level streams: the classification head sees only the encoder GAP features.
A switched-off module is not constructed, so it has no parameters and costs nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from busray.configtools import validate
from busray.models.config import DIAGNOSTIC_KEYS, LEVELS, ModelConfig
from busray.models.decoder import DecoderBlock
from busray.models.encoder import Encoder
from busray.models.heads import (CLF_ENCODER_TAPS, LEVEL_SOURCE_TAP, ClassificationHead, LevelClfInit,
                                 SegmentationHead, global_pool)
from busray.models.hmsf import HMSF
from busray.models.tim import TaskInteraction
from busray.models.upa import UncertaintyProxyAttention


SKIP_TAP = {1: 3, 2: 2, 3: 1, 4: 0}
"""Decoder level -> encoder tap on its skip connection (D1 at stride 16 ... D4 at stride 2)."""

PARAM_GROUPS = {
    "encoder": ("encoder",),
    "hmsf": ("hmsf",),
    "decoder": ("decoder",),
    "tim": ("tim",),
    "upa": ("upa",),
    "heads": ("level_clf", "seg_head", "clf_head"),
}
"""Parameter-count groups -> top-level child modules of ``MultiTaskNet`` (level streams count as heads)."""


@dataclass
class ModelOutput:
    """``seg`` (B, 1, H, W) logits, ``clf`` (B, num_classes) logits, and detached ``diagnostics``:
    each of ``DIAGNOSTIC_KEYS`` is (B, 4) over decoder levels D1..D4, NaN where the module is off."""

    seg: torch.Tensor
    clf: torch.Tensor
    diagnostics: dict[str, torch.Tensor] = field(default_factory=dict)


class MultiTaskNet(nn.Module):
    """The network of Fig. 1, built from a validated ``ModelConfig`` (kept as ``self.cfg``).

    ``input_mean`` / ``input_std`` (tuples, one value per input channel) are the normalisation the
    encoder's weights expect (timm's ``pretrained_cfg``); the training step normalises inputs with them.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg.encoder, cfg.weights, cfg.in_chans, cfg.freeze_stages, cfg.encoder_taps)
        self.input_mean, self.input_std = self.encoder.input_mean, self.encoder.input_std
        taps = self.encoder.channels
        self.hmsf = (nn.ModuleList(HMSF(c, cfg.hmsf_reduction) for c in taps) if cfg.hmsf else None)
        self.decoder = self._build_decoder(cfg, taps)
        self.level_clf = None if cfg.encoder_only else nn.ModuleList(
            LevelClfInit(taps[LEVEL_SOURCE_TAP[level]], cfg.clf_dim) for level in LEVELS)
        tim_levels = cfg.active_tim_levels()
        self.tim = nn.ModuleDict({
            str(level): TaskInteraction(cfg.decoder_channels[level - 1], cfg.clf_dim, cfg.tau,
                                        cfg.tim_seg2clf, cfg.tim_clf2seg)
            for level in tim_levels}) if tim_levels else None
        self.upa = nn.ModuleDict({
            str(level): UncertaintyProxyAttention(cfg.upa_hidden, cfg.upa_norm, cfg.upa_momentum,
                                                  track_running=cfg.upa_calibration == "train")
            for level in tim_levels}) if cfg.upa and tim_levels else None
        self.seg_head = SegmentationHead(cfg.decoder_channels[-1])
        streams_dim = 0 if cfg.encoder_only else len(LEVELS) * cfg.clf_dim
        clf_in = sum(taps[i] for i in CLF_ENCODER_TAPS) + streams_dim
        self.clf_head = ClassificationHead(clf_in, cfg.clf_dim, cfg.num_classes, cfg.clf_dropout)

    @staticmethod
    def _build_decoder(cfg: ModelConfig, taps: list[int]) -> nn.ModuleList:
        """D1 upsamples the bridge (tap 4) onto tap 3; each next level goes one tap shallower."""
        blocks, in_ch = [], taps[-1]
        for level, out_ch in zip(LEVELS, cfg.decoder_channels):
            blocks.append(DecoderBlock(in_ch, taps[SKIP_TAP[level]], out_ch, cfg.attention_gates,
                                       cfg.decoder_dropout))
            in_ch = out_ch
        return nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        feats = self.encoder(x)
        if self.hmsf is not None:
            feats = [module(f) for module, f in zip(self.hmsf, feats)]
        # Diagnostics are gathered as per-level (B,) columns and stacked once: no in-place writes
        # into a shared tensor, so the forward also runs under ``torch.func.vmap`` (stacked trials).
        off = torch.full((x.shape[0],), math.nan, device=x.device)
        columns = {key: [off] * len(LEVELS) for key in DIAGNOSTIC_KEYS}
        d, streams = feats[-1], []
        for i, (level, block) in enumerate(zip(LEVELS, self.decoder)):
            d = block(d, feats[SKIP_TAP[level]])
            if self.level_clf is None:
                continue
            f = self.level_clf[i](feats[LEVEL_SOURCE_TAP[level]])
            d, f = self._interact(level, d, f, columns)
            streams.append(f)
        seg = self.seg_head(d, x.shape[-2:])
        clf = self.clf_head([global_pool(feats[i]) for i in CLF_ENCODER_TAPS] + streams)
        diag = {key: torch.stack(cols, dim=1).float() for key, cols in columns.items()}  # float32 under autocast too
        return ModelOutput(seg=seg, clf=clf, diagnostics=diag)

    def _interact(self, level: int, d: torch.Tensor, f: torch.Tensor, columns: dict[str, list]
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """TIM then UPA at one level (where built); sets entry ``level - 1`` of each ``columns`` list."""
        key, col = str(level), level - 1
        if self.tim is None or key not in self.tim:
            return d, f
        d_enh, f_enh, columns["tim_seg2clf"][col], columns["tim_clf2seg"][col] = self.tim[key](d, f)
        if self.upa is None:
            return d_enh, f_enh
        d, f, w = self.upa[key](d, d_enh, f, f_enh)
        columns["upa_w_seg"][col], columns["upa_w_clf"][col] = w[:, 0].detach(), w[:, 1].detach()
        return d, f


def create_model(cfg: ModelConfig) -> MultiTaskNet:
    """Build the network described by ``cfg`` (validated first: a bad value raises ``ConfigError``)."""
    return MultiTaskNet(validate(cfg))


def param_groups_summary(model: nn.Module) -> dict[str, int]:
    """Parameter counts per module group (``PARAM_GROUPS``) plus ``trainable`` and ``total``.

    Accepts a ``MultiTaskNet`` or a wrapper exposing it as ``.module`` (DDP)."""
    net = getattr(model, "module", model)
    counts = {group: 0 for group in PARAM_GROUPS}
    owner = {child: group for group, children in PARAM_GROUPS.items() for child in children}
    for name, param in net.named_parameters():
        group = owner.get(name.split(".", 1)[0])
        if group is not None:
            counts[group] += param.numel()
    counts["trainable"] = sum(p.numel() for p in net.parameters() if p.requires_grad)
    counts["total"] = sum(p.numel() for p in net.parameters())
    return counts

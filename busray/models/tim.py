"""Task Interaction Module (TIM, Sec. 2.1, Eq. 1-5): bidirectional seg <-> clf exchange at one level.

Inputs are the level's decoder features ``D`` (B, c, h, w) and its classification stream ``f``
(B, clf_dim). Both directions read the *base* inputs, so they run in parallel:

- seg -> clf, attention-weighted pooling (Eq. 1-2):
  ``alpha = ReLU(Conv1x1(D))``, ``ctx = phi(GAP(alpha))`` with ``phi = BN o Dense_clf_dim``,
  ``g_clf = sigmoid(Dense(ctx))``, ``f_enh = f + g_clf * ctx``;
- clf -> seg, multiplicative modulation (Eq. 3-5):
  ``psi(f) = sigmoid(Dense_c(f))`` broadcast over (h, w), ``g_seg = sigmoid(Dense_c(GAP(D)))``,
  ``mu = 1 + tau * g_seg * psi(f)`` in [1, 1 + tau], ``D_enh = D * mu``.

Either direction can be switched off; the switched-off one is not built and its stream passes
through unchanged. The width of ``alpha`` is not given in the paper: half the level's width, as in
the authors' code.

Diagnostic (Fig. 3, left): the normalised l2 displacement ``||enh - base|| / ||base||`` of each
stream per sample, computed without gradient from tensors the forward pass already holds.
"""

from __future__ import annotations

import math

import torch
from torch import nn

_EPS = 1e-12


class TaskInteraction(nn.Module):
    def __init__(self, channels: int, clf_dim: int, tau: float,
                 seg2clf: bool = True, clf2seg: bool = True):
        super().__init__()
        # A buffer, not a float: trials stacked under torch.func.vmap (busray.models.stacking) may
        # differ in tau. Not persistent, so checkpoints keep the same keys.
        self.register_buffer("tau", torch.tensor(float(tau)), persistent=False)
        self.seg2clf = seg2clf
        self.clf2seg = clf2seg
        if seg2clf:
            attn = max(channels // 2, 1)
            self.seg_attention = nn.Sequential(nn.Conv2d(channels, attn, 1), nn.ReLU(inplace=True))
            self.seg_context = nn.Sequential(                       # phi = BN o Dense (Eq. 1)
                nn.Linear(attn, clf_dim, bias=False), nn.BatchNorm1d(clf_dim))
            self.clf_gate = nn.Sequential(nn.Linear(clf_dim, clf_dim), nn.Sigmoid())
        if clf2seg:
            self.clf_projection = nn.Sequential(nn.Linear(clf_dim, channels), nn.Sigmoid())  # psi
            self.seg_gate = nn.Sequential(nn.Linear(channels, channels), nn.Sigmoid())

    def seg_to_clf(self, d: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        """Eq. 1-2: the enhanced classification stream, (B, clf_dim)."""
        ctx = self.seg_context(self.seg_attention(d).mean(dim=(2, 3)))
        return f + self.clf_gate(ctx) * ctx

    def modulation(self, d: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        """Eq. 3-4: mu, (B, c, 1, 1), each value in [1, 1 + tau]."""
        g_seg = self.seg_gate(d.mean(dim=(2, 3)))
        mu = 1.0 + self.tau * g_seg * self.clf_projection(f)
        return mu[:, :, None, None]

    def forward(self, d: torch.Tensor, f: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns ``(D_enh, f_enh, disp_seg2clf, disp_clf2seg)``; displacements are (B,) detached,
        NaN for a direction that is off."""
        f_enh = self.seg_to_clf(d, f) if self.seg2clf else f
        d_enh = d * self.modulation(d, f) if self.clf2seg else d
        return d_enh, f_enh, _displacement(f, f_enh, self.seg2clf), _displacement(d, d_enh, self.clf2seg)


def _displacement(base: torch.Tensor, enhanced: torch.Tensor, active: bool) -> torch.Tensor:
    """``||enhanced - base|| / ||base||`` per sample, (B,), without gradient."""
    if not active:
        return torch.full((base.shape[0],), math.nan, device=base.device)
    with torch.no_grad():
        base = base.detach().flatten(1).float()
        shift = enhanced.detach().flatten(1).float() - base
        return shift.norm(dim=1) / base.norm(dim=1).clamp_min(_EPS)

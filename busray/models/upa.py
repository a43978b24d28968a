"""Uncertainty Proxy Attention (UPA, Sec. 2.2, Eq. 6-8): per-sample weighting of TIM's enhancement.

Feature activation variance is the uncertainty proxy (Eq. 6):
``u_seg`` = spatial variance of ``D_enh`` averaged over channels, ``u_clf`` = variance of ``f_enh``
over its features (population variances). Each is normalised, ``u~ = u / (u_bar + eps)``, and a
small MLP maps ``[u~_seg, u~_clf]`` to softmax weights (Eq. 7) that interpolate base and enhanced
features (Eq. 8): ``D_final = D + w_seg (D_enh - D)``, ``f_final = f + w_clf (f_enh - f)``.

``u_bar`` (the paper only says "normalised"; the authors' code uses the batch mean) comes in two
modes (``model.upa_norm``):
- ``running`` (the default): training normalises by the batch mean as the authors' code; evaluation
  divides by a stored mean ``running_u``, so each image's prediction depends on that image alone and
  a split's metrics are the same for any batch size and order
  (tests/training/test_evaluate_invariance.py). ``running_u`` is either set in evaluation mode by
  :meth:`set_reference` (the default, below) or, with ``track_running``, an exponential running mean
  of the training batches' means like BatchNorm's (the first batch initialises it). Until it has
  been set, evaluation falls back to the batch mean;
- ``batch``: the batch mean in evaluation too, as the authors' code. Predictions then
  depend on which images share a batch (a batch of one gives u~ ~ 1 for every image, so the signal is
  lost); kept as an option and compared in ``ablations/upa_norm.yaml``.

Training-mode outputs of the two modes are identical for the same weights (the running mean is only
read in evaluation), so ``running`` changes what evaluation measures, not what training optimises.

The mean tracked in training sees train-mode features (dropout on, BatchNorm on batch statistics),
which are not what evaluation sees: on BUSI, evaluation's mean u~_seg came out 0.59-0.69 instead of
1, so UPA's MLP was fed inputs it never saw in training. ``model.upa_calibration: eval_pass`` (the
default; the paper is silent) therefore re-estimates ``u_bar`` in evaluation mode before every
evaluation, as BatchNorm recalibration does (:mod:`busray.models.calibration`, :meth:`set_reference`),
and training does not track it (``track_running=False``): a pass's ``u`` at level l depends on the
``u_bar`` of the levels before it, so each pass starts from the previous calibration rather than
from train-mode means (until the first one, evaluation uses the batch mean).
"""

from __future__ import annotations

import torch
from torch import nn

EPS = 1e-8
NORM_MODES = ("batch", "running")


class UncertaintyProxyAttention(nn.Module):
    def __init__(self, hidden: int = 32, norm: str = "running", momentum: float = 0.1,
                 track_running: bool = True):
        super().__init__()
        if norm not in NORM_MODES:
            raise ValueError(f"upa norm must be one of {NORM_MODES}, got {norm!r}")
        self.norm = norm
        self.momentum = momentum
        self.track_running = track_running   # False: only set_reference sets the running mean
        self.weight_mlp = nn.Sequential(nn.Linear(2, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 2))
        if norm == "running":
            self.register_buffer("running_u", torch.ones(2))
            self.register_buffer("num_batches_tracked", torch.zeros((), dtype=torch.long))

    @staticmethod
    def uncertainty(d_enh: torch.Tensor, f_enh: torch.Tensor) -> torch.Tensor:
        """Eq. 6: ``[u_seg, u_clf]`` per sample, (B, 2), in float32 even under autocast."""
        u_seg = d_enh.float().var(dim=(2, 3), unbiased=False).mean(dim=1)
        u_clf = f_enh.float().var(dim=1, unbiased=False)
        return torch.stack([u_seg, u_clf], dim=1)

    def batch_mean(self, u: torch.Tensor) -> torch.Tensor:
        """The batch mean of ``u`` (B, 2) -> (2,). Under DDP, ``train.sync_batchnorm`` makes it the mean
        over every rank's batch in training (busray.training.syncnorm), as one process would see it."""
        return u.mean(dim=0)

    def weights(self, d_enh: torch.Tensor, f_enh: torch.Tensor) -> torch.Tensor:
        """Eq. 7: ``[w_seg, w_clf]`` per sample, (B, 2), each row summing to 1."""
        u = self.uncertainty(d_enh, f_enh)
        u_tilde = u / (self._reference(u) + EPS)
        return torch.softmax(self.weight_mlp(u_tilde), dim=1)

    def forward(self, d: torch.Tensor, d_enh: torch.Tensor, f: torch.Tensor, f_enh: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Eq. 8. Returns ``(D_final, f_final, w)`` with ``w`` (B, 2) = ``[w_seg, w_clf]``."""
        w = self.weights(d_enh, f_enh)
        d_final = d + w[:, 0, None, None, None] * (d_enh - d)
        f_final = f + w[:, 1, None] * (f_enh - f)
        return d_final, f_final, w

    @torch.no_grad()
    def set_reference(self, mean_u: torch.Tensor) -> None:
        """Make ``mean_u`` (2,) the ``u_bar`` of evaluation (``norm='running'`` only)."""
        if self.norm != "running":
            raise ValueError(f"set_reference: upa norm '{self.norm}' has no running mean")
        self.running_u.copy_(mean_u)
        self.num_batches_tracked.clamp_(min=1)   # evaluation reads running_u from now on

    def _reference(self, u: torch.Tensor) -> torch.Tensor:
        """``u_bar``, (2,): the batch mean, or the running mean in eval with ``norm='running'``.

        Branches on tensors are ``torch.where``, not Python ``if``: no GPU-to-host sync per level
        and step, and the module runs under ``torch.func.vmap``."""
        batch_mean = self.batch_mean(u)
        if self.norm == "batch":
            return batch_mean
        if self.training:
            if self.track_running:
                self._track(batch_mean.detach())
            return batch_mean
        return torch.where(self.num_batches_tracked > 0, self.running_u, batch_mean)

    @torch.no_grad()
    def _track(self, batch_mean: torch.Tensor) -> None:
        first = self.num_batches_tracked == 0
        self.running_u.copy_(torch.where(first, batch_mean, self.running_u.lerp(batch_mean, self.momentum)))
        self.num_batches_tracked += 1

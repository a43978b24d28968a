"""Evaluation metrics of the paper's Tables 1-2, accumulated batch by batch under stable keys.

Segmentation (threshold 0.5 on the sigmoid probability, ``prob > threshold``; the ground truth is
binarised at 0.5):

- ``seg/iou``, ``seg/dice``, ``seg/sens``, ``seg/prec``: computed per image, then averaged over the
  images whose ground truth contains a lesion (the authors' reporting convention: normal images
  would otherwise add trivially perfect or zero scores). NaN when no image has a lesion.
- ``seg/iou_pooled``, ``seg/dice_pooled``: one IoU / Dice from the TP, FP and FN pixel counts summed
  over the images with a lesion (a "dataset-level" or "micro" score: large lesions weigh more).
  The paper's Tables 1-2 follow this convention: every Dice there equals 2 IoU / (1 + IoU), which
  holds for pooled counts (and for any single image) but not for means of per-image scores, whose
  mean Dice falls below 2 IoU / (1 + IoU) of the mean IoU (the map is concave: Jensen's inequality;
  see docs/SCIENCE.md).
- ``seg/iou_global``: one IoU over all pixels of all images, normal images included.

Per-image conventions where a ratio is 0/0 (they matter for normal images, whose masks are empty):

- IoU and Dice are 1 when both the ground truth and the prediction are empty (perfect agreement),
  and 0 when only one of them is empty. The same rule gives ``seg/iou_global`` = 1 for a set of
  normal images with empty predictions.
- Sensitivity is NaN when the ground truth is empty (nothing to detect; such images are outside
  the average anyway).
- Precision of an empty prediction is 1 on an empty ground truth and 0 on a lesion: a missed lesion
  scores 0 on all four metrics rather than a "perfect" precision.

Classification (``pred`` = argmax of the logits, probabilities = softmax), in numpy:

- ``clf/acc``: plain accuracy; ``clf/f1`` and ``clf/prec``: support-weighted means over classes
  (a class never predicted has precision 0, as in sklearn's default);
- ``clf/auc``: macro mean of one-vs-rest ROC AUCs, each the Mann-Whitney statistic with ties
  counted one half (equal to the trapezoidal area under the ROC curve). It is NaN when some class
  is absent from the labels: its AUC is undefined (torchmetrics would silently count it as 0).

These few lines replace torchmetrics, whose import (it pulls in most of torchvision) cost every
trial process about 2.5 s of start-up on a 2-core CPU: a fixed tax on each trial actor and worker.

The accumulator keeps per-image counts (TP/FP/FN), labels and class probabilities only, never whole
masks, so a full test set costs a few bytes per image.
"""

from __future__ import annotations

import math

import numpy as np
import torch

SEG_KEYS = ("seg/iou", "seg/dice", "seg/sens", "seg/prec", "seg/iou_pooled", "seg/dice_pooled",
            "seg/iou_global")
CLF_KEYS = ("clf/acc", "clf/f1", "clf/auc", "clf/prec")
METRIC_KEYS = SEG_KEYS + CLF_KEYS
# Direction of improvement per key, for the sweep layer; "loss" is the validation loss that the
# training layer reports beside these metrics (``val/loss``).
METRIC_MODES: dict[str, str] = {**{key: "max" for key in METRIC_KEYS}, "loss": "min"}


def segmentation_counts(seg_logits: torch.Tensor, masks: torch.Tensor, threshold: float = 0.5
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-image (TP, FP, FN) pixel counts ``(B,)`` int64 of the thresholded prediction."""
    pred = torch.sigmoid(seg_logits.detach().float()) > threshold
    truth = masks.detach() > 0.5
    dims = tuple(range(1, pred.dim()))
    tp = (pred & truth).sum(dims)
    fp = (pred & ~truth).sum(dims)
    fn = (~pred & truth).sum(dims)
    return tp.long(), fp.long(), fn.long()


def _ratio(num: np.ndarray, den: np.ndarray, when_zero: np.ndarray | float) -> np.ndarray:
    """num/den as float64, with ``when_zero`` where den == 0."""
    num, den = num.astype(np.float64), den.astype(np.float64)
    out = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
    return np.where(den > 0, out, when_zero)


def per_image_scores(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> dict[str, np.ndarray]:
    """Per-image IoU, Dice, sensitivity and precision with the module's 0/0 conventions."""
    has_lesion = (tp + fn) > 0
    return {
        "iou": _ratio(tp, tp + fp + fn, 1.0),
        "dice": _ratio(2 * tp, 2 * tp + fp + fn, 1.0),
        "sens": _ratio(tp, tp + fn, math.nan),
        "prec": _ratio(tp, tp + fp, np.where(has_lesion, 0.0, 1.0)),
    }


def pooled_scores(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> dict[str, float]:
    """``seg/iou_pooled`` and ``seg/dice_pooled``: one IoU / Dice of the counts summed over the
    images with a lesion (NaN when there is none)."""
    lesion = (tp + fn) > 0
    if not lesion.any():
        return {"seg/iou_pooled": math.nan, "seg/dice_pooled": math.nan}
    t, f_p, f_n = (int(c[lesion].sum()) for c in (tp, fp, fn))
    return {"seg/iou_pooled": t / (t + f_p + f_n), "seg/dice_pooled": 2 * t / (2 * t + f_p + f_n)}


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of ``values`` with tied values sharing the mean of their ranks."""
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    new_value = np.r_[True, ordered[1:] != ordered[:-1]]  # where each run of tied values starts
    starts = np.flatnonzero(new_value)
    ends = np.r_[starts[1:], len(values)]
    group = np.cumsum(new_value) - 1
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = ((starts + 1 + ends) / 2.0)[group]  # mean of the 1-based ranks starts+1 .. ends
    return ranks


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for the boolean ``positive`` labels (NaN unless both
    classes occur): P(score of a positive > score of a negative), ties counting one half."""
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    rank_sum = average_ranks(np.asarray(scores, dtype=np.float64))[positive].sum()
    return float((rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def classification_metrics(probs: torch.Tensor, labels: torch.Tensor, num_classes: int
                           ) -> dict[str, float]:
    """``clf/*`` metrics from class probabilities ``(N, C)`` and labels ``(N,)``."""
    prob = probs.detach().double().cpu().numpy()
    label = labels.detach().cpu().numpy()
    pred = prob.argmax(axis=1)
    support = np.bincount(label, minlength=num_classes)
    predicted = np.bincount(pred, minlength=num_classes)
    hits = np.bincount(label[pred == label], minlength=num_classes)
    precision = _ratio(hits, predicted, 0.0)
    f1 = _ratio(2 * hits, support + predicted, 0.0)
    weights = support / support.sum()
    aucs = [roc_auc(prob[:, c], label == c) for c in range(num_classes)]
    return {"clf/acc": float((pred == label).mean()), "clf/f1": float(weights @ f1),
            "clf/auc": float(np.mean(aucs)) if (support > 0).all() else math.nan,
            "clf/prec": float(weights @ precision)}


def binary_metrics(probs: torch.Tensor, labels: torch.Tensor, negative: int, positive: int
                   ) -> dict[str, float]:
    """Two-class accuracy and ROC AUC (``clf/bm_acc``, ``clf/bm_auc``) of a multi-class model,
    over the images labelled ``negative`` or ``positive`` (e.g. benign vs malignant; normal images
    are left out). The score is the model's probability renormalised over the two classes,
    ``p_pos / (p_pos + p_neg)``, called positive above 0.5. NaN where a class is missing."""
    keep = (labels == negative) | (labels == positive)
    if not keep.any():
        return {"clf/bm_acc": math.nan, "clf/bm_auc": math.nan}
    pair = probs[keep][:, [negative, positive]].double()
    score = pair[:, 1] / pair.sum(dim=1).clamp_min(1e-12)
    truth = (labels[keep] == positive).long()
    acc = float(((score > 0.5).long() == truth).double().mean())
    both = bool(truth.any()) and bool((truth == 0).any())
    auc = roc_auc(score.numpy(), truth.numpy() == 1) if both else math.nan
    return {"clf/bm_acc": acc, "clf/bm_auc": auc}


class MetricAccumulator:
    """Collects per-image statistics over batches; ``compute()`` gives the ``METRIC_KEYS`` values."""

    def __init__(self, num_classes: int, threshold: float = 0.5) -> None:
        if num_classes < 2:
            raise ValueError(f"MetricAccumulator: num_classes must be >= 2, got {num_classes}")
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"MetricAccumulator: threshold must be in (0, 1), got {threshold}")
        self.num_classes = num_classes
        self.threshold = threshold
        self.reset()

    def reset(self) -> None:
        """Forget every batch seen so far."""
        self._batches: dict[str, list[torch.Tensor]] = {k: [] for k in ("tp", "fp", "fn", "label",
                                                                         "prob")}

    def __len__(self) -> int:
        return sum(len(t) for t in self._batches["label"])

    def update(self, seg_logits: torch.Tensor, masks: torch.Tensor, clf_logits: torch.Tensor,
               labels: torch.Tensor) -> None:
        """Add one batch: ``seg_logits``/``masks`` ``(B, 1, H, W)``, ``clf_logits (B, C)``,
        ``labels (B,)``. Inputs are detached and only per-image statistics move to the CPU."""
        self._check_inputs(seg_logits, masks, clf_logits, labels)
        tp, fp, fn = segmentation_counts(seg_logits, masks, self.threshold)
        probs = torch.softmax(clf_logits.detach().float(), dim=1)
        for key, value in (("tp", tp), ("fp", fp), ("fn", fn), ("label", labels.detach().long()),
                           ("prob", probs)):
            self._batches[key].append(value.cpu())

    def merge(self, other: MetricAccumulator) -> MetricAccumulator:
        """Append another accumulator's images (e.g. from another worker); returns ``self``."""
        if other.num_classes != self.num_classes or other.threshold != self.threshold:
            raise ValueError("MetricAccumulator.merge: num_classes or threshold differ")
        for key, values in other._batches.items():
            self._batches[key].extend(values)
        return self

    def compute(self) -> dict[str, float]:
        """Every ``METRIC_KEYS`` value over all images seen (see the module docstring)."""
        stats = self._stacked()
        tp, fp, fn = (stats[k].numpy() for k in ("tp", "fp", "fn"))
        scores = per_image_scores(tp, fp, fn)
        lesion = (tp + fn) > 0
        out = {f"seg/{name}": float(scores[name][lesion].mean()) if lesion.any() else math.nan
               for name in ("iou", "dice", "sens", "prec")}
        out.update(pooled_scores(tp, fp, fn))
        out["seg/iou_global"] = float(_ratio(tp.sum(), tp.sum() + fp.sum() + fn.sum(), 1.0))
        out.update(classification_metrics(stats["prob"], stats["label"], self.num_classes))
        return {key: out[key] for key in METRIC_KEYS}

    def binary(self, negative: int, positive: int) -> dict[str, float]:
        """:func:`binary_metrics` over all images seen (e.g. benign vs malignant)."""
        stats = self._stacked()
        return binary_metrics(stats["prob"], stats["label"], negative, positive)

    def per_image(self) -> dict[str, np.ndarray]:
        """Per-image arrays (length N, in update order) for bootstrap CIs and prediction tables;
        ``tp``/``fp``/``fn`` are the pixel counts, so pooled scores can be resampled too."""
        stats = self._stacked()
        tp, fp, fn = (stats[k].numpy() for k in ("tp", "fp", "fn"))
        scores = per_image_scores(tp, fp, fn)
        label = stats["label"].numpy()
        pred = stats["prob"].argmax(dim=1).numpy()
        return {"seg/iou": scores["iou"], "seg/dice": scores["dice"], "has_lesion": (tp + fn) > 0,
                "tp": tp, "fp": fp, "fn": fn, "label": label, "pred": pred, "correct": pred == label,
                "prob": stats["prob"].numpy()}

    def _stacked(self) -> dict[str, torch.Tensor]:
        if not self._batches["label"]:
            raise ValueError("MetricAccumulator: no batches were added before compute()")
        return {key: torch.cat(values) for key, values in self._batches.items()}

    def _check_inputs(self, seg_logits: torch.Tensor, masks: torch.Tensor,
                      clf_logits: torch.Tensor, labels: torch.Tensor) -> None:
        batch = seg_logits.shape[0]
        if seg_logits.dim() != 4 or masks.shape != seg_logits.shape:
            raise ValueError(f"MetricAccumulator: seg_logits {tuple(seg_logits.shape)} and masks "
                             f"{tuple(masks.shape)} must both be (B, 1, H, W)")
        if clf_logits.shape != (batch, self.num_classes):
            raise ValueError(f"MetricAccumulator: clf_logits must be (B={batch}, "
                             f"C={self.num_classes}), got {tuple(clf_logits.shape)}")
        if labels.shape != (batch,):
            raise ValueError(f"MetricAccumulator: labels must be (B={batch},), "
                             f"got {tuple(labels.shape)}")

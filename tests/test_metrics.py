"""Evaluation metrics against values worked out by hand, including normal (empty-mask) images."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from busray.metrics import (METRIC_KEYS, METRIC_MODES, MetricAccumulator, average_ranks,
                            binary_metrics, classification_metrics, per_image_scores, pooled_scores,
                            roc_auc, segmentation_counts)

LESION = [[0, 0, 0, 0],
          [0, 1, 1, 0],
          [0, 1, 1, 0],
          [0, 0, 0, 0]]
EMPTY = [[0] * 4 for _ in range(4)]
# Against LESION: TP = 3, FP = 3, FN = 1.
PARTIAL = [[0, 1, 1, 0],
           [0, 1, 1, 1],
           [0, 1, 0, 0],
           [0, 0, 0, 0]]
TWO_PIXELS = [[1, 1, 0, 0],
              [0, 0, 0, 0],
              [0, 0, 0, 0],
              [0, 0, 0, 0]]


def masks_of(*grids) -> torch.Tensor:
    return torch.tensor(grids, dtype=torch.float32).unsqueeze(1)  # (B, 1, 4, 4)


def logits_of(*grids) -> torch.Tensor:
    """Logits whose sigmoid is above 0.5 exactly on the grids' ones."""
    return masks_of(*grids) * 20.0 - 10.0


# (truth, prediction) -> per-image (IoU, Dice, sensitivity, precision) by hand
SEG_CASES = [
    (LESION, LESION, (1.0, 1.0, 1.0, 1.0)),
    (LESION, PARTIAL, (3 / 7, 6 / 10, 3 / 4, 3 / 6)),
    (LESION, EMPTY, (0.0, 0.0, 0.0, 0.0)),        # missed lesion: precision 0 by convention
    (EMPTY, EMPTY, (1.0, 1.0, math.nan, 1.0)),    # normal image, nothing predicted
    (EMPTY, TWO_PIXELS, (0.0, 0.0, math.nan, 0.0)),  # normal image, false alarm
]


@pytest.mark.parametrize("truth, pred, expected", SEG_CASES)
def test_per_image_scores_by_hand(truth, pred, expected):
    tp, fp, fn = (c.numpy() for c in segmentation_counts(logits_of(pred), masks_of(truth)))
    scores = per_image_scores(tp, fp, fn)
    got = tuple(scores[k][0] for k in ("iou", "dice", "sens", "prec"))
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    acc = MetricAccumulator(num_classes=3)
    acc.update(logits_of(pred), masks_of(truth), torch.zeros(1, 3), torch.tensor([1]))
    per_image = acc.per_image()
    assert per_image["seg/iou"][0] == pytest.approx(expected[0])
    assert per_image["seg/dice"][0] == pytest.approx(expected[1])
    assert per_image["has_lesion"][0] == (truth is LESION)


def test_segmentation_means_over_lesion_images_only():
    truths = [t for t, _, _ in SEG_CASES]
    preds = [p for _, p, _ in SEG_CASES]
    acc = MetricAccumulator(num_classes=3)
    # two batches, to check that accumulation keeps the order and the counts
    acc.update(logits_of(*preds[:2]), masks_of(*truths[:2]), torch.zeros(2, 3), torch.ones(2).long())
    acc.update(logits_of(*preds[2:]), masks_of(*truths[2:]), torch.zeros(3, 3), torch.ones(3).long())
    m = acc.compute()
    # lesion images: the first three cases
    assert m["seg/iou"] == pytest.approx((1 + 3 / 7 + 0) / 3)
    assert m["seg/dice"] == pytest.approx((1 + 0.6 + 0) / 3)
    assert m["seg/sens"] == pytest.approx((1 + 0.75 + 0) / 3)
    assert m["seg/prec"] == pytest.approx((1 + 0.5 + 0) / 3)
    # pooled over the lesion images: TP = 4 + 3, FP = 0 + 3 + 0, FN = 0 + 1 + 4
    assert m["seg/iou_pooled"] == pytest.approx(7 / 15)
    assert m["seg/dice_pooled"] == pytest.approx(14 / 22)
    # all pixels: TP = 4 + 3, FP = 3 + 2, FN = 1 + 4
    assert m["seg/iou_global"] == pytest.approx(7 / 17)
    per_image = acc.per_image()
    np.testing.assert_array_equal(per_image["has_lesion"], [True, True, True, False, False])
    np.testing.assert_array_equal(per_image["tp"], [4, 3, 0, 0, 0])
    np.testing.assert_array_equal(per_image["fp"], [0, 3, 0, 0, 2])
    np.testing.assert_array_equal(per_image["fn"], [0, 1, 4, 0, 0])
    assert len(acc) == 5


def test_only_normal_images():
    acc = MetricAccumulator(num_classes=2)
    acc.update(logits_of(EMPTY, EMPTY), masks_of(EMPTY, EMPTY), torch.zeros(2, 2),
               torch.tensor([0, 1]))
    m = acc.compute()
    assert all(math.isnan(m[k]) for k in ("seg/iou", "seg/dice", "seg/sens", "seg/prec",
                                          "seg/iou_pooled", "seg/dice_pooled"))
    assert m["seg/iou_global"] == 1.0  # nothing to find, nothing predicted


def test_threshold_is_strictly_above():
    probs = torch.tensor([0.5, 0.6, 0.8, 0.95]).view(1, 1, 2, 2)  # 0.5 itself is not a lesion
    truth = torch.ones(1, 1, 2, 2)
    for threshold, tp in [(0.5, 3), (0.7, 2), (0.9, 1)]:
        acc = MetricAccumulator(num_classes=2, threshold=threshold)
        acc.update(torch.logit(probs), truth, torch.zeros(1, 2), torch.tensor([0]))
        assert acc.compute()["seg/sens"] == pytest.approx(tp / 4)


# --- classification ------------------------------------------------------------------------------

# Six images, three classes; supports 3/2/1, predictions = argmax = [0, 0, 1, 1, 2, 2].
PROBS = torch.tensor([[0.6, 0.3, 0.1],
                      [0.5, 0.1, 0.4],
                      [0.3, 0.4, 0.3],
                      [0.2, 0.7, 0.1],
                      [0.3, 0.2, 0.5],
                      [0.1, 0.3, 0.6]])
LABELS = torch.tensor([0, 0, 0, 1, 1, 2])
# Per class (TP, FP, FN): 0 -> (2, 0, 1), 1 -> (1, 1, 1), 2 -> (1, 1, 0).
# precision 1, 1/2, 1/2; F1 0.8, 1/2, 2/3; weighted by support 3/6, 2/6, 1/6.
HAND_PREC = (3 * 1 + 2 * 0.5 + 1 * 0.5) / 6
HAND_F1 = (3 * 0.8 + 2 * 0.5 + 1 * 2 / 3) / 6
# One-vs-rest AUC = fraction of (positive, negative) pairs ranked right, ties counting 1/2:
#   class 0: positives .6 .5 .3 vs negatives .2 .3 .1 -> (3 + 3 + 2.5) / 9
#   class 1: positives .7 .2 vs negatives .3 .1 .4 .3 -> (4 + 1) / 8
#   class 2: positive .6 vs negatives .1 .4 .3 .1 .5 -> 5 / 5
HAND_AUC = (8.5 / 9 + 5 / 8 + 1.0) / 3


def test_classification_by_hand():
    acc = MetricAccumulator(num_classes=3)
    acc.update(logits_of(LESION).repeat(6, 1, 1, 1), masks_of(LESION).repeat(6, 1, 1, 1),
               torch.log(PROBS), LABELS)
    m = acc.compute()
    assert m["clf/acc"] == pytest.approx(4 / 6)
    assert m["clf/prec"] == pytest.approx(HAND_PREC)
    assert m["clf/f1"] == pytest.approx(HAND_F1)
    assert m["clf/auc"] == pytest.approx(HAND_AUC)
    per_image = acc.per_image()
    np.testing.assert_array_equal(per_image["pred"], [0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(per_image["correct"], [True, True, False, True, False, True])
    np.testing.assert_allclose(per_image["prob"], PROBS.numpy(), rtol=1e-6)


def pairwise_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Mann-Whitney AUC by enumerating every (positive, negative) pair."""
    pos, neg = scores[positive], scores[~positive]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return wins / (len(pos) * len(neg))


def test_auc_matches_pair_counting_on_random_data():
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(40, 4, generator=gen).round(decimals=1)  # rounding creates ties
    labels = torch.arange(40) % 4
    probs = torch.softmax(logits, dim=1)
    expected = np.mean([pairwise_auc(probs[:, c].numpy(), labels.numpy() == c) for c in range(4)])
    assert classification_metrics(probs, labels, 4)["clf/auc"] == pytest.approx(expected)


@pytest.mark.parametrize("scores, positive, expected", [
    ([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1], 1.0),      # perfectly separated
    ([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1], 0.0),      # perfectly reversed
    ([0.5, 0.5, 0.5, 0.5], [0, 1, 0, 1], 0.5),      # all tied: every pair counts one half
    ([0.1, 0.5, 0.5, 0.9], [0, 0, 1, 1], 7 / 8),    # one tied pair of four
    ([0.3, 0.4], [1, 1], math.nan),                 # no negative: undefined
])
def test_roc_auc_cases(scores, positive, expected):
    got = roc_auc(np.array(scores), np.array(positive, dtype=bool))
    assert (math.isnan(got) and math.isnan(expected)) or got == pytest.approx(expected)


def test_average_ranks_share_ties():
    np.testing.assert_array_equal(average_ranks(np.array([3.0, 1.0, 3.0, 2.0, 3.0])),
                                  [4.0, 1.0, 4.0, 2.0, 4.0])


def test_auc_is_nan_when_a_class_is_absent():
    m = classification_metrics(PROBS[:5], LABELS[:5], 3)  # no image of class 2
    assert math.isnan(m["clf/auc"])
    assert m["clf/acc"] == pytest.approx(3 / 5)


# --- the accumulator -----------------------------------------------------------------------------

def test_merge_equals_one_accumulator_and_reset_empties():
    seg = torch.randn(6, 1, 8, 8)
    masks = (torch.rand(6, 1, 8, 8) > 0.6).float()
    whole, left, right = (MetricAccumulator(3) for _ in range(3))
    whole.update(seg, masks, torch.log(PROBS), LABELS)
    left.update(seg[:4], masks[:4], torch.log(PROBS[:4]), LABELS[:4])
    right.update(seg[4:], masks[4:], torch.log(PROBS[4:]), LABELS[4:])
    merged = left.merge(right).compute()
    for key, value in whole.compute().items():
        assert merged[key] == pytest.approx(value, nan_ok=True)
    left.reset()
    with pytest.raises(ValueError, match="no batches"):
        left.compute()


def test_inputs_with_grad_are_detached_and_small():
    seg = torch.randn(2, 1, 16, 16, requires_grad=True)
    acc = MetricAccumulator(2)
    acc.update(seg, torch.zeros(2, 1, 16, 16), torch.randn(2, 2, requires_grad=True),
               torch.tensor([0, 1]))
    stored = acc._stacked()  # white-box: what the accumulator keeps in memory
    assert not any(t.requires_grad for t in stored.values())
    assert all(t.numel() <= 4 for t in stored.values())  # per-image values, no masks


@pytest.mark.parametrize("seg_shape, clf_shape, label_shape, match", [
    ((2, 1, 4, 4), (2, 2), (2,), "clf_logits"),        # 3 classes expected
    ((2, 1, 4, 4), (2, 3), (3,), "labels"),
    ((2, 4, 4), (2, 3), (2,), "seg_logits"),
])
def test_bad_shapes_are_named(seg_shape, clf_shape, label_shape, match):
    acc = MetricAccumulator(3)
    with pytest.raises(ValueError, match=match):
        acc.update(torch.zeros(seg_shape), torch.zeros(seg_shape), torch.zeros(clf_shape),
                   torch.zeros(label_shape, dtype=torch.long))


def test_keys_and_modes():
    acc = MetricAccumulator(3)
    acc.update(logits_of(LESION).repeat(6, 1, 1, 1), masks_of(LESION).repeat(6, 1, 1, 1),
               torch.log(PROBS), LABELS)
    assert tuple(acc.compute()) == METRIC_KEYS
    assert set(METRIC_KEYS) <= set(METRIC_MODES)
    assert set(METRIC_MODES.values()) <= {"max", "min"}
    assert METRIC_MODES["seg/iou"] == "max" and METRIC_MODES["loss"] == "min"


def test_binary_benign_vs_malignant_by_hand():
    """PROBS/LABELS with class 1 as benign, 2 as malignant; class-0 images are left out.
    Renormalised malignant scores: image 3 .1/.8, image 4 .5/.7, image 5 .6/.9 (labels 1, 1, 2);
    called malignant above 0.5: image 4 is wrong -> acc 2/3; AUC: the malignant .667 beats .125 but
    not .714 -> 1/2."""
    got = binary_metrics(PROBS, LABELS, negative=1, positive=2)
    assert got["clf/bm_acc"] == pytest.approx(2 / 3)
    assert got["clf/bm_auc"] == pytest.approx(0.5)
    only_benign = binary_metrics(PROBS[3:5], LABELS[3:5], negative=1, positive=2)
    assert only_benign["clf/bm_acc"] == pytest.approx(0.5) and math.isnan(only_benign["clf/bm_auc"])
    acc = MetricAccumulator(3)
    acc.update(logits_of(LESION).repeat(6, 1, 1, 1), masks_of(LESION).repeat(6, 1, 1, 1),
               torch.log(PROBS), LABELS)
    assert acc.binary(1, 2) == got


def test_pooled_scores_obey_dice_from_iou_and_per_image_means_do_not():
    """Dice = 2 IoU / (1 + IoU) holds for pooled counts (the paper's tables satisfy it,
    tests/ablation/test_paper_convention.py); means of per-image scores fall below it
    (2x / (1 + x) is concave: Jensen)."""
    rng = np.random.default_rng(0)
    tp = rng.integers(0, 400, 50)
    fp, fn = rng.integers(0, 300, 50), rng.integers(1, 300, 50)
    pooled = pooled_scores(tp, fp, fn)
    iou = pooled["seg/iou_pooled"]
    assert pooled["seg/dice_pooled"] == pytest.approx(2 * iou / (1 + iou))
    scores = per_image_scores(tp, fp, fn)
    mean_iou, mean_dice = scores["iou"].mean(), scores["dice"].mean()
    assert 2 * mean_iou / (1 + mean_iou) - mean_dice > 0.01

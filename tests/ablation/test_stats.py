"""The paired bootstrap on constructed inputs whose answer is known."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from busray.ablation.stats import (BootstrapConfig, Difference, VariantResults, compare, mean_interval, mean_std,
                                   paired_bootstrap, per_image_matrix)

BOOT = BootstrapConfig(n_boot=2000, seed=0)


def _noisy(seeds: int, images: int, seed: int = 0, scale: float = 0.1) -> np.ndarray:
    return 0.6 + scale * np.random.default_rng(seed).standard_normal((seeds, images))


@pytest.mark.parametrize("shape", [(5,), (3, 40)])
def test_identical_runs_are_not_significant(shape):
    values = _noisy(*shape) if len(shape) == 2 else _noisy(1, shape[0])[0]
    result = paired_bootstrap(values, values.copy(), BOOT)
    assert result.diff == 0.0 and result.lo <= 0.0 <= result.hi
    assert not result.significant


def test_same_distribution_without_shift_is_not_significant():
    result = paired_bootstrap(_noisy(3, 60, seed=1), _noisy(3, 60, seed=2), BOOT)
    assert result.lo < 0.0 < result.hi and not result.significant


@pytest.mark.parametrize("shift", [0.1, -0.1])
def test_large_consistent_shift_is_significant_with_its_sign(shift):
    reference = _noisy(3, 50)
    variant = reference + shift + 0.01 * np.random.default_rng(7).standard_normal(reference.shape)
    result = paired_bootstrap(reference, variant, BOOT)
    assert result.significant
    assert result.diff == pytest.approx(shift, abs=0.01)
    assert np.sign(result.lo) == np.sign(result.hi) == np.sign(shift)


def test_interval_shrinks_with_more_images():
    def width(images: int) -> float:
        result = paired_bootstrap(_noisy(2, images, seed=3), _noisy(2, images, seed=4), BOOT)
        return result.hi - result.lo

    assert width(20) > 2 * width(500)


def test_interval_matches_the_standard_error_of_a_mean():
    # One seed, N iid differences with std 1: the 95% interval is about ±1.96/sqrt(N).
    images = 400
    diffs = np.random.default_rng(5).standard_normal((1, images))
    result = paired_bootstrap(np.zeros((1, images)), diffs, BOOT)
    assert result.hi - result.lo == pytest.approx(2 * 1.96 / math.sqrt(images), rel=0.15)


def test_same_rng_seed_same_interval_other_seed_other_interval():
    a, b = _noisy(3, 30, seed=1), _noisy(3, 30, seed=2)
    first, again = paired_bootstrap(a, b, BOOT), paired_bootstrap(a, b, BOOT)
    other = paired_bootstrap(a, b, BootstrapConfig(n_boot=2000, seed=1))
    assert (first.lo, first.hi) == (again.lo, again.hi)
    assert (first.lo, first.hi) != (other.lo, other.hi)


def test_undefined_entries_are_left_out():
    reference = np.array([[0.5, np.nan, 0.5], [0.5, np.nan, 0.5]])
    variant = np.array([[0.7, 0.0, 0.7], [0.7, 9.0, 0.7]])  # image 2 undefined in the reference
    result = paired_bootstrap(reference, variant, BOOT)
    assert result.diff == pytest.approx(0.2) and result.n_images == 2 and result.significant


def test_one_seed_per_run_metric_has_no_interval():
    result = paired_bootstrap(np.array([0.8]), np.array([0.9]), BOOT)
    assert result.diff == pytest.approx(0.1)
    assert math.isnan(result.lo) and not result.significant


def test_mismatched_shapes_are_rejected():
    with pytest.raises(ValueError, match="paired_bootstrap"):
        paired_bootstrap(np.zeros((2, 3)), np.zeros((2, 4)), BOOT)


@pytest.mark.parametrize("values, expected", [([1.0, 2.0, 3.0], (2.0, 1.0)), ([0.5], (0.5, math.nan)),
                                              ([0.2, np.nan, 0.4], (0.3, math.sqrt(0.02)))])
def test_mean_std_over_seeds(values, expected):
    mean, std = mean_std(values)
    assert mean == pytest.approx(expected[0])
    assert (math.isnan(std) and math.isnan(expected[1])) or std == pytest.approx(expected[1])


@pytest.mark.parametrize("values, level, half", [
    ([1.0, 2.0, 3.0], 0.95, 4.302653 / math.sqrt(3)),           # t(0.975, 2 d.f.) x std 1 / sqrt(3)
    ([1.0, 2.0, 3.0, 4.0, 5.0], 0.95, 2.776445 * math.sqrt(2.5) / math.sqrt(5)),
    ([1.0, 2.0, 3.0], 0.90, 2.919986 / math.sqrt(3)),
    ([0.2, np.nan, 0.4], 0.95, 12.706205 * math.sqrt(0.02) / math.sqrt(2)),  # NaN dropped: 1 d.f.
    ([0.5], 0.95, math.nan),
])
def test_mean_interval_is_students_t_over_seeds(values, level, half):
    mean, std, got = mean_interval(values, level)
    assert (mean, std) == pytest.approx(mean_std(values), nan_ok=True)
    assert (math.isnan(got) and math.isnan(half)) or got == pytest.approx(half, rel=1e-5)


def test_scaled_difference_keeps_significance():
    d = Difference(0.02, 0.01, 0.03, 2, 10).scaled(100)
    assert (d.diff, d.lo, d.hi) == pytest.approx((2.0, 1.0, 3.0)) and d.significant


# ------------------------------------------------------------------------ per-image data and compare

def _predictions(iou: np.ndarray, correct: np.ndarray, order: np.ndarray | None = None) -> pd.DataFrame:
    n = len(iou)
    labels = np.arange(n) % 3  # label 0 = normal: no lesion
    frame = pd.DataFrame({"name": [f"img_{i:03d}" for i in range(n)], "label": labels,
                          "pred": np.where(correct, labels, (labels + 1) % 3),
                          "has_lesion": labels != 0, "seg/iou": iou, "seg/dice": iou})
    return frame.iloc[order] if order is not None else frame


def _variant(name: str, seeds, iou_shift: float, rng_seed: int, shuffle: bool = False) -> VariantResults:
    rng = np.random.default_rng(rng_seed)
    predictions, auc = {}, []
    for seed in seeds:
        base = np.random.default_rng(seed).uniform(0.4, 0.8, 30)  # the same per seed in both variants
        order = rng.permutation(30) if shuffle else None
        predictions[seed] = _predictions(base + iou_shift, base > 0.5, order)
        auc.append(0.9 + 0.01 * seed)
    metrics = pd.DataFrame({"test/clf/auc": auc}, index=pd.Index(list(seeds), name="seed"))
    return VariantResults(name, metrics, predictions)


def test_per_image_matrix_masks_normal_images_and_scores_accuracy():
    variant = _variant("v", [0], 0.0, 0)
    iou = per_image_matrix(variant.predictions, [0], ["img_000", "img_001"], "seg/iou")
    acc = per_image_matrix(variant.predictions, [0], ["img_000", "img_001"], "clf/acc")
    assert math.isnan(iou[0, 0]) and not math.isnan(iou[0, 1])  # img_000 is normal
    assert set(np.unique(acc)) <= {0.0, 1.0}


def test_compare_pairs_images_by_name_and_seeds_by_value():
    reference = _variant("a", [0, 1, 2], 0.0, 0)
    shuffled = _variant("b", [2, 0, 1], 0.05, 1, shuffle=True)
    result = compare(reference, shuffled, "seg/iou", BOOT)
    # every paired lesion image improves by exactly 0.05, so the whole interval sits on 0.05
    assert result.diff == pytest.approx(0.05) and result.lo == pytest.approx(0.05)
    assert result.n_seeds == 3 and result.n_images == 20  # 10 of the 30 images are normal


def test_compare_resamples_seeds_only_for_per_run_metrics():
    result = compare(_variant("a", [0, 1], 0.0, 0), _variant("b", [0, 1], 0.0, 1), "clf/auc", BOOT)
    assert result.n_images == 0 and result.diff == 0.0


def test_compare_without_a_shared_seed_is_an_error():
    with pytest.raises(ValueError, match="share no seed"):
        compare(_variant("a", [0], 0.0, 0), _variant("b", [1], 0.0, 0), "seg/iou", BOOT)


# ------------------------------------------------------------------------ pooled IoU/Dice from counts

def _counted(name: str, seeds, extra_tp: int = 0, fp_on_normal: int = 0, n: int = 24) -> VariantResults:
    """Per-image pixel counts: lesion images (label != 0) get tp/fp/fn, normal ones only fp."""
    predictions = {}
    for seed in seeds:
        rng = np.random.default_rng(seed)
        labels = np.arange(n) % 3
        lesion = labels != 0
        tp = np.where(lesion, rng.integers(50, 150, n) + extra_tp, 0)
        fn = np.where(lesion, rng.integers(10, 60, n), 0)
        fp = np.where(lesion, rng.integers(10, 60, n), fp_on_normal)
        predictions[seed] = pd.DataFrame({"name": [f"img_{i:02d}" for i in range(n)], "label": labels,
                                          "pred": labels, "has_lesion": lesion, "tp": tp, "fp": fp, "fn": fn,
                                          "seg/iou": tp / np.maximum(tp + fp + fn, 1), "seg/dice": 0.0})
    return VariantResults(name, pd.DataFrame(index=pd.Index(list(seeds), name="seed")), predictions)


def _pooled_iou(frame: pd.DataFrame) -> float:
    lesion = frame[frame["has_lesion"]]
    return lesion["tp"].sum() / (lesion["tp"] + lesion["fp"] + lesion["fn"]).sum()


def test_pooled_point_estimate_is_the_mean_over_seeds_of_each_runs_pooled_ratio():
    a, b = _counted("a", [0, 1, 2]), _counted("b", [0, 1, 2], extra_tp=40)
    result = compare(a, b, "seg/iou_pooled", BOOT)
    expected = np.mean([_pooled_iou(b.predictions[s]) - _pooled_iou(a.predictions[s]) for s in (0, 1, 2)])
    assert result.diff == pytest.approx(expected) and result.diff > 0
    assert result.significant and result.lo <= result.diff <= result.hi
    assert (result.n_seeds, result.n_images) == (3, 24)


@pytest.mark.parametrize("metric", ["seg/iou_pooled", "seg/dice_pooled"])
def test_pooled_ignores_normal_images_and_identical_runs_are_not_significant(metric):
    a, noisy = _counted("a", [0, 1]), _counted("b", [0, 1], fp_on_normal=500)  # false positives off-lesion
    result = compare(a, noisy, metric, BOOT)
    assert result.diff == 0.0 and result.lo == result.hi == 0.0 and not result.significant


def test_pooled_without_pixel_counts_falls_back_to_seeds_only():
    a, b = _counted("a", [0, 1]), _counted("b", [0, 1], extra_tp=40)
    for v, values in ((a, [0.5, 0.52]), (b, [0.6, 0.61])):
        v.run_metrics["test/seg/iou_pooled"] = values
        for frame in v.predictions.values():
            frame.drop(columns=["tp"], inplace=True)                 # a run from before pooled metrics
    result = compare(a, b, "seg/iou_pooled", BOOT)
    assert result.n_images == 0 and result.diff == pytest.approx(0.095)

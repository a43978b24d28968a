"""Paired bootstrap confidence intervals for ablation differences; mean ± std (or ± t-interval) over seeds.

The paper reports Table 1/2 as single numbers; an ablation report must also say which differences are
larger than the noise of training (seeds) and of the finite test set (images). For a metric difference
"variant minus reference" we use a **paired percentile bootstrap over seeds and test images**:

* seeds are paired by seed value (run ``seed`` s of both variants used the same seed, so the same
  initialisation noise and data order), images by name (both variants saw the same test split);
* each replicate resamples seeds and images with replacement *independently* (a two-way bootstrap) and
  computes the mean over the resampled (seed, image) grid of the per-image differences; entries that are
  undefined (NaN: e.g. segmentation metrics on images without a lesion, which the paper's convention
  excludes) are left out of both numerator and denominator;
* the interval is the (α/2, 1-α/2) percentile of the replicates; a difference is *significant* when the
  interval does not contain 0.

Only IoU, Dice (per lesion image) and accuracy (per image: prediction correct) can be written per image.
The *pooled* IoU and Dice (``seg/iou_pooled``, ``seg/dice_pooled``: one ratio of the pixel counts summed
over a run's lesion images, the paper's convention) are no per-image means, but they are bootstrapped over
the same (seed, image) grid from the per-image ``tp``/``fp``/``fn`` counts: each replicate recomputes every
resampled seed's pooled ratio over the resampled images, and averages the paired differences over the
resampled seeds (:func:`paired_bootstrap_pooled`); the point estimate is the table's mean over seeds.
Sensitivity, segmentation precision, F1, AUC and classification precision are recorded per run only, so
for them the bootstrap resamples **seeds only** and the interval reflects seed-to-seed variation alone; with
a single seed such an interval is undefined (NaN) and the difference is never called significant.

Replicates are vectorised: resampling with replacement is equivalent to multinomial counts over the units,
so a replicate mean is ``(c_seed @ D @ c_img) / (c_seed @ V @ c_img)`` for the difference matrix ``D``
(NaN→0) and its validity mask ``V``: two matrix products for all replicates, no Python loop.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from busray.configtools import option

#: Metrics with a per-image value in ``test_predictions.parquet``: metric key -> column.
#: Segmentation values count only on images with a lesion (the authors' reporting convention).
PER_IMAGE_COLUMNS = {"seg/iou": "seg/iou", "seg/dice": "seg/dice", "clf/acc": "correct"}
LESION_ONLY = frozenset({"seg/iou", "seg/dice"})
#: Pooled metrics -> (numerator, denominator) weights of the per-image pixel counts (tp, fp, fn).
POOLED_COUNTS = {"seg/iou_pooled": ((1, 0, 0), (1, 1, 1)), "seg/dice_pooled": ((2, 0, 0), (2, 1, 1))}
COUNT_COLUMNS = ("tp", "fp", "fn")
#: Below this many seeds per variant the report warns that its significance marks are fragile: with
#: one seed the per-image intervals see only test-set noise, with two the seed resampling has two
#: points; neither says whether a difference would survive another training run.
MIN_SEEDS = 3


@dataclasses.dataclass(frozen=True)
class BootstrapConfig:
    """How differences between variants are tested."""

    n_boot: int = option(2000, "bootstrap replicates", range=(100, 1_000_000))
    ci: float = option(0.95, "two-sided confidence level of the interval", range=(0.5, 0.999))
    seed: int = option(0, "seed of the bootstrap RNG (same seed -> identical intervals)", range=(0, None))


@dataclasses.dataclass(frozen=True)
class Difference:
    """``diff`` = mean(variant) - mean(reference) with its bootstrap interval [lo, hi]."""

    diff: float
    lo: float
    hi: float
    n_seeds: int
    n_images: int  # 0 when the metric was resampled over seeds only

    @property
    def significant(self) -> bool:
        """True when the interval excludes 0 (an undefined interval is never significant)."""
        if math.isnan(self.lo) or math.isnan(self.hi):
            return False
        return not (self.lo <= 0.0 <= self.hi)

    def scaled(self, factor: float) -> "Difference":
        """The same difference in other units (``scaled(100)``: fractions -> percentage points)."""
        return dataclasses.replace(self, diff=self.diff * factor, lo=self.lo * factor, hi=self.hi * factor)


@dataclasses.dataclass(frozen=True)
class VariantResults:
    """One variant's test results: run-level metrics and per-image predictions, both keyed by seed.

    ``run_metrics`` is indexed by seed with columns ``test/<metric>``; ``predictions`` maps a seed to
    that run's ``test_predictions.parquet`` frame (may be empty: then every metric is seeds-only).
    """

    name: str
    run_metrics: pd.DataFrame
    predictions: Mapping[int, pd.DataFrame] = dataclasses.field(default_factory=dict)

    @property
    def seeds(self) -> list[int]:
        return sorted(int(s) for s in self.run_metrics.index)


def mean_std(values: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1) over seeds, NaNs dropped; std is NaN for one seed."""
    arr = np.asarray(values, dtype=float)
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        return math.nan, math.nan
    std = float(arr.std(ddof=1)) if arr.size > 1 else math.nan
    return float(arr.mean()), std


def mean_interval(values: Sequence[float] | np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """Mean, sample std and the half width of the two-sided ``level`` Student-t interval of the mean
    over seeds (n - 1 degrees of freedom: 2.776 x std / sqrt(5) for 5 seeds at 95 %), NaNs dropped.
    The std says how much one training run varies; the interval, how well the seeds pin the mean down.
    Both spreads are NaN for one seed."""
    arr = np.asarray(values, dtype=float)
    n = int(np.isfinite(arr).sum())
    mean, std = mean_std(arr)
    if n < 2:
        return mean, std, math.nan
    return mean, std, float(scipy_stats.t.ppf(0.5 + level / 2, n - 1) * std / math.sqrt(n))


def paired_bootstrap(reference: np.ndarray, variant: np.ndarray,
                     config: BootstrapConfig = BootstrapConfig()) -> Difference:
    """Bootstrap the difference of means ``variant - reference`` of paired arrays.

    Both arrays are ``(S,)`` (one value per seed: seeds-only bootstrap) or ``(S, N)`` (seeds × images:
    two-way bootstrap); row i of both comes from the same seed, column j from the same image.
    """
    ref, var = np.asarray(reference, dtype=float), np.asarray(variant, dtype=float)
    if ref.shape != var.shape or ref.ndim not in (1, 2) or ref.size == 0:
        raise ValueError(f"paired_bootstrap: need equal non-empty (S,) or (S, N) arrays, "
                         f"got {ref.shape} and {var.shape}")
    per_image = ref.ndim == 2
    diffs = (var - ref) if per_image else (var - ref)[:, None]  # (S, N)
    valid = np.isfinite(diffs)
    diffs = diffs[:, valid.any(axis=0)]          # drop images undefined in every seed
    valid = np.isfinite(diffs)
    diffs = diffs[valid.any(axis=1)]             # and seeds with no defined value
    valid = np.isfinite(diffs)
    n_seeds, n_images = diffs.shape
    if n_seeds == 0:
        return Difference(math.nan, math.nan, math.nan, 0, 0)
    point = float(diffs[valid].mean())
    if n_seeds * n_images < 2:  # nothing to resample: the interval is undefined
        return Difference(point, math.nan, math.nan, n_seeds, n_images if per_image else 0)
    lo, hi = _percentile_interval(np.where(valid, diffs, 0.0), valid.astype(float), config)
    return Difference(point, lo, hi, n_seeds, n_images if per_image else 0)


def _percentile_interval(diffs: np.ndarray, valid: np.ndarray,
                         config: BootstrapConfig) -> tuple[float, float]:
    """Percentile interval of replicate means; ``diffs``/``valid`` are (S, N) with NaN already 0."""
    seed_counts, image_counts = _draws(config, *diffs.shape)
    # (B, S) @ (S, N) -> (B, N), then weight each image by its count and sum: (B,)
    numerator = ((seed_counts @ diffs) * image_counts).sum(axis=1)
    denominator = ((seed_counts @ valid) * image_counts).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        replicates = numerator / denominator  # NaN where a replicate drew only undefined entries
    return _interval(replicates, config)


def _draws(config: BootstrapConfig, n_seeds: int, n_images: int) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial resampling counts: (B, S) over seeds and (B, N) over images, one row per replicate."""
    rng = np.random.default_rng(config.seed)
    seed_counts = rng.multinomial(n_seeds, np.full(n_seeds, 1.0 / n_seeds), size=config.n_boot)
    image_counts = rng.multinomial(n_images, np.full(n_images, 1.0 / n_images), size=config.n_boot)
    return seed_counts, image_counts


def _interval(replicates: np.ndarray, config: BootstrapConfig) -> tuple[float, float]:
    alpha = 1.0 - config.ci
    lo, hi = np.nanquantile(replicates, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def per_image_matrix(predictions: Mapping[int, pd.DataFrame], seeds: Sequence[int],
                     names: Sequence[str], metric: str) -> np.ndarray:
    """(S, N) per-image values of ``metric`` for the given seeds (rows) and image names (columns).

    Segmentation metrics are NaN on images without a lesion; accuracy is 1.0 where ``pred == label``.
    """
    if metric not in PER_IMAGE_COLUMNS:
        raise ValueError(f"metric '{metric}' has no per-image value (per-image: {sorted(PER_IMAGE_COLUMNS)})")
    rows = []
    for seed in seeds:
        frame = predictions[seed]
        if frame["name"].duplicated().any():
            raise ValueError(f"test predictions of seed {seed}: duplicate image names")
        frame = frame.set_index("name")
        values = _per_image_values(frame, metric)
        rows.append(values.reindex(list(names)).to_numpy(dtype=float))
    return np.vstack(rows)


def _per_image_values(frame: pd.DataFrame, metric: str) -> pd.Series:
    if metric == "clf/acc":
        return (frame["pred"] == frame["label"]).astype(float)
    values = frame[PER_IMAGE_COLUMNS[metric]].astype(float)
    if metric in LESION_ONLY:
        values = values.where(frame["has_lesion"].astype(bool))
    return values


def compare(reference: VariantResults, variant: VariantResults, metric: str,
            config: BootstrapConfig = BootstrapConfig()) -> Difference:
    """Paired difference ``variant - reference`` of ``metric`` (a key like ``seg/iou``).

    Per-image metrics use seeds × images when both variants have predictions for every common seed;
    otherwise (and for per-run metrics) seeds only. Raises ``ValueError`` if no seed is shared.
    """
    seeds = sorted(set(reference.seeds) & set(variant.seeds))
    if not seeds:
        raise ValueError(f"variants '{reference.name}' and '{variant.name}' share no seed to pair on")
    per_image = _has_predictions(reference, seeds) and _has_predictions(variant, seeds)
    names = _common_image_names(reference, variant, seeds) if per_image else []
    if metric in PER_IMAGE_COLUMNS and names:
        ref = per_image_matrix(reference.predictions, seeds, names, metric)
        var = per_image_matrix(variant.predictions, seeds, names, metric)
        return paired_bootstrap(ref, var, config)
    if metric in POOLED_COUNTS and names and _has_counts(reference, variant, seeds):
        ref_counts = pooled_counts(reference.predictions, seeds, names, metric)
        var_counts = pooled_counts(variant.predictions, seeds, names, metric)
        return paired_bootstrap_pooled(ref_counts, var_counts, config)
    column = f"test/{metric}"
    if column not in reference.run_metrics or column not in variant.run_metrics:
        return Difference(math.nan, math.nan, math.nan, len(seeds), 0)
    ref = reference.run_metrics.loc[seeds, column].to_numpy(dtype=float)
    var = variant.run_metrics.loc[seeds, column].to_numpy(dtype=float)
    return paired_bootstrap(ref, var, config)


def pooled_counts(predictions: Mapping[int, pd.DataFrame], seeds: Sequence[int], names: Sequence[str],
                  metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(S, N) numerator and denominator pixel counts of a pooled metric; 0 on images without a lesion."""
    (num_w, den_w) = POOLED_COUNTS[metric]
    nums, dens = [], []
    for seed in seeds:
        frame = predictions[seed].set_index("name").reindex(list(names))
        counts = frame[list(COUNT_COLUMNS)].to_numpy(dtype=float)
        lesion = frame["has_lesion"].to_numpy(dtype=bool)[:, None]
        nums.append(np.where(lesion, counts, 0.0) @ np.asarray(num_w, dtype=float))
        dens.append(np.where(lesion, counts, 0.0) @ np.asarray(den_w, dtype=float))
    return np.vstack(nums), np.vstack(dens)


def paired_bootstrap_pooled(reference: tuple[np.ndarray, np.ndarray], variant: tuple[np.ndarray, np.ndarray],
                            config: BootstrapConfig = BootstrapConfig()) -> Difference:
    """Bootstrap ``mean over seeds of (pooled ratio of variant - of reference)`` from (S, N) counts.

    ``reference`` and ``variant`` are (numerator, denominator) pairs of :func:`pooled_counts`; a
    replicate draws seeds and images with replacement (multinomial counts), recomputes each seed's
    ratio over the drawn images and averages the paired differences over the drawn seeds.
    """
    n_seeds, n_images = reference[0].shape

    def ratios(image_weights: np.ndarray, counts: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        num, den = image_weights @ counts[0].T, image_weights @ counts[1].T   # (B, S)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, num / den, np.nan)

    ones = np.ones((1, n_images))
    point = ratios(ones, variant) - ratios(ones, reference)                   # (1, S)
    if not np.isfinite(point).any():
        return Difference(math.nan, math.nan, math.nan, n_seeds, n_images)
    diff = float(np.nanmean(point))
    if n_seeds * n_images < 2:
        return Difference(diff, math.nan, math.nan, n_seeds, n_images)
    seed_counts, image_counts = _draws(config, n_seeds, n_images)
    per_seed = ratios(image_counts, variant) - ratios(image_counts, reference)  # (B, S)
    valid = np.isfinite(per_seed)
    weights = seed_counts * valid
    with np.errstate(invalid="ignore", divide="ignore"):
        replicates = (np.where(valid, per_seed, 0.0) * weights).sum(axis=1) / weights.sum(axis=1)
    return Difference(diff, *_interval(replicates, config), n_seeds, n_images)


def _has_counts(a: VariantResults, b: VariantResults, seeds: Sequence[int]) -> bool:
    """Whether every paired run recorded per-image pixel counts (runs before pooled metrics did not)."""
    needed = {*COUNT_COLUMNS, "has_lesion"}
    return all(needed <= set(r.predictions[s].columns) for r in (a, b) for s in seeds)


def _has_predictions(results: VariantResults, seeds: Sequence[int]) -> bool:
    return all(seed in results.predictions and len(results.predictions[seed]) for seed in seeds)


def _common_image_names(a: VariantResults, b: VariantResults, seeds: Sequence[int]) -> list[str]:
    """Image names present in every paired run, in the order of the reference's first run."""
    frames = [a.predictions[s] for s in seeds] + [b.predictions[s] for s in seeds]
    common = set.intersection(*(set(f["name"]) for f in frames))
    return [name for name in frames[0]["name"] if name in common]

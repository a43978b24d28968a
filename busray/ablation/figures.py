"""The report's figures (PNG, matplotlib's Agg backend: no display needed).

* :func:`plot_tim_upa` — the paper's Fig. 3 from a trained full model's ``test_predictions.parquet``:
  per decoder level D1..D4, (left) the normalised ℓ2 displacement of the seg→clf and clf→seg TIM streams
  (``tim_seg2clf_k``, ``tim_clf2seg_k``; box plots) and (right) the distribution of the UPA weights
  ω_seg, ω_clf (``upa_w_seg_k``, ``upa_w_clf_k``; violins, Eq. 8). Frames of several seeds are pooled.
* :func:`plot_training_curves` — validation IoU and accuracy against (integer) epoch per variant, the
  mean over seeds with markers and a ±1 std band (seeds that stopped early contribute to fewer epochs).
* :func:`plot_prediction_grid` — a Fig. 2-style grid: test images × (image, ground truth, each
  variant's prediction at probability 0.5), outlines drawn on the image, each prediction's IoU where
  the image has a lesion.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (backend first)
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from busray.models.config import DIAGNOSTIC_KEYS, LEVELS  # noqa: E402  (the per-image table's columns)

CURVE_METRICS = (("val/seg/iou", "Validation IoU (%)"), ("val/clf/acc", "Validation accuracy (%)"))
_COLORS = ("tab:blue", "tab:orange")
_MARKERS = ("o", "s", "^", "D", "v", "P", "X")
_TRUTH, _PREDICTED = "#2ca02c", "#d62728"


def diagnostic_count(predictions: pd.DataFrame) -> int:
    """Number of finite TIM/UPA diagnostic values in a predictions frame (0: modules off)."""
    columns = [f"{p}_{k}" for p in DIAGNOSTIC_KEYS for k in LEVELS if f"{p}_{k}" in predictions]
    return int(np.isfinite(predictions[columns].to_numpy(dtype=float)).sum()) if columns else 0


def plot_tim_upa(predictions: pd.DataFrame | Sequence[pd.DataFrame], path: str | Path,
                 title: str = "") -> Path:
    """Fig. 3: TIM displacement (left) and UPA weight distributions (right) per decoder level."""
    frame = predictions if isinstance(predictions, pd.DataFrame) else pd.concat(list(predictions))
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    _grouped(left, frame, ("tim_seg2clf", "tim_clf2seg"), ("seg→clf", "clf→seg"), violin=False)
    left.set_ylabel("normalised ℓ2 displacement")
    left.set_title("TIM cross-task streams")
    _grouped(right, frame, ("upa_w_seg", "upa_w_clf"), ("ω_seg", "ω_clf"), violin=True)
    right.set_ylabel("UPA weight")
    right.set_title("UPA weight distributions")
    fig.suptitle(title or f"TIM and UPA across decoder levels ({len(frame)} test predictions)")
    return _save(fig, path)


def _grouped(ax, frame: pd.DataFrame, prefixes: Sequence[str], labels: Sequence[str],
             violin: bool) -> None:
    """Two distributions per decoder level, side by side; levels where a module is off stay empty."""
    width = 0.35
    for offset, prefix, label, color in zip((-width / 2, width / 2), prefixes, labels, _COLORS):
        data, positions = [], []
        for level in LEVELS:
            column = f"{prefix}_{level}"
            values = frame[column].to_numpy(dtype=float) if column in frame else np.array([])
            values = values[np.isfinite(values)]
            if values.size:
                data.append(values)
                positions.append(level + offset)
        if data:
            _distribution(ax, data, positions, width * 0.9, color, violin)
        ax.plot([], [], color=color, linewidth=6, label=label)  # legend handle
    ax.set_xticks(LEVELS, [f"D{k}" for k in LEVELS])
    ax.set_xlim(0.4, len(LEVELS) + 0.6)
    ax.legend(loc="best", fontsize=8)
    ax.grid(axis="y", alpha=0.3)


def _distribution(ax, data: list[np.ndarray], positions: list[float], width: float, color: str,
                  violin: bool) -> None:
    # A kernel density needs spread: constant groups (e.g. a UPA that saturated) fall back to boxes.
    if violin and all(v.size > 1 and np.ptp(v) > 0 for v in data):
        parts = ax.violinplot(data, positions=positions, widths=width, showmeans=True)
        for body in parts["bodies"]:
            body.set_facecolor(color)
            body.set_alpha(0.6)
        return
    boxes = ax.boxplot(data, positions=positions, widths=width, patch_artist=True, showmeans=True,
                       manage_ticks=False)
    for box in boxes["boxes"]:
        box.set_facecolor(color)
        box.set_alpha(0.6)


def plot_training_curves(histories: Mapping[str, Sequence[pd.DataFrame]], path: str | Path) -> Path:
    """Validation IoU and accuracy per epoch: the mean over seeds (markers) and a ±1 std band per variant.

    Epoch ticks are integers; a single epoch is drawn as a point with a ±1 std error bar (a band needs
    two epochs), so a one-epoch smoke ablation still shows its numbers.
    """
    fig, axes = plt.subplots(1, len(CURVE_METRICS), figsize=(11, 4), constrained_layout=True)
    epochs: set[float] = set()
    for ax, (metric, label) in zip(axes, CURVE_METRICS):
        for index, (variant, frames) in enumerate(histories.items()):
            curve = _mean_curve(frames, metric)
            if curve is None:
                continue
            epochs.update(curve.index)
            _draw_curve(ax, curve, f"{variant} (n={len(frames)})", _MARKERS[index % len(_MARKERS)])
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if ax.lines:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, f"'{metric}' not recorded", ha="center", transform=ax.transAxes)
    for ax in axes if epochs else ():
        ax.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
        if len(epochs) <= 12:  # few epochs: a tick at each (the locator would add fractional ones)
            ax.set_xticks(sorted(epochs))
    fig.suptitle("Training curves, mean ± std over seeds")
    return _save(fig, path)


def _draw_curve(ax, curve: pd.DataFrame, label: str, marker: str) -> None:
    x, mean, std = curve.index.to_numpy(), curve["mean"].to_numpy(), curve["std"].to_numpy()
    # ±1 std, clipped to the metrics' range (percent): over two or three seeds it often passes 0 or 100
    low, high = np.clip(mean - std, 0, 100), np.clip(mean + std, 0, 100)
    if len(x) == 1:
        ax.errorbar(x, mean, yerr=[mean - low, high - mean], marker=marker, capsize=4, label=label)
        return
    line, = ax.plot(x, mean, marker=marker, markersize=4, label=label)
    ax.fill_between(x, low, high, color=line.get_color(), alpha=0.2, linewidth=0)


def _mean_curve(frames: Sequence[pd.DataFrame], metric: str) -> pd.DataFrame | None:
    """Per-epoch mean and std (0 where one seed) in percent, or None if no frame has the metric."""
    usable = [f[["epoch", metric]] for f in frames if metric in f and "epoch" in f]
    if not usable:
        return None
    stacked = pd.concat(usable).astype(float).dropna()
    if stacked.empty:
        return None
    grouped = stacked.groupby("epoch")[metric]
    return pd.DataFrame({"mean": grouped.mean(), "std": grouped.std(ddof=1).fillna(0.0)}) * 100


def plot_prediction_grid(samples: Mapping[str, Mapping[str, np.ndarray]], path: str | Path,
                         max_images: int = 6) -> Path:
    """Fig. 2-style grid from each variant's ``test_samples.npz`` (images matched by name).

    ``samples`` maps variant -> arrays ``names (K,)``, ``image``, ``mask``, ``prob`` (uint8, (K, S, S));
    the image and ground truth are taken from the first variant. Column 1 is the plain image, column 2
    the ground truth outlined on it, then one column per variant with the ground truth (green) and the
    prediction at probability 0.5 (red outline over a light red fill) on the image. A cell's caption is
    the IoU where the image has a lesion; on an image without one an IoU is meaningless (the tables
    average IoU over lesion images only), so the caption gives the predicted area (% of the image).
    """
    variants = list(samples)
    if not variants:
        raise ValueError("plot_prediction_grid: no variant samples given")
    names = _common_names(samples)[:max_images]
    if not names:
        raise ValueError(f"plot_prediction_grid: no test image common to the samples of {variants}")
    first = samples[variants[0]]
    titles = ["image", "ground truth"] + variants
    # Fixed margins instead of a layout engine: with dozens of image axes, constrained layout costs seconds.
    fig, axes = plt.subplots(len(names), len(titles), squeeze=False,
                             figsize=(1.8 * len(titles), 1.9 * len(names) + 0.5),
                             gridspec_kw={"left": 0.02, "right": 0.98, "bottom": 0.04,
                                          "top": 1 - 0.55 / (1.9 * len(names) + 0.5),
                                          "wspace": 0.08, "hspace": 0.3})
    for row, name in enumerate(names):
        index = _index_of(first, name)
        image, truth = first["image"][index], first["mask"][index] > 0
        _cell(axes[row, 0], image, None, None, _short(name))
        _cell(axes[row, 1], image, truth, None, "lesion" if truth.any() else "no lesion")
        for col, variant in enumerate(variants, start=2):
            predicted = samples[variant]["prob"][_index_of(samples[variant], name)] >= 128
            _cell(axes[row, col], image, truth, predicted, _score(predicted, truth))
    for col, title in enumerate(titles):
        axes[0, col].set_title(title, fontsize=8)
    fig.legend(handles=[Line2D([], [], color=_TRUTH, lw=1.5, label="ground truth"),
                        Line2D([], [], color=_PREDICTED, lw=1.5, label="prediction (p ≥ 0.5)")],
               loc="upper center", ncol=2, fontsize=8, frameon=False)
    return _save(fig, path)


def _cell(ax, image: np.ndarray, truth: np.ndarray | None, predicted: np.ndarray | None, caption: str) -> None:
    """The image with optional outlines: ground truth (green), prediction (red, lightly filled)."""
    ax.imshow(image, cmap="gray", vmin=0, vmax=255)
    if predicted is not None and predicted.any():
        overlay = np.zeros((*predicted.shape, 4))
        overlay[predicted] = (*matplotlib.colors.to_rgb(_PREDICTED), 0.25)
        ax.imshow(overlay)
        ax.contour(predicted.astype(float), levels=[0.5], colors=_PREDICTED, linewidths=1.0)
    if truth is not None and truth.any():
        ax.contour(truth.astype(float), levels=[0.5], colors=_TRUTH, linewidths=1.0)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel(caption, fontsize=7)


def _score(predicted: np.ndarray, truth: np.ndarray) -> str:
    """IoU on a lesion image; the predicted area (% of the image) on an image without a lesion."""
    if truth.any():
        return f"IoU {_iou(predicted, truth):.2f}"
    return f"no lesion; pred. {100 * predicted.mean():.1f}%"


def _short(name: str, width: int = 26) -> str:
    """The file name without its folder (BUSI's class folder repeats in the name), cut to ``width``."""
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    return name if len(name) <= width else "…" + name[-(width - 1):]


def _common_names(samples: Mapping[str, Mapping[str, np.ndarray]]) -> list[str]:
    """Names in every variant's samples, in the first variant's order."""
    name_lists = [[str(n) for n in arrays["names"]] for arrays in samples.values()]
    common = set.intersection(*(set(names) for names in name_lists))
    return [n for n in name_lists[0] if n in common]


def _index_of(arrays: Mapping[str, np.ndarray], name: str) -> int:
    return [str(n) for n in arrays["names"]].index(name)


def _iou(predicted: np.ndarray, truth: np.ndarray) -> float:
    """IoU of two boolean masks, the ground truth non-empty."""
    return float(np.logical_and(predicted, truth).sum() / np.logical_or(predicted, truth).sum())


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

"""Each figure is a valid, non-blank PNG of a sane size, also on awkward but legal inputs; curves have
markers and integer epochs, the prediction grid draws outlines on the image and IoU only on lesions."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from PIL import Image

import busray.ablation.figures as figures
from busray.ablation.figures import (diagnostic_count, plot_prediction_grid, plot_tim_upa,
                                     plot_training_curves)


def _assert_png(path, min_size=(300, 200)) -> tuple[int, int]:
    with Image.open(path) as image:
        assert image.format == "PNG"
        width, height = image.size
        assert min_size[0] <= width <= 4000 and min_size[1] <= height <= 4000
        pixels = np.asarray(image.convert("L"), dtype=float)
    assert pixels.std() > 1.0  # something was drawn
    return width, height


def _diagnostics(n: int, seed: int = 0, levels=(1, 2, 3, 4), constant_upa: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = {"name": [f"img_{i}" for i in range(n)]}
    for k in (1, 2, 3, 4):
        on = k in levels
        w_seg = np.full(n, 0.5) if constant_upa else rng.uniform(0.3, 0.7, n)
        frame[f"tim_seg2clf_{k}"] = rng.uniform(0.2, 0.6, n) if on else np.nan
        frame[f"tim_clf2seg_{k}"] = rng.uniform(0.0, 0.2, n) if on else np.nan
        frame[f"upa_w_seg_{k}"] = w_seg
        frame[f"upa_w_clf_{k}"] = 1 - w_seg
    return pd.DataFrame(frame)


@pytest.mark.parametrize("kwargs", [{}, {"levels": (2,)}, {"constant_upa": True}])
def test_fig3_tim_upa(tmp_path, kwargs):
    frames = [_diagnostics(20, seed, **kwargs) for seed in (0, 1)]
    _assert_png(plot_tim_upa(frames, tmp_path / "fig3.png"))


def test_diagnostic_count_counts_finite_values():
    assert diagnostic_count(_diagnostics(5)) == 5 * 16
    assert diagnostic_count(_diagnostics(5, levels=(2,))) == 5 * (8 + 2)
    assert diagnostic_count(pd.DataFrame({"name": ["a"]})) == 0


def _history(epochs: int, seed: int, level: float) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    epoch = np.arange(1, epochs + 1)
    return pd.DataFrame({"epoch": epoch, "train/loss": 1 / epoch, "val/loss": 1.2 / epoch,
                         "val/seg/iou": level * (1 - np.exp(-epoch / 3)) + 0.01 * rng.standard_normal(epochs),
                         "val/clf/acc": 0.5 + 0.3 * (1 - np.exp(-epoch / 4))})


def test_training_curves_with_seeds_of_different_length(tmp_path):
    histories = {"baseline": [_history(8, 0, 0.6), _history(5, 1, 0.6)],  # seed 1 stopped early
                 "full": [_history(8, 0, 0.7), _history(8, 1, 0.7)]}
    _assert_png(plot_training_curves(histories, tmp_path / "curves.png"))


def test_training_curves_without_the_metric_still_draw(tmp_path):
    histories = {"v": [_history(4, 0, 0.6).drop(columns=["val/clf/acc"])]}
    _assert_png(plot_training_curves(histories, tmp_path / "curves.png"))


@pytest.fixture
def drawn(monkeypatch):
    """The figures a plot function draws, saved as usual but kept open for inspection."""
    kept = []

    def keep(fig, path):
        kept.append(fig)
        fig.savefig(path, dpi=60)
        return path

    monkeypatch.setattr(figures, "_save", keep)
    yield kept
    for fig in kept:
        plt.close(fig)


@pytest.mark.parametrize("epochs", [1, 2, 7])
def test_training_curves_have_markers_and_integer_epochs(tmp_path, drawn, epochs):
    histories = {"baseline": [_history(epochs, 0, 0.6), _history(epochs, 1, 0.6)], "full": [_history(epochs, 2, 0.7)]}
    plot_training_curves(histories, tmp_path / "curves.png")
    for ax in drawn[0].axes:
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks)
        assert 1 in ticks and epochs in ticks
        assert all(line.get_marker() not in (None, "None", "") for line in ax.lines if line.get_xdata().size)
        assert len(ax.get_legend().get_texts()) == 2


@pytest.mark.parametrize("epochs", [1, 5])
def test_the_std_band_stays_within_0_and_100_percent(tmp_path, drawn, epochs):
    """Two seeds far apart (IoU 0 and 0.3, accuracy 0.2 and 1.0): mean ± std would pass 0 and 100."""
    low, high = (pd.DataFrame({"epoch": np.arange(1, epochs + 1), "val/seg/iou": iou, "val/clf/acc": acc})
                 for iou, acc in ((0.0, 0.2), (0.3, 1.0)))
    plot_training_curves({"v": [low, high]}, tmp_path / "curves.png")
    for ax in drawn[0].axes:
        drawn_y = np.concatenate([np.asarray(path.vertices)[:, 1] for c in ax.collections for path in c.get_paths()])
        assert drawn_y.min() >= 0 and drawn_y.max() <= 100 and np.ptp(drawn_y) > 0


def _samples(names: list[str], seed: int, size: int = 32, normal: tuple[int, ...] = ()) -> dict[str, np.ndarray]:
    """``names`` with a round lesion each, except the images at ``normal`` (empty masks)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    mask = np.stack([((yy - 16) ** 2 + (xx - 12 - i) ** 2 < 60).astype(np.uint8) * (i not in normal)
                     for i in range(len(names))])
    prob = np.clip(mask * 200 + rng.integers(0, 80, mask.shape), 0, 255).astype(np.uint8)
    image = rng.integers(0, 255, mask.shape).astype(np.uint8)
    return {"names": np.array(names), "image": image, "mask": mask, "prob": prob}


def test_prediction_grid_matches_images_by_name(tmp_path):
    names = [f"img_{i}" for i in range(4)]
    two = {"baseline": _samples(names, 0), "full": _samples(names[::-1], 1)}
    three = {**two, "third": _samples(names[1:], 2)}
    w2, h2 = _assert_png(plot_prediction_grid(two, tmp_path / "two.png"))
    w3, h3 = _assert_png(plot_prediction_grid(three, tmp_path / "three.png"))
    assert w3 > w2  # one more column for the third variant
    assert h3 < h2  # and one row less: img_0 is missing from the third variant's samples


def test_prediction_grid_without_common_images_is_an_error(tmp_path):
    samples = {"a": _samples(["x"], 0), "b": _samples(["y"], 1)}
    with pytest.raises(ValueError, match="no test image common"):
        plot_prediction_grid(samples, tmp_path / "grid.png")


def test_prediction_grid_outlines_on_the_image_and_iou_only_on_lesions(tmp_path, drawn):
    names = ["benign/benign (1).png", "normal/normal (2).png"]
    samples = {"baseline": _samples(names, 0, normal=(1,)), "full": _samples(names, 1, normal=(1,))}
    samples["full"]["prob"][1, :4, :4] = 255                     # a small false positive on the normal image
    plot_prediction_grid(samples, tmp_path / "grid.png")
    axes = np.array(drawn[0].axes).reshape(2, 4)
    captions = [[ax.get_xlabel() for ax in row] for row in axes]
    assert captions[0][0] == "benign (1).png" and captions[0][2].startswith("IoU ")
    assert captions[1][1] == "no lesion" and not any("IoU" in c for c in captions[1])
    assert captions[1][3] == f"no lesion; pred. {100 * 16 / 32 ** 2:.1f}%"
    for ax in axes[:, 1:].ravel():
        assert ax.images[0].get_array().shape == (32, 32)        # the image itself, not a bare mask
    assert axes[0, 2].collections and axes[0, 1].collections     # outlines (contours) on lesion rows
    assert not axes[1, 1].collections and axes[1, 3].collections  # nothing to outline / the false positive

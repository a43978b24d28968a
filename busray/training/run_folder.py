"""The per-image test files of a run folder (``test_predictions.parquet``, ``test_samples.npz``).

Names and columns come from the run-folder contract, :mod:`busray.runfolder`; writes go through
:func:`busray.atomic.atomic_write` (temp file + rename).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd

from busray.atomic import atomic_write
from busray.runfolder import LEVELS



def predictions_frame(names: list[str], class_names: tuple, per_image: dict,
                      diagnostics: dict) -> pd.DataFrame:
    """One row per image: label and prediction (indices and class names), correctness, lesion
    metrics and pixel counts (``tp``/``fp``/``fn``, so pooled IoU/Dice can be recomputed or
    bootstrapped), class probabilities and per-level diagnostics."""
    label, pred = np.asarray(per_image["label"]), np.asarray(per_image["pred"])
    frame = {"name": names, "label": label, "pred": pred,
             "has_lesion": per_image["has_lesion"], "seg/iou": per_image["seg/iou"],
             "seg/dice": per_image["seg/dice"], "correct": per_image["correct"],
             "label_name": [class_names[i] for i in label], "pred_name": [class_names[i] for i in pred]}
    frame.update({key: per_image[key] for key in ("tp", "fp", "fn") if key in per_image})
    probs = np.asarray(per_image["prob"])
    for c, cls in enumerate(class_names):
        frame[f"prob_{cls}"] = probs[:, c]
    for key, values in diagnostics.items():
        for level in range(len(LEVELS)):
            frame[f"{key}_{level + 1}"] = values[:, level]
    return pd.DataFrame(frame)


def write_test_predictions(path: Path, names: list[str], class_names: tuple, per_image: dict,
                           diagnostics: dict) -> None:
    """``test_predictions.parquet``: :func:`predictions_frame` of the test split."""
    buf = io.BytesIO()
    predictions_frame(names, class_names, per_image, diagnostics).to_parquet(buf, index=False)
    atomic_write(path, buf.getvalue())


def write_test_samples(path: Path, names: list[str], images: np.ndarray, masks: np.ndarray,
                       probs: np.ndarray) -> None:
    """Up to K test images with ground truth and predicted probability, all uint8 (K, S, S)."""
    k = len(probs)
    buf = io.BytesIO()
    np.savez_compressed(buf, names=np.asarray(names[:k]), image=images[:k].astype(np.uint8),
                        mask=(masks[:k] * 255).astype(np.uint8),
                        prob=np.clip(probs * 255.0 + 0.5, 0, 255).astype(np.uint8))
    atomic_write(path, buf.getvalue())

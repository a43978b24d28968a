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



def write_test_predictions(path: Path, names: list[str], class_names: tuple, per_image: dict,
                           diagnostics: dict) -> None:
    """Per test image: label, prediction, probabilities, lesion metrics and per-level diagnostics."""
    frame = {"name": names, "label": per_image["label"], "pred": per_image["pred"],
             "has_lesion": per_image["has_lesion"], "seg/iou": per_image["seg/iou"],
             "seg/dice": per_image["seg/dice"], "correct": per_image["correct"]}
    probs = np.asarray(per_image["prob"])
    for c, cls in enumerate(class_names):
        frame[f"prob_{cls}"] = probs[:, c]
    for key, values in diagnostics.items():
        for level in range(len(LEVELS)):
            frame[f"{key}_{level + 1}"] = values[:, level]
    buf = io.BytesIO()
    pd.DataFrame(frame).to_parquet(buf, index=False)
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

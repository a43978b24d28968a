"""The run folder: every file a run leaves beside its checkpoints (layout in docs/ARCHITECTURE.md).

All writers go through :func:`busray.atomic.atomic_write` (temp file + rename), so an interrupted run never leaves a
half-written ``metrics.json`` or ``history.csv`` that a report would then read.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from busray.atomic import atomic_write
from busray.models import LEVELS



def _clean(value):
    """JSON has no NaN: map non-finite floats to None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    return value


def write_json(path: Path, payload: dict) -> None:
    atomic_write(path, json.dumps(_clean(payload), indent=2, sort_keys=False) + "\n")


def write_history(path: Path, history: list[dict]) -> None:
    """One row per epoch; columns are the union of keys (epoch first)."""
    keys: list[str] = []
    for row in history:
        keys += [k for k in row if k not in keys]
    keys = ["epoch"] + [k for k in keys if k != "epoch"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys)
    writer.writeheader()
    writer.writerows(history)
    atomic_write(path, buf.getvalue())


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

"""The run folder contract: the only module that names, writes and reads a run's files.

Torch-free and Ray-free (numpy and pandas only), so the sweep driver, the results store, the ablation report and inference all
read runs through it. Layout (``docs/ARCHITECTURE.md``)::

    <run>/config.yaml               resolved Config (written by busray.config.save_config)
          split.json                the split (busray.data.split), incl. dataset name and split hash
          history.csv               one row per epoch, keys as reported (epoch, lr, train/*, val/*, time/*)
          metrics.json              the :class:`RunOutcome` (status, error, best epoch, val/test metrics)
          test_predictions.parquet  per test image: PER_IMAGE_COLUMNS + prob_<class> + diagnostics
          test_samples.npz          a few test images, masks and predicted probabilities (uint8)
          checkpoints/best.pt, last.pt
          tb/                       TensorBoard: scalars, overlays and the HParams of a sweep trial

Metric dicts inside a :class:`RunOutcome` are keyed *without* split prefix (``seg/iou``); the only
place a prefix is added is :meth:`RunOutcome.metric_columns` (``val/seg/iou``, ``test/seg/iou``), which
the store row and the Optuna value both use.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from busray.atomic import atomic_write
from busray.models.config import LEVELS  # torch-free: the model's names for its levels

CONFIG = "config.yaml"
SPLIT = "split.json"
HISTORY = "history.csv"
OUTCOME = "metrics.json"
PREDICTIONS = "test_predictions.parquet"
SAMPLES = "test_samples.npz"
CHECKPOINTS = "checkpoints"
BEST = "best.pt"
LAST = "last.pt"
TENSORBOARD = "tb"

#: Fixed columns of the per-image table; ``prob_<class>`` and ``<diagnostic>_<level 1..4>`` follow.
PER_IMAGE_COLUMNS = ("name", "label", "pred", "has_lesion", "seg/iou", "seg/dice", "correct", "label_name",
                     "pred_name", "tp", "fp", "fn")

#: Arrays of ``test_samples.npz`` (written by :meth:`RunFolder.write_samples`).
SAMPLE_KEYS = ("names", "image", "mask", "prob")

STATUSES = ("completed", "failed", "stopped_early", "running")


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


@dataclass
class RunOutcome:
    """What one training run produced: the record ``fit`` returns and ``metrics.json`` holds.

    ``status``: ``running`` while training (written at start, so a folder whose process died says
    so), then ``completed``, ``stopped_early`` (a scheduler stopped it), or ``failed`` (``error``
    says why). ``val`` is the best epoch's validation metrics, ``test`` the best checkpoint's test
    metrics (empty unless completed), both keyed without split prefix.
    """
    status: str = "running"
    error: str | None = None
    best_epoch: int = 0
    epochs_run: int = 0
    early_stopped: bool = False
    val: dict[str, float] = field(default_factory=dict)
    test: dict[str, float] = field(default_factory=dict)
    dataset: str = ""
    split_hash: str = ""
    device: str = ""
    wall_time_s: float = 0.0
    started_at: str = field(default_factory=utc_now)
    finished_at: str | None = None
    run_dir: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list, repr=False)

    def metric_columns(self) -> dict[str, float | None]:
        """``val/<metric>`` and ``test/<metric>`` -> value: the one place prefixes are added."""
        out: dict[str, float | None] = {}
        for split, metrics in (("val", self.val), ("test", self.test)):
            for name, value in metrics.items():
                out[f"{split}/{name}"] = _finite_or_none(value)
        return out

    def finish(self, status: str, error: str | None = None) -> "RunOutcome":
        self.status, self.error = status, error
        self.finished_at = utc_now()
        return self

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("history")
        return _clean(data)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "RunOutcome":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def best_val(history: list[dict[str, Any]], epoch: int) -> dict[str, float]:
    """The validation metrics of ``epoch`` in ``history``, keyed without the ``val/`` prefix."""
    for row in history:
        if int(row.get("epoch", -1)) == int(epoch):
            return {k.removeprefix("val/"): v for k, v in row.items()
                    if k.startswith("val/") and isinstance(v, (int, float))}
    return {}


class RunFolder:
    """Paths and readers/writers of one run folder (nothing here creates it implicitly)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    @property
    def config(self) -> Path:
        return self.path / CONFIG

    @property
    def split(self) -> Path:
        return self.path / SPLIT

    @property
    def history(self) -> Path:
        return self.path / HISTORY

    @property
    def outcome(self) -> Path:
        return self.path / OUTCOME

    @property
    def predictions(self) -> Path:
        return self.path / PREDICTIONS

    @property
    def samples(self) -> Path:
        return self.path / SAMPLES

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    @property
    def tensorboard(self) -> Path:
        return self.path / TENSORBOARD

    def is_run(self) -> bool:
        """Whether a run already lives here (a config or a checkpoint)."""
        return self.config.is_file() or (self.checkpoints / LAST).is_file()

    # ------------------------------------------------------------------ outcome
    def write_outcome(self, outcome: RunOutcome) -> None:
        atomic_write(self.outcome, json.dumps(outcome.to_json(), indent=2) + "\n")

    def read_outcome(self) -> RunOutcome | None:
        """The outcome record, or None when there is none (or it is not one)."""
        try:
            data = json.loads(self.outcome.read_text())
        except (OSError, ValueError):
            return None
        return RunOutcome.from_json(data) if isinstance(data, dict) and "status" in data else None

    # ------------------------------------------------------------------ history
    def write_history(self, history: list[dict[str, Any]]) -> None:
        """One row per epoch; columns are the union of keys (epoch first)."""
        keys: list[str] = []
        for row in history:
            keys += [k for k in row if k not in keys]
        keys = ["epoch"] + [k for k in keys if k != "epoch"]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=keys)
        writer.writeheader()
        writer.writerows(history)
        atomic_write(self.history, buf.getvalue())

    def read_history(self) -> list[dict[str, Any]]:
        """``history.csv`` with numbers as floats (``epoch`` as int); [] when there is none."""
        if not self.history.is_file():
            return []
        with self.history.open(newline="") as fh:
            return [_typed_row(row) for row in csv.DictReader(fh)]

    # ------------------------------------------------------------------ per-image table and samples
    def write_predictions(self, frame: pd.DataFrame) -> None:
        """``test_predictions.parquet`` (a :func:`predictions_frame`)."""
        buf = io.BytesIO()
        frame.to_parquet(buf, index=False)
        atomic_write(self.predictions, buf.getvalue())

    def write_samples(self, names: list[str], images: np.ndarray, masks: np.ndarray, probs: np.ndarray) -> None:
        """Up to K test images with ground truth and predicted probability, all uint8 (K, S, S)."""
        k = len(probs)
        buf = io.BytesIO()
        np.savez_compressed(buf, names=np.asarray(names[:k]), image=images[:k].astype(np.uint8),
                            mask=(masks[:k] * 255).astype(np.uint8),
                            prob=np.clip(probs * 255.0 + 0.5, 0, 255).astype(np.uint8))
        atomic_write(self.samples, buf.getvalue())

    def read_samples(self) -> dict[str, np.ndarray]:
        """The arrays of ``test_samples.npz``; a file without all of SAMPLE_KEYS is a ``ValueError``."""
        with np.load(self.samples, allow_pickle=False) as arrays:
            samples = dict(arrays)
        missing = [k for k in SAMPLE_KEYS if k not in samples]
        if missing:
            raise ValueError(f"missing array(s) {missing}")
        return samples

    # ------------------------------------------------------------------ split identity
    def split_identity(self) -> tuple[str, str]:
        """(dataset, split hash) from ``split.json``; empty strings when it is missing."""
        try:
            data = json.loads(self.split.read_text())
        except (OSError, ValueError):
            return "", ""
        return str(data.get("dataset") or ""), str(data.get("split_hash") or "")


def predictions_frame(names: list[str], class_names: tuple, per_image: dict, diagnostics: dict) -> pd.DataFrame:
    """One row per image: label and prediction (indices and class names), correctness, lesion
    metrics and pixel counts (``tp``/``fp``/``fn``, so pooled IoU/Dice can be recomputed or
    bootstrapped), class probabilities and per-level diagnostics (``<key>_<level>``)."""
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
        for i, level in enumerate(LEVELS):
            frame[f"{key}_{level}"] = values[:, i]
    return pd.DataFrame(frame)


def _typed_row(row: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, text in row.items():
        if text in ("", None):
            out[key] = None
            continue
        try:
            value = float(text)
        except ValueError:
            out[key] = text
            continue
        out[key] = int(value) if key == "epoch" else value
    return out


def _finite_or_none(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _clean(value: Any) -> Any:
    """JSON has no NaN: non-finite floats become None, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value

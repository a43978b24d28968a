"""``busray evaluate``: a checkpoint's metrics on a split of its own dataset or of another one.

- Own dataset (no ``--data``, or the same folder): a run folder's ``split.json`` is reused, so
  ``busray evaluate RUN`` scores exactly the images that run held out.
- Another dataset (cross-dataset evaluation, e.g. a BUSI model on BUSI-WHU): the folder is read with
  its own layout and class names (``data.format: auto``, ``data.classes`` unset) but the run's image
  size and resize mode, and its labels are mapped onto the model's classes *by name*
  (:func:`busray.training.classes.map_onto`); a dataset class the model lacks is refused in one line.
  ``--split all`` scores every image (no split is made).
- Where the model has both ``benign`` and ``malignant``, the binary benign-vs-malignant accuracy and
  AUC over the images labelled one of the two are added (``clf/bm_acc``, ``clf/bm_auc``): the score a
  two-class dataset can be compared on.

Metrics do not depend on the batch size (``--batch-size``) under the default ``model.upa_norm:
running``; :func:`write_evaluation` writes the per-image table (names, label and prediction as class
names, probabilities, IoU/Dice and pixel counts, UPA weights and TIM displacements) and the metrics.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd
import torch

from busray.atomic import atomic_write
from busray.config import Config
from busray.data import ImageSet, load_dataset, make_split
from busray.metrics import binary_metrics
from busray.runfolder import RunFolder, predictions_frame
from busray.training.batches import DeviceSplit
from busray.training.checkpoint import resolve_checkpoint
from busray.training.classes import binary_pair, map_onto, model_classes
from busray.training.epoch import evaluate
from busray.training.inference import evaluation_context, load_trained

EVALUATION_CSV = "per_image.csv"
EVALUATION_JSON = "metrics.json"


@dataclass
class Evaluation:
    """Metrics (keys ``<split>/<metric>``), the per-image table, and what was scored."""

    metrics: dict[str, float]
    table: pd.DataFrame
    info: dict = field(default_factory=dict)


def evaluate_checkpoint(path: str | Path, data_root: str | None = None, split_name: str = "test",
                        device: str = "auto", batch_size: int | None = None) -> Evaluation:
    """Score the checkpoint at ``path`` on ``split_name`` of its dataset or of ``data_root``."""
    model, cfg, dev = load_trained(path, device)
    classes = model_classes(path, cfg)
    ds, indices = _scored_images(path, cfg, data_root, split_name)
    mapped = map_onto(ds, classes)
    part = DeviceSplit.from_dataset(mapped, indices, dev)
    size = batch_size or cfg.train.eval_batch_size
    res = evaluate(evaluation_context(model, cfg, dev), part, size, cfg.model.num_classes,
                   prefix=split_name, collect=True)
    metrics = dict(res.metrics)
    pair = binary_pair(classes)
    if pair is not None:
        scores = binary_metrics(torch.from_numpy(res.per_image["prob"]),
                                torch.from_numpy(res.per_image["label"]), *pair)
        metrics.update({f"{split_name}/{k}": v for k, v in scores.items()})
    info = {"checkpoint": str(resolve_checkpoint(path)), "data": ds.root, "dataset": ds.source,
            "split": split_name, "images": len(indices), "batch_size": size, "upa_norm": cfg.model.upa_norm,
            "model_classes": list(classes), "dataset_classes": list(ds.class_names)}
    table = predictions_frame(part.names, classes, res.per_image, res.diagnostics)
    return Evaluation(metrics=metrics, table=table, info=info)


def _scored_images(path, cfg: Config, data_root: str | None, split_name: str
                   ) -> tuple[ImageSet, list[int]]:
    """The dataset to read and the indices of the images to score."""
    if data_root is None or _same_folder(data_root, cfg.data.root):
        data_cfg = cfg.data if data_root is None else replace(cfg.data, root=str(data_root))
        run_split = RunFolder(resolve_checkpoint(path).parent.parent).split
        if run_split.is_file():
            data_cfg = replace(data_cfg, split_file=str(run_split))
    else:
        data_cfg = replace(cfg.data, root=str(data_root), format="auto", classes=None,
                           limit_per_class=None, split_file=None)
    ds = load_dataset(data_cfg)
    if split_name == "all":
        return ds, list(range(len(ds)))
    return ds, make_split(ds, data_cfg).indices(split_name)


def _same_folder(a: str, b: str | None) -> bool:
    return b is not None and Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def write_evaluation(ev: Evaluation, out_dir: str | Path) -> list[Path]:
    """``per_image.csv`` and ``metrics.json`` (metrics and what was scored) in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    finite = {k: (v if isinstance(v, float) and math.isfinite(v) else None) for k, v in ev.metrics.items()}
    atomic_write(out / EVALUATION_JSON, json.dumps({**ev.info, "metrics": finite}, indent=2) + "\n")
    atomic_write(out / EVALUATION_CSV, ev.table.to_csv(index=False))
    return [out / EVALUATION_JSON, out / EVALUATION_CSV]

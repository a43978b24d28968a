"""Class names of a trained model, and a dataset's labels mapped onto them by name.

A model's classes are label indices; what they mean is the dataset it trained on. A BUSI model has
``normal, benign, malignant``; a benign/malignant dataset (BUSI-WHU, a BUSI-layout folder without
``normal/``, a CSV manifest without normal images) lists ``benign, malignant`` with benign = 0. Scoring
one with the other by index silently shifts every label, so :func:`map_onto` matches class names
(case-insensitive) instead, and refuses in one line when a dataset class has no counterpart.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import torch

from busray.config import Config
from busray.data import BUSI_CLASSES, WHU_CLASSES, ImageSet
from busray.runfolder import RunFolder
from busray.training.checkpoint import resolve_checkpoint

BINARY_PAIR = ("benign", "malignant")
"""The two classes of the binary benign-vs-malignant scores (negative, positive)."""


def default_classes(n: int) -> tuple[str, ...]:
    """The class names a layout implies for ``n`` classes when nothing else says."""
    return {len(BUSI_CLASSES): BUSI_CLASSES, len(WHU_CLASSES): WHU_CLASSES}.get(
        n, tuple(f"class{i}" for i in range(n)))


def model_classes(checkpoint: str | Path, cfg: Config) -> tuple[str, ...]:
    """Class names of a trained model, in label order: from its run folder's ``split.json`` (the
    dataset it trained on), else ``data.classes``, else the default for its class count."""
    n = cfg.model.num_classes
    split_json = RunFolder(resolve_checkpoint(checkpoint).parent.parent).split
    if split_json.is_file():
        try:
            counts = json.loads(split_json.read_text()).get("class_counts", {})
            names = tuple(next(iter(counts.values()), {}))
        except (json.JSONDecodeError, AttributeError, TypeError):
            names = ()
        if len(names) == n:
            return names
    if cfg.data.classes and len(cfg.data.classes) == n:
        return tuple(cfg.data.classes)
    return default_classes(n)


def map_onto(ds: ImageSet, classes: tuple[str, ...]) -> ImageSet:
    """``ds`` with labels re-indexed into ``classes`` by name (a subset is fine)."""
    lookup = {name.lower(): i for i, name in enumerate(classes)}
    unknown = [name for name in ds.class_names if name.lower() not in lookup]
    if unknown:
        raise ValueError(f"{ds.root}: classes ({', '.join(ds.class_names)}) cannot be mapped onto the "
                         f"model's classes ({', '.join(classes)}): no '{unknown[0]}'")
    index = torch.tensor([lookup[name.lower()] for name in ds.class_names], dtype=torch.int64)
    return replace(ds, labels=index[ds.labels], class_names=tuple(classes))


def binary_pair(classes: tuple[str, ...]) -> tuple[int, int] | None:
    """(benign, malignant) label indices when the model has both classes, else None."""
    lower = [c.lower() for c in classes]
    if all(name in lower for name in BINARY_PAIR):
        return lower.index(BINARY_PAIR[0]), lower.index(BINARY_PAIR[1])
    return None

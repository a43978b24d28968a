"""``Split``: which images are train / val / test, saved as ``split.json`` beside a run.

The file lists indices *and* names per split (readable, and robust to a dataset re-listed in another
order), the near-duplicate groups found, and a ``split_hash``: a stable hash of the (name -> split)
assignment, independent of index order, so results from different runs can be grouped by the exact
split they used, and the ``protocol`` (``data.split_protocol``: ``grouped`` keeps near-duplicates in
one split, ``random`` does not, as the authors' code). :func:`busray.data.stratify.make_split` builds one.

Version 2 records what the near-duplicate hashes were computed on (``near_duplicates.hashed_on``): the
decoded originals on one fixed view, so a dataset and seed give one split at every image size.
Version 1 files (hashes of the tensors resized to ``data.image_size``) load as they are, with their
own split hash (which is what tells their split from today's), and read back as :data:`LEGACY_HASHED_ON`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from busray.atomic import atomic_write
from busray.data.errors import DataError
from busray.data.imageset import ImageSet

SPLIT_NAMES = ("train", "val", "test")
SPLIT_VERSION = 2
LEGACY_HASHED_ON = "images resized to data.image_size (split.json version 1)"


@dataclass
class Split:
    """Index lists into one dataset (``names`` is that dataset's full name list)."""

    train: list[int]
    val: list[int]
    test: list[int]
    names: list[str]
    groups: list[list[int]] = field(default_factory=list)   # near-duplicate groups (indices)
    strategy: str = "stratified"        # stratified | official | kfold i/k
    seed: int = 0
    fractions: tuple[float, ...] = (0.7, 0.15, 0.15)
    dataset: str = ""
    threshold: int | None = None        # pHash Hamming threshold of ``groups`` (None: not searched)
    kept_together: bool = True
    protocol: str = "grouped"           # data.split_protocol (grouped | random), or official
    hashed_on: str | None = None        # what the near-duplicate hashes saw (None: not searched)

    def indices(self, part: str) -> list[int]:
        if part not in SPLIT_NAMES:
            raise ValueError(f"unknown split {part!r} (expected one of {', '.join(SPLIT_NAMES)})")
        return getattr(self, part)

    @property
    def n_groups(self) -> int:
        return len(self.groups)

    @property
    def split_hash(self) -> str:
        """sha256 (16 hex digits) of the sorted (name, split) pairs."""
        pairs = sorted((self.names[i], part) for part in SPLIT_NAMES for i in self.indices(part))
        return hashlib.sha256(json.dumps(pairs).encode()).hexdigest()[:16]

    def groups_across_splits(self) -> int:
        """How many near-duplicate groups have members in more than one split (leaks)."""
        where = {i: part for part in SPLIT_NAMES for i in self.indices(part)}
        return sum(len({where.get(i) for i in g}) > 1 for g in self.groups)

    def parts(self, ds: ImageSet) -> dict[str, ImageSet]:
        """``{"train": ImageSet, "val": ..., "test": ...}`` of ``ds``, the dataset split was made on."""
        if len(ds) != len(self.names):
            raise DataError(f"{ds.root}: split was made on {len(self.names)} images, the dataset "
                            f"has {len(ds)}")
        return {part: ds.subset(self.indices(part)) for part in SPLIT_NAMES}

    def class_counts(self, labels, class_names) -> dict[str, dict[str, int]]:
        labels = [int(x) for x in labels]
        return {part: {c: sum(labels[i] == k for i in self.indices(part))
                       for k, c in enumerate(class_names)} for part in SPLIT_NAMES}

    def to_json(self, ds: ImageSet | None = None) -> dict:
        data = {
            "version": SPLIT_VERSION, "split_hash": self.split_hash, "dataset": self.dataset,
            "strategy": self.strategy, "protocol": self.protocol, "seed": self.seed,
            "fractions": list(self.fractions),
            "sizes": {part: len(self.indices(part)) for part in SPLIT_NAMES},
        }
        if ds is not None:
            data["class_counts"] = self.class_counts(ds.labels.tolist(), ds.class_names)
        data["near_duplicates"] = {
            "threshold": self.threshold, "hashed_on": self.hashed_on, "n_groups": self.n_groups,
            "n_images": sum(len(g) for g in self.groups), "kept_together": self.kept_together,
            "groups_across_splits": self.groups_across_splits(),
            "groups": [[self.names[i] for i in g] for g in self.groups],
        }
        data["splits"] = {part: {"indices": self.indices(part),
                                 "names": [self.names[i] for i in self.indices(part)]}
                          for part in SPLIT_NAMES}
        return data

    def save(self, path: str | Path, ds: ImageSet | None = None) -> Path:
        """Write ``split.json`` atomically; ``ds`` adds per-class counts for readers."""
        return atomic_write(path, json.dumps(self.to_json(ds), indent=1))


def load_split(path: str | Path, ds: ImageSet) -> Split:
    """Read a ``split.json`` and map it onto ``ds`` by image name (indices may differ)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        splits = {part: data["splits"][part]["names"] for part in SPLIT_NAMES}
    except FileNotFoundError:
        raise DataError(f"{path}: split file not found") from None
    except (json.JSONDecodeError, KeyError, TypeError):
        raise DataError(f"{path}: not a busray split.json") from None
    where = {name: i for i, name in enumerate(ds.names)}
    missing = [n for names in splits.values() for n in names if n not in where]
    if missing:
        raise DataError(f"{path}: image '{missing[0]}' is not in the dataset at {ds.root} "
                        f"({len(missing)} missing)")
    near = data.get("near_duplicates", {})
    return Split(*(sorted(where[n] for n in splits[part]) for part in SPLIT_NAMES),
                 names=list(ds.names),
                 groups=[sorted(where[n] for n in g if n in where)
                         for g in near.get("groups", [])],
                 strategy=data.get("strategy", "file"), seed=data.get("seed", 0),
                 fractions=tuple(data.get("fractions", ())), dataset=data.get("dataset", ""),
                 threshold=near.get("threshold"), kept_together=near.get("kept_together", True),
                 protocol=data.get("protocol", "grouped" if near.get("kept_together", True)
                                   else "random"),
                 hashed_on=_hashed_on(near))


def _hashed_on(near: dict) -> str | None:
    """A file's ``near_duplicates.hashed_on``; version 1 files (no such key) hashed resized tensors."""
    if "hashed_on" in near:
        return near["hashed_on"]
    return LEGACY_HASHED_ON if near.get("threshold") is not None else None

"""Make splits: a seeded stratified train/val/test split, and k folds over train+val.

The paper splits 70/15/15 (Sec. 3.1) without saying how; here the split is stratified by class
(each class is divided in the given fractions) and, by default (``data.split_protocol: grouped``),
*group-aware*: near-duplicate groups found by :mod:`busray.data.dedup` are placed whole into one split
so no near-copy of a test image is trained on. ``random`` assigns single images (the authors' code:
stratified random), and the groups found are only counted as leaks. Assignment per class: shuffle the units (groups or single images) with the
seed, place the largest units first, each into the split furthest below its integer target. A
group that mixes classes (BUSI has the same scan filed as normal and benign) counts towards its
majority class. Layouts that ship their own split (BUSI-WHU) keep it when
``data.use_official_split`` is set.
"""

from __future__ import annotations

import logging

import numpy as np

from busray.data.config import DataConfig
from busray.data.dedup import HASH_VIEW, near_duplicate_groups, phash
from busray.data.errors import DataError
from busray.data.imageset import ImageSet
from busray.data.split import SPLIT_NAMES, Split, load_split

log = logging.getLogger(__name__)


def make_split(ds: ImageSet, cfg: DataConfig) -> Split:
    """The train/val/test split of ``ds``: from ``cfg.split_file``, the layout's own, or new."""
    if cfg.split_file:
        split = load_split(cfg.split_file, ds)
        log.info("split %s loaded from %s", split.split_hash, cfg.split_file)
        return split
    groups = _find_groups(ds, cfg)
    if ds.preset_split is not None and cfg.use_official_split:
        split = _official_split(ds, cfg, groups)
    else:
        together = cfg.split_protocol == "grouped"
        units = _units(len(ds), groups if together else [])
        rng = np.random.default_rng(cfg.split_seed)
        bucket = _assign(units, ds.labels.numpy(), cfg.split_fractions, rng)
        split = Split(*(np.flatnonzero(bucket == b).tolist() for b in range(3)),
                      names=list(ds.names), groups=groups, strategy="stratified",
                      seed=cfg.split_seed, fractions=tuple(cfg.split_fractions),
                      dataset=ds.source, threshold=_threshold(cfg), kept_together=together,
                      protocol=cfg.split_protocol, hashed_on=_hashed_on(ds, cfg))
    _check_classes(ds, split, SPLIT_NAMES, split.fractions)
    log.info("split %s: train %d, val %d, test %d; %d near-duplicate groups (%d across splits)",
             split.split_hash, len(split.train), len(split.val), len(split.test),
             split.n_groups, split.groups_across_splits())
    return split


def kfold_splits(ds: ImageSet, cfg: DataConfig, k: int) -> list[Split]:
    """``k`` splits sharing the test set of :func:`make_split`; train+val is cut into ``k``
    stratified (and group-aware) folds and fold ``i`` is the validation set of split ``i``."""
    if k < 2:
        raise ValueError(f"kfold_splits: k must be >= 2, got {k}")
    base = make_split(ds, cfg)
    pool = np.array(sorted(base.train + base.val), dtype=np.int64)
    in_pool = set(pool.tolist())
    pool_groups = [g for g in base.groups if set(g) <= in_pool] if base.kept_together else []
    units = _units(len(ds), pool_groups, members=pool)
    rng = np.random.default_rng([cfg.split_seed, k])
    fold = _assign(units, ds.labels.numpy(), [1.0 / k] * k, rng, n=len(ds))
    splits = []
    for i in range(k):
        split = Split(train=np.flatnonzero((fold >= 0) & (fold != i)).tolist(),
                      val=np.flatnonzero(fold == i).tolist(), test=list(base.test),
                      names=list(ds.names), groups=base.groups, strategy=f"kfold {i + 1}/{k}",
                      seed=cfg.split_seed, fractions=base.fractions, dataset=ds.source,
                      threshold=base.threshold, kept_together=base.kept_together,
                      protocol=base.protocol, hashed_on=base.hashed_on)
        _check_classes(ds, split, ("train", "val"), (1.0, 1.0), what=f"a {k}-fold split")
        splits.append(split)
    return splits


def _threshold(cfg: DataConfig) -> int | None:
    return cfg.near_duplicate_threshold if cfg.detect_near_duplicates else None


def _hashed_on(ds: ImageSet, cfg: DataConfig) -> str | None:
    """What the near-duplicate hashes were computed on (recorded in split.json)."""
    if not cfg.detect_near_duplicates:
        return None
    return HASH_VIEW if ds.hashes is not None else f"images as held ({ds.image_size}x{ds.image_size})"


def _find_groups(ds: ImageSet, cfg: DataConfig) -> list[list[int]]:
    if not cfg.detect_near_duplicates:
        return []
    hashes = ds.hashes if ds.hashes is not None else phash(ds.images)
    groups = near_duplicate_groups(hashes, cfg.near_duplicate_threshold)
    log.info("found %d near-duplicate groups (%d images) at pHash Hamming distance <= %d",
             len(groups), sum(map(len, groups)), cfg.near_duplicate_threshold)
    return groups


def _official_split(ds: ImageSet, cfg: DataConfig, groups: list[list[int]]) -> Split:
    parts = {part: [i for i, p in enumerate(ds.preset_split) if p == part] for part in SPLIT_NAMES}
    split = Split(**parts, names=list(ds.names), groups=groups, strategy="official",
                  seed=cfg.split_seed, fractions=tuple(len(parts[p]) / len(ds) for p in parts),
                  dataset=ds.source, threshold=_threshold(cfg), kept_together=False,
                  protocol="official", hashed_on=_hashed_on(ds, cfg))
    leaks = split.groups_across_splits()
    if leaks:
        log.warning("the official split of %s puts %d near-duplicate groups across splits",
                    ds.root, leaks)
    return split


def _units(n: int, groups: list[list[int]], members=None) -> list[list[int]]:
    """Groups plus every other image (of ``members``, default all) as a unit of its own."""
    grouped = {i for g in groups for i in g}
    rest = range(n) if members is None else members.tolist()
    return [list(g) for g in groups] + [[i] for i in rest if i not in grouped]


def _assign(units: list[list[int]], labels: np.ndarray, fractions, rng: np.random.Generator,
            n: int | None = None) -> np.ndarray:
    """Per-image bucket index (-1: not in any unit), stratified by each unit's majority label."""
    bucket = np.full(n if n is not None else len(labels), -1, dtype=np.int64)
    unit_label = np.array([np.bincount(labels[u]).argmax() for u in units], dtype=np.int64)
    for cls in np.unique(unit_label):
        mine = [units[j] for j in rng.permutation(np.flatnonzero(unit_label == cls))]
        mine.sort(key=len, reverse=True)          # stable: equal sizes keep the shuffled order
        target = _integer_targets(sum(map(len, mine)), fractions)
        filled = np.zeros(len(fractions))
        for unit in mine:
            b = int(np.argmax(target - filled))
            bucket[unit] = b
            filled[b] += len(unit)
    return bucket


def _integer_targets(n: int, fractions) -> np.ndarray:
    """Largest-remainder rounding of ``n * fractions``, giving every non-zero bucket >= 1 if
    ``n`` allows (taken from the largest bucket)."""
    exact = n * np.asarray(fractions, dtype=np.float64)
    target = np.floor(exact)
    short = int(n - target.sum())
    target[np.argsort(-(exact - target), kind="stable")[:short]] += 1
    for b in np.flatnonzero((target == 0) & (np.asarray(fractions) > 0)):
        donor = int(np.argmax(target))
        if target[donor] > 1:
            target[donor] -= 1
            target[b] += 1
    return target


def _check_classes(ds: ImageSet, split: Split, parts, fractions, what: str | None = None) -> None:
    """Every class present in ``ds`` needs an image in every split with a non-zero fraction."""
    labels = ds.labels.numpy()
    what = what or "a " + "/".join(f"{round(100 * f)}" for f in fractions) + " split"
    for part, frac in zip(parts, fractions):
        if frac <= 0:
            continue
        present = np.bincount(labels[split.indices(part)], minlength=len(ds.class_names))
        for k, name in enumerate(ds.class_names):
            total = int((labels == k).sum())
            if total and not present[k]:
                raise DataError(f"{ds.root}: class '{name}' has too few images ({total}) for "
                                f"{what}: none lands in '{part}'")

"""``busray data inspect``: what a dataset and its split look like, as a short readable summary.

Before training on their own data a researcher wants to know, at a glance: how many images of each
class land in train/val/test, how many near-duplicate groups the perceptual hash found and whether
any of them straddle splits (a train/test leak), how large the original images are (so
``data.image_size`` can be chosen) and how much of an image a lesion covers (small lesions make IoU
hard). :func:`summarize` computes all of it from the decoded :class:`~busray.data.ImageSet` and its
:class:`~busray.data.Split`; :func:`render_summary` prints it; ``to_json`` is the machine form.
Original image sizes are read from the file headers only (no decoding).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from busray.data.dedup import HASH_VIEW
from busray.data.imageset import ImageSet
from busray.data.split import SPLIT_NAMES, Split

MAX_GROUP_EXAMPLES = 3


@dataclass(frozen=True)
class Range:
    """min / median / max of some per-image quantity (None when there is none: valid JSON)."""

    min: float | None
    median: float | None
    max: float | None

    @classmethod
    def of(cls, values) -> "Range":
        arr = np.asarray(values, dtype=float)
        if arr.size == 0:
            return cls(None, None, None)
        return cls(float(arr.min()), float(np.median(arr)), float(arr.max()))


@dataclass(frozen=True)
class Coverage:
    """Lesion-mask coverage of one class, in percent of the decoded S x S image."""

    images: int
    with_lesion: int
    percent: Range  # over the images with a lesion


@dataclass(frozen=True)
class DuplicateSummary:
    threshold: int | None  # None: near-duplicates were not searched
    hashed_on: str | None  # what the hashes saw (split.json's near_duplicates.hashed_on)
    groups: int
    images: int
    across_splits: int
    mixed_class: int  # groups whose members carry different labels
    kept_together: bool
    largest: list[list[str]]  # names of the largest groups (at most MAX_GROUP_EXAMPLES)


@dataclass(frozen=True)
class DatasetSummary:
    headline: str
    split_line: str
    class_names: tuple[str, ...]
    class_table: dict[str, dict[str, int]]  # split -> class -> images
    duplicates: DuplicateSummary
    width: Range  # original files, pixels
    height: Range
    unreadable_sizes: int
    decoded_size: int
    coverage: dict[str, Coverage]  # class -> coverage

    def to_json(self) -> dict:
        return asdict(self)


def summarize(ds: ImageSet, split: Split) -> DatasetSummary:
    """Class table per split, near-duplicates, original image sizes and mask coverage of ``ds``."""
    sizes = original_sizes(ds)
    readable = sizes[np.isfinite(sizes[:, 0])]
    fractions = "/".join(f"{round(100 * f)}" for f in split.fractions)
    return DatasetSummary(
        headline=ds.summary(),
        split_line=f"split {split.split_hash} ({split.strategy}, seed {split.seed}, {fractions})",
        class_names=tuple(ds.class_names),
        class_table=split.class_counts(ds.labels.tolist(), ds.class_names),
        duplicates=_duplicates(ds, split),
        width=Range.of(readable[:, 0]), height=Range.of(readable[:, 1]),
        unreadable_sizes=len(sizes) - len(readable), decoded_size=ds.image_size,
        coverage=mask_coverage(ds))


def original_sizes(ds: ImageSet) -> np.ndarray:
    """``(N, 2)`` width and height of each original image file (NaN where it cannot be read)."""
    sizes = np.full((len(ds), 2), np.nan)
    for i, name in enumerate(ds.names):
        try:
            with Image.open(Path(ds.root) / name) as image:  # reads the header only
                sizes[i] = image.size
        except (OSError, ValueError):
            continue
    return sizes


def mask_coverage(ds: ImageSet) -> dict[str, Coverage]:
    """Per class: how many images have a lesion and how much of the image it covers (%)."""
    masks = ds.masks.numpy().reshape(len(ds), -1)
    percent = 100.0 * (masks > 0).mean(axis=1)
    labels = ds.labels.numpy()
    out = {}
    for k, name in enumerate(ds.class_names):
        mine = percent[labels == k]
        lesion = mine[mine > 0]
        out[name] = Coverage(images=int(mine.size), with_lesion=int(lesion.size),
                             percent=Range.of(lesion))
    return out


def _duplicates(ds: ImageSet, split: Split) -> DuplicateSummary:
    labels = ds.labels.numpy()
    largest = sorted(split.groups, key=len, reverse=True)[:MAX_GROUP_EXAMPLES]
    return DuplicateSummary(
        threshold=split.threshold, hashed_on=split.hashed_on, groups=split.n_groups, images=sum(map(len, split.groups)),
        across_splits=split.groups_across_splits(),
        mixed_class=sum(len(set(labels[g].tolist())) > 1 for g in split.groups),
        kept_together=split.kept_together, largest=[[ds.names[i] for i in g] for g in largest])


# ------------------------------------------------------------------------------------ rendering

def render_summary(s: DatasetSummary) -> str:
    """The summary as aligned plain text (no colour: it is read in terminals, logs and issues)."""
    return "\n".join([s.headline, s.split_line, "", *_class_table(s), "", *_duplicate_lines(s),
                      "", *_size_lines(s), "", *_coverage_table(s)])


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Rows of cells, the first column left-aligned and the others right-aligned."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return [line(r) for r in [header, *rows]]


def _class_table(s: DatasetSummary) -> list[str]:
    rows = []
    for part in (*SPLIT_NAMES, "total"):
        counts = ([sum(s.class_table[p][c] for p in SPLIT_NAMES) for c in s.class_names]
                  if part == "total" else [s.class_table[part][c] for c in s.class_names])
        rows.append([part, *map(str, counts), str(sum(counts))])
    return ["images per split and class:", *_indent(_table(["", *s.class_names, "total"], rows))]


def _duplicate_lines(s: DatasetSummary) -> list[str]:
    d = s.duplicates
    if d.threshold is None:
        return ["near-duplicates: not searched (data.detect_near_duplicates = false)"]
    leak = (f"{d.across_splits} straddle splits" +
            (" (train/test leakage)" if d.across_splits else "") +
            ("" if d.kept_together else "; groups were not kept together"))
    lines = [f"near-duplicates (pHash Hamming distance <= {d.threshold}): {d.groups} group(s) "
             f"of {d.images} images; {leak}",
             f"  hashed on: {d.hashed_on} (the same groups at every data.image_size)"
             if d.hashed_on == HASH_VIEW else f"  hashed on: {d.hashed_on}"]
    if d.mixed_class:
        lines.append(f"  {d.mixed_class} group(s) mix classes: check the labels of these near-copies")
    if d.largest:
        lines.append("  largest groups (full list: --json):")
        lines += [f"    {len(group)} images: {_names(group)}" for group in d.largest]
    return lines


def _names(group: list[str], shown: int = 3) -> str:
    more = f", ... (+{len(group) - shown})" if len(group) > shown else ""
    return ", ".join(group[:shown]) + more


def _size_lines(s: DatasetSummary) -> list[str]:
    def span(r: Range) -> str:
        return "n/a" if r.min is None else f"{r.min:.0f}-{r.max:.0f} (median {r.median:.0f})"

    lines = [f"original image sizes: width {span(s.width)}, height {span(s.height)} px; "
             f"decoded to {s.decoded_size}x{s.decoded_size}"]
    if s.unreadable_sizes:
        lines.append(f"  ({s.unreadable_sizes} image header(s) could not be read)")
    return lines


def _coverage_table(s: DatasetSummary) -> list[str]:
    rows = []
    for name, c in s.coverage.items():
        pct = c.percent
        cells = (["-"] * 3 if not c.with_lesion
                 else [f"{pct.min:.1f}", f"{pct.median:.1f}", f"{pct.max:.1f}"])
        rows.append([name, f"{c.with_lesion}/{c.images}", *cells])
    header = ["", "with lesion", "min %", "median %", "max %"]
    return ["lesion mask coverage (% of the decoded image):", *_indent(_table(header, rows))]


def _indent(lines: list[str]) -> list[str]:
    return ["  " + line for line in lines]

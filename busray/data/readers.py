"""Find the files of a dataset: BUSI, BUSI-WHU and CSV-manifest layouts -> a list of records.

Readers only list files and labels (cheap, no decoding); :mod:`busray.data.loader` decodes them.

- **BUSI** (Al-Dhabyani et al. 2020): ``[Dataset_BUSI_with_GT/]{normal,benign,malignant}/`` with
  ``name.png`` and ``name_mask.png`` [+ ``name_mask_1.png`` ...]; the lesion mask is the union of
  all of an image's mask files. Without ``data.classes``, the class folders present (at least two)
  are the classes, so a ``{benign,malignant}/`` folder is a two-class dataset (label 0 = benign):
  a model trained on BUSI maps them by name (``busray evaluate --data``). A folder written by :func:`busray.data.synth.synthesize` has the
  same layout plus a ``busray_synth.json`` marker and is reported as source ``"synthetic"``.
- **BUSI-WHU**: ``{train,val,test}/{img,mask}/*.bmp`` (``valid``/``validation`` are accepted for
  ``val``); a mask has its image's file stem. Labels come from a table in the root
  (``data.label_table``, default ``labels.csv``) with columns ``image`` (the file name, the stem or
  the path relative to the root, e.g. ``train/img/0001.bmp``) and ``label`` (a class name).
- **CSV manifest**: columns ``image``, ``mask``, ``label``; paths relative to the CSV's folder;
  an empty mask cell means an all-zero mask (normal), several mask paths are separated by ``;``.
"""

from __future__ import annotations

import csv
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from busray.data.config import DataConfig
from busray.data.errors import DataError
from busray.data.images import IMAGE_SUFFIXES

log = logging.getLogger(__name__)

BUSI_CLASSES = ("normal", "benign", "malignant")
WHU_CLASSES = ("benign", "malignant")
WHU_SPLIT_DIRS = {"train": "train", "val": "val", "valid": "val", "validation": "val",
                  "test": "test"}
SYNTH_MARKER = "busray_synth.json"
_MASK_STEM = re.compile(r"^(?P<stem>.+)_mask(?:_\d+)?$")


@dataclass(frozen=True)
class Record:
    """One image of a dataset: its file, its mask files (empty: all-zero), its label index."""

    name: str                      # path relative to the dataset root, used as the image's id
    image: Path
    masks: tuple[Path, ...]
    label: int
    preset_split: str | None = None


@dataclass
class Listing:
    records: list[Record]
    class_names: tuple[str, ...]
    source: str
    root: Path


def is_mask_name(path: Path) -> bool:
    """Whether ``path`` is named like a BUSI mask (``name_mask.png``, ``name_mask_1.png``)."""
    return _MASK_STEM.match(path.stem) is not None


def natural_key(text: str) -> list:
    """'benign (2)' sorts before 'benign (10)'."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", text)]


def detect_format(root: Path, cfg: DataConfig) -> str:
    """``csv`` for a CSV file or a folder with the manifest, ``busi_whu`` for split folders with
    ``img/``, else ``busi``."""
    if root.is_file() or (root / cfg.manifest).is_file():
        return "csv"
    if any((root / d / "img").is_dir() for d in WHU_SPLIT_DIRS):
        return "busi_whu"
    return "busi"


def list_dataset(root: Path, cfg: DataConfig) -> Listing:
    """List the records of the dataset at ``root`` in the layout ``cfg.format`` (or detected)."""
    if not root.exists():
        raise DataError(f"{root}: dataset folder not found")
    fmt = detect_format(root, cfg) if cfg.format == "auto" else cfg.format
    readers = {"busi": list_busi, "busi_whu": list_busi_whu, "csv": list_csv}
    return readers[fmt](root, cfg)


def image_files(folder: Path) -> list[Path]:
    """The image files of a folder (not its subfolders, no hidden files), in natural name order."""
    return sorted((p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
                   and p.suffix.lower() in IMAGE_SUFFIXES), key=lambda p: natural_key(p.name))


def _limit(records: list[Record], limit: int | None, n_classes: int) -> list[Record]:
    if limit is None:
        return records
    kept, seen = [], [0] * n_classes
    for rec in records:
        if seen[rec.label] < limit:
            kept.append(rec)
            seen[rec.label] += 1
    return kept


# ---------------------------------------------------------------------------------------- BUSI
def find_busi_root(root: Path, classes: tuple[str, ...]) -> Path:
    """Accept the dataset folder itself or its parent (holding ``Dataset_BUSI_with_GT``)."""
    for candidate in (root / "Dataset_BUSI_with_GT", root):
        if any((candidate / c).is_dir() for c in classes):
            return candidate
    raise DataError(f"{root}: no BUSI class folders ({', '.join(classes)}) found")


def list_busi(root: Path, cfg: DataConfig) -> Listing:
    classes = tuple(cfg.classes) if cfg.classes else BUSI_CLASSES
    base = find_busi_root(root, classes)
    if not cfg.classes:
        classes = _present_classes(base, classes)
    records = []
    for label, cls in enumerate(classes):
        records += _limit(_list_busi_class(base, cls, label), cfg.limit_per_class, len(classes))
    source = "synthetic" if (base / SYNTH_MARKER).is_file() else "busi"
    return Listing(records, classes, source, base)


def _present_classes(base: Path, classes: tuple[str, ...]) -> tuple[str, ...]:
    """BUSI's class folders that exist, in BUSI's order: a benign/malignant folder (BUSI-WHU style)
    is a two-class dataset. Fewer than two is an error naming the first missing folder."""
    present = tuple(c for c in classes if (base / c).is_dir())
    missing = [c for c in classes if c not in present]
    if len(present) < 2:
        raise DataError(f"{base / missing[0]}: class folder '{missing[0]}' missing "
                        f"(found only {', '.join(present)})")
    if missing:
        log.warning("%s: no %s folder; classes %s", base, "/".join(missing), ", ".join(present))
    return present


def _list_busi_class(base: Path, cls: str, label: int) -> list[Record]:
    folder = base / cls
    if not folder.is_dir():
        raise DataError(f"{folder}: class folder '{cls}' missing")
    images, masks = [], {}
    for path in image_files(folder):
        match = _MASK_STEM.match(path.stem)
        if match:
            masks.setdefault(match["stem"], []).append(path)
        else:
            images.append(path)
    if not images:
        raise DataError(f"{folder}: class folder '{cls}' has no images")
    records = []
    for image in images:
        own = masks.pop(image.stem, None)
        if not own:
            raise DataError(f"{image}: mask missing (expected {image.stem}_mask{image.suffix})")
        records.append(Record(f"{cls}/{image.name}", image, tuple(own), label))
    for orphans in masks.values():
        log.warning("%s: mask without an image (ignored)", orphans[0])
    return records


# ------------------------------------------------------------------------------------ BUSI-WHU
def list_busi_whu(root: Path, cfg: DataConfig) -> Listing:
    classes = tuple(cfg.classes) if cfg.classes else WHU_CLASSES
    table_path = root / cfg.label_table
    table = _read_label_table(table_path, classes)
    split_dirs = [d for d in WHU_SPLIT_DIRS if (root / d / "img").is_dir()]
    if not split_dirs:
        raise DataError(f"{root}: no BUSI-WHU split folders ({{train,val,test}}/img) found")
    records = []
    for split_dir in split_dirs:
        records += _list_whu_split(root, split_dir, table, table_path)
    records.sort(key=lambda r: (r.label, natural_key(r.name)))
    return Listing(_limit(records, cfg.limit_per_class, len(classes)), classes, "busi_whu", root)


def _read_label_table(path: Path, classes: tuple[str, ...]) -> dict[str, int]:
    """``{image key -> label index}`` from a CSV with columns ``image`` and ``label``."""
    lookup = {c.lower(): i for i, c in enumerate(classes)}
    table = {}
    for line, row in _read_csv(path, ("image", "label")):
        label = row["label"].strip().lower()
        if label not in lookup:
            raise DataError(f"{path} line {line}: unknown label {row['label']!r} "
                            f"(known: {', '.join(classes)})")
        table[row["image"].strip().replace("\\", "/")] = lookup[label]
    return table


def _list_whu_split(root: Path, split_dir: str, table: dict[str, int],
                    table_path: Path) -> list[Record]:
    img_dir, mask_dir = root / split_dir / "img", root / split_dir / "mask"
    if not mask_dir.is_dir():
        raise DataError(f"{mask_dir}: mask folder missing")
    masks = {p.stem: p for p in image_files(mask_dir)}
    records = []
    for image in image_files(img_dir):
        rel = f"{split_dir}/img/{image.name}"
        label = next((table[k] for k in (rel, image.name, image.stem) if k in table), None)
        if label is None:
            raise DataError(f"{image}: no label in {table_path}")
        if image.stem not in masks:
            raise DataError(f"{image}: mask missing (expected {mask_dir / image.stem}.*)")
        records.append(Record(rel, image, (masks[image.stem],), label,
                              WHU_SPLIT_DIRS[split_dir]))
    return records


# ------------------------------------------------------------------------------- CSV manifest
def list_csv(root: Path, cfg: DataConfig) -> Listing:
    path = root if root.is_file() else root / cfg.manifest
    rows = list(_read_csv(path, ("image", "mask", "label")))
    classes = tuple(cfg.classes) if cfg.classes else _classes_found(r["label"] for _, r in rows)
    lookup = {c: i for i, c in enumerate(classes)}
    records = []
    for line, row in rows:
        label = row["label"].strip()
        if label not in lookup:
            raise DataError(f"{path} line {line}: unknown label {label!r} "
                            f"(known: {', '.join(classes)})")
        records.append(_csv_record(path, line, row, lookup[label]))
    records.sort(key=lambda r: (r.label, natural_key(r.name)))
    return Listing(_limit(records, cfg.limit_per_class, len(classes)), classes, "csv",
                   path.parent)


def _classes_found(labels) -> tuple[str, ...]:
    found = {lab.strip() for lab in labels}
    if found <= set(BUSI_CLASSES):
        return tuple(c for c in BUSI_CLASSES if c in found)
    return tuple(sorted(found, key=natural_key))


def _csv_record(path: Path, line: int, row: dict, label: int) -> Record:
    base = path.parent
    image = base / row["image"].strip()
    masks = tuple(base / m.strip() for m in (row["mask"] or "").split(";") if m.strip())
    for mask in masks:
        if not mask.is_file():
            raise DataError(f"{mask}: mask missing (listed for {image.name} in {path.name} "
                            f"line {line})")
    return Record(Path(row["image"].strip()).as_posix(), image, masks, label)


def _read_csv(path: Path, columns: tuple[str, ...]):
    """Yield ``(line number, row dict)``; a missing file or column is a DataError naming it."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            fieldnames = reader.fieldnames or []
            rows = list(reader)
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text (byte 0x{err.object[err.start]:02x} at offset "
                        f"{err.start})") from None
    except csv.Error as err:
        raise DataError(f"{path}: not a readable CSV table ({err})") from None
    missing = [c for c in columns if c not in fieldnames]
    if len(missing) == len(columns):  # e.g. a README passed as the dataset
        raise DataError(f"{path}: not a CSV table with columns {', '.join(columns)} (its first line "
                        f"names none of them)")
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)} "
                        f"(expected {', '.join(columns)})")
    if not rows:
        raise DataError(f"{path}: no rows")
    for i, row in enumerate(rows):
        yield i + 2, {k: (v or "") for k, v in row.items() if k is not None}

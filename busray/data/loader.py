"""``load_dataset``: list a dataset's files, decode and resize them once, cache the tensors.

Decoding 780 BUSI PNGs takes seconds; a sweep starts many trials on the same data, so the decoded
``uint8`` arrays are cached in an ``.npz`` file keyed by a hash of the file list (paths, sizes,
modification times) and the decoding settings. The cache goes to ``data.cache_dir`` if set, else
to the user cache folder ``$XDG_CACHE_HOME/busray`` (``~/.cache/busray``), the place nnU-Net and
Hugging Face users expect: busray never writes into a dataset folder unless ``data.cache_dir`` points
there. If the folder is not writable the cache is skipped with a warning.

While each original is decoded, its near-duplicate hash is taken on a fixed view of it
(:func:`busray.data.dedup.original_hash`) and cached beside the tensors: the split then does not
depend on ``data.image_size``, and no run decodes the dataset a second time to hash it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from busray.data.config import DataConfig
from busray.data.dedup import original_hash
from busray.data.embedded import cache_root, is_embedded, materialize
from busray.data.errors import DataError
from busray.data.images import fit_square, read_gray, read_mask_union
from busray.data.imageset import ImageSet
from busray.data.readers import Listing, Record, list_dataset
from busray.storage import is_bucket, local_copy

log = logging.getLogger(__name__)

CACHE_VERSION = 2   # 2: near-duplicate hashes of the originals cached beside the tensors


def load_dataset(cfg: DataConfig, root: str | Path | None = None) -> ImageSet:
    """Decode the dataset at ``root`` (default ``cfg.root``: a folder, a manifest, ``synthetic:...``, or a
    bucket folder, ``s3://...``, pulled into this machine's cache first) into an :class:`ImageSet`."""
    root = root if root is not None else cfg.root
    if root is None:
        raise DataError("data.root: no dataset folder given (set data.root or pass --data)")
    if is_embedded(root):
        root = materialize(root)
    elif is_bucket(str(root)):  # s3://lab/Dataset_BUSI_with_GT: this node's copy (what changed, once)
        root = local_copy(str(root))
    listing = list_dataset(Path(root).expanduser(), cfg)
    images, masks, hashes = _decoded(listing, cfg)
    ds = ImageSet(images=torch.from_numpy(images), masks=torch.from_numpy(masks), hashes=hashes,
                  labels=torch.tensor([r.label for r in listing.records], dtype=torch.int64),
                  names=[r.name for r in listing.records], class_names=listing.class_names,
                  source=listing.source, root=str(listing.root),
                  preset_split=_preset_split(listing.records))
    log.info("%s", ds.summary())
    return ds


def _preset_split(records: list[Record]) -> list[str] | None:
    if any(r.preset_split is None for r in records):
        return None
    return [r.preset_split for r in records]


def _decoded(listing: Listing, cfg: DataConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``uint8 (N, 1, S, S)`` images and masks and ``bool (N, 64)`` hashes, from the cache when
    it is current."""
    key = cache_key(listing, cfg)
    cached = _find_cache(cfg, key) if cfg.cache else None
    if cached is not None:
        return cached
    decoded = decode_records(listing.records, cfg.image_size, cfg.resize_mode, cfg.decode_workers)
    if cfg.cache:
        _write_cache(cfg, key, *decoded)
    return decoded


def decode_records(records: list[Record], size: int, mode: str,
                   workers: int = 4) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode every record (threads: Pillow releases the GIL while decoding and resizing) into
    images and masks at ``size`` and the near-duplicate hashes of the originals."""
    images = np.empty((len(records), 1, size, size), dtype=np.uint8)
    masks = np.empty_like(images)
    hashes = np.empty((len(records), 64), dtype=bool)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        decoded = pool.map(lambda r: _decode_record(r, size, mode), records)
        for i, (image, mask, bits) in enumerate(decoded):
            images[i, 0], masks[i, 0], hashes[i] = image, mask, bits
    return images, masks, hashes


def _decode_record(rec: Record, size: int, mode: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image and the union of its masks at ``(size, size)``, and the original's hash."""
    original = read_gray(rec.image)
    mask = read_mask_union(list(rec.masks), rec.image, original.shape)
    return (fit_square(original, size, mode, is_mask=False),
            fit_square(mask, size, mode, is_mask=True), original_hash(original))


def cache_key(listing: Listing, cfg: DataConfig) -> str:
    """Hash of the files (path, size, mtime) and of every setting that changes the tensors."""
    files = []
    for rec in listing.records:
        for path in (rec.image, *rec.masks):
            try:
                st = path.stat()
            except OSError:
                raise DataError(f"{path}: file not found") from None
            files.append([str(path), st.st_size, st.st_mtime_ns])
    payload = {"version": CACHE_VERSION, "size": cfg.image_size, "mode": cfg.resize_mode,
               "images": [len(r.masks) for r in listing.records], "files": files}
    return hashlib.sha256(json.dumps(payload).encode()).hexdigest()[:24]


def cache_file(cfg: DataConfig, key: str) -> Path:
    """Where decoded tensors are cached: in ``data.cache_dir``, else in the user cache folder."""
    folder = Path(cfg.cache_dir).expanduser() if cfg.cache_dir else cache_root()
    return folder / f"decoded-{key}.npz"


def _find_cache(cfg: DataConfig, key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    path = cache_file(cfg, key)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            images, masks, hashes = data["images"], data["masks"], data["hashes"]
    except (OSError, ValueError, KeyError):
        log.warning("%s: unreadable cache file, decoding again", path)
        return None
    log.info("decoded images from cache %s", path)
    return images, masks, hashes


def _write_cache(cfg: DataConfig, key: str, images: np.ndarray, masks: np.ndarray,
                 hashes: np.ndarray) -> None:
    path = cache_file(cfg, key)
    tmp = path.with_name(f".decoded-{key}.{os.getpid()}.tmp.npz")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(tmp, images=images, masks=masks, hashes=hashes)
        tmp.replace(path)           # atomic: parallel trials never read half a file
        log.info("cached decoded images in %s", path)
    except OSError as err:
        with contextlib.suppress(OSError):  # e.g. the folder could not be made
            tmp.unlink()
        log.warning("cannot write the decoded-image cache in %s (%s); set data.cache_dir or "
                    "data.cache=false", path.parent, err)

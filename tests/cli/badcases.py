"""Builders of bad input files for the CLI corpus (``tests/cli/test_bad_inputs.py``).

Each writes one broken thing -- an image, a mask, a YAML file, a checkpoint -- and returns its path.
The corpus keeps them tiny, so the whole table runs in seconds.
"""

from __future__ import annotations

import hashlib
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def write_png(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    (Image.fromarray(array, mode) if mode else Image.fromarray(array)).save(path)
    return path


def scan(h: int = 50, w: int = 70, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random((h, w)) * 255).astype(np.uint8)


def png_claiming(path: Path, width: int, height: int) -> Path:
    """A valid PNG signature and IHDR that claim ``width x height``, with one tiny IDAT: a bomb header."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    body = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) \
        + chunk(b"IEND", b"")
    path.write_bytes(body)
    return path


def truncated_png(path: Path) -> Path:
    write_png(path, scan())
    path.write_bytes(path.read_bytes()[:120])
    return path


def float_tiff(path: Path) -> Path:
    Image.fromarray(np.random.default_rng(0).random((20, 30)).astype(np.float32), "F").save(path)
    return path


def busi(root: Path, per_class: int = 4) -> Path:
    """A tiny BUSI-layout dataset (40 x 50 images, 0/255 masks)."""
    for cls in ("normal", "benign", "malignant"):
        for k in range(1, per_class + 1):
            mask = np.zeros((40, 50), np.uint8)
            if cls != "normal":
                mask[10:20, 15:30] = 255
            write_png(root / cls / f"{cls} ({k}).png", scan(40, 50, k))
            write_png(root / cls / f"{cls} ({k})_mask.png", mask)
    return root


def busi_with_mask(root: Path, values: list[int]) -> tuple[Path, str]:
    """The tiny dataset with one benign mask drawn in ``values`` (a label map, unscaled values)."""
    busi(root)
    mask = np.zeros((40, 50), np.uint8)
    for i, value in enumerate(values):
        mask[5 + 8 * i:12 + 8 * i, 10:30] = value
    write_png(root / "benign" / "benign (2)_mask.png", mask)
    return root, "benign (2)_mask.png"


def yaml_bomb(path: Path) -> Path:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        prev, cur = chr(96 + i), chr(97 + i)
        lines.append(f"{cur}: &{cur} [" + ", ".join([f"*{prev}"] * 9) + "]")
    path.write_text("\n".join(lines) + "\n")
    return path


def save_torch(path: Path, payload) -> Path:
    torch.save(payload, path)
    return path


def checkpoint_without(path: Path, source: Path, key: str) -> Path:
    payload = torch.load(source, weights_only=True)
    payload.pop(key)
    return save_torch(path, payload)


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def tree_hash(root: Path) -> str:
    """Hash of every path (folders included) and file content under ``root``."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        digest.update(str(path.relative_to(root)).encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()

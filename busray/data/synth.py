"""A synthetic BUSI-like dataset: speckled B-mode images with benign and malignant lesions.

It writes the BUSI layout (``{normal,benign,malignant}/name.png`` + ``name_mask.png``) plus a
``busray_synth.json`` marker, so every reader, split and training path runs on it unchanged, fast
and without the real data. The images carry the textbook cues a small model can learn quickly:

- background: layered tissue (skin line, undulating fibro-glandular bands, smooth echogenicity
  variation), attenuated with depth (``exp(-a * depth)``), multiplied by speckle whose amplitude is
  Rayleigh distributed (modulus of a smoothed complex gaussian field, grains wider laterally than
  axially), then log-compressed to a 30 dB display range and 8 bits;
- benign: a hypoechoic, homogeneous, smooth ellipse, wider than tall, with posterior acoustic
  enhancement (brighter below);
- malignant: a darker, heterogeneous, irregular and spiculated lesion, often taller than wide,
  with posterior acoustic shadowing (a dark column below it);
- normal: no lesion and an all-zero mask.

Each image is drawn from its own ``SeedSequence`` child of ``seed``, so output is deterministic.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

from busray.data.errors import DataError
from busray.data.readers import BUSI_CLASSES, SYNTH_MARKER

BUSI_RATIO = (133 / 780, 437 / 780, 210 / 780)    # class proportions of the real BUSI
DYNAMIC_RANGE_DB = 30.0                             # displayed range of the log-compressed echo
MIN_SIZE, MAX_SIZE = 32, 4096                       # image side: lesions need room; memory bounded


def synthesize(out_dir: str | Path, n: int = 120, size: int = 128, seed: int = 0,
               class_ratio: tuple[float, float, float] = BUSI_RATIO) -> Path:
    """Write ``n`` images of ``size x size`` in the BUSI layout under ``out_dir``; return it.

    ``class_ratio`` gives the (normal, benign, malignant) proportions (default: BUSI's). The images
    are written to a temp folder beside ``out_dir`` that is renamed into place at the end, so a
    failure (full disk, Ctrl-C) leaves no half-written dataset. A folder from an earlier run is
    replaced; any other non-empty folder (or a file) is refused.
    """
    out = Path(out_dir)
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise DataError(f"{out}: image size {size} is outside [{MIN_SIZE}, {MAX_SIZE}]")
    counts = class_counts(n, class_ratio)
    _check_target(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        _write_images(tmp, counts, size, np.random.SeedSequence(seed).spawn(n))
        info = {"generator": "busray.data.synth", "n": n, "size": size, "seed": seed,
                "class_ratio": list(class_ratio), "counts": dict(zip(BUSI_CLASSES, counts))}
        (tmp / SYNTH_MARKER).write_text(json.dumps(info, indent=1))
        _swap_in(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _write_images(folder: Path, counts: list[int], size: int, seeds: list) -> None:
    index = 0
    for cls, count in zip(BUSI_CLASSES, counts):
        (folder / cls).mkdir()
        for k in range(count):
            image, mask = render(cls, size, np.random.default_rng(seeds[index]))
            index += 1
            Image.fromarray(image).save(folder / cls / f"{cls} ({k + 1}).png")
            Image.fromarray(mask * np.uint8(255)).save(folder / cls / f"{cls} ({k + 1})_mask.png")


def _check_target(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: is a file, not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / SYNTH_MARKER).is_file():
        raise DataError(f"{out}: folder is not empty and not a synthetic dataset; not overwriting")


def _swap_in(tmp: Path, out: Path) -> None:
    """Rename the finished ``tmp`` to ``out``; an earlier synthetic ``out`` is moved aside first."""
    if out.is_dir() and any(out.iterdir()):
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
        os.replace(out, old)
        try:
            os.replace(tmp, out)
        except OSError:
            os.replace(old, out)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


def class_counts(n: int, ratio) -> list[int]:
    """Largest-remainder split of ``n`` by ``ratio``, at least one image per class."""
    ratio = np.asarray(ratio, dtype=np.float64)
    if n < len(BUSI_CLASSES) or len(ratio) != 3 or (ratio <= 0).any():
        raise ValueError(f"synthesize: need n >= 3 and 3 positive class ratios, got n={n}, "
                         f"ratio={tuple(ratio)}")
    exact = n * ratio / ratio.sum()
    counts = np.maximum(np.floor(exact).astype(int), 1)
    while counts.sum() < n:
        counts[np.argmax(exact - counts)] += 1
    while counts.sum() > n:
        counts[np.argmax(counts)] -= 1
    return counts.tolist()


def render(cls: str, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One ``uint8 (size, size)`` image and its ``{0, 1}`` mask for class ``cls``."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float64) / size   # depth y, lateral x in [0, 1)
    echo = _tissue(x, y, rng)
    mask = np.zeros((size, size), dtype=np.uint8)
    if cls != "normal":
        lesion = _benign_shape if cls == "benign" else _malignant_shape
        inside = lesion(x, y, rng)
        echo = _insert_lesion(echo, inside, cls, rng)
        mask = inside.astype(np.uint8)
    echo *= np.exp(-rng.uniform(0.8, 1.4) * y)               # depth attenuation
    amplitude = echo * _speckle(size, rng) + 1e-3
    decibels = 20 * np.log10(amplitude / np.quantile(amplitude, 0.99))
    image = np.clip(1 + decibels / DYNAMIC_RANGE_DB, 0, 1)    # log compression, as scanners do
    return (image * 255).astype(np.uint8), mask


def _tissue(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Echogenicity map of lesion-free tissue, roughly in [0.2, 1]."""
    size = x.shape[0]
    warp = 0.04 * np.sin(2 * np.pi * (rng.uniform(0.5, 1.5) * x + rng.random()))
    bands = 0.12 * np.sin(2 * np.pi * (rng.uniform(4, 8) * (y + warp) + rng.random()))
    blobs = gaussian_filter(rng.standard_normal((size, size)), size / 14)
    blobs *= 0.07 / (blobs.std() + 1e-8)
    skin = 0.5 * np.exp(-((y - 0.03) / 0.012) ** 2)
    return np.clip(0.55 + bands + blobs + skin, 0.15, None)


def _benign_shape(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A smooth ellipse, wider than tall, tilted at most 15 degrees."""
    cx, cy, r = rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.55), rng.uniform(0.08, 0.15)
    a, b = r * rng.uniform(1.2, 1.6), r * rng.uniform(0.65, 0.9)
    t = np.radians(rng.uniform(-15, 15))
    u = (x - cx) * np.cos(t) + (y - cy) * np.sin(t)
    v = -(x - cx) * np.sin(t) + (y - cy) * np.cos(t)
    return (u / a) ** 2 + (v / b) ** 2 <= 1.0


def _malignant_shape(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An irregular, spiculated star shape, stretched vertically (taller than wide)."""
    cx, cy, r0 = rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.55), rng.uniform(0.07, 0.13)
    dx, dy = x - cx, (y - cy) / rng.uniform(1.1, 1.4)
    theta, dist = np.arctan2(dy, dx), np.hypot(dx, dy)
    radius = np.ones_like(theta)
    for k in range(3, 9):                                    # lobulated, irregular margin
        radius += rng.uniform(0.04, 0.1) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    for angle in rng.uniform(-np.pi, np.pi, rng.integers(5, 10)):   # spicules
        gap = np.angle(np.exp(1j * (theta - angle)))
        radius += rng.uniform(0.3, 0.7) * np.exp(-0.5 * (gap / 0.06) ** 2)
    return dist <= r0 * np.clip(radius, 0.4, None)


def _insert_lesion(echo: np.ndarray, inside: np.ndarray, cls: str,
                   rng: np.random.Generator) -> np.ndarray:
    """Darken the lesion and brighten (benign) or shadow (malignant) the tissue below it."""
    size = echo.shape[0]
    soft = gaussian_filter(inside.astype(np.float64), size / 200 if cls == "benign" else 0.5)
    # 1 inside the lesion and everywhere below it in the same column: the posterior region
    below = gaussian_filter(np.maximum.accumulate(soft, axis=0), (0, size / 60))
    below = np.clip(below - soft, 0, 1)
    if cls == "benign":
        lesion_echo = rng.uniform(0.2, 0.3)
        echo = echo * (1 + rng.uniform(0.25, 0.45) * below)
    else:
        lesion_echo = rng.uniform(0.06, 0.12) * (1 + 0.5 * gaussian_filter(
            rng.random((size, size)), size / 64))           # heterogeneous interior
        echo = echo * (1 - rng.uniform(0.4, 0.55) * below)
    return echo * (1 - soft) + lesion_echo * soft


def _speckle(size: int, rng: np.random.Generator) -> np.ndarray:
    """Rayleigh-distributed speckle amplitude with mean 1 (fully developed speckle)."""
    grain = (max(0.5, size / 400), max(1.0, size / 160))     # (axial, lateral) correlation
    real = gaussian_filter(rng.standard_normal((size, size)), grain)
    imag = gaussian_filter(rng.standard_normal((size, size)), grain)
    amplitude = np.hypot(real, imag)
    return amplitude / amplitude.mean()

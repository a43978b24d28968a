"""Decode image and mask files and fit them into the square working size, once.

Images are decoded to 8-bit grayscale (BUSI ships RGB PNGs whose channels are equal except where
annotation marks are drawn; ultrasound is intensity-only). Masks are binarised, several mask files
of one image are merged by union, and both are then resized to ``S x S`` either by stretching or by
letterboxing (scale the longer side to ``S``, centre, zero-pad). Masks are resized bilinearly and
thresholded at 0.5, which gives smoother small lesions than nearest-neighbour subsampling.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from busray.data.errors import DataError

IMAGE_SUFFIXES = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff")


def read_gray(path: Path) -> np.ndarray:
    """Decode ``path`` to a ``uint8 (H, W)`` grayscale array (RGB -> luminance, 16-bit -> 8-bit)."""
    try:
        with Image.open(path) as im:
            im.load()
            return _to_gray_u8(im)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DataError(f"{path}: unreadable or corrupt image ({type(err).__name__})") from None


def _to_gray_u8(im: Image.Image) -> np.ndarray:
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im, dtype=np.float64)
        hi = arr.max() if arr.size and arr.max() > 255 else 255.0
        return np.clip(arr * (255.0 / hi), 0, 255).astype(np.uint8)
    if im.mode == "1":
        return np.asarray(im.convert("L"))
    if im.mode in ("RGBA", "LA", "P", "PA"):
        im = im.convert("RGB")
    return np.asarray(im.convert("L"))


def read_mask_union(paths: list[Path], image_path: Path, shape: tuple[int, int]) -> np.ndarray:
    """Union of the binary mask files of one image, ``uint8 (H, W)`` in {0, 1}.

    An empty ``paths`` gives an all-zero mask (a normal case); every mask must have the image's
    size.
    """
    union = np.zeros(shape, dtype=np.uint8)
    for path in paths:
        mask = read_gray(path)
        if mask.shape != shape:
            raise DataError(f"{path}: mask size {mask.shape[1]}x{mask.shape[0]} differs from its "
                            f"image {image_path.name} ({shape[1]}x{shape[0]})")
        union |= binarize(mask)
    return union


def binarize(mask: np.ndarray) -> np.ndarray:
    """0/1 masks stay as they are, 0/255 (or anti-aliased) masks are thresholded at half range."""
    threshold = 0 if mask.max(initial=0) <= 1 else 127
    return (mask > threshold).astype(np.uint8)


def fit_square(arr: np.ndarray, size: int, mode: str, *, is_mask: bool) -> np.ndarray:
    """Resize ``uint8 (H, W)`` to ``(size, size)`` by ``stretch`` or ``pad`` (letterbox, zeros)."""
    h, w = arr.shape
    if mode == "stretch":
        new_h, new_w = size, size
    elif mode == "pad":
        scale = size / max(h, w)
        new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
    else:
        raise ValueError(f"unknown resize mode {mode!r}")
    resized = _resize(arr, new_w, new_h, is_mask)
    if (new_h, new_w) == (size, size):
        return resized
    out = np.zeros((size, size), dtype=np.uint8)
    top, left = (size - new_h) // 2, (size - new_w) // 2
    out[top:top + new_h, left:left + new_w] = resized
    return out


def _resize(arr: np.ndarray, width: int, height: int, is_mask: bool) -> np.ndarray:
    if arr.shape == (height, width):
        return arr.copy()
    if is_mask:
        # bilinear on 0/255 then threshold at the midpoint: a soft, unbiased down-sampling of 0/1
        img = Image.fromarray(arr * np.uint8(255)).resize((width, height), Image.BILINEAR)
        return (np.asarray(img) >= 128).astype(np.uint8)
    # Pillow's BICUBIC filter widens its support when shrinking, so it antialiases as well
    return np.asarray(Image.fromarray(arr).resize((width, height), Image.BICUBIC))


def load_pair(image_path: Path, mask_paths: list[Path], size: int,
              mode: str) -> tuple[np.ndarray, np.ndarray]:
    """Decode one image with the union of its masks, both resized to ``(size, size)`` uint8."""
    image = read_gray(image_path)
    mask = read_mask_union(mask_paths, image_path, image.shape)
    return (fit_square(image, size, mode, is_mask=False),
            fit_square(mask, size, mode, is_mask=True))

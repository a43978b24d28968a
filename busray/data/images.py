"""Decode image and mask files and fit them into the square working size, once.

Images are decoded to 8-bit grayscale (BUSI ships RGB PNGs whose channels are equal except where
annotation marks are drawn; ultrasound is intensity-only). Masks are binarised, several mask files
of one image are merged by union, and both are then resized to ``S x S`` either by stretching or by
letterboxing (scale the longer side to ``S``, centre, zero-pad). Masks are resized bilinearly and
thresholded at 0.5, which gives smoother small lesions than nearest-neighbour subsampling.

Refused with a :class:`DataError` naming the file, before any pixel is decoded where possible:
a file that is not an image or is truncated; a header claiming more than :data:`MAX_PIXELS` pixels
or a side over :data:`MAX_SIDE` (a decompression bomb: a 40000 x 40000 PNG of a few kB); an empty
image; pixel modes that have no meaningful intensity (32-bit float, HSV/LAB). Accepted modes: 1-bit,
8-bit gray, 16/32-bit integer gray (scaled to 8 bits by the image's maximum when above 255), palette,
RGB(A/X), CMYK, YCbCr (colour -> luminance; alpha is dropped).

**Mask rule.** A lesion mask must be *binary*. The mask's channels are reduced by their maximum (a
coloured outline counts as lesion wherever any channel is non-zero), then:

1. no non-zero pixel: no lesion (a normal case);
2. exactly one non-zero value, whatever it is (1, 100, 255): that value is the lesion;
3. several non-zero values and a maximum of 255 (anti-aliased edges, JPEG noise around a 0/255
   drawing): lesion where the value is >= 128, i.e. half the full 8-bit range;
4. several non-zero values with a maximum below 255 -- a label map (0/1/2), or a drawing with
   unscaled intensities: **refused**, naming the file and the values found, because guessing which
   values are lesion would silently train on wrong ground truth.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from busray.data.errors import DataError

# Pillow *warns* (on stderr) while opening an image of 89-179 Mpx before this module's own header
# check can refuse it; as an error it becomes the one-line DataError below instead.
warnings.filterwarnings("error", category=Image.DecompressionBombWarning)

IMAGE_SUFFIXES = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff")
MAX_SIDE = 16384                 # pixels per side; BUSI scans are ~500, high-end probes < 4096
MAX_PIXELS = 64 * 1024 * 1024    # 64 Mpx: refused from the header, before decoding
_GRAY16 = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_COLOUR = ("RGB", "RGBA", "RGBX", "RGBa", "CMYK", "YCbCr", "LA", "La", "P", "PA")
_ACCEPTED = ("1", "L", *_GRAY16, *_COLOUR)


def read_gray(path: Path) -> np.ndarray:
    """Decode ``path`` to a ``uint8 (H, W)`` grayscale array (RGB -> luminance, 16-bit -> 8-bit)."""
    return _decode(path, _to_gray_u8)


def read_mask_values(path: Path) -> np.ndarray:
    """Decode a mask file to ``uint8 (H, W)``: the maximum over colour channels (see the mask rule)."""
    return _decode(path, _to_mask_u8)


def _decode(path: Path, convert) -> np.ndarray:
    try:
        with Image.open(path) as im:
            _check_header(path, im)
            im.load()
            return convert(im)
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, not an image") from None
    except PermissionError:
        raise DataError(f"{path}: permission denied") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise DataError(f"{path}: image too large (a decompression bomb?)") from None
    except MemoryError:
        raise DataError(f"{path}: out of memory decoding the image") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as err:
        raise DataError(f"{path}: unreadable or corrupt image ({type(err).__name__})") from None


def _check_header(path: Path, im: Image.Image) -> None:
    """Refuse from the header alone: sizes that would exhaust memory, and modes with no intensity."""
    width, height = im.size
    if width < 1 or height < 1:
        raise DataError(f"{path}: empty image ({width}x{height})")
    if width > MAX_SIDE or height > MAX_SIDE or width * height > MAX_PIXELS:
        raise DataError(f"{path}: {width}x{height} pixels is larger than busray accepts "
                        f"({MAX_SIDE} per side, {MAX_PIXELS // 2**20} Mpx; a decompression bomb?)")
    if im.mode not in _ACCEPTED:
        raise DataError(f"{path}: pixel mode {im.mode} is not supported (use 8/16-bit gray or RGB)")


def _to_gray_u8(im: Image.Image) -> np.ndarray:
    if im.mode in _GRAY16:
        return _scale_to_u8(np.asarray(im, dtype=np.float64))
    if im.mode == "1":
        return np.asarray(im.convert("L"))
    if im.mode in ("RGBA", "LA", "P", "PA", "RGBa", "La"):
        im = im.convert("RGB")
    return np.asarray(im.convert("L"))


def _to_mask_u8(im: Image.Image) -> np.ndarray:
    if im.mode in _GRAY16:
        return _scale_to_u8(np.asarray(im, dtype=np.float64))
    if im.mode in ("1", "L"):
        return np.asarray(im.convert("L"))
    if im.mode in ("LA", "La"):
        return np.asarray(im.getchannel("L"))
    rgb = np.asarray(im.convert("RGB"))
    return rgb.max(axis=2)


def _scale_to_u8(arr: np.ndarray) -> np.ndarray:
    hi = arr.max() if arr.size and arr.max() > 255 else 255.0
    return np.clip(arr * (255.0 / hi), 0, 255).astype(np.uint8)


def read_mask_union(paths: list[Path], image_path: Path, shape: tuple[int, int]) -> np.ndarray:
    """Union of the binary mask files of one image, ``uint8 (H, W)`` in {0, 1}.

    An empty ``paths`` gives an all-zero mask (a normal case); every mask must have the image's
    size and follow the mask rule of this module.
    """
    union = np.zeros(shape, dtype=np.uint8)
    for path in paths:
        mask = read_mask_values(path)
        if mask.shape != shape:
            raise DataError(f"{path}: mask size {mask.shape[1]}x{mask.shape[0]} differs from its "
                            f"image {image_path.name} ({shape[1]}x{shape[0]})")
        union |= binarize(mask, path)
    return union


def binarize(mask: np.ndarray, path: Path | str = "mask") -> np.ndarray:
    """``{0, 1}`` lesion mask by the mask rule (module docstring); ambiguous masks are refused."""
    values = np.unique(mask)
    nonzero = values[values > 0]
    if len(nonzero) <= 1:
        return (mask > 0).astype(np.uint8)
    if nonzero[-1] == 255:
        return (mask >= 128).astype(np.uint8)
    shown = ", ".join(str(int(v)) for v in values[:6]) + (", ..." if len(values) > 6 else "")
    raise DataError(f"{path}: not a binary mask (values {shown}; a label map?): busray needs 0 for "
                    f"background and one value (or 255 with anti-aliased edges) for the lesion")


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
    return np.array(Image.fromarray(arr).resize((width, height), Image.BICUBIC))  # writable, unlike asarray

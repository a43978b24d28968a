"""Near-duplicate detection with a perceptual hash (DCT pHash) on the decoded images.

BUSI holds the same scan saved more than once (sometimes with calipers or text drawn on it); a
random image-level split leaks such near-copies between train and test and inflates test scores.
pHash: shrink to 32 x 32 (area average), take the 2-D DCT-II, keep the 8 x 8 lowest frequencies and
set one bit per coefficient above their median -> 64 bits that survive small edits, noise and
rescaling. Two images whose hashes differ in at most ``threshold`` bits are linked; groups are the
connected components of these links (so near-copies of near-copies end up in one group).

The default threshold (``data.near_duplicate_threshold = 6``) was chosen by inspecting real BUSI
pairs at 224 x 224 (letterboxed): pairs at distance <= 6 were the same scan (re-saved, re-cropped or
annotated; one is filed both as "normal (1)" and "benign (269)"), at 8-12 different scans of the
same breast appear. At 6, BUSI has 142 groups covering 320 of its 780 images, and a plain random
70/15/15 split (seed 0) leaves 77 of them straddling splits. (A hash nearly always has 32 bits
set, one per coefficient above the median plus the DC term, so distances come out even.)

**One hash per image, whatever ``data.image_size``.** Every image is hashed on one fixed view of its
decoded original, letterboxed to ``HASH_VIEW_SIZE`` = 224 x 224 (:func:`original_hash`, computed by
the loader while it decodes, cached with the decoded tensors), not on the tensors the run trains on.
Hashing the resized tensors gave different groups at 64, 128 and 224 px, hence three different
grouped splits of BUSI (26 of 116 test images shared by all three). 224 letterboxed is the view the
threshold was chosen on, so a 224 px ``pad`` run's groups, split and split hash are what they were.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from busray.data.images import fit_square

HASH_SIZE = 8          # 8 x 8 = 64 bits
_SHRINK = 32           # DCT input side
HASH_VIEW_SIZE = 224   # side of the fixed letterboxed view of an original that is hashed
HASH_VIEW = f"original letterboxed to {HASH_VIEW_SIZE}x{HASH_VIEW_SIZE}"
"""What ``split.json`` records as ``near_duplicates.hashed_on`` for hashes of :func:`original_hash`."""


def _dct_matrix(n: int) -> np.ndarray:
    """Orthonormal DCT-II matrix ``C`` so that ``C @ x`` transforms the columns of ``x``."""
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    c = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    c[0] /= np.sqrt(2.0)
    return c


def phash(images: torch.Tensor) -> np.ndarray:
    """``uint8 (N, 1, S, S)`` -> ``bool (N, 64)`` perceptual hashes."""
    small = F.adaptive_avg_pool2d(images.float(), _SHRINK)[:, 0].numpy().astype(np.float64)
    c = _dct_matrix(_SHRINK)
    coeffs = (c @ small @ c.T)[:, :HASH_SIZE, :HASH_SIZE]      # 2-D DCT-II of every image
    flat = coeffs.reshape(len(images), -1)
    median = np.median(flat[:, 1:], axis=1, keepdims=True)   # the DC term would skew the median
    return flat > median


def original_hash(gray: np.ndarray) -> np.ndarray:
    """``uint8 (H, W)`` decoded original -> ``bool (64,)``: its pHash on the fixed letterboxed view."""
    view = fit_square(gray, HASH_VIEW_SIZE, "pad", is_mask=False)
    return phash(torch.from_numpy(view)[None, None])[0]


def hamming_matrix(bits: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """Pairwise Hamming distances ``int (N, N)`` of ``bool (N, B)`` hashes, in row chunks."""
    b = bits.astype(np.float32)
    out = np.empty((len(b), len(b)), dtype=np.int32)
    for start in range(0, len(b), chunk):
        rows = b[start:start + chunk]
        out[start:start + chunk] = np.rint(rows @ (1 - b).T + (1 - rows) @ b.T)
    return out


def near_duplicate_groups(hashes: np.ndarray, threshold: int) -> list[list[int]]:
    """Groups (sorted index lists, >= 2 members, ordered by first index) of the images whose
    ``bool (N, 64)`` hashes lie within ``threshold`` bits, linked transitively."""
    if len(hashes) < 2:
        return []
    dist = hamming_matrix(hashes)
    i, j = np.nonzero(np.triu(dist <= threshold, k=1))
    parent = list(range(len(hashes)))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in zip(i.tolist(), j.tolist()):
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    members: dict[int, list[int]] = {}
    for idx in range(len(hashes)):
        members.setdefault(find(idx), []).append(idx)
    return sorted((g for g in members.values() if len(g) > 1), key=lambda g: g[0])

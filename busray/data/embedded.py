"""The embedded default dataset: ``data.root: synthetic`` (or ``synthetic:n=120,size=128,seed=0``).

A fresh machine has no dataset, yet the README's main job and most tests must run. A root of this form
is generated once with :func:`busray.data.synth.synthesize` into the user cache
(``$XDG_CACHE_HOME/busray/synthetic-n<N>-s<SIZE>-seed<SEED>``) and reused afterwards. Generation
writes to a private temp folder that is renamed into place, so concurrent trials (a Ray sweep starting
several at once) never see a half-written dataset: the first rename wins, the others discard theirs.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from busray.data.errors import DataError
from busray.data.readers import SYNTH_MARKER

PREFIX = "synthetic"
DEFAULTS = {"n": 120, "size": 128, "seed": 0}
#: Bounds of ``n`` and ``size`` (those of ``busray data synth``), and of their product: at most
#: :data:`MAX_PIXELS` pixels (4 GiB of 8-bit images, e.g. 65,536 images of 256 x 256), so a typo such as
#: ``n=1000000000`` is refused at once instead of filling memory and disk until the process is killed.
LIMITS = {"n": (12, 100_000), "size": (32, 4096)}
MAX_PIXELS = 2**32


def is_embedded(root: str | Path | None) -> bool:
    return isinstance(root, str) and (root == PREFIX or root.startswith(PREFIX + ":"))


def parse_embedded(root: str) -> dict[str, int]:
    """``'synthetic:n=60,size=64'`` -> ``{'n': 60, 'size': 64, 'seed': 0}``, within :data:`LIMITS` and
    :data:`MAX_PIXELS` (a ``DataError`` naming ``data.root`` otherwise)."""
    params = dict(DEFAULTS)
    spec = root[len(PREFIX) + 1:] if root.startswith(PREFIX + ":") else ""
    for item in filter(None, (part.strip() for part in spec.split(","))):
        key, _, value = item.partition("=")
        if key not in DEFAULTS or not value.strip().isdigit() or len(value.strip()) > 12:
            raise DataError(f"data.root: '{root}': expected synthetic[:n=N,size=S,seed=K], bad item '{item}'")
        params[key] = int(value)
    for key, (low, high) in LIMITS.items():
        if not low <= params[key] <= high:
            raise DataError(f"data.root: '{root}': {key}={params[key]} is outside [{low}, {high:,}]")
    if params["n"] * params["size"] ** 2 > MAX_PIXELS:
        raise DataError(f"data.root: '{root}': n x size x size = {params['n'] * params['size'] ** 2:,} pixels, "
                        f"more than {MAX_PIXELS:,} (4 GiB of images); lower n or size")
    return params


def cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "busray"


def materialize(root: str) -> Path:
    """The folder holding the embedded dataset ``root``, generating it on first use."""
    from busray.data.synth import synthesize

    p = parse_embedded(root)
    target = cache_root() / f"synthetic-n{p['n']}-s{p['size']}-seed{p['seed']}"
    if (target / SYNTH_MARKER).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".synth-", dir=target.parent))
    try:
        synthesize(tmp, n=p["n"], size=p["size"], seed=p["seed"])
        os.rename(tmp, target)
    except OSError:
        if not (target / SYNTH_MARKER).is_file():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target

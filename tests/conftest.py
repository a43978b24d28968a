"""Suite-wide fixtures: an isolated cache folder, and the location of the real BUSI copy.

The embedded synthetic datasets and decoded-image caches go to a per-session ``XDG_CACHE_HOME`` so
tests never depend on (or write to) the user's cache. Ray workers started later inherit it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def busi_root() -> Path | None:
    """``$BUSRAY_BUSI_ROOT`` or ``../shared/data`` beside the checkout (CI lays it there)."""
    env = os.environ.get("BUSRAY_BUSI_ROOT")
    candidate = Path(env) if env else REPO.parent / "shared" / "data"
    return candidate if (candidate / "Dataset_BUSI_with_GT").is_dir() else None


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
    yield
    if old is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = old

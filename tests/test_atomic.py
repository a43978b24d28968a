"""``busray.atomic``: replace-or-nothing writes, and clearing the temp files of killed writers."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from busray.atomic import atomic_write, atomic_writer, remove_stale_temps, temp_name


@pytest.fixture(scope="module")
def dead_pid() -> int:
    """The pid of a process that has exited (reuse within a test run is practically impossible)."""
    out = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                         text=True, check=True)
    return int(out.stdout)


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "metrics.json"
    atomic_write(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_writer(target) as fh:
            fh.write(b"half")
            raise RuntimeError("disk full")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["metrics.json"]


@pytest.mark.parametrize("name, owner, removed", [
    (".history.csv.{pid}.0123abcd.tmp", "dead", True),
    ("checkpoints/.last.pt.{pid}.89abcdef.tmp", "dead", True),
    (".history.csv.{pid}.0123abcd.tmp", "self", False),      # a live writer's file is not touched
    (".notes.tmp", "dead", False),                           # not a name busray's writers make
    ("history.csv.{pid}.0123abcd.tmp", "dead", False),       # not hidden
    (".decoded-{pid}.tmp.npz", "dead", False),
])
def test_remove_stale_temps(tmp_path, dead_pid, name, owner, removed):
    path = tmp_path / name.format(pid=dead_pid if owner == "dead" else os.getpid())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    assert remove_stale_temps(tmp_path) == ([path] if removed else [])
    assert path.exists() != removed


def test_temp_names_are_what_remove_stale_temps_recognises(tmp_path):
    tmp = temp_name(tmp_path / "config.yaml")
    tmp.write_text("x")
    assert remove_stale_temps(tmp_path) == [] and tmp.exists()          # ours: this process is alive

"""``busray.atomic``: replace-or-nothing writes, and clearing the temp files of killed writers."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from busray.atomic import (HOST, atomic_write, atomic_writer, missing_folders, remove_empty_folders,
                           remove_stale_temps, temp_name)


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


@pytest.mark.parametrize("name, hours_old, removed", [
    (".history.csv.{host}.{dead}.0123abcd.tmp", 0, True),            # killed on this host
    ("checkpoints/.last.pt.{host}.{dead}.89abcdef.tmp", 0, True),
    (".history.csv.{host}.{alive}.0123abcd.tmp", 0, False),          # a live writer's file is not touched
    (".history.csv.{host}.{alive}.0123abcd.tmp", 2, True),           # ...unless it is hours old
    (".history.csv.node-b.{dead}.0123abcd.tmp", 0, False),           # another host: its pids mean nothing here
    (".history.csv.node-b.{dead}.0123abcd.tmp", 2, True),
    (".history.csv.{dead}.0123abcd.tmp", 2, True),                   # the older name, without a host
    (".notes.tmp", 2, False),                                        # not a name busray's writers make
    ("history.csv.{host}.{dead}.0123abcd.tmp", 2, False),            # not hidden
    (".decoded-{dead}.tmp.npz", 2, False),
])
def test_remove_stale_temps(tmp_path, dead_pid, name, hours_old, removed):
    path = tmp_path / name.format(host=HOST, dead=dead_pid, alive=os.getpid())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    then = time.time() - hours_old * 3600
    os.utime(path, (then, then))
    assert remove_stale_temps(tmp_path) == ([path] if removed else [])
    assert path.exists() != removed


def test_temp_names_are_what_remove_stale_temps_recognises(tmp_path):
    tmp = temp_name(tmp_path / "config.yaml")
    tmp.write_text("x")
    assert tmp.name.startswith(f".config.yaml.{HOST}.{os.getpid()}.")
    assert remove_stale_temps(tmp_path) == [] and tmp.exists()          # ours: this process is alive


@pytest.mark.parametrize("existing, target, left", [
    ([], "a/b/c.csv", []),                 # every folder on the way was new: all removed
    (["a"], "a/b/c.csv", ["a"]),           # one that existed stays
    (["a/b/keep.txt"], "a/b/c.csv", ["a", "a/b", "a/b/keep.txt"]),
    ([], "run", []),                       # the target itself, when it is a folder
])
def test_folders_a_failed_write_created_are_removed(tmp_path, existing, target, left):
    for name in existing:
        path = tmp_path / name
        if path.suffix:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("x")
        else:
            path.mkdir(parents=True)
    created = missing_folders(tmp_path / target)
    (tmp_path / target).parent.mkdir(parents=True, exist_ok=True)
    if not (tmp_path / target).suffix:
        (tmp_path / target).mkdir()
    remove_empty_folders(created)
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == left

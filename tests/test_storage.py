"""busray.storage against a real S3 server (SeaweedFS): a bucket mirrored by whole files; what one
machine pushes another pulls (tests/results/test_results_bucket.py: the results store in a bucket)."""

from __future__ import annotations

import time

import pyarrow.fs as pafs
import pytest

from busray.configtools import ConfigError
from busray.storage import Storage, cache_folder, check_location


def _bucket_files(uri: str) -> list[str]:
    fs, base = pafs.FileSystem.from_uri(uri)
    infos = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    return sorted(i.path[len(base) + 1:] for i in infos if i.type == pafs.FileType.File)


def _other_machine(monkeypatch, tmp_path, name: str) -> None:
    """Another machine: its own mirror of the bucket."""
    monkeypatch.setenv("BUSRAY_STORAGE_CACHE", str(tmp_path / name))


@pytest.mark.parametrize("text, expected", [
    ("s3://lab/busi/", "s3://lab/busi"), ("gs://lab", "gs://lab"), ("file:///srv/st", "/srv/st"),
    ("/srv/st", "/srv/st"),
])
def test_locations(text, expected):
    assert check_location(text) == expected


@pytest.mark.parametrize("text, message", [
    ("hdfs://nn/x", "is a URI busray cannot store to"), ("s3://", "names no bucket"), ("  ", "empty path"),
])
def test_bad_locations_are_one_line(text, message):
    with pytest.raises(ConfigError, match=f"^--storage: .*{message}"):
        check_location(text)


def test_a_folder_is_used_in_place(tmp_path):
    storage = Storage.at(tmp_path)
    assert not storage.remote and storage.path("a", "b") == tmp_path / "a" / "b"
    assert storage.location("a") == str(tmp_path / "a")
    storage.push("a")  # nothing to sync: a no-op
    storage.pull("a")


def test_what_one_machine_pushes_another_pulls(s3, tmp_path, monkeypatch):
    here = Storage.at(s3)
    run = here.path("sw", "runs", "r1")
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.pt").write_bytes(b"epoch 1")
    (run / "history.csv").write_text("epoch\n1\n")
    (run / ".history.csv.host.1.ab.tmp").write_text("half")  # a writer's temp file is never synced
    here.push("sw", "runs", "r1")
    assert _bucket_files(s3) == ["sw/runs/r1/checkpoints/last.pt", "sw/runs/r1/history.csv"]
    (run / "checkpoints" / "last.pt").write_bytes(b"epoch 2")
    (run / "history.csv").unlink()
    here.push("sw", "runs", "r1")  # the changed file again, the deleted one deleted
    assert _bucket_files(s3) == ["sw/runs/r1/checkpoints/last.pt"]

    _other_machine(monkeypatch, tmp_path, "node-b")
    there = Storage.at(s3)
    assert there.local != here.local and not there.path("sw").exists()
    there.pull("sw", "runs", "r1")
    assert (there.path("sw", "runs", "r1", "checkpoints", "last.pt")).read_bytes() == b"epoch 2"
    there.path("sw", "runs", "r1", "checkpoints", "last.pt").write_bytes(b"epoch 3, not pushed yet")
    there.pull("sw", "runs", "r1")  # a change made here is kept until it is pushed
    assert there.path("sw", "runs", "r1", "checkpoints", "last.pt").read_bytes() == b"epoch 3, not pushed yet"
    assert there.exists("sw", "runs") and not there.exists("nothing")


def test_the_mirror_is_per_machine_and_per_bucket(tmp_path, monkeypatch):
    monkeypatch.setenv("BUSRAY_STORAGE_CACHE", str(tmp_path))
    assert cache_folder("s3://a/x").parent == tmp_path / "storage" and cache_folder("s3://a/x") != cache_folder("s3://a/y")


def test_a_file_pulled_as_it_is_in_the_bucket_is_not_sent_back(s3, tmp_path, monkeypatch):
    """A driver records trials whose run folders it pulled: pushing the folder again sends only what it
    changed, not the trial's checkpoints once more."""
    here = Storage.at(s3)
    here.path("runs", "r1").mkdir(parents=True)
    here.path("runs", "r1", "last.pt").write_bytes(b"x" * 1000)
    here.push("runs")
    fs, base = pafs.FileSystem.from_uri(s3)
    sent = fs.get_file_info(f"{base}/runs/r1/last.pt").mtime
    _other_machine(monkeypatch, tmp_path, "driver")
    there = Storage.at(s3)
    there.pull("runs")
    there.path("runs", "r1", "metrics.json").write_text("{}")
    time.sleep(1.1)  # an object store's times have one-second resolution
    there.push("runs")
    assert fs.get_file_info(f"{base}/runs/r1/last.pt").mtime == sent
    assert _bucket_files(s3) == ["runs/r1/last.pt", "runs/r1/metrics.json"]

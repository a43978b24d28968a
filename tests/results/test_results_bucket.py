"""The results store in a bucket (a real S3 server, SeaweedFS): rows pushed as whole objects, compacted
under the bucket's lease, read back by another machine's mirror and by pandas straight from the bucket."""

from __future__ import annotations

import time

import pandas as pd
import pyarrow.fs as pafs
import pytest

from busray.results import ResultsError, ResultsStore


def _bucket_files(uri: str) -> list[str]:
    fs, base = pafs.FileSystem.from_uri(uri)
    infos = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    return sorted(i.path[len(base) + 1:] for i in infos if i.type == pafs.FileType.File)


def test_a_results_store_in_a_bucket(s3, tmp_path, monkeypatch, make_row):
    store = ResultsStore(s3, auto_compact=3)
    for i in range(4):  # the fourth recorded trial compacts (under the bucket's lease)
        store.record_run(make_row(trial_id=f"t{i}", config={"model": {"tau": 0.1 * i}}), [{"epoch": 1}])
    files = _bucket_files(s3)
    assert any(f.startswith("results/runs/part-") for f in files) and "results/_compact.lease" not in files
    raw = pd.read_parquet(f"{s3}/results/runs")  # a raw reader, straight from the bucket
    assert sorted(raw["trial_id"]) == ["t0", "t1", "t2", "t3"]

    monkeypatch.setenv("BUSRAY_STORAGE_CACHE", str(tmp_path / "laptop"))  # another machine, its own mirror
    elsewhere = ResultsStore(s3)
    assert sorted(elsewhere.runs()["trial_id"]) == ["t0", "t1", "t2", "t3"]
    assert len(elsewhere.epochs()) == 4
    elsewhere.record_run(make_row(trial_id="t4"))
    assert elsewhere.compact().rows["runs"] == 5
    assert sorted(pd.read_parquet(f"{s3}/results/runs")["trial_id"]) == ["t0", "t1", "t2", "t3", "t4"]


def test_a_compaction_lease_held_elsewhere_is_respected(s3, make_row):
    store = ResultsStore(s3)
    store.record_run(make_row(trial_id="t0"))
    store.storage.write_json({"owner": "node-b:42:abcd", "at": time.time()}, "results", "_compact.lease")
    with pytest.raises(ResultsError, match="another machine is compacting it"):
        store.compact()
    assert store.runs()["trial_id"].tolist() == ["t0"]  # and reading is not held up


def test_an_unreadable_file_in_a_bucket_is_moved_aside_there(s3, make_row, capsys):
    store = ResultsStore(s3)
    store.record_run(make_row(trial_id="t0"))
    fs, base = pafs.FileSystem.from_uri(s3)
    with fs.open_output_stream(f"{base}/results/runs/broken.parquet") as out:
        out.write(b"not parquet")
    assert ResultsStore(s3).runs()["trial_id"].tolist() == ["t0"]
    assert "busray: warning: " in capsys.readouterr().err
    files = _bucket_files(s3)
    assert "results/_quarantine/runs/broken.parquet" in files and "results/runs/broken.parquet" not in files
    assert pd.read_parquet(f"{s3}/results/runs")["trial_id"].tolist() == ["t0"]  # raw readers work again


def test_a_compaction_cut_short_while_pushing_is_finished_from_another_machine(s3, tmp_path, monkeypatch,
                                                                             make_row):
    """The intent goes up first: a push cut after the new part leaves what the next opening needs."""
    store = ResultsStore(s3, auto_compact=0)
    for i in range(3):
        store.record_run(make_row(trial_id=f"t{i}"), [{"epoch": 1}])
    pushes, storage_type = [], type(store.storage)
    push = storage_type.push

    def cut_after_the_part(self, *parts):
        pushes.append(parts)
        if len(pushes) == 2:  # the second push (the parts, then the deletions) is cut once the parts are up
            fs, base = self._filesystem()
            for rel in dict(self._local_files("/".join(parts))):
                if "part-" in rel:
                    with open(self.path(rel), "rb") as src, fs.open_output_stream(f"{base}/{rel}") as dst:
                        dst.write(src.read())
            raise KeyboardInterrupt
        return push(self, *parts)
    storage_type.push = cut_after_the_part
    try:
        with pytest.raises(KeyboardInterrupt):
            store.compact()
    finally:
        storage_type.push = push
    assert pushes[0] == ("results", "_compacting.json")
    assert len(pd.read_parquet(f"{s3}/results/runs")) == 6 and "results/_compacting.json" in _bucket_files(s3)
    monkeypatch.setenv("BUSRAY_STORAGE_CACHE", str(tmp_path / "laptop"))  # another machine opens the store
    assert sorted(ResultsStore(s3).runs()["trial_id"]) == ["t0", "t1", "t2"]
    assert len(pd.read_parquet(f"{s3}/results/runs")) == 3 and "results/_compacting.json" not in _bucket_files(s3)

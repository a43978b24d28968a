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

"""A sweep whose storage is a bucket (a real S3 server, SeaweedFS): run as a user runs it, by the CLI
with its own local Ray, its trials are recorded in the bucket -- rows pandas reads from there, run
folders with their checkpoints, TensorBoard runs, the Optuna study -- and another machine (a fresh
mirror) reads the results and a run folder back from the bucket alone."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

import pandas as pd
import pyarrow.fs as pafs
import pytest

from sweephelpers import ROOT, TINY_SPEC

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def _bucket_files(uri: str) -> list[str]:
    fs, base = pafs.FileSystem.from_uri(uri)
    infos = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    return sorted(i.path[len(base) + 1:] for i in infos if i.type == pafs.FileType.File)


def _busray(args: list[str], env: dict, timeout: int = 420) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "-m", "busray", *args], env=env, cwd=ROOT, capture_output=True,
                         text=True, timeout=timeout)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def bucket_sweep(s3_server, synth_root, tmp_path_factory):
    """``busray sweep`` of two tiny trials into ``s3://busray-test/<prefix>`` (its own local Ray)."""
    from s3server import BUCKET

    uri = f"s3://{BUCKET}/sweep-{os.getpid()}"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(s3_server.env, RAY_AUTH_MODE="disabled", PYTHONPATH=str(ROOT),
               BUSRAY_STORAGE_CACHE=str(tmp_path_factory.mktemp("driver-mirror")),
               BUSRAY_RAY_TEMP_DIR=tempfile.mkdtemp(prefix="brs", dir="/tmp"))  # short: Unix socket paths
    args = ["sweep", str(TINY_SPEC), "--storage", uri, "--no-progress", "--set", f"base.data.root={synth_root}",
            "--set", "num_trials=2", "--set", "max_concurrent=1", "--set", "scheduler.type=none",
            "--set", "base.train.epochs=2"]
    try:
        with pytest.MonkeyPatch.context() as patch:  # this process reads the bucket too (pandas, pyarrow)
            for key, value in s3_server.env.items():
                patch.setenv(key, value)
            yield uri, env, _busray(args, env).stdout
    finally:
        shutil.rmtree(env["BUSRAY_RAY_TEMP_DIR"], ignore_errors=True)


def test_the_trials_are_recorded_in_the_bucket(bucket_sweep):
    uri, _, stdout = bucket_sweep
    assert "2 trials (2 completed)" in stdout and f'pd.read_parquet("{uri}/results/runs")' in stdout
    runs = pd.read_parquet(f"{uri}/results/runs")  # a raw reader, from the bucket
    assert len(runs) == 2 and set(runs["status"]) == {"completed"}
    files = _bucket_files(uri)
    for trial_id, run_dir in zip(runs["trial_id"], runs["run_dir"]):
        assert run_dir == f"{uri}/tiny/runs/{trial_id}"
        for name in ("config.yaml", "split.json", "history.csv", "metrics.json", "test_predictions.parquet",
                     "checkpoints/best.pt", "checkpoints/last.pt"):
            assert f"tiny/runs/{trial_id}/{name}" in files, name
        assert any(f.startswith(f"tb/tiny/{trial_id}/events.out.tfevents") for f in files)
    assert {"tiny/sweep.json", "tiny/optuna.journal"} <= set(files)
    assert any(f.startswith("tiny/tune/round-000/") for f in files)  # Ray Tune's own state, in the bucket


def test_another_machine_reads_everything_from_the_bucket(bucket_sweep, tmp_path):
    uri, env, _ = bucket_sweep
    elsewhere = {**env, "BUSRAY_STORAGE_CACHE": str(tmp_path / "laptop")}
    shown = _busray(["results", "show", "tiny", "--storage", uri], elsewhere).stdout
    runs = pd.read_parquet(f"{uri}/results/runs")
    assert all(trial_id in shown for trial_id in runs["trial_id"])
    scored = _busray(["evaluate", runs["run_dir"].iloc[0]], elsewhere).stdout
    assert scored.startswith("scored ") and "seg/iou" in scored

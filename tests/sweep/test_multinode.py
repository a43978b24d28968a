"""A sweep on a real multi-node Ray cluster on one machine (tests/sweep/multinode.py): a head with no
CPUs and two worker nodes, ``a`` and ``b``, each with its own bucket mirror, ``b`` in its own mount
namespace where the driver's storage folder is an empty private folder. Driven as a user drives it, by
the CLI with ``RAY_ADDRESS``:

- a storage folder node ``b`` cannot see is refused before any trial starts, naming ``--storage``;
- with a bucket (a real S3 server) trials run on both workers and every row, run folder and Optuna
  trial agrees, all of it in the bucket, where another machine reads it;
- a worker node killed mid-trial costs nothing: the trial resumes on the other node from the last
  checkpoint it pushed, and is recorded once, with every epoch once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pyarrow.fs as pafs
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from busray.storage import cache_folder
from busray.sweep.cluster import SINGLE_MACHINE_ENV

from multinode import RayNodes, can_unshare
from sweephelpers import ROOT, TINY_SPEC, kill_group

pytestmark = [pytest.mark.ray, pytest.mark.slow]
HIDING = can_unshare()  # root, and a kernel that lets it: node b gets its own mount namespace


@pytest.fixture(scope="module")
def cluster(s3_server, tmp_path_factory):
    shared = tmp_path_factory.mktemp("shared-storage")
    env = {**os.environ, **s3_server.env, "RAY_AUTH_MODE": "disabled", "PYTHONPATH": str(ROOT)}
    env.pop("RAY_ADDRESS", None)
    env.pop(SINGLE_MACHINE_ENV, None)  # set to 0 by a local Ray this pytest worker started: no second node
    nodes = RayNodes(env).start_head()
    try:
        nodes.add_worker("a")
        nodes.add_worker("b", hide=shared if HIDING else None)
        with pytest.MonkeyPatch.context() as patch:  # this process reads the bucket too (pandas, pyarrow)
            for key, value in s3_server.env.items():
                patch.setenv(key, value)
            yield nodes, shared
    finally:
        nodes.stop()


def _driver_env(nodes: RayNodes, tmp_path: Path) -> dict:
    return {**nodes.env, "RAY_ADDRESS": nodes.address, "BUSRAY_STORAGE_CACHE": str(tmp_path / "driver-mirror")}


def _sweep_args(storage: str, synth_root: str, *more: str) -> list[str]:
    args = ["sweep", str(TINY_SPEC), "--storage", storage, "--no-progress", "--set", f"base.data.root={synth_root}",
            "--set", "scheduler.type=none"]
    return [*args, *(a for m in more for a in ("--set", m))]


def _busray(args: list[str], env: dict, timeout: int = 400) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "busray", *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.skipif(not HIDING, reason="needs unshare -m (root) for a node without the storage")
def test_a_storage_a_node_cannot_see_is_refused_at_start(cluster, synth_root, tmp_path):
    nodes, shared = cluster
    out = _busray(_sweep_args(str(shared), synth_root, "num_trials=2"), _driver_env(nodes, tmp_path))
    assert out.returncode == 2, out.stdout[-2000:] + out.stderr[-2000:]
    [line] = out.stderr.strip().splitlines()
    assert line.startswith(f"busray: error: --storage: {shared} is not the same storage on every node: node ")
    assert nodes.node_of("b")[:8] in line and "does not see a file this driver wrote there" in line
    assert "[1/2]" not in out.stdout  # no trial started
    assert not (shared / "results").exists()


def test_trials_run_on_both_workers_and_tell_one_story(cluster, synth_root, tmp_path):
    """Two trials into a bucket at once: both workers train, and the bucket holds what a user
    reads -- rows (pandas from the bucket), run folders with checkpoints, TensorBoard runs, the study,
    Tune's state -- and another machine (a fresh mirror) reads results and a run folder from it alone."""
    nodes, _ = cluster
    from s3server import BUCKET

    uri = f"s3://{BUCKET}/multinode-{os.getpid()}"
    out = _busray(_sweep_args(uri, synth_root, "num_trials=2", "max_concurrent=2", "base.train.epochs=2"),
                  _driver_env(nodes, tmp_path))
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert "2 trials (2 completed)" in out.stdout and f'pd.read_parquet("{uri}/results/runs")' in out.stdout
    runs = pd.read_parquet(f"{uri}/results/runs")
    mirrors = {name: cache_folder(uri, nodes.temp / f"mirror-{name}") for name in ("a", "b")}
    trained_on = {name: {p.parent.name for p in mirror.glob("tiny/runs/*/history.csv")}  # each node trains
                  for name, mirror in mirrors.items()}                                  # in its own mirror
    assert trained_on["a"] and trained_on["b"], trained_on
    assert trained_on["a"] | trained_on["b"] == set(runs["trial_id"])
    assert len(runs) == 2 and set(runs["status"]) == {"completed"}, runs[["trial_id", "status", "error"]]
    files = _bucket_files(uri)
    for trial_id, run_dir in zip(runs["trial_id"], runs["run_dir"]):
        assert run_dir == f"{uri}/tiny/runs/{trial_id}"
        for name in ("config.yaml", "split.json", "history.csv", "metrics.json", "test_predictions.parquet",
                     "checkpoints/best.pt", "checkpoints/last.pt"):
            assert f"tiny/runs/{trial_id}/{name}" in files, name
        assert any(f.startswith(f"tb/tiny/{trial_id}/events.out.tfevents") for f in files)
    assert {"tiny/sweep.json", "tiny/optuna.journal"} <= set(files)
    assert any(f.startswith("tiny/tune/round-000/") for f in files)  # Ray Tune's own state, in the bucket
    study_file = next((tmp_path / "driver-mirror").rglob("optuna.journal"))
    study = optuna.load_study(study_name=runs["sweep_id"].iloc[0],
                              storage=JournalStorage(JournalFileBackend(str(study_file))))
    values = {t.user_attrs["busray_trial_id"]: t.value for t in study.trials}
    assert values == pytest.approx(dict(zip(runs["trial_id"], runs["val/score"])))

    elsewhere = {**nodes.env, "BUSRAY_STORAGE_CACHE": str(tmp_path / "laptop")}  # no Ray, nothing local
    shown = _busray(["results", "show", "tiny", "--storage", uri], elsewhere)
    assert shown.returncode == 0 and all(t in shown.stdout for t in runs["trial_id"]), shown.stderr
    scored = _busray(["evaluate", runs["run_dir"].iloc[0]], elsewhere)
    assert scored.returncode == 0 and scored.stdout.startswith("scored ") and "seg/iou" in scored.stdout


def _bucket_files(uri: str) -> list[str]:
    fs, base = pafs.FileSystem.from_uri(uri)
    infos = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    return sorted(i.path[len(base) + 1:] for i in infos if i.type == pafs.FileType.File)


def test_a_killed_worker_node_costs_no_data(cluster, synth_root, tmp_path):
    """Node a or b dies in epoch 2 of a 4-epoch run; the trial goes on on the other from its epoch-1
    checkpoint (in the bucket), and is recorded once, every epoch once."""
    nodes, _ = cluster
    from s3server import BUCKET

    uri = f"s3://{BUCKET}/killed-{os.getpid()}"
    args = _sweep_args(uri, synth_root, "num_trials=1", "max_concurrent=1", "base.train.epochs=4",
                       "base.train.steps_per_epoch=6")
    driver = subprocess.Popen([sys.executable, "-m", "busray", *args], env=_driver_env(nodes, tmp_path), cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        victim, started_at = _wait_for_a_pushed_checkpoint(nodes, driver, uri)
        nodes.kill(victim)
        stdout, stderr = driver.communicate(timeout=400)
    finally:
        kill_group(driver.pid)
    assert driver.returncode == 0, stdout[-2000:] + stderr[-3000:]
    [row] = pd.read_parquet(f"{uri}/results/runs").to_dict("records")
    assert row["status"] == "completed" and row["epochs_run"] == 4, row["error"]
    # resumed, not started again: the run keeps the start time its checkpoint carries
    assert pd.Timestamp(row["started_at"]) == pd.Timestamp(started_at)
    epochs = pd.read_parquet(f"{uri}/results/_epochs")
    assert sorted(epochs["epoch"]) == [1, 2, 3, 4]  # nothing lost, nothing doubled
    history = _bucket_text(f"{uri}/tiny/runs/{row['trial_id']}/history.csv").splitlines()
    assert [line.split(",")[0] for line in history[1:]] == ["1", "2", "3", "4"]


def _bucket_text(uri: str) -> str:
    fs, path = pafs.FileSystem.from_uri(uri)
    with fs.open_input_stream(path) as src:
        return src.read().decode()


def _wait_for_a_pushed_checkpoint(nodes: RayNodes, driver: subprocess.Popen, uri: str,
                                  timeout: float = 300) -> tuple[str, str]:
    """(the worker node training the trial, the run's start time) once its first checkpoint is in the bucket."""
    fs, base = pafs.FileSystem.from_uri(uri)
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert driver.poll() is None, driver.communicate()
        pushed = [i.path for i in fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
                  if i.path.endswith("checkpoints/last.pt")]
        for name in ("a", "b") if pushed else ():  # the node whose mirror of this bucket holds the run
            outcome = list(cache_folder(uri, nodes.temp / f"mirror-{name}").rglob("metrics.json"))
            if outcome:
                return name, json.loads(outcome[0].read_text())["started_at"]
        time.sleep(0.3)
    raise TimeoutError("no trial pushed a checkpoint")

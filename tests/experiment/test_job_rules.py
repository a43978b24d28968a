"""Under ``ray job submit`` (Ray's job supervisor sets RAY_JOB_CONFIG_JSON_ENV_VAR for the entrypoint, which
runs in Ray's unpacked copy of --working-dir): nothing lands in, or is read from, Ray's temporary tree."""

from __future__ import annotations

from pathlib import Path

import pytest

from busray.configtools import ConfigError
from busray.experiment import load_sweep_spec, resolve_storage
from busray.experiment.storage import JOB_ENV

TINY = Path(__file__).parents[1] / "sweep" / "fixtures" / "tiny.yaml"


@pytest.fixture
def in_a_job(monkeypatch, tmp_path):
    monkeypatch.setenv(JOB_ENV, '{"runtime_env": {}}')
    monkeypatch.chdir(tmp_path)  # the job's working dir
    (tmp_path / "data" / "busi").mkdir(parents=True)
    return tmp_path


@pytest.mark.parametrize("storage", [None, "store", "runs/store"])
def test_a_relative_or_default_storage_is_refused_in_a_job(in_a_job, storage):
    with pytest.raises(ConfigError, match=r"^--storage: '.+' is relative, and under ray job submit it would land "
                                          r"in Ray's temporary copy of the working folder"):
        resolve_storage(storage)


@pytest.mark.parametrize("storage", ["/srv/busray", "s3://lab/busray"])
def test_an_absolute_or_bucket_storage_is_taken(in_a_job, storage):
    assert resolve_storage(storage).uri == storage


def test_outside_a_job_a_relative_storage_is_the_working_folders(monkeypatch, tmp_path):
    monkeypatch.delenv(JOB_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert resolve_storage("store").uri == str(tmp_path / "store")


def test_a_data_root_outside_the_working_dir_is_refused_in_a_job(in_a_job):
    with pytest.raises(ConfigError, match=r"^--set base.data.root=../elsewhere: base.data.root: '../elsewhere' is "
                                          r"relative and outside the "
                                          r"job's --working-dir"):
        load_sweep_spec(TINY, ["base.data.root=../elsewhere"])


def test_a_data_root_uploaded_with_the_job_is_found(in_a_job):
    spec = load_sweep_spec(TINY, ["base.data.root=data/busi"])
    assert spec.base["data"]["root"] == str(in_a_job / "data" / "busi")

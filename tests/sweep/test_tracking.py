"""``tracking:`` in a sweep file: typed sections, Ray's logger callbacks built from them, a one-line error
for a missing package; and (Ray) a 1-trial sweep read back from a local MLflow file store."""

from __future__ import annotations

import os
import sys
import types

import pytest

from busray.configtools import ConfigError, apply_overrides, from_dict
from busray.experiment.tracking import TrackingSpec, check_installed, is_file_store
from busray.sweep.trackers import tracker_callbacks



def _spec(raw: dict | None = None, overrides=()) -> TrackingSpec:
    return from_dict(TrackingSpec, apply_overrides({"tracking": raw or {}}, overrides)["tracking"], "tracking.")


@pytest.mark.parametrize("raw, overrides, active", [
    ({}, (), []),
    ({"mlflow": {}}, (), ["mlflow"]),
    ({"mlflow": {"tracking_uri": "file:///tmp/x"}, "wandb": {"project": "p"}}, (), ["mlflow", "wandb"]),
    ({}, ["tracking.mlflow.experiment_name=busi"], ["mlflow"]),                # --set turns it on
    ({"wandb": {}}, ["tracking.wandb.enabled=false"], []),                     # and off again
])
def test_a_given_section_turns_its_tracker_on(raw, overrides, active):
    assert _spec(raw, overrides).active == active


@pytest.mark.parametrize("raw, message", [
    ({"mlflow": {"uri": "x"}}, "unknown config key 'tracking.mlflow.uri'"),
    ({"wandb": {"mode": "cloud"}}, "tracking.wandb.mode: 'cloud' is not one of"),
    ({"neptune": {}}, "unknown config key 'tracking.neptune'"),
])
def test_mistakes_name_the_key(raw, message):
    with pytest.raises(ConfigError, match=message):
        _spec(raw)


@pytest.fixture
def fake_mlflow(monkeypatch):
    """An importable ``mlflow`` module: Ray's callback only imports it when built (logging needs the real one)."""
    monkeypatch.setitem(sys.modules, "mlflow", types.ModuleType("mlflow"))
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)


def test_mlflow_callback_is_built_from_the_spec(fake_mlflow):
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    spec = _spec({"mlflow": {"tracking_uri": "file:///tmp/mlruns", "tags": {"lab": "us"}}})
    [callback] = tracker_callbacks(spec, "tau_sweep", tags={"busray.sweep_id": "tau_sweep-1"})
    assert isinstance(callback, MLflowLoggerCallback)
    assert (callback.tracking_uri, callback.experiment_name) == ("file:///tmp/mlruns", "tau_sweep")
    assert callback.tags == {"busray.sweep": "tau_sweep", "busray.sweep_id": "tau_sweep-1", "lab": "us"}
    assert os.environ["MLFLOW_ALLOW_FILE_STORE"] == "true"     # MLflow 3 refuses a file store otherwise


def test_wandb_callback_is_built_from_the_spec(monkeypatch):
    import ray.air.integrations.wandb as ray_wandb

    monkeypatch.setitem(sys.modules, "wandb", types.ModuleType("wandb"))
    monkeypatch.setattr(ray_wandb, "wandb", sys.modules["wandb"])  # Ray checks its own import of wandb
    spec = _spec({"wandb": {"entity": "lab", "mode": "offline", "tags": ["busi"], "excludes": ["lr"]}})
    [callback] = tracker_callbacks(spec, "tau_sweep")
    assert isinstance(callback, ray_wandb.WandbLoggerCallback)
    assert (callback.project, callback.group, callback.excludes) == ("tau_sweep", "tau_sweep", ["lr"])
    assert callback.kwargs == {"tags": ["busi", "busray.sweep=tau_sweep"], "mode": "offline", "entity": "lab"}


def test_no_tracker_no_callback_and_no_import(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)             # not installed, and not needed
    assert tracker_callbacks(_spec(), "s") == []
    check_installed(_spec())


@pytest.mark.parametrize("section", ["mlflow", "wandb"])
def test_missing_package_is_one_line_naming_the_section(monkeypatch, section):
    monkeypatch.setitem(sys.modules, section, None)              # as if not installed
    spec = _spec({section: {}})
    for call in (lambda: check_installed(spec), lambda: tracker_callbacks(spec, "s")):
        with pytest.raises(ConfigError) as err:
            call()
        assert str(err.value) == (f"tracking.{section}: the '{section}' package is not installed "
                                  f"(pip install 'busray[{section}]', or remove tracking.{section})")


@pytest.mark.parametrize("uri, file_store", [
    ("file:///home/me/mlruns", True), ("mlruns", True), ("/abs/mlruns", True),
    ("http://localhost:5000", False), ("sqlite:///mlflow.db", False), ("databricks", False),
])
def test_file_store_detection(uri, file_store):
    assert is_file_store(uri) == file_store

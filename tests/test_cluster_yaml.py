"""cluster.yaml is a valid Ray cluster-launcher config (checked with the schema and the checks Ray ships),
and every preset's trial shape is placeable on its node types (the pre-flight a sweep runs)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = Path(ray.__file__).parent / "autoscaler" / "ray-schema.json"


def _load() -> dict:
    return yaml.safe_load((ROOT / "cluster.yaml").read_text())


def test_cluster_yaml_matches_ray_schema():
    jsonschema.validate(_load(), json.loads(SCHEMA.read_text()))


def test_rays_own_autoscaler_checks_accept_it():
    """What `ray up` runs on it (plain validate_config on the raw file fails on 'cluster_synced_files')."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(_load()))


def test_cluster_has_cpu_head_gpu_workers_and_installs_busray_on_python_311():
    cfg = _load()
    types = cfg["available_node_types"]
    head = types[cfg["head_node_type"]]
    assert "GPU" not in head["resources"] and head["resources"]["busray_trial_slot"] >= 1
    assert any(t["resources"].get("GPU", 0) >= 1 and t["max_workers"] > 0 for t in types.values())
    setup = " ".join(cfg["setup_commands"])
    assert "python3.11 -m venv" in setup and "~/venv/bin/python -m pip install -e /home/ubuntu/busray" in setup
    assert "busray_trial_slot" in " ".join(cfg["head_start_ray_commands"])
    starts = cfg["head_start_ray_commands"] + cfg["worker_start_ray_commands"]
    assert all("~/venv/bin/ray" in cmd for cmd in starts)  # Ray from busray's Python, not the AMI's


def test_the_python_busray_asks_for_is_the_one_its_pins_need():
    text = (ROOT / "pyproject.toml").read_text()
    assert 'requires-python = ">=3.11"' in text


PRESETS = sorted([*(ROOT / "sweeps").glob("*.yaml"), *(ROOT / "ablations").glob("*.yaml")])


@pytest.mark.parametrize("path", PRESETS, ids=[p.name for p in PRESETS])
def test_every_presets_trials_are_placeable_on_its_node_types(path):
    """With only the head up (GPU workers at min_workers 0), a preset is not refused: the driver waits
    for the autoscaler to start workers whose node type holds its trials (packed fractional-GPU trials
    and 2-worker DDP trials included)."""
    from busray.experiment import load_ablation_spec, load_sweep_spec
    from busray.sweep.cluster import node_types_of
    from busray.sweep.placement import check_resources

    kind = yaml.safe_load(path.read_text()).get("kind")
    overrides = ["base.data.root=synthetic", "base.model.weights=none"]
    spec = load_ablation_spec(path, overrides) if kind == "ablation" else load_sweep_spec(path, overrides)
    counts = spec.worker_counts() if kind != "ablation" else [spec.resources.workers]
    cfg = _load()
    head = cfg["available_node_types"][cfg["head_node_type"]]["resources"]
    note = check_resources(spec.resources, counts, [head], node_types_of(cfg))
    needs_gpu = spec.resources.gpus_per_worker > 0
    assert (note is not None) == (needs_gpu or spec.resources.cpus_per_worker > 0), note
    if note:
        assert "waiting for the autoscaler" in note and "worker_gpu" in note


@pytest.mark.parametrize("breakage", [
    lambda c: c.pop("provider"),
    lambda c: c["available_node_types"]["worker_gpu"].pop("node_config"),
    lambda c: c["available_node_types"]["worker_gpu"]["resources"].update(GPU=0.5),
    lambda c: c.update(setup_commands="pip install busray"),
])
def test_schema_rejects_broken_variants(breakage):
    cfg = _load()
    breakage(cfg)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(cfg, json.loads(SCHEMA.read_text()))


def test_cluster_uses_token_auth_and_keeps_the_dashboard_on_loopback():
    cfg = _load()
    starts = cfg["head_start_ray_commands"] + cfg["worker_start_ray_commands"]
    assert all("RAY_AUTH_MODE=token" in cmd for cmd in starts if "ray start" in cmd)
    assert any("--dashboard-host=127.0.0.1" in cmd for cmd in cfg["head_start_ray_commands"])
    assert any(target.endswith(".ray/auth_token") for target in cfg["file_mounts"])

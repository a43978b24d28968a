"""cluster.yaml is a valid Ray cluster-launcher config (checked with the schema Ray ships)."""

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


def test_cluster_has_cpu_head_gpu_workers_and_installs_busray():
    cfg = _load()
    types = cfg["available_node_types"]
    head = types[cfg["head_node_type"]]
    assert "GPU" not in head["resources"] and head["resources"]["busray_trial_slot"] >= 1
    assert any(t["resources"].get("GPU", 0) >= 1 and t["max_workers"] > 0 for t in types.values())
    assert any("pip install" in c and "busray" in c for c in cfg["setup_commands"])
    assert "busray_trial_slot" in " ".join(cfg["head_start_ray_commands"])


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

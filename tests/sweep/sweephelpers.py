"""Helpers shared by the sweep tests (a plain module: test files must not import conftest)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures"
TINY_SPEC = FIXTURES / "tiny.yaml"


def tiny_ablation(root: str, name: str, variants: dict, resources: dict | None = None, **more) -> dict:
    """An ablation (a dict of a file's shape) on the fixture sweep's base config, one seed per variant."""
    from busray.configtools import load_yaml

    base = load_yaml(TINY_SPEC)["base"]
    base["data"]["root"] = root
    return {"kind": "ablation", "name": name, "base": base, "variants": variants, "seeds": [0],
            "resources": resources or {}, **more}


# ---------------------------------------------------------------- the CLI as a subprocess driver
ROOT = Path(__file__).resolve().parents[2]


def cli_env() -> dict:
    """The environment of a ``python -m busray`` subprocess that drives this session's local Ray
    (``RAY_ADDRESS``, as a driver of a running cluster does)."""
    import ray

    return {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_ADDRESS": ray.get_runtime_context().gcs_address,
            "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def interrupt_once_training(cmd: list[str], runs: Path) -> str:
    """Run ``cmd``, SIGINT it once a run under ``runs`` has trained an epoch; return its stdout
    (after checking it exited 130)."""
    driver = subprocess.Popen(cmd, env=cli_env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, start_new_session=True)
    try:
        deadline = time.time() + 300
        while not a_run_is_training(runs) and time.time() < deadline:
            assert driver.poll() is None, "it ended before it could be interrupted"
            time.sleep(0.2)
        driver.send_signal(signal.SIGINT)
        out, err = driver.communicate(timeout=120)
    finally:
        kill_group(driver.pid)
    assert driver.returncode == 130, err[-3000:]
    return out


def a_run_is_training(runs: Path) -> bool:
    """Whether a run folder under ``runs`` says ``running`` and has an epoch in its history."""
    from busray.runfolder import RunFolder

    for folder in runs.glob("*"):
        try:
            status = json.loads((folder / "metrics.json").read_text())["status"]
        except (OSError, ValueError, KeyError):
            continue
        if status == "running" and len(RunFolder(folder).read_history()) >= 1:
            return True
    return False


def kill_group(pid: int) -> None:
    """SIGKILL the process group of ``pid`` (whatever a killed driver had started)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


# ---------------------------------------------------------------- records against config.yaml
def config_differences(row: dict, config_yaml) -> dict:
    """``{key: (config.yaml's value, the row's)}`` for every key of a run's config.yaml the store row
    (a pandas row: nulls read as NaN/None, lists as arrays) does not hold as it is."""
    from busray.configtools import flatten, load_yaml

    def same(stored, value) -> bool:
        if isinstance(value, list):
            return stored is not None and list(stored) == value
        if value is None:
            return stored is None or stored != stored  # None or NaN
        return stored == value

    config = flatten(load_yaml(config_yaml))
    assert len(config) > 80, config_yaml  # the whole config, not a handful of keys
    return {k: (v, row[k]) for k, v in config.items() if not same(row[k], v)}

"""Helpers shared by the sweep tests (a plain module: test files must not import conftest)."""

from __future__ import annotations

from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures"
TINY_SPEC = FIXTURES / "tiny.yaml"


def tiny_run_config(root: str, **train) -> dict:
    """The fixture sweep's base config as a run config (for run_configs)."""
    from busray.configtools import load_yaml

    base = load_yaml(TINY_SPEC)["base"]
    base["data"]["root"] = root
    base["train"].update(train)
    return base

"""Shared helpers for the results-store tests: a store in tmp_path and a run-row factory."""

from __future__ import annotations

import pytest

from busray.results import ResultsStore, build_run_row


def build_row(sweep: str = "demo", sweep_id: str = "demo-1", trial_id: str = "t0",
             config: dict | None = None, seed: int = 0, status: str = "completed",
             val: dict | None = None, **fields) -> dict:
    """A run row as the sweep layer would build it, with small defaults."""
    config = config if config is not None else {"model": {"tau": 0.5}, "loss": {"w_seg": 0.5}}
    val = val if val is not None else {"seg/iou": 0.5, "clf/acc": 0.8}
    return build_run_row(sweep=sweep, sweep_id=sweep_id, trial_id=trial_id, config=config,
                         seed=seed, status=status, val=val, **fields)


@pytest.fixture
def store(tmp_path) -> ResultsStore:
    return ResultsStore(tmp_path / "storage")


@pytest.fixture
def make_row():
    """The :func:`build_row` factory (a fixture, so test files need no conftest import)."""
    return build_row

"""Shared helpers for the results-store tests: a store in tmp_path and a run-row factory."""

from __future__ import annotations

import pytest

from busray.results import ResultsStore, RunIdentity, run_row
from busray.runfolder import RunOutcome


def build_row(sweep: str = "demo", sweep_id: str = "demo-1", trial_id: str = "t0",
              config: dict | None = None, seed: int | None = 0, status: str = "completed",
              val: dict | None = None, variant: str | None = None, objective: str | None = None,
              **outcome) -> dict:
    """A run row as the sweep layer builds it (``run_row``), with small defaults.

    ``outcome`` holds further :class:`RunOutcome` fields (``test``, ``best_epoch``, ``error``...).
    """
    config = config if config is not None else {"model": {"tau": 0.5}, "loss": {"w_seg": 0.5}}
    val = val if val is not None else {"seg/iou": 0.5, "clf/acc": 0.8}
    outcome.setdefault("best_epoch", 1 if status != "failed" else 0)
    return run_row(RunIdentity(sweep, sweep_id, trial_id, variant, seed, objective), config,
                   RunOutcome(status=status, val=val, **outcome))


@pytest.fixture
def store(tmp_path) -> ResultsStore:
    return ResultsStore(tmp_path / "storage")


@pytest.fixture(scope="session")
def make_row():
    """The :func:`build_row` factory (a fixture, so test files need no conftest import)."""
    return build_row

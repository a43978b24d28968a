"""What a results row holds and the one function that makes it: ``run_row(identity, config, outcome)``.

A *run row* describes one trial (one training run) of a sweep or ablation: its identity
(:class:`RunIdentity`), the full resolved config flattened into one column per key, and what the
run produced (a :class:`busray.runfolder.RunOutcome`: status, best epoch, the best epoch's
validation metrics and the test metrics, timing). Columns and types are declared in
:mod:`busray.results.columns`; :func:`run_row` returns a dict with exactly those columns, ``extra``
holding (as JSON) any key the schema does not declare, so nothing a run reports is dropped.

The trial key is a stable hash of the resolved config and the seed, so the same experiment gets
the same key in every sweep, on every machine and in every Python process: resumed sweeps and
ablations ask the store whether a key is already done instead of re-running it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from busray.configtools import flatten
from busray.results.columns import (
    CONFIG_COLUMNS, EXTRA, FIXED_COLUMNS, METRIC_COLUMNS, RUN_SCHEMA, SCHEMA_VERSION, VERSION,
    is_config_column)
from busray.runfolder import RunOutcome, utc_now

#: Statuses a stored trial can have (a run folder's ``running`` is never recorded).
STATUSES = ("completed", "failed", "stopped_early")


class ResultsError(ValueError):
    """Bad input to the results store; ``str(err)`` is one line naming the sweep/column/file."""


@dataclass(frozen=True)
class RunIdentity:
    """Which trial a row belongs to. ``objective`` is the sweep's ``Objective.label()``."""
    sweep: str
    sweep_id: str
    trial_id: str
    variant: str | None = None
    seed: int | None = None
    objective: str | None = None


def trial_key(config: Mapping[str, Any], seed: int | None) -> str:
    """A 16-hex-digit SHA-256 prefix of the flattened config plus the seed.

    Nested (``{'model': {'tau': 0.5}}``) and flat (``{'model.tau': 0.5}``) forms of one config give
    the same key, as do tuples and lists. Pass the *resolved* config without per-run paths (run
    folder, storage), or every run gets a new key.
    """
    payload = {"config": flatten(dict(config)), "seed": seed}
    text = json.dumps(payload, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_row(identity: RunIdentity, config: Mapping[str, Any], outcome: RunOutcome) -> dict[str, Any]:
    """The store row of one trial: every column of ``RUN_SCHEMA``, in order, plus ``extra``.

    ``config`` is the resolved config, nested or flat. Values are checked when the row is written
    (``ResultsStore.record_run``); timestamps are ISO strings (UTC when they carry no offset).
    """
    flat = flatten(dict(config))
    finished = outcome.finished_at or utc_now()
    row: dict[str, Any] = {
        "sweep": identity.sweep, "sweep_id": identity.sweep_id, "trial_id": str(identity.trial_id),
        "trial_key": trial_key(flat, identity.seed), "variant": identity.variant,
        "seed": identity.seed, "status": outcome.status, "error": outcome.error,
        "objective": identity.objective, "dataset": outcome.dataset or None,
        "split_hash": outcome.split_hash or None,
        "best_epoch": outcome.best_epoch if outcome.best_epoch > 0 else None,  # 0: no epoch
        "epochs_run": outcome.epochs_run, "early_stopped": outcome.early_stopped,
        "wall_time_s": outcome.wall_time_s, "device": outcome.device or None,
        "busray_version": busray_version(), "git_rev": git_revision(),
        "started_at": outcome.started_at or None, "finished_at": finished,
        "run_dir": None if outcome.run_dir is None else str(outcome.run_dir),
    }
    row.update({key: flat.get(key) for key in CONFIG_COLUMNS})
    metrics = outcome.metric_columns()
    row.update({column: metrics.get(column) for column in METRIC_COLUMNS})
    extra = {k: v for k, v in {**flat, **metrics}.items() if k not in RUN_SCHEMA.names}
    row[EXTRA] = json.dumps(extra, sort_keys=True, default=str) if extra else None
    row[VERSION] = SCHEMA_VERSION
    return row


def config_columns(columns: list[str]) -> list[str]:
    """The flattened-config columns among ``columns`` (declared ones and expanded extras)."""
    return [c for c in columns if c not in FIXED_COLUMNS and is_config_column(c)]


def in_store_order(keys: list[str]) -> list[str]:
    """``keys`` in the order of the store's columns (model, loss, data, train, resources; keys the
    schema does not declare last): the order ``results show`` and a sweep's summary print them in."""
    position = {name: i for i, name in enumerate(RUN_SCHEMA.names)}
    return sorted(keys, key=lambda key: position.get(key, len(position)))


# ------------------------------------------------------------------------------- provenance
def busray_version() -> str:
    """``busray.__version__``, else the installed distribution's version, else ``0+unknown``."""
    try:
        import busray
        version = getattr(busray, "__version__", None)
        if version:
            return str(version)
    except ImportError:
        pass
    try:
        from importlib.metadata import PackageNotFoundError, version as dist_version
        return dist_version("busray")
    except (ImportError, PackageNotFoundError):
        return "0+unknown"


@functools.lru_cache(maxsize=1)
def git_revision() -> str | None:
    """The checkout's ``git rev-parse HEAD`` (best effort, 2 s); None outside a git work tree."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                             text=True, timeout=2, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    rev = out.stdout.strip()
    return rev if out.returncode == 0 and rev else None

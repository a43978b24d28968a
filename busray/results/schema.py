"""What a results row holds: the column names, the trial key, and how a row is assembled.

A *run row* describes one trial (one training run) of a sweep or ablation. Its fixed columns are
listed in :data:`RUN_COLUMNS`; around them sit the flattened config (``model.tau``,
``loss.w_seg``, ... one column per key, ablation switches included), the best validation metrics
(``val/<metric>``) and the final test metrics (``test/<metric>``), using the metric keys of
``busray.metrics`` (``seg/iou``, ``clf/acc``, ...). An *epoch row* holds one epoch of one trial:
the identity columns of :data:`EPOCH_KEY_COLUMNS`, ``epoch`` and whatever the trainer reported
(``train/<loss term>``, ``val/<metric>``, ``lr``, ...).

The trial key is a stable hash of the resolved config and the seed, so the same experiment gets
the same key in every sweep, on every machine and in every Python process: resumed sweeps and
ablations ask the store whether a key is already done instead of re-running it.

Beyond the issue's column list this module adds one optional column, ``objective`` (for example
``"val/seg/iou:max,val/clf/acc:max"``): the sweep's metric(s) and mode(s), so ``results list``
and ``results show`` can rank a sweep's trials without the sweep file at hand.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import math
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from busray.configtools import flatten

SCHEMA_VERSION = 1
STATUSES = ("completed", "failed", "stopped_early")

#: Identity columns every row carries; they also name the columns copied onto epoch rows.
EPOCH_KEY_COLUMNS = ("sweep", "sweep_id", "trial_id", "trial_key", "variant", "seed")
REQUIRED_RUN_COLUMNS = ("sweep", "sweep_id", "trial_id", "trial_key", "status")

#: Fixed run columns in display order; config and metric columns are placed between them.
RUN_COLUMNS = (
    "sweep", "sweep_id", "trial_id", "trial_key", "variant", "seed", "status", "error",
    "objective", "dataset", "split_hash", "best_epoch", "wall_time_s", "device",
    "busray_version", "git_rev", "started_at", "finished_at", "run_dir", "schema_version",
)
METRIC_PREFIXES = ("val/", "test/")


class ResultsError(ValueError):
    """Bad input to the results store; ``str(err)`` is one line naming the sweep/column/file."""


def trial_key(config: Mapping[str, Any], seed: int | None) -> str:
    """A 16-hex-digit SHA-256 prefix of the flattened config plus the seed.

    Nested (``{'model': {'tau': 0.5}}``) and flat (``{'model.tau': 0.5}``) forms of one config give
    the same key, as do tuples and lists. Pass the *resolved* config without per-run paths (run
    folder, storage), or every run gets a new key.
    """
    payload = {"config": flatten(dict(config)), "seed": seed}
    text = json.dumps(payload, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def fit_fields(result: Any) -> dict[str, Any]:
    """The run-row fields of a ``FitResult`` (attributes) or a run folder's ``metrics.json`` dict.

    Returns keyword arguments for :func:`build_run_row`: status, error, best_epoch, val, test and,
    where the source has them, wall_time_s, device, run_dir, dataset, split_hash.
    """
    get = result.get if isinstance(result, Mapping) else (lambda k: getattr(result, k, None))
    fields = {
        "status": get("status"), "error": get("error"), "best_epoch": get("best_epoch"),
        "val": get("best_val") if get("best_val") is not None else get("val"),
        "test": get("test"),
    }
    for name in ("wall_time_s", "device", "run_dir", "dataset", "split_hash"):
        if get(name) is not None:
            fields[name] = get(name)
    return fields


def build_run_row(*, sweep: str, sweep_id: str, trial_id: str, config: Mapping[str, Any],
                  seed: int | None, status: str, error: str | None = None,
                  best_epoch: int | None = None, val: Mapping[str, float] | None = None,
                  test: Mapping[str, float] | None = None, wall_time_s: float | None = None,
                  device: str | None = None, run_dir: str | Path | None = None,
                  dataset: str | None = None, split_hash: str | None = None,
                  variant: str | None = None, objective: str | None = None,
                  key: str | None = None, started_at: str | None = None,
                  finished_at: str | None = None) -> dict[str, Any]:
    """Assemble one run row; it is checked again (and written) by ``ResultsStore.record_run``.

    ``config`` may be nested or already flat. ``val``/``test`` keys may omit their prefix
    (``seg/iou`` becomes ``val/seg/iou``). ``key`` defaults to :func:`trial_key` of config and
    seed. ``finished_at`` defaults to now (UTC ISO 8601) and ``started_at`` to ``finished_at``
    minus ``wall_time_s`` when that is known.
    """
    finished_at = finished_at or utc_now()
    if started_at is None and wall_time_s is not None and math.isfinite(wall_time_s):
        finished = dt.datetime.fromisoformat(finished_at)
        started = finished - dt.timedelta(seconds=float(wall_time_s))
        started_at = started.isoformat(timespec="seconds")
    row: dict[str, Any] = {
        "sweep": sweep, "sweep_id": sweep_id, "trial_id": str(trial_id),
        "trial_key": key or trial_key(config, seed), "variant": variant, "seed": seed,
        "status": status, "error": error, "objective": objective, "dataset": dataset,
        "split_hash": split_hash, "best_epoch": best_epoch,
        "wall_time_s": None if wall_time_s is None else float(wall_time_s),
        "device": device, "busray_version": busray_version(), "git_rev": git_revision(),
        "started_at": started_at, "finished_at": finished_at,
        "run_dir": None if run_dir is None else str(run_dir),
        "schema_version": SCHEMA_VERSION,
    }
    row.update(flatten(dict(config)))
    row.update(_prefixed("val/", val))
    row.update(_prefixed("test/", test))
    check_run_row(row)
    return row


def check_run_row(row: Mapping[str, Any]) -> None:
    """Raise :class:`ResultsError` for a row the store must not accept."""
    for name in REQUIRED_RUN_COLUMNS:
        if row.get(name) in (None, ""):
            raise ResultsError(f"run row: required column '{name}' is missing or empty")
    if row["status"] not in STATUSES:
        raise ResultsError(f"run row: status {row['status']!r} is not one of {', '.join(STATUSES)}")
    for name in row:
        if not isinstance(name, str) or not name:
            raise ResultsError(f"run row: column name {name!r} is not a non-empty string")


def order_columns(columns: list[str]) -> list[str]:
    """Fixed columns, then config keys and val/ and test/ metrics (each sorted), schema_version."""
    present = set(columns)
    fixed = [c for c in RUN_COLUMNS if c in present and c != "schema_version"]
    metrics = sorted(c for c in present if c.startswith(METRIC_PREFIXES))
    config = sorted(present - set(fixed) - set(metrics) - {"schema_version"})
    return fixed + config + metrics + (["schema_version"] if "schema_version" in present else [])


def config_columns(columns: list[str]) -> list[str]:
    """The flattened-config columns among ``columns`` (neither fixed nor metric columns)."""
    return [c for c in columns if c not in RUN_COLUMNS and not c.startswith(METRIC_PREFIXES)]


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


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


def _prefixed(prefix: str, metrics: Mapping[str, Any] | None) -> dict[str, float | None]:
    out = {}
    for name, value in (metrics or {}).items():
        column = name if name.startswith(prefix) else prefix + name
        out[column] = None if value is None else float(value)
    return out

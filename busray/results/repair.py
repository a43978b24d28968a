"""Repairing rows an older busray recorded incompletely: config columns filled from the run's config.yaml.

Until the run request (:mod:`busray.experiment.request`) became the one source of a trial's config, a
sweep's driver rebuilt a trial's config from the file's base and the drawn values, so a sweep row held
only those keys: 60-77 config columns were null although the run's ``config.yaml`` says what ran.
Compaction (``busray results compact``, or the automatic one) repairs such rows: a row needs it when a
config column whose key always has a value (its type is not ``X | None``) is null; its columns are then
set from ``<run_dir>/config.yaml`` and its ``trial_key`` recomputed from the whole config and resources,
as a row recorded today would have them. Rows whose folder is gone stay as they are; a complete row is
never read twice. Needs PyYAML and pyarrow only.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from busray.configtools import ConfigError, flatten, load_yaml
from busray.results.columns import CONFIG_COLUMNS, always_set_columns
from busray.results.schema import trial_key

RESOURCE_PREFIX = "resources."


def rows_to_repair(table: pa.Table) -> list[int]:
    """Indices of the rows with a null in a column their config always sets."""
    columns = [c for c in always_set_columns() if c in table.column_names]
    if not columns or table.num_rows == 0:
        return []
    missing = pc.is_null(table[columns[0]])
    for name in columns[1:]:
        missing = pc.or_(missing, pc.is_null(table[name]))
    return pc.indices_nonzero(missing).to_pylist()


def repair_runs(table: pa.Table) -> tuple[pa.Table, int]:
    """``table`` (runs, in :data:`RUN_SCHEMA`) with its incomplete rows filled from their config.yaml;
    and how many rows were repaired."""
    todo = rows_to_repair(table)
    if not todo:
        return table, 0
    rows = table.to_pylist()
    repaired = 0
    for i in todo:
        config = _run_config(rows[i].get("run_dir"))
        if config is None:
            continue
        resources = {k: v for k, v in rows[i].items() if k.startswith(RESOURCE_PREFIX) and v is not None}
        rows[i].update({k: v for k, v in config.items() if k in CONFIG_COLUMNS})
        rows[i]["trial_key"] = trial_key({**config, **resources}, rows[i].get("seed"))
        repaired += 1
    if not repaired:
        return table, 0
    return pa.Table.from_pylist(rows, schema=table.schema), repaired


def _run_config(run_dir: str | None) -> dict | None:
    """The flattened ``config.yaml`` of a run folder, or None when it cannot be read."""
    if not run_dir:
        return None
    path = Path(run_dir) / "config.yaml"
    try:
        return flatten(load_yaml(path)) if path.is_file() else None
    except ConfigError:
        return None

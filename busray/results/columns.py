"""The declared, typed Arrow schemas of the results store's two tables, ``runs`` and ``epochs``.

Every Parquet file busray writes holds exactly these columns, in this order and with these types,
so any Parquet reader (pandas, ``pyarrow.dataset``, DuckDB without ``union_by_name``, polars) reads a
whole folder as one table. ``docs/STORE.md`` lists the columns and how to read them.

``runs`` (one row per trial), in order:

1. fixed columns (:data:`RUN_FIXED`): identity, status, error, objective, dataset, best epoch,
   timing (``started_at``/``finished_at`` as ``timestamp[us, tz=UTC]``), provenance;
2. the full resolved config, one typed column per key of ``busray.config.Config`` (``str`` ->
   string, ``int`` -> int64, ``float`` -> float64, ``bool`` -> bool, ``list[X]`` -> ``list<X>``;
   ``X | None`` is the same type, nullable) plus :data:`RESOURCE_COLUMNS`;
3. ``val/<key>`` then ``test/<key>`` float64 for every key of :data:`EVAL_KEYS`;
4. ``extra``: a JSON object (string) of keys the schema does not declare, or null;
5. ``schema_version`` (int64): the version the row was recorded under.

``epochs`` (one row per trial and epoch): the identity columns, ``epoch``, ``lr``,
``train/<loss term>``, ``val/<key>``, ``time/*``, ``extra``, ``schema_version``.

Rule for later versions (append-only):

- a column is never renamed, retyped or removed; a config key that leaves ``Config`` stays a
  column (list it in :data:`RETIRED_CONFIG_COLUMNS` with its type);
- new columns are added: a new ``Config`` key appears among the config columns, any other new
  column goes after ``schema_version``; a change of the fixed or metric columns bumps
  :data:`SCHEMA_VERSION`;
- readers match columns by name and give a column a file lacks nulls; busray's reader does so
  for older files, and the writer rewrites older files into the current schema (by compaction,
  ``busray.results.compact``) the first time it writes to a store of an older schema, so the
  files of one store always share one schema for other readers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import types
import typing

import pyarrow as pa

from busray.config import Config
from busray.objective import EVAL_KEYS, LOSS_TERMS  # what a run reports: the store's metric columns

SCHEMA_VERSION = 2
TIMESTAMP = pa.timestamp("us", tz="UTC")
STRING, INT, FLOAT, BOOL = pa.string(), pa.int64(), pa.float64(), pa.bool_()

#: Columns that identify a trial; epoch rows repeat them.
IDENTITY = (("sweep", STRING), ("sweep_id", STRING), ("trial_id", STRING), ("trial_key", STRING),
            ("variant", STRING), ("seed", INT))
RUN_FIXED = IDENTITY + (
    ("status", STRING), ("error", STRING), ("objective", STRING), ("dataset", STRING),
    ("split_hash", STRING), ("best_epoch", INT), ("epochs_run", INT), ("early_stopped", BOOL),
    ("wall_time_s", FLOAT), ("device", STRING), ("busray_version", STRING), ("git_rev", STRING),
    ("started_at", TIMESTAMP), ("finished_at", TIMESTAMP), ("run_dir", STRING),
)
REQUIRED_RUN_COLUMNS = ("sweep", "sweep_id", "trial_id", "trial_key", "status")
REQUIRED_EPOCH_COLUMNS = ("sweep_id", "trial_id", "epoch")

#: Resource keys of a sweep trial, recorded beside the config (``resources.workers`` may be searched).
RESOURCE_COLUMNS = (("resources.workers", INT), ("resources.cpus_per_worker", FLOAT),
                    ("resources.gpus_per_worker", FLOAT))
#: Config keys removed from ``Config`` in a later version keep their column: ``{key: type}``.
RETIRED_CONFIG_COLUMNS: dict[str, pa.DataType] = {}

SPLITS = ("val", "test")
EPOCH_TIME_KEYS = ("time/epoch_s", "time/train_img_per_s")

EXTRA, VERSION = "extra", "schema_version"
TAIL = ((EXTRA, STRING), (VERSION, INT))


def config_column_types(cls: type = Config, prefix: str = "") -> dict[str, pa.DataType]:
    """``{"model.tau": float64, "model.tim_levels": list<int64>, ...}`` from the config dataclasses."""
    out: dict[str, pa.DataType] = {}
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        hint = hints[field.name]
        if dataclasses.is_dataclass(hint):
            out.update(config_column_types(hint, f"{prefix}{field.name}."))
        else:
            out[prefix + field.name] = arrow_type(hint, prefix + field.name)
    return out


def always_set_columns(cls: type = Config, prefix: str = "") -> tuple[str, ...]:
    """The config columns whose key always has a value (its annotation is not ``X | None``): a null
    there means the row was recorded without the whole config (:mod:`busray.results.repair`)."""
    out: list[str] = []
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        hint = hints[field.name]
        if dataclasses.is_dataclass(hint):
            out += always_set_columns(hint, f"{prefix}{field.name}.")
        elif type(None) not in typing.get_args(hint) and hint is not typing.Any:
            out.append(prefix + field.name)
    return tuple(out)


def arrow_type(hint: typing.Any, key: str) -> pa.DataType:
    """The Arrow type of a config annotation (``X | None`` is X, nullable)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return arrow_type(inner[0], key)
    elif origin in (list, tuple) and args:
        return pa.list_(arrow_type(args[0], key))
    scalars = {str: STRING, int: INT, float: FLOAT, bool: BOOL}
    if hint in scalars:
        return scalars[hint]
    raise TypeError(f"{key}: config type {hint!r} has no results-store column type")


def metric_columns() -> list[str]:
    """``val/<key>`` then ``test/<key>`` for every key of :data:`EVAL_KEYS`."""
    return [f"{split}/{key}" for split in SPLITS for key in EVAL_KEYS]


def epoch_metric_columns() -> list[str]:
    """What one epoch reports (``busray.training.loop``): lr, train loss terms, val keys, times."""
    return (["lr"] + [f"train/{t}" for t in LOSS_TERMS] + [f"val/{k}" for k in EVAL_KEYS]
            + list(EPOCH_TIME_KEYS))


def _config_fields() -> list[tuple[str, pa.DataType]]:
    declared = {**config_column_types(), **dict(RESOURCE_COLUMNS)}
    return list(declared.items()) + [(k, t) for k, t in RETIRED_CONFIG_COLUMNS.items()
                                     if k not in declared]


def _schema(fields: list[tuple[str, pa.DataType]]) -> pa.Schema:
    return pa.schema([pa.field(name, tp) for name, tp in fields])


RUN_SCHEMA = _schema([*RUN_FIXED, *_config_fields(), *((m, FLOAT) for m in metric_columns()),
                      *TAIL])
EPOCH_SCHEMA = _schema([*IDENTITY, ("epoch", INT), *((m, FLOAT) for m in epoch_metric_columns()),
                        *TAIL])
CONFIG_COLUMNS = tuple(name for name, _ in _config_fields())
FIXED_COLUMNS = tuple(name for name, _ in RUN_FIXED)
METRIC_COLUMNS = tuple(metric_columns())


def fingerprint(schema: pa.Schema) -> str:
    """A short hash of the column names and types: two stores with equal fingerprints match."""
    text = "\n".join(f"{f.name}:{f.type}" for f in schema)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def is_config_column(name: str) -> bool:
    """A flattened-config column: declared, or an ``extra`` key spelled like one (``group.key``)."""
    return name in CONFIG_COLUMNS or ("." in name and "/" not in name)


#: Rules about what the files hold beyond their schema, counted up when one is added: a store whose
#: marker names an older count is compacted on its next write (``compact.upgrade_if_needed``).
#: 1: every run row holds its run's whole config (rows of an older busray are completed from their
#: run's config.yaml: ``busray.results.repair``).
CONTENT_RULES = 1
#: Names the schema of both tables and the content rules: ``_store.json`` records it beside the version.
STORE_FINGERPRINT = f"{fingerprint(RUN_SCHEMA)}{fingerprint(EPOCH_SCHEMA)}-r{CONTENT_RULES}"

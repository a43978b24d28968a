"""Values into the declared Arrow types: rows being written, and files written by older versions.

- :func:`typed_table` turns row dicts into a table of exactly the declared schema. A value that
  does not fit its column (text in a float column, a float in a bool column, ``[1, "x"]`` in a
  ``list<int64>`` column) is a one-line :class:`ResultsError` naming the column, raised before
  anything is written. Ints fit float columns, integral floats fit int columns (CSV histories
  give ``3.0``), NaN is stored as null, ISO 8601 text fits timestamps (UTC when it has no offset).
  A key the schema does not declare is refused: :func:`busray.results.schema.run_row` has already
  moved such keys into ``extra``.
- :func:`conform` upgrades a table read from disk (an older schema version, or a column an older
  writer typed differently) to the declared schema: a missing column is null, a present one is
  cast, and an undeclared one is folded into the ``extra`` JSON object, so nothing is lost.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from busray.results.columns import EXTRA
from busray.results.schema import ResultsError


def typed_table(rows: Sequence[Mapping[str, Any]], schema: pa.Schema, what: str) -> pa.Table:
    """``rows`` as a table of ``schema`` (missing keys null); errors name the column."""
    names = set(schema.names)
    for row in rows:
        unknown = [k for k in row if k not in names]
        if unknown:
            raise ResultsError(f"{what}: unknown column '{unknown[0]}' (not in the store's schema)")
    arrays = []
    for field in schema:
        values = [convert(row.get(field.name), field.type, field.name, what) for row in rows]
        arrays.append(pa.array(values, type=field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def convert(value: Any, tp: pa.DataType, column: str, what: str) -> Any:
    """``value`` as the plain Python value Arrow stores in a column of type ``tp``."""
    value = _plain(value)
    if value is None:
        return None
    try:
        if pa.types.is_list(tp):
            if not isinstance(value, (list, tuple)):
                raise TypeError
            return [convert(v, tp.value_type, column, what) for v in value]
        return _SCALARS[str(tp)](value)
    except (TypeError, ValueError, OverflowError, KeyError):
        text = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        raise ResultsError(f"{what}: column '{column}' holds {tp}, not {text}") from None


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _to_string(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError
    return value


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise TypeError
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, int):
        raise TypeError
    return value


def _to_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError
    return float(value)


def _to_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError
    return value


def _to_timestamp(value: Any) -> dt.datetime:
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    elif hasattr(value, "to_pydatetime"):  # pandas.Timestamp
        value = value.to_pydatetime()
    if not isinstance(value, dt.datetime):
        raise TypeError
    return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value


_SCALARS = {"string": _to_string, "int64": _to_int, "double": _to_float, "bool": _to_bool,
            "timestamp[us, tz=UTC]": _to_timestamp}


def conform(table: pa.Table, schema: pa.Schema, what: str) -> pa.Table:
    """``table`` upgraded to exactly ``schema``; undeclared columns go into ``extra``."""
    if table.schema.equals(schema, check_metadata=False):
        return table
    columns = []
    for field in schema:
        if field.name == EXTRA:
            columns.append(_merged_extra(table, schema))
        elif field.name in table.column_names:
            columns.append(_cast(table.column(field.name), field, what))
        else:
            columns.append(pa.nulls(table.num_rows, type=field.type))
    return pa.Table.from_arrays(columns, schema=schema)


def _cast(column: pa.ChunkedArray, field: pa.Field, what: str) -> pa.Array:
    if column.type == field.type:
        return column.combine_chunks()
    try:
        return column.cast(field.type).combine_chunks()
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        values = [convert(v, field.type, field.name, what) for v in column.to_pylist()]
        return pa.array(values, type=field.type)


def _merged_extra(table: pa.Table, schema: pa.Schema) -> pa.Array:
    """The old ``extra`` objects with the table's undeclared columns added (null when empty)."""
    undeclared = [n for n in table.column_names if n not in schema.names]
    old = table.column(EXTRA).to_pylist() if EXTRA in table.column_names else None
    if not undeclared:
        return pa.array(old if old is not None else [None] * table.num_rows, type=pa.string())
    values = {name: table.column(name).to_pylist() for name in undeclared}
    out = []
    for i in range(table.num_rows):
        merged = json.loads(old[i]) if old and old[i] else {}
        merged.update({k: v[i] for k, v in values.items() if v[i] is not None})
        out.append(json.dumps(merged, sort_keys=True, default=str) if merged else None)
    return pa.array(out, type=pa.string())

"""Read many one-row Parquet files whose columns differ into one Arrow table.

Sweeps search different config keys, so their run files have different columns, and one key can
hold an int in one file and a float in another (or be all-null, Arrow type ``null``). Plain
``pandas.read_parquet(directory)`` takes the schema of one file and silently drops the columns the
others add, so the store reads file by file and unifies here:

- a column missing from a file is null there;
- types are promoted the way Arrow's permissive schema unification does (``null`` -> anything,
  ``int64`` + ``double`` -> ``double``, list<int> + list<double> -> list<double>);
- types that cannot be merged (``int64`` vs ``string``, ``bool`` vs ``int64``) fall back to
  strings (lists and structs as JSON), so one odd file never makes the whole store unreadable.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from busray.results.schema import ResultsError


def read_parquet_files(paths: Sequence) -> list[pa.Table]:
    """Read each file (a few at once: Arrow releases the GIL while it reads).

    A file that is not valid Parquet is a one-line error naming it.
    """
    with ThreadPoolExecutor(max_workers=min(8, 2 * (os.cpu_count() or 1))) as pool:
        return list(pool.map(_read_one, paths))


def _read_one(path) -> pa.Table:
    try:
        # One small file each: a plain single-threaded read is faster than read_table's
        # dataset machinery here (about 2x with 1,600 one-row files).
        return pq.ParquetFile(path, pre_buffer=False).read(use_threads=False)
    except (OSError, pa.ArrowException) as err:
        first_line = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ResultsError(f"{path}: unreadable results file ({first_line})") from None


def concat_unified(tables: Sequence[pa.Table]) -> pa.Table:
    """Concatenate tables with differing columns/types into one table (column order kept)."""
    if not tables:
        return pa.table({})
    # Files of one sweep share a schema: concatenate those first, then conform each group.
    groups: dict[pa.Schema, list[pa.Table]] = {}
    for table in tables:
        groups.setdefault(table.schema, []).append(table)
    merged = [pa.concat_tables(group) for group in groups.values()]
    schema = unified_schema([t.schema for t in merged])
    return pa.concat_tables([conform(t, schema) for t in merged])


def unified_schema(schemas: Sequence[pa.Schema]) -> pa.Schema:
    """One field per column name seen, in first-seen order, with a type every file casts to."""
    types: dict[str, list[pa.DataType]] = {}
    for schema in schemas:
        for field in schema:
            seen = types.setdefault(field.name, [])
            if field.type not in seen:
                seen.append(field.type)
    return pa.schema([pa.field(name, _merge_types(name, ts)) for name, ts in types.items()])


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with exactly ``schema``'s columns: missing ones null, others cast."""
    columns = []
    for field in schema:
        if field.name in table.column_names:
            columns.append(_cast(table.column(field.name), field.type))
        else:
            columns.append(pa.nulls(table.num_rows, type=field.type))
    return pa.Table.from_arrays(columns, schema=schema)


def _merge_types(name: str, types: list[pa.DataType]) -> pa.DataType:
    if len(types) == 1:
        return types[0]
    try:
        merged = pa.unify_schemas([pa.schema([pa.field(name, t)]) for t in types],
                                  promote_options="permissive")
        return merged.field(name).type
    except (pa.ArrowTypeError, pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pa.string()


def _cast(column: pa.ChunkedArray, target: pa.DataType) -> pa.ChunkedArray:
    if column.type == target:
        return column
    try:
        return column.cast(target)
    except (pa.ArrowTypeError, pa.ArrowInvalid, pa.ArrowNotImplementedError):
        if target != pa.string():
            raise
    # No Arrow cast to string for nested types: spell values as JSON instead.
    values = [None if v is None else json.dumps(v, default=str) for v in column.to_pylist()]
    return pa.chunked_array([pa.array(values, type=pa.string())])

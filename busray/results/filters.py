"""Row filters for the results store: ``model.tau>=0.5``, ``status=completed``, ``model.hmsf=true``.

A filter is ``column OP value`` with OP one of ``= == != > >= < <=``. The value is read as YAML
(``true`` -> bool, ``0.5`` -> float, ``[1, 2]`` -> list, ``null`` -> missing), except against a
text column, where the raw text is compared, so ``variant=true`` still matches the string
``"true"``, and against a timestamp column, where it is a date or ISO time (UTC unless it names an
offset): ``started_at>=2025-06-01``. ``column=null`` keeps rows where the column is missing,
``column!=null`` the others.

A numeric column compared with a non-number, an ordering (``<``) on ``null``, or a column the
table does not have is a :class:`ResultsError` naming the filter (and close column names).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pandas as pd
import yaml

from busray.configtools import did_you_mean
from busray.results.schema import ResultsError

_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "==": operator.eq, "=": operator.eq, "!=": operator.ne,
    ">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt,
}
_FILTER_RE = re.compile(r"^\s*([^<>=!\s]+)\s*(==|!=|>=|<=|=|>|<)\s*(.*?)\s*$")


@dataclass(frozen=True)
class Filter:
    """One parsed filter; ``text`` is what the user wrote, kept for error messages."""

    column: str
    op: str
    value: Any
    raw: str
    text: str


def parse_filter(text: str) -> Filter:
    """``'model.tau>=0.5'`` -> ``Filter('model.tau', '>=', 0.5, '0.5', 'model.tau>=0.5')``."""
    match = _FILTER_RE.match(text)
    if not match:
        raise ResultsError(f"filter '{text}' must look like column<op>value "
                           f"with op one of {' '.join(sorted(set(_OPS)))}")
    column, op, raw = match.groups()
    if raw == "":
        raise ResultsError(f"filter '{text}' has no value")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    if not isinstance(value, (bool, int, float, str, list, type(None))):
        value = raw  # dates and mappings compare as the text the user wrote
    if value is None and op not in ("=", "==", "!="):
        raise ResultsError(f"filter '{text}': only = and != can compare with null")
    return Filter(column, "==" if op == "=" else op, value, raw, text)


def as_filters(where: Mapping[str, Any] | Iterable[Filter | str] | None) -> list[Filter]:
    """Normalise ``where``: a mapping means column == value; strings are parsed."""
    if where is None:
        return []
    if isinstance(where, Mapping):
        return [Filter(str(c), "==", v, str(v), f"{c}={v}") for c, v in where.items()]
    if isinstance(where, (str, Filter)):
        where = [where]
    return [f if isinstance(f, Filter) else parse_filter(f) for f in where]


def apply_filters(df: pd.DataFrame, where: Mapping[str, Any] | Iterable[Filter | str] | None,
                  ) -> pd.DataFrame:
    """Rows of ``df`` matching every filter (AND)."""
    keep = pd.Series(True, index=df.index)
    for f in as_filters(where):
        if f.column not in df.columns:
            raise ResultsError(f"filter '{f.text}': unknown column '{f.column}'"
                               + did_you_mean(f.column, df.columns, cutoff=0.8))
        keep &= _mask(df[f.column], f)
    return df[keep]


def _mask(series: pd.Series, f: Filter) -> pd.Series:
    op = _OPS[f.op]
    if f.value is None:
        return series.isna() if f.op == "==" else series.notna()
    if isinstance(series.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(series):
        return op(series, _timestamp(f)).fillna(False).astype(bool) & series.notna()
    if pd.api.types.is_bool_dtype(series) or pd.api.types.is_numeric_dtype(series):
        if isinstance(f.value, str) or isinstance(f.value, list):
            raise ResultsError(f"filter '{f.text}': column '{f.column}' holds numbers, "
                               f"not {f.raw!r}")
        return op(series, f.value).fillna(False).astype(bool) & series.notna()
    if pd.api.types.is_string_dtype(series) and not _has_non_strings(series):
        return series.map(lambda v: _compare(v, op, f.raw)).astype(bool)
    return series.map(lambda v: _compare(v, op, f.value)).astype(bool)


def _timestamp(f: Filter) -> pd.Timestamp:
    try:
        stamp = pd.Timestamp(f.raw)
    except ValueError:
        raise ResultsError(f"filter '{f.text}': column '{f.column}' holds times, "
                           f"not {f.raw!r}") from None
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp


def _compare(cell: Any, op: Callable, value: Any) -> bool:
    cell = plain_cell(cell)
    if cell is None:
        return False
    try:
        return bool(op(cell, value))
    except TypeError:
        return False  # e.g. a list cell against a number: simply not a match


def plain_cell(cell: Any) -> Any:
    """Arrow/numpy values as plain Python (lists, scalars); NaN and NA as None."""
    if isinstance(cell, np.ndarray):
        return [plain_cell(v) for v in cell.tolist()]
    if isinstance(cell, np.generic):
        cell = cell.item()
    if cell is None or (isinstance(cell, float) and cell != cell) or cell is pd.NA or cell is pd.NaT:
        return None
    return cell


def _has_non_strings(series: pd.Series) -> bool:
    return any(not isinstance(v, str) for v in series.dropna())

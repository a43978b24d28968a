"""What ``busray results list | show | export`` print and write (the CLI only parses arguments).

- ``format_list``: one line per sweep (trial counts by status, objective, best value).
- ``format_show``: a sweep's best trials as an aligned table: trial id, status, the config keys
  that vary within the sweep (constant ones would only repeat the sweep file), the ranking
  metric(s), the best epoch and the test metrics of :data:`TEST_METRICS_SHOWN`; a sweep's closing
  summary prints the same table. With several metrics a ``pareto`` column marks the trials on the
  multi-objective front (no other trial is at least as good on every metric and better on one).
- ``export``: the sweep's run rows (all columns, filters applied) as csv, md or parquet, written
  atomically so a failed export never leaves half a file behind. In csv a list value is its items
  joined by ``;`` (``32;24;16;16``): one cell a spreadsheet keeps as text and a reader splits back,
  where pandas alone would write numpy's ``[32 24 16 16]``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from busray.atomic import atomic_write
from busray.results.columns import RUN_SCHEMA
from busray.results.filters import plain_cell
from busray.results.layout import write_table
from busray.results.ranking import choose_metrics, pareto_mask, rank
from busray.results.schema import ResultsError, config_columns
from busray.results.store import ResultsStore, Where, kind_of

EXPORT_FORMATS = ("csv", "md", "parquet")
#: Held-out metrics shown after the ranking metric(s): what a trial scored on the test split, one per
#: task, and beside the lesion IoU its sensitivity and precision, which say whether the masks are too
#: large (sens >> prec: what the paper's Tversky weights alpha 0.3 / beta 0.7 push towards) or too small.
TEST_METRICS_SHOWN = ("test/seg/iou", "test/seg/sens", "test/seg/prec", "test/clf/acc")


def format_list(store: ResultsStore) -> str:
    """The store's sweeps as a text table, or a one-line note when it is empty."""
    sweeps = store.sweeps()
    if sweeps.empty:
        return f"no results in {store.root}"
    return format_table(sweeps)


def format_show(store: ResultsStore, sweep: str, metric: str | Sequence[str] | None = None,
                mode: str | None = None, top: int = 10, where: Where = None,
                status: str | Sequence[str] | None = None) -> str:
    """A header line and the ``top`` best trials of ``sweep`` as an aligned text table."""
    if top < 1:
        raise ResultsError(f"top must be at least 1, got {top}")
    runs = store.runs(sweep=sweep, status=status, where=where)
    if runs.empty:
        return f"sweep '{sweep}': no trials match"
    metrics = choose_metrics(runs, metric, mode)
    table = show_table(runs, metrics).head(top)
    ranked_by = ", ".join(f"{c} ({m})" for c, m in metrics) or "finish time (no metrics)"
    ids = runs["sweep_id"].unique()
    id_text = ids[0] if len(ids) == 1 else f"{len(ids)} sweep ids"
    kind = kind_of(runs)
    header = (f"{kind} {runs['sweep'].iloc[0]} ({id_text}): "
              f"best {len(table)} of {len(runs)} {'runs' if kind == 'ablation' else 'trials'} by {ranked_by}")
    return header + pareto_note(table) + "\n" + format_table(table)


def counts_text(counts: Mapping[str, int]) -> str:
    """``"3 completed, 1 failed"`` (statuses with none left out); empty when there are none."""
    return ", ".join(f"{n} {status}" for status, n in counts.items() if n)


def pareto_note(table: pd.DataFrame) -> str:
    """What the ``pareto`` column's mark means, for the line above a table that has one."""
    return " (* pareto: no other trial is at least as good on every metric)" if "pareto" in table else ""


def show_table(runs: pd.DataFrame, metrics: list[tuple[str, str]]) -> pd.DataFrame:
    """The ranked rows with the columns ``show`` (and a sweep's summary) prints; the
    :data:`TEST_METRICS_SHOWN` after ``best_epoch`` where any row has them."""
    ranked = rank(runs, metrics)
    failed = ranked["status"] == "failed"  # failed trials last: their metrics are not results
    ranked = ranked.iloc[failed.to_numpy().argsort(kind="stable")]
    extra = [c for c in ("variant", "seed") if c in runs.columns and _varies(runs[c])]
    # train.seed is the seed column again (the run's seed is written there): shown once
    varying = [c for c in config_columns(list(runs.columns)) if _varies(runs[c])
               and not (c == "train.seed" and "seed" in extra and runs[c].equals(runs["seed"]))]
    metric_columns = [c for c, _ in metrics]
    columns = ["trial_id", "status", *extra, *varying, *metric_columns]
    columns += ["best_epoch"] if "best_epoch" in runs.columns else []
    columns += [c for c in TEST_METRICS_SHOWN if c in runs.columns and c not in columns and runs[c].notna().any()]
    table = ranked[columns].copy()
    if len(metrics) > 1:
        usable = ranked[ranked["status"] != "failed"]
        front = pareto_mask(usable, metrics).reindex(ranked.index, fill_value=False)
        table.insert(2, "pareto", front.map({True: "*", False: ""}))
    return table.reset_index(drop=True)


def export(store: ResultsStore, sweep: str, fmt: str, out_path: str | Path,
           where: Where = None, status: str | Sequence[str] | None = None) -> Path:
    """Write ``sweep``'s run rows to ``out_path`` as csv, md or parquet; returns the path."""
    if fmt not in EXPORT_FORMATS:
        raise ResultsError(f"export format '{fmt}' is not one of {', '.join(EXPORT_FORMATS)}")
    runs = store.runs(sweep=sweep, status=status, where=where)
    out = Path(out_path)
    if fmt == "parquet":
        return write_table(frame_table(runs), out)
    text = format_markdown(runs) if fmt == "md" else format_csv(runs)
    atomic_write(out, text)
    return out


#: What joins a list's items in a csv cell (a comma would need the cell quoted).
CSV_LIST_SEPARATOR = ";"


def format_csv(df: pd.DataFrame) -> str:
    """The rows as CSV, list values as ``32;24;16;16`` (an empty list is an empty cell, like null)."""
    out = df.copy()
    for column in out.columns:
        if out[column].dtype == object:
            out[column] = out[column].map(_csv_cell)
    return out.to_csv(index=False)


def _csv_cell(value: Any) -> Any:
    value = plain_cell(value)
    return CSV_LIST_SEPARATOR.join(map(str, value)) if isinstance(value, list) else value


def frame_table(df: pd.DataFrame) -> pa.Table:
    """Run rows back as Arrow with the store's declared types (``extra`` keys as inferred)."""
    declared = {f.name: f.type for f in RUN_SCHEMA}
    arrays = []
    for column in df.columns:
        if column in declared:
            arrays.append(pa.Array.from_pandas(df[column], type=declared[column]))
            continue
        values = [plain_cell(v) for v in df[column]]
        try:
            arrays.append(pa.array(values))
        except (pa.ArrowException, TypeError, ValueError):  # mixed types: keep them as text
            arrays.append(pa.array([None if v is None else str(v) for v in values], pa.string()))
    return pa.Table.from_arrays(arrays, names=[str(c) for c in df.columns])


def format_table(df: pd.DataFrame) -> str:
    """Left-aligned text columns, right-aligned numbers, a dashed rule under the header; times
    to the second (exports keep them whole)."""
    cells = [[_console_cell(v) for v in df[c]] for c in df.columns]
    widths = [max([len(str(c))] + [len(v) for v in col]) for c, col in zip(df.columns, cells)]
    right = [pd.api.types.is_numeric_dtype(df[c]) for c in df.columns]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if r else v.ljust(w)
                         for v, w, r in zip(values, widths, right)).rstrip()

    rows = [line([str(c) for c in df.columns]), line(["-" * w for w in widths])]
    rows += [line([col[i] for col in cells]) for i in range(len(df))]
    return "\n".join(rows)


def format_markdown(df: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (``|`` in cells escaped); missing values are empty."""
    def esc(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    header = "| " + " | ".join(esc(str(c)) for c in df.columns) + " |"
    rule = "|" + "|".join("---:" if pd.api.types.is_numeric_dtype(df[c]) else "---"
                          for c in df.columns) + "|"
    body = ["| " + " | ".join(esc(_cell(v, missing="")) for v in row) + " |"
            for row in df.itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"


def _cell(value: Any, missing: str = "-") -> str:
    value = plain_cell(value)
    if value is None:
        return missing
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else f"{value:.4g}"
    return str(value)


def _console_cell(value: Any) -> str:
    """A console cell: a timestamp in UTC to the second ("2026-11-27 00:02:16Z"), else ``_cell``."""
    if isinstance(value, pd.Timestamp) and value.tzinfo is not None:
        return value.tz_convert("UTC").strftime("%Y-%m-%d %H:%M:%SZ")
    return _cell(value)


def _varies(series: pd.Series) -> bool:
    if series.dtype != object:  # fast path (10,000 rows x 85 config columns)
        return series.nunique(dropna=False) > 1
    return series.map(lambda v: repr(plain_cell(v))).nunique() > 1



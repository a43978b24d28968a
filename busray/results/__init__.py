"""busray's results store: every trial of every sweep as Parquet rows under ``<storage>/results/``.

``ResultsStore(storage).record_run(build_run_row(...), epochs)`` writes one trial atomically;
``.runs()``, ``.epochs()`` and ``.sweeps()`` read the store back as pandas DataFrames with the
columns of all sweeps unified; ``query`` formats them for ``busray results list|show|export``.
See ``store`` for the file layout, why writes never collide, and how to read the files with
DuckDB, polars or plain pandas. This package has no Ray dependency: the sweep layer calls it.
"""

from busray.results.filters import Filter, apply_filters, parse_filter
from busray.results.query import export, format_list, format_show
from busray.results.schema import (
    SCHEMA_VERSION, STATUSES, ResultsError, build_run_row, fit_fields, trial_key)
from busray.results.store import ResultsStore

__all__ = [
    "SCHEMA_VERSION", "STATUSES", "Filter", "ResultsError", "ResultsStore", "apply_filters",
    "build_run_row", "export", "fit_fields", "format_list", "format_show", "parse_filter",
    "trial_key",
]

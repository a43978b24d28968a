"""busray's results store: every trial of every sweep as typed Parquet rows under ``<storage>/results/``.

``ResultsStore(storage).record_run(run_row(identity, config, outcome), epochs)`` writes one trial
atomically; ``.runs()``, ``.epochs()`` and ``.sweeps()`` read the store back as pandas DataFrames;
``query`` formats them for ``busray results list|show|export``. Module map: ``columns`` (the
declared schema and the rule for changing it), ``schema`` (the row of one trial), ``unify`` (values
into declared types, older files upgraded), ``layout`` (files and which row wins), ``compact``,
``store``, ``filters``, ``ranking``, ``query``. ``docs/STORE.md`` shows how pandas, DuckDB and
polars read the files. No Ray and no torch here: the sweep layer calls it.
"""

from busray.results.columns import EPOCH_SCHEMA, RUN_SCHEMA, SCHEMA_VERSION
from busray.results.compact import CompactReport
from busray.results.filters import Filter, apply_filters, parse_filter
from busray.results.query import export, format_list, format_show
from busray.results.schema import STATUSES, ResultsError, RunIdentity, run_row, trial_key
from busray.results.store import ResultsStore

__all__ = [
    "EPOCH_SCHEMA", "RUN_SCHEMA", "SCHEMA_VERSION", "STATUSES", "CompactReport", "Filter",
    "ResultsError", "ResultsStore", "RunIdentity", "apply_filters", "export", "format_list",
    "format_show", "parse_filter", "run_row", "trial_key",
]

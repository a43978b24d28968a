"""Which metric(s) rank a sweep's trials, in which direction, and the multi-objective front.

A metric spec is ``"name"`` or ``"name:mode"`` (mode ``max`` or ``min``), several separated by
commas: ``"val/seg/iou:max,val/clf/acc:max"``. A name without prefix is looked up as given and
then as ``val/<name>`` (the best validation metrics, which is what sweeps optimise).

Where neither the caller nor the sweep (its rows' ``objective`` column) names a metric, trials are
ranked by :data:`DEFAULT_METRIC`, the paper's headline segmentation score; where no mode is given
it is ``min`` for names containing ``loss`` and ``max`` otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from busray.results.schema import METRIC_PREFIXES, ResultsError

DEFAULT_METRIC = "val/seg/iou"
MODES = ("max", "min")

MetricSpec = list[tuple[str, str | None]]


def parse_metrics(spec: str | Sequence[str] | None, mode: str | None = None) -> MetricSpec:
    """``"seg/iou:max,clf/acc"`` -> ``[("seg/iou", "max"), ("clf/acc", mode)]``."""
    if mode is not None and mode not in MODES:
        raise ResultsError(f"mode '{mode}' is not one of {', '.join(MODES)}")
    if spec is None:
        return []
    parts = spec.split(",") if isinstance(spec, str) else list(spec)
    out: MetricSpec = []
    for part in (p.strip() for p in parts):
        if not part:
            continue
        name, _, part_mode = part.partition(":")
        part_mode = part_mode.strip() or mode
        if part_mode is not None and part_mode not in MODES:
            raise ResultsError(f"metric '{part}': mode '{part_mode}' is not one of "
                               f"{', '.join(MODES)}")
        out.append((name.strip(), part_mode))
    return out


def choose_metrics(df: pd.DataFrame, metric: str | Sequence[str] | None = None,
                   mode: str | None = None) -> list[tuple[str, str]]:
    """Resolved ``(column, mode)`` pairs: the caller's, else the rows' objective, else default."""
    spec = parse_metrics(metric, mode)
    if not spec and "objective" in df.columns:
        objectives = df["objective"].dropna().unique()
        if len(objectives):
            spec = parse_metrics(str(objectives[0]), mode)
    if not spec:
        if DEFAULT_METRIC not in df.columns:
            return []
        spec = [(DEFAULT_METRIC, mode)]
    return [(resolve_column(df.columns, name), m or infer_mode(name)) for name, m in spec]


def resolve_column(columns: Sequence[str], name: str) -> str:
    """``name`` itself, or ``val/<name>``; else a ResultsError listing the metric columns."""
    for candidate in (name, f"val/{name}"):
        if candidate in columns:
            return candidate
    known = [c for c in columns if str(c).startswith(METRIC_PREFIXES)]
    raise ResultsError(f"unknown metric '{name}' (known: {', '.join(known) or 'none'})")


def infer_mode(name: str) -> str:
    return "min" if "loss" in name else "max"


def rank(df: pd.DataFrame, metrics: list[tuple[str, str]]) -> pd.DataFrame:
    """Best first by the first metric, ties by the next; missing values last."""
    if not metrics:
        return df
    columns = [c for c, _ in metrics]
    ascending = [m == "min" for _, m in metrics]
    numeric = df[columns].apply(pd.to_numeric, errors="coerce")
    order = numeric.sort_values(columns, ascending=ascending, na_position="last",
                                kind="stable").index
    return df.loc[order]


def pareto_mask(df: pd.DataFrame, metrics: list[tuple[str, str]]) -> pd.Series:
    """True for rows no other row beats on every metric (and strictly on one); NaN rows False."""
    values = df[[c for c, _ in metrics]].apply(pd.to_numeric, errors="coerce").to_numpy(float)
    signs = np.array([1.0 if m == "max" else -1.0 for _, m in metrics])
    scores = values * signs  # larger is better in every column now
    valid = ~np.isnan(scores).any(axis=1)
    front = valid.copy()
    for i in np.flatnonzero(valid):
        others = scores[valid]
        dominated = (others >= scores[i]).all(axis=1) & (others > scores[i]).any(axis=1)
        front[i] = not dominated.any()
    return pd.Series(front, index=df.index)


def best_value(df: pd.DataFrame, column: str, mode: str) -> float | None:
    values = pd.to_numeric(df[column], errors="coerce").dropna()
    if values.empty:
        return None
    return float(values.max() if mode == "max" else values.min())

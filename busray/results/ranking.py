"""Which metric(s) rank a sweep's trials, in which direction, and the multi-objective front.

Metrics are named the way every busray objective is (:class:`busray.objective.Objective`):
``"name"`` or ``"name:mode"``, several separated by commas (``"val/seg/iou:max,val/clf/acc"``); a
name without split prefix is a validation metric (``seg/iou`` -> ``val/seg/iou``), and the mode
defaults to ``min`` for names containing ``loss`` and ``max`` otherwise. A ``mode`` argument
(``--mode``) sets the direction of every metric.

Where the caller names no metric, a sweep's trials are ranked by its recorded objective (the rows'
``objective`` column), else by :data:`busray.objective.DEFAULT_OBJECTIVE` (``val/score:max``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from busray.configtools import ConfigError, did_you_mean
from busray.objective import DEFAULT_OBJECTIVE, MODES, Objective
from busray.results.schema import ResultsError


def choose_metrics(df: pd.DataFrame, metric: str | Sequence[str] | None = None,
                   mode: str | None = None) -> list[tuple[str, str]]:
    """Resolved ``(column, mode)`` pairs: the caller's, else the rows' objective, else default.

    [] when nothing names a metric and the table lacks the default one.
    """
    if mode is not None and mode not in MODES:
        raise ResultsError(f"mode '{mode}' is not one of {', '.join(MODES)}")
    objective = _objective(metric) or _objective(_recorded(df))
    if objective is None:
        if DEFAULT_OBJECTIVE.metric not in df.columns:
            return []
        objective = DEFAULT_OBJECTIVE
    for name in objective.metrics:
        if name not in df.columns:
            known = [str(c) for c in df.columns if str(c).startswith(("val/", "test/"))]
            raise ResultsError(f"unknown metric '{name}'{did_you_mean(name, known, cutoff=0.8)}")
    modes = (mode,) * len(objective.metrics) if mode else objective.modes
    return list(zip(objective.metrics, modes))


def _objective(spec: str | Sequence[str] | None) -> Objective | None:
    text = spec if spec is None or isinstance(spec, str) else ",".join(spec)
    if not text or not text.strip(" ,"):
        return None
    try:
        return Objective.parse(text, key="metric")
    except ConfigError as err:
        raise ResultsError(str(err)) from None


def _recorded(df: pd.DataFrame) -> str | None:
    if "objective" not in df.columns:
        return None
    objectives = df["objective"].dropna().unique()
    return str(objectives[0]) if len(objectives) else None


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

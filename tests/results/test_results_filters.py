"""Filter parsing (CLI strings) and filtering of run tables."""

from __future__ import annotations

import pandas as pd
import pytest

from busray.results import ResultsError, apply_filters, parse_filter


@pytest.mark.parametrize("text, column, op, value", [
    ("model.tau>=0.5", "model.tau", ">=", 0.5),
    ("status=completed", "status", "==", "completed"),
    ("model.hmsf=true", "model.hmsf", "==", True),
    ("seed != 3", "seed", "!=", 3),
    ("val/seg/iou<0.7", "val/seg/iou", "<", 0.7),
    ("model.levels==[1, 2]", "model.levels", "==", [1, 2]),
    ("error=null", "error", "==", None),
    ("started_at>2025-01-01", "started_at", ">", "2025-01-01"),   # dates stay text
])
def test_parse_filter(text, column, op, value):
    f = parse_filter(text)
    assert (f.column, f.op, f.value, f.text) == (column, op, value, text)


@pytest.mark.parametrize("text, message", [
    ("model.tau", "must look like column<op>value"),
    ("model.tau>=", "has no value"),
    ("=3", "must look like"),
    ("error>null", "only = and != can compare with null"),
])
def test_parse_filter_errors_name_the_filter(text, message):
    with pytest.raises(ResultsError, match=message) as err:
        parse_filter(text)
    assert text in str(err.value) and "\n" not in str(err.value)


@pytest.fixture
def runs() -> pd.DataFrame:
    return pd.DataFrame({
        "trial_id": ["t0", "t1", "t2", "t3"],
        "status": ["completed", "failed", "completed", "stopped_early"],
        "model.tau": [0.2, 0.5, 0.8, None],
        "model.hmsf": [True, False, True, None],       # object column: bools and a null
        "model.flag": [True, False, False, True],      # plain bool column
        "variant": ["true", "full", "no_tim", None],   # text that looks like YAML
        "model.levels": [[1, 2], [1, 2, 3], [1, 2], None],
        "error": [None, "NaN loss", None, None],
        "started_at": pd.to_datetime(["2025-05-31T23:00:00Z", "2025-06-01T09:00:00Z",
                                      None, "2025-06-02T00:00:00Z"], utc=True),
    })


@pytest.mark.parametrize("filters, expected", [
    (["model.tau>=0.5"], ["t1", "t2"]),
    (["model.tau<0.5"], ["t0"]),
    (["model.tau!=0.5"], ["t0", "t2"]),                 # missing values never match
    (["status=completed", "model.tau>0.3"], ["t2"]),    # filters are ANDed
    (["model.hmsf=true"], ["t0", "t2"]),
    (["model.flag=false"], ["t1", "t2"]),
    (["variant=true"], ["t0"]),                         # text column: raw text compared
    (["variant>=no"], ["t0", "t2"]),
    (["model.levels=[1, 2]"], ["t0", "t2"]),
    (["error=null"], ["t0", "t2", "t3"]),
    (["error!=null"], ["t1"]),
    (["started_at>=2025-06-01"], ["t1", "t3"]),          # a date: midnight UTC
    (["started_at<2025-06-01T01:30:00+02:00"], ["t0"]),  # an offset is honoured
    (["started_at=null"], ["t2"]),
    ({"status": "failed"}, ["t1"]),                     # a mapping means equality
    ([], ["t0", "t1", "t2", "t3"]),
])
def test_apply_filters(runs, filters, expected):
    assert apply_filters(runs, filters)["trial_id"].tolist() == expected


@pytest.mark.parametrize("filters, message", [
    (["model.taux>1"], "filter 'model.taux>1': unknown column 'model.taux' "
                       "\\(did you mean model.tau\\?\\)"),
    (["model.tau>=abc"], "column 'model.tau' holds numbers, not 'abc'"),
])
def test_apply_filters_errors(runs, filters, message):
    with pytest.raises(ResultsError, match=message):
        apply_filters(runs, filters)

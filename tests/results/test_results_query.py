"""``results list | show | export``: the text tables and the exported files read back."""

from __future__ import annotations

import pandas as pd
import pyarrow.parquet as pq
import pytest

from busray.results import RUN_SCHEMA, ResultsError, export, format_list, format_show

# (trial, status, tau, iou, acc): t2 is best by IoU, t1 by accuracy, t4 failed with a high IoU.
TRIALS = [
    ("t0", "completed", 0.2, 0.50, 0.70),
    ("t1", "completed", 0.4, 0.60, 0.90),
    ("t2", "completed", 0.6, 0.70, 0.80),
    ("t3", "stopped_early", 0.8, 0.40, 0.60),
    ("t4", "failed", 1.0, 0.95, 0.95),
]


@pytest.fixture
def filled(store, make_row):
    for trial, status, tau, iou, acc in TRIALS:
        store.record_run(make_row(
            trial_id=trial, status=status, best_epoch=3, objective="val/seg/iou:max",
            config={"model": {"tau": tau, "backbone": "b0"}, "loss": {"w_seg": 0.5}},
            val={"seg/iou": iou, "clf/acc": acc},
            test={"seg/iou": iou - 0.1, "seg/sens": 0.95, "seg/prec": iou}))
    store.record_run(make_row(sweep="other", sweep_id="o-1", trial_id="x"))
    return store


def _body(text: str) -> list[list[str]]:
    """The table rows under the header and dashed rule, split into cells."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if set(line.replace(" ", "")) == {"-"})
    return [line.split() for line in lines[start + 1:]]


def test_format_list_shows_one_line_per_sweep(filled, make_row):
    filled.record_run(make_row(sweep="abl", sweep_id="abl-1", trial_id="full-s0-0123abcd", variant="full", seed=0))
    text = format_list(filled)
    rows = {cells[0]: cells for cells in _body(text)}
    assert set(rows) == {"demo", "other", "abl"}
    assert rows["demo"][1:8] == ["sweep", "demo-1", "5", "3", "1", "1", "val/seg/iou:max"]
    assert rows["demo"][8] == "0.7"
    assert rows["abl"][1:3] == ["ablation", "abl-1"]  # its rows name their variants
    started = filled.runs(sweep="demo")["started_at"].min().tz_convert("UTC")
    assert rows["demo"][9:11] == started.strftime("%Y-%m-%d %H:%M:%SZ").split()  # to the second, in UTC


def test_format_list_of_an_empty_store(store):
    assert format_list(store) == f"no results in {store.root}"


def test_format_show_ranks_by_the_sweep_objective(filled):
    text = format_show(filled, "demo")
    header, columns = text.splitlines()[:2]
    assert header == "sweep demo (demo-1): best 5 of 5 trials by val/seg/iou (max)"
    # Only the varying config key is shown (backbone and w_seg are constant); then the test metrics
    # recorded (IoU with the lesion sensitivity and precision beside it; no trial has test/clf/acc),
    # as a sweep's summary shows them
    assert columns.split() == ["trial_id", "status", "model.tau", "val/seg/iou", "best_epoch", "test/seg/iou",
                               "test/seg/sens", "test/seg/prec"]
    body = _body(text)
    assert [r[0] for r in body] == ["t2", "t1", "t0", "t3", "t4"]   # failed last
    assert body[0] == ["t2", "completed", "0.6", "0.7", "3", "0.6", "0.95", "0.7"]


def test_format_show_calls_an_ablation_by_its_name(store, make_row):
    for variant in ("baseline", "full"):
        store.record_run(make_row(sweep="abl", sweep_id="abl-1", trial_id=f"{variant}-s0-0123abcd",
                                  variant=variant, seed=0, val={"seg/iou": 0.5}))
    header = format_show(store, "abl", metric="seg/iou").splitlines()[0]
    assert header == "ablation abl (abl-1): best 2 of 2 runs by val/seg/iou (max)"


@pytest.mark.parametrize("kwargs, order", [
    ({"metric": "clf/acc"}, ["t1", "t2", "t0", "t3", "t4"]),
    ({"metric": "clf/acc", "mode": "min"}, ["t3", "t0", "t2", "t1", "t4"]),
    ({"metric": "test/seg/iou", "top": 2}, ["t2", "t1"]),
    ({"status": "completed"}, ["t2", "t1", "t0"]),
    ({"where": ["model.tau<=0.4"]}, ["t1", "t0"]),
])
def test_format_show_options(filled, kwargs, order):
    assert [r[0] for r in _body(format_show(filled, "demo", **kwargs))] == order


def test_format_show_marks_the_pareto_front_for_several_metrics(filled):
    text = format_show(filled, "demo", metric="seg/iou,clf/acc")
    assert text.splitlines()[0].endswith("(* pareto: no other trial is at least as good on every metric)")
    body = _body(text)
    front = {r[0] for r in body if r[2] == "*"}
    assert front == {"t2", "t1"}    # t4 beats both but failed; t0, t3 are dominated


@pytest.mark.parametrize("kwargs, message", [
    ({"sweep": "nope"}, "unknown sweep 'nope'"),
    ({"sweep": "demo", "metric": "seg/iuo"}, "unknown metric 'val/seg/iuo' \\(did you mean val/seg/iou\\?\\)"),
    ({"sweep": "demo", "mode": "best"}, "mode 'best' is not one of max, min"),
    ({"sweep": "demo", "top": 0}, "top must be at least 1"),
])
def test_format_show_errors(filled, kwargs, message):
    with pytest.raises(ResultsError, match=message):
        format_show(filled, **kwargs)


def test_format_show_with_no_matching_trials(filled):
    assert format_show(filled, "demo", where=["model.tau>5"]) == "sweep 'demo': no trials match"


def _read_markdown(path) -> pd.DataFrame:
    lines = path.read_text().splitlines()
    cells = [[c.strip() for c in line.strip("|").split(" | ")] for line in lines]
    assert set(lines[1].replace("|", "").replace("-", "").replace(":", "")) == set()
    return pd.DataFrame(cells[2:], columns=cells[0])


@pytest.mark.parametrize("fmt, read", [
    ("csv", pd.read_csv),
    ("parquet", pd.read_parquet),
    ("md", _read_markdown),
])
def test_export_formats_read_back(filled, tmp_path, fmt, read):
    out = export(filled, "demo", fmt, tmp_path / "out" / f"demo.{fmt}", status="completed")
    df = read(out)
    assert sorted(df["trial_id"]) == ["t0", "t1", "t2"]
    assert sorted(float(v) for v in df["val/seg/iou"]) == [0.5, 0.6, 0.7]
    assert "model.tau" in df.columns and "sweep_id" in df.columns
    assert list((tmp_path / "out").iterdir()) == [out]    # no temp file left behind


@pytest.mark.parametrize("group, key, value, cell", [
    ("model", "decoder_channels", [32, 24, 16, 16], "32;24;16;16"),
    ("data", "split_fractions", [0.7, 0.15, 0.15], "0.7;0.15;0.15"),
    ("data", "classes", ["benign", "malignant"], "benign;malignant"),
    ("model", "tim_levels", [2], "2"),
    ("model", "tim_levels", [], ""),
])
def test_csv_export_writes_a_list_as_its_items_joined_by_semicolons(store, make_row, tmp_path, group, key,
                                                                      value, cell):
    store.record_run(make_row(config={group: {key: value}}))
    out = export(store, "demo", "csv", tmp_path / "demo.csv")
    read = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert read[f"{group}.{key}"].tolist() == [cell]
    assert read["trial_id"].tolist() == ["t0"]  # the other cells as before


def test_parquet_export_keeps_the_declared_types(filled, tmp_path):
    out = export(filled, "demo", "parquet", tmp_path / "demo.parquet")
    schema = pq.read_schema(out)
    assert [f.name for f in RUN_SCHEMA] == schema.names[:len(RUN_SCHEMA)]
    assert all(schema.field(f.name).type == f.type for f in RUN_SCHEMA)
    assert schema.names[len(RUN_SCHEMA):] == ["model.backbone"]   # an extra key, inferred
    assert pq.read_table(out)["best_epoch"].to_pylist() == [3] * 5


def test_export_rejects_an_unknown_format_before_writing(filled, tmp_path):
    with pytest.raises(ResultsError, match="export format 'xlsx'"):
        export(filled, "demo", "xlsx", tmp_path / "demo.xlsx")
    with pytest.raises(ResultsError, match="unknown sweep"):
        export(filled, "nope", "csv", tmp_path / "nope.csv")
    assert list(tmp_path.iterdir()) == [filled.root.parent]


@pytest.mark.parametrize("train_seed, shown", [(lambda seed: seed, False), (lambda seed: 7 - seed, True)])
def test_show_prints_the_seed_once_when_train_seed_repeats_it(store, make_row, train_seed, shown):
    for variant, hmsf in (("baseline", False), ("full", True)):
        for seed in (0, 1):
            store.record_run(make_row(sweep="abl", sweep_id="abl-1", trial_id=f"{variant}-{seed}", seed=seed,
                                      variant=variant, config={"model": {"hmsf": hmsf},
                                                               "train": {"seed": train_seed(seed)}}))
    header = format_show(store, "abl").splitlines()[1].split()
    assert header[:5] == ["trial_id", "status", "variant", "seed", "model.hmsf"]
    assert ("train.seed" in header) is shown

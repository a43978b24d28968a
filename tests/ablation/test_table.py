"""The Table-2-style table in every format, its significance marks, and the paper's rows."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest

from busray.ablation.paper import TABLE1_BUSI, TABLE2_BUSI, is_busi, paper_row
from busray.ablation.stats import BootstrapConfig, VariantResults
from busray.ablation.table import COLUMNS, build_table, render_table, table_frame

BOOT = BootstrapConfig(n_boot=500, seed=0)
SEEDS = (0, 1)


def _variant(name: str, shift: float) -> VariantResults:
    """Two seeds × 24 test images; ``shift`` raises every lesion image's IoU/Dice and every run metric."""
    predictions, rows = {}, []
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        labels = np.arange(24) % 3
        iou = np.clip(rng.uniform(0.5, 0.8, 24) + shift, 0, 1)
        correct = rng.uniform(size=24) < 0.85
        predictions[seed] = pd.DataFrame({
            "name": [f"img_{i:02d}" for i in range(24)], "label": labels,
            "pred": np.where(correct, labels, (labels + 1) % 3), "has_lesion": labels != 0,
            "seg/iou": iou, "seg/dice": 2 * iou / (1 + iou)})
        lesion = labels != 0
        rows.append({"seed": seed, "test/seg/iou": iou[lesion].mean(),
                     "test/seg/dice": (2 * iou / (1 + iou))[lesion].mean(),
                     "test/clf/acc": correct.mean(),
                     **{f"test/{c.key}": 0.7 + shift + 0.01 * seed for c in COLUMNS
                        if c.key not in ("seg/iou", "seg/dice", "clf/acc")}})
    return VariantResults(name, pd.DataFrame(rows).set_index("seed"), predictions)


@pytest.fixture(scope="module")
def table():
    variants = [_variant("baseline", 0.0), _variant("tim_upa", 0.15), _variant("copy", 0.0)]
    return build_table(variants, "baseline", BOOT, paper={"tim_upa": TABLE2_BUSI[(False, True, True)]})


def test_rows_hold_mean_and_std_in_percent(table):
    baseline = _variant("baseline", 0.0).run_metrics["test/seg/iou"]
    row = table.rows[0]
    assert [r.variant for r in table.rows] == ["baseline", "tim_upa", "copy"]
    assert row.mean["seg/iou"] == pytest.approx(100 * baseline.mean())
    assert row.std["seg/iou"] == pytest.approx(100 * baseline.std(ddof=1))
    assert row.vs_baseline is None and row.vs_previous is None


def test_deltas_are_significant_only_for_the_real_shift(table):
    shifted, copy = table.rows[1], table.rows[2]
    assert shifted.vs_baseline["seg/iou"].diff > 10 and shifted.vs_baseline["seg/iou"].significant
    assert copy.vs_baseline["seg/iou"].diff == 0 and not copy.vs_baseline["seg/iou"].significant
    assert copy.previous == "tim_upa" and copy.vs_previous["seg/iou"].diff < -10


def test_markdown_marks_non_significant_deltas(table):
    text = render_table(table, "md")
    lines = {line.split(" | ")[0].strip("| "): line for line in text.splitlines() if line.startswith("| ")}
    assert "Seg IoU" in text and "± " in text and "Δ vs baseline (baseline)" in text
    assert lines["copy"].count("†") >= 1 and "[+0.00, +0.00] †" in lines["copy"]
    shifted_iou = lines["tim_upa"].split(" | ")[2]  # first Δ line of tim_upa is the vs-baseline block
    assert "†" not in shifted_iou and shifted_iou.startswith("+")
    assert "↳ paper, Table 2 (+TIM+UPA)" in text and "97.31" in text


def test_latex_is_booktabs_with_escaped_names(table):
    text = render_table(table, "tex")
    for command in (r"\toprule", r"\midrule", r"\bottomrule", r"\cmidrule(lr){3-6}", r"$\pm$"):
        assert command in text
    assert r"tim\_upa" in text and "tim_upa" not in text and r"$^\dagger$" in text
    assert text.count(r"\begin{tabular}") == 3 == text.count(r"\end{tabular}")


def test_html_is_well_formed_with_grouped_header(table):
    root = ET.fromstring(f"<div>{render_table(table, 'html')}</div>")
    tables = root.findall("table")
    assert len(tables) == 3
    assert [th.text for th in tables[0].find("thead").iter("th")][2:4] == ["Seg", "Clf"]
    assert len(tables[0].find("tbody").findall("tr")) == 4  # 3 variants + 1 paper row
    assert len(tables[1].find("tbody").findall("tr")) == 2  # every variant but the baseline


def test_csv_is_long_and_numeric(table):
    frame = pd.read_csv(io.StringIO(render_table(table, "csv")))
    assert len(frame) == 3 * len(COLUMNS)
    assert pd.api.types.is_float_dtype(frame["mean"]) and pd.api.types.is_float_dtype(frame["d_base_lo"])
    iou = frame[frame["metric"] == "seg/iou"].set_index("variant")
    assert bool(iou.loc["tim_upa", "d_base_significant"]) and not bool(iou.loc["copy", "d_base_significant"])
    assert iou.loc["tim_upa", "paper"] == pytest.approx(69.74)
    assert iou.loc["tim_upa", "d_base_n_images"] > 0
    assert frame.equals(pd.read_csv(io.StringIO(table_frame(table).to_csv(index=False))))


def test_unknown_format_and_missing_baseline_are_errors(table):
    with pytest.raises(ValueError, match="unknown table format 'pdf'"):
        render_table(table, "pdf")
    with pytest.raises(ValueError, match="baseline variant 'nope'"):
        build_table([_variant("a", 0.0)], "nope", BOOT)


@pytest.mark.parametrize("variant, config, label", [
    ("baseline", {"model.hmsf": False, "model.tim": False, "model.upa": False}, "baseline"),
    ("full", {"model.hmsf": True, "model.tim": True, "model.upa": True,
              "model.tim_levels": np.array([1, 2, 3, 4])}, "HMSF+TIM+UPA"),
    ("enc", {"model.hmsf": False, "model.tim": True, "model.upa": True, "model.encoder_only": True},
     "baseline"),
    ("tim_d2", {"model.hmsf": False, "model.tim": True, "model.upa": False, "model.tim_levels": [2]}, None),
    ("unet_clf", {"model.hmsf": False, "model.tim": False, "model.upa": False}, "U-Net"),
    ("Attention-UNet", {}, "Attention U-Net"),
    ("custom", {}, None),
])
def test_paper_row_lookup(variant, config, label):
    row = paper_row(variant, config)
    assert (row.label if row else None) == label


def test_paper_numbers_match_the_published_tables():
    full = TABLE2_BUSI[(True, True, True)].values
    assert full["seg/iou"] == TABLE1_BUSI["proposed"].values["seg/iou"] == 74.50
    assert "clf/acc" not in TABLE1_BUSI["swinunet"].values
    assert is_busi("BUSI") and not is_busi("busi_whu") and not is_busi(None)

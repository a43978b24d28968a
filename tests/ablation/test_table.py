"""The Table-2-style table in every format: best values, significance marks, the seed warning, extra
metric columns, the Δ-vs-previous block, a LaTeX file that fits a page; and the paper's rows."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest

from busray.ablation.paper import TABLE1_BUSI, TABLE2_BUSI, is_busi, paper_row
from busray.ablation.render import render_table, tex_escape
from busray.ablation.stats import MIN_SEEDS, BootstrapConfig, VariantResults
from busray.ablation.table import COLUMNS, Column, blocks, build_table, table_frame

BOOT = BootstrapConfig(n_boot=500, seed=0)
SEEDS = (0, 1)


def _variant(name: str, shift: float, seeds=SEEDS, extra: dict | None = None) -> VariantResults:
    """Seeds × 24 test images; ``shift`` raises every lesion image's IoU/Dice and every run metric;
    ``extra`` adds run-level metric columns (``test/seg/iou_pooled``: value)."""
    predictions, rows = {}, []
    for seed in seeds:
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
                        if c.key not in ("seg/iou", "seg/dice", "clf/acc")},
                     **{key: value + shift for key, value in (extra or {}).items()}})
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


def test_the_ci_spread_prints_the_t_interval_of_the_mean_and_csv_has_both():
    variants = [_variant("baseline", 0.0, seeds=(0, 1, 2)), _variant("b", 0.1, seeds=(0, 1, 2))]
    ci = build_table(variants, "baseline", BOOT, spread="ci")
    iou = 100 * variants[0].run_metrics["test/seg/iou"]
    half = 4.302653 * iou.std(ddof=1) / np.sqrt(3)
    assert ci.rows[0].ci["seg/iou"] == pytest.approx(half, rel=1e-5)
    stats = blocks(ci)[0]
    assert stats.title == "Test metrics (%), mean ± 95% CI of the mean over seeds (Student t); best in bold"
    assert stats.lines[0].cells[0].detail == f"± {half:.2f}"
    assert blocks(build_table(variants, "baseline", BOOT))[0].lines[0].cells[0].detail == f"± {iou.std(ddof=1):.2f}"
    row = table_frame(ci).set_index(["variant", "metric"]).loc[("baseline", "seg/iou")]
    assert (row["mean_ci_lo"], row["mean_ci_hi"]) == pytest.approx((iou.mean() - half, iou.mean() + half))
    with pytest.raises(ValueError, match="unknown spread 'sem'"):
        build_table(variants, "baseline", BOOT, spread="sem")


def test_deltas_are_significant_only_for_the_real_shift(table):
    shifted, copy = table.rows[1], table.rows[2]
    assert shifted.vs_baseline["seg/iou"].diff > 10 and shifted.vs_baseline["seg/iou"].significant
    assert copy.vs_baseline["seg/iou"].diff == 0 and not copy.vs_baseline["seg/iou"].significant
    assert copy.previous == "tim_upa" and copy.vs_previous["seg/iou"].diff < -10


@pytest.mark.parametrize("names, previous_lines", [
    (["baseline", "b"], []),                                   # b vs baseline repeats Δ vs baseline
    (["baseline", "b", "c"], ["c vs b"]),
    (["baseline", "b", "c", "d"], ["c vs b", "d vs c"]),
])
def test_previous_row_block_skips_the_repeat_of_the_baseline_row(names, previous_lines):
    table = build_table([_variant(n, 0.01 * i) for i, n in enumerate(names)], "baseline", BOOT)
    by_title = {b.title.split(",")[0]: [line.label for line in b.lines] for b in blocks(table)}
    assert by_title["Δ vs baseline (baseline)"] == names[1:]
    assert by_title.get("Δ vs previous row", []) == previous_lines


@pytest.mark.parametrize("shifts, bold", [
    ((0.0, 0.15, 0.0), [False, True, False]),
    ((0.1, 0.0, 0.1), [True, False, True]),                    # ties are all bold
])
def test_best_mean_of_each_column_is_bold(shifts, bold):
    table = build_table([_variant(f"v{i}", s) for i, s in enumerate(shifts)], "v0", BOOT)
    cells = [line.cells for line in blocks(table)[0].lines]
    for index, column in enumerate(COLUMNS):
        expected = [True] * 3 if column.key == "clf/acc" else bold   # accuracy is not shifted: a tie
        assert [c[index].bold for c in cells] == expected, column.key
    assert "**" in render_table(table, "md") and "<b>" in render_table(table, "html")
    assert r"\textbf{" in render_table(table, "tex")


def test_a_single_variant_has_nothing_bold_and_no_deltas():
    table = build_table([_variant("only", 0.0)], "only", BOOT)
    assert [b.kind for b in blocks(table)] == ["stats"]
    assert "| **" not in render_table(table, "md") and not table.warnings


def test_markdown_marks_non_significant_deltas(table):
    text = render_table(table, "md")
    lines = {line.split(" | ")[0].strip("| "): line for line in text.splitlines() if line.startswith("| ")}
    assert "Seg IoU" in text and "± " in text and "Δ vs baseline (baseline)" in text
    assert lines["copy"].count("†") >= 1 and "[+0.00, +0.00] †" in lines["copy"]
    shifted_iou = lines["tim_upa"].split(" | ")[2]  # first Δ line of tim_upa is the vs-baseline block
    assert "†" not in shifted_iou and shifted_iou.startswith("+")
    assert "↳ paper, Table 2 (+TIM+UPA)" in text and "97.31" in text


def test_variants_sharing_a_paper_row_show_it_once_under_the_last_of_them():
    full, tim_upa = TABLE2_BUSI[(True, True, True)], TABLE2_BUSI[(False, True, True)]
    variants = [_variant(name, 0.0) for name in ("ref", "top1", "top2", "other", "alone")]
    table = build_table(variants, "ref", BOOT, paper={"ref": full, "top1": full, "top2": full, "other": tim_upa})
    labels = [line.label for line in blocks(table)[0].lines]
    assert labels == ["ref", "top1", "top2", "↳ paper, Table 2 (HMSF+TIM+UPA), for the 3 rows above",
                      "other", "↳ paper, Table 2 (+TIM+UPA)", "alone"]


@pytest.mark.parametrize("seeds, warned", [((0,), True), ((0, 1), True), (tuple(range(MIN_SEEDS)), False)])
def test_few_seeds_warn_in_every_format(seeds, warned):
    table = build_table([_variant("a", 0.0, seeds), _variant("b", 0.1, seeds)], "a", BOOT)
    assert bool(table.warnings) == warned
    for fmt in ("md", "html", "tex"):
        text = render_table(table, fmt)
        assert ("fewer than 3 seeds" in text) == warned, fmt
        if warned and fmt == "tex":  # a note of the Δ table, where the † marks are read
            assert (text.index(r"\label{tab:ablation-delta}") < text.index("fewer than 3 seeds")
                    < text.index(r"\label{tab:ablation-ci}"))
        elif warned:                 # just above the Δ tables
            assert text.index("Test metrics") < text.index("fewer than 3 seeds") < text.index("Δ vs baseline")


def test_extra_metrics_get_their_own_block_and_csv_rows():
    extra = {"test/seg/iou_pooled": 0.6, "test/seg/dice_pooled": 0.7, "test/clf/bm_auc": 0.8}
    table = build_table([_variant("a", 0.0, extra=extra), _variant("b", 0.1, extra=extra)], "a", BOOT)
    assert [c.title for c in table.extra] == ["IoU pooled", "Dice pooled", "bm AUC"]
    assert table.columns == COLUMNS                            # the main table keeps the paper's columns
    stats = [b for b in blocks(table) if b.kind == "stats"]
    assert [len(b.columns) for b in stats] == [8, 3]
    assert stats[1].lines[1].cells[0].value == "70.00" and stats[1].lines[1].cells[0].bold
    assert "Seg IoU pooled" in render_table(table, "md")
    frame = table_frame(table)
    assert frame.loc[frame["metric"] == "seg/iou_pooled", "d_base"].iloc[-1] == pytest.approx(10.0)


def test_a_column_may_show_another_metric_under_the_papers_number():
    pooled = (Column("Seg", "IoU", "seg/iou_pooled", paper_key="seg/iou"), *COLUMNS[1:])
    variants = [_variant("a", 0.0, extra={"test/seg/iou_pooled": 0.6}),
                _variant("b", 0.1, extra={"test/seg/iou_pooled": 0.6})]
    table = build_table(variants, "a", BOOT, paper={"b": TABLE2_BUSI[(True, True, True)]}, columns=pooled)
    main = blocks(table)[0]
    assert main.lines[1].cells[0].value == "70.00" and main.lines[2].cells[0].value == "74.50"
    assert [c.key for c in table.extra] == ["seg/iou"]            # the per-image IoU moves aside
    frame = table_frame(table).set_index(["variant", "metric"])
    assert frame.loc[("b", "seg/iou_pooled"), "paper"] == 74.50


def test_latex_is_booktabs_floats_to_input(table):
    text = render_table(table, "tex", label="tab:t2")
    assert r"\documentclass" not in text and r"\begin{document}" not in text
    for command in (r"\toprule", r"\midrule", r"\bottomrule", r"\cmidrule(lr){3-6}", r"\label{tab:t2-ci}"):
        assert command in text
    assert r"tim\_upa" in text and "tim_upa" not in text and r"$^\dagger$" in text
    assert text.count(r"\begin{table}") == 3 == text.count(r"\end{tabular}")   # metrics, Δ, CIs
    assert r"$-$" in text and not re.search(r"&\s*-\d", text)  # minus signs, not hyphens
    assert r"\pm" in text and " [" not in text                # std below the mean; CIs in their own table


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="needs pdflatex")
@pytest.mark.parametrize("names, scaled, spread", [
    (("baseline", "hmsf", "tim", "tim_upa", "full"), False, "std"),                  # ablations/table2.yaml
    (("baseline", "hmsf", "tim", "tim_upa", "full"), False, "ci"),                   # its report --spread ci
    (("encoder_only", "running_tau100", "a_really_long_variant_name"), True, "std"),
])
def test_latex_compiles_and_fits_a_one_column_page(tmp_path, names, scaled, spread):
    extra = {"test/seg/iou_pooled": 0.6, "test/seg/dice_pooled": 0.7}
    table = build_table([_variant(n, 0.1 * (i % 3) - 0.1, extra=extra) for i, n in enumerate(names)],
                        names[0], BOOT, paper={names[-1]: TABLE2_BUSI[(True, True, True)]}, spread=spread)
    text = render_table(table, "tex")
    below = "standard deviation below" if spread == "std" else r"95\% confidence interval of the mean (Student $t$) below"
    assert text.count(below) == 2   # the captions of the metrics and the additional-metrics tables
    (tmp_path / "t.tex").write_text(text)
    (tmp_path / "doc.tex").write_text("\\documentclass{article}\\usepackage{booktabs,graphicx}"
                                      "\\begin{document}\\input{t.tex}\\end{document}\n")
    subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"], cwd=tmp_path,
                   timeout=120, capture_output=True, check=True)
    log = (tmp_path / "doc.log").read_text(errors="replace")
    assert "Overfull \\hbox" not in log
    assert ("scaled to the line width" in log) == scaled


def test_tex_escape_keeps_option_dashes_and_symbols():
    assert tex_escape("--resume a_b 50% ±") == r"-{}-resume a\_b 50\% $\pm$"
    assert tex_escape("–") == "--"


def test_html_is_well_formed_with_grouped_header(table):
    root = ET.fromstring(f"<div>{render_table(table, 'html')}</div>")
    tables = root.findall("table")
    assert len(tables) == 3
    assert [th.text for th in tables[0].find("thead").iter("th")][2:4] == ["Seg", "Clf"]
    assert len(tables[0].find("tbody").findall("tr")) == 4  # 3 variants + 1 paper row
    assert len(tables[1].find("tbody").findall("tr")) == 2  # every variant but the baseline
    assert len(tables[2].find("tbody").findall("tr")) == 1  # copy vs tim_upa only
    first = tables[0].find("tbody").find("tr").findall("td")[2]
    assert first.find("span").text.startswith("± ")           # the std on its own line


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

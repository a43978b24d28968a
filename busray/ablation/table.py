"""The Table-2-style ablation table: one row per variant, mean ± std over seeds, Δ with bootstrap CIs.

Columns are the paper's (Table 2): Seg IoU, Dice, Sens, Prec / Clf Acc, F1, AUC, Prec, in percent.
The table has three blocks, rendered in every format:

1. test metrics, ``mean ± std`` over seeds (sample std), optionally with the paper's published row
   under each variant (BUSI only, see :mod:`busray.ablation.paper`);
2. Δ to the baseline variant, in percentage points, ``Δ [lo, hi]`` = paired bootstrap 95% CI
   (:mod:`busray.ablation.stats`);
3. Δ to the previous row (the incremental contribution of each step of the ablation order).

A Δ whose interval contains 0 (or cannot be estimated) is marked ``†`` = not significant.
Formats: ``md``, ``tex`` (booktabs), ``html`` (a ``<table>`` fragment; the report wraps it into a page)
and ``csv`` (long and numeric: one line per variant × metric, for machines).
"""

from __future__ import annotations

import dataclasses
import html
import math
from collections.abc import Callable, Mapping, Sequence

import pandas as pd

from busray.ablation.paper import PaperRow
from busray.ablation.stats import BootstrapConfig, Difference, VariantResults, compare, mean_std

FORMATS = ("md", "tex", "csv", "html")


@dataclasses.dataclass(frozen=True)
class Column:
    group: str   # "Seg" | "Clf"
    title: str   # as in the paper's header
    key: str     # metric key, ``test/<key>`` in the runs table


COLUMNS = (Column("Seg", "IoU", "seg/iou"), Column("Seg", "Dice", "seg/dice"),
           Column("Seg", "Sens", "seg/sens"), Column("Seg", "Prec", "seg/prec"),
           Column("Clf", "Acc", "clf/acc"), Column("Clf", "F1", "clf/f1"),
           Column("Clf", "AUC", "clf/auc"), Column("Clf", "Prec", "clf/prec"))

NOT_SIGNIFICANT = "†"
FOOTNOTE = ("Δ in percentage points with a paired bootstrap {ci:.0%} CI ({n_boot} replicates) over seeds × "
            "test images for IoU, Dice and Acc, over seeds only for the per-run metrics (Sens, Prec, F1, "
            "AUC); † = the interval contains 0 (not significant) or cannot be estimated.")


@dataclasses.dataclass(frozen=True)
class TableRow:
    """One variant: statistics in percent; Δs in percentage points (None where not applicable)."""

    variant: str
    n_seeds: int
    mean: Mapping[str, float]
    std: Mapping[str, float]
    vs_baseline: Mapping[str, Difference] | None
    previous: str | None
    vs_previous: Mapping[str, Difference] | None
    paper: PaperRow | None = None


@dataclasses.dataclass(frozen=True)
class AblationTable:
    rows: tuple[TableRow, ...]
    baseline: str
    boot: BootstrapConfig

    @property
    def footnote(self) -> str:
        return FOOTNOTE.format(ci=self.boot.ci, n_boot=self.boot.n_boot)


def build_table(variants: Sequence[VariantResults], baseline: str,
                boot: BootstrapConfig = BootstrapConfig(),
                paper: Mapping[str, PaperRow] | None = None) -> AblationTable:
    """Rows in the given order; ``paper`` maps variant names to published rows to show beside ours."""
    by_name = {v.name: v for v in variants}
    if baseline not in by_name:
        raise ValueError(f"baseline variant '{baseline}' is not among the variants {list(by_name)}")
    rows = []
    for index, variant in enumerate(variants):
        previous = variants[index - 1] if index else None
        stats = {c.key: _seed_stat(variant, c.key) for c in COLUMNS}
        rows.append(TableRow(
            variant=variant.name, n_seeds=len(variant.seeds),
            mean={key: mean for key, (mean, _) in stats.items()},
            std={key: std for key, (_, std) in stats.items()},
            vs_baseline=None if variant.name == baseline else _deltas(by_name[baseline], variant, boot),
            previous=previous.name if previous else None,
            vs_previous=_deltas(previous, variant, boot) if previous else None,
            paper=(paper or {}).get(variant.name)))
    return AblationTable(tuple(rows), baseline, boot)


def _seed_stat(variant: VariantResults, key: str) -> tuple[float, float]:
    column = f"test/{key}"
    if column not in variant.run_metrics:
        return math.nan, math.nan
    mean, std = mean_std(variant.run_metrics[column].to_numpy(dtype=float))
    return 100 * mean, 100 * std


def _deltas(reference: VariantResults, variant: VariantResults,
            boot: BootstrapConfig) -> dict[str, Difference]:
    return {c.key: compare(reference, variant, c.key, boot).scaled(100) for c in COLUMNS}


# ----------------------------------------------------------------------------------------- rendering

@dataclasses.dataclass(frozen=True)
class _Style:
    pm: str
    dagger: str
    escape: Callable[[str], str]


_STYLES = {
    "md": _Style(" ± ", " " + NOT_SIGNIFICANT, lambda s: s.replace("|", "\\|")),
    "html": _Style(" ± ", " " + NOT_SIGNIFICANT, html.escape),
    "tex": _Style(r" $\pm$ ", r"$^\dagger$", lambda s: tex_escape(s)),
}


@dataclasses.dataclass(frozen=True)
class _Block:
    title: str
    rows: list[list[str]]  # first cell: row label; then one cell per COLUMNS entry


def render_table(table: AblationTable, fmt: str) -> str:
    """The table as text in ``fmt`` (one of :data:`FORMATS`)."""
    if fmt == "csv":
        return table_frame(table).to_csv(index=False)
    if fmt not in _STYLES:
        raise ValueError(f"unknown table format '{fmt}' (choose from {', '.join(FORMATS)})")
    style = _STYLES[fmt]
    blocks = _blocks(table, style)
    writer = {"md": _markdown, "tex": _latex, "html": _html}[fmt]
    return writer(blocks, style.escape(table.footnote))


def _blocks(table: AblationTable, style: _Style) -> list[_Block]:
    stats, vs_base, vs_prev = [], [], []
    for row in table.rows:
        stats.append([style.escape(row.variant), str(row.n_seeds)]
                     + [_stat_cell(row.mean[c.key], row.std[c.key], style) for c in COLUMNS])
        if row.paper is not None:
            label = f"↳ paper, {row.paper.source} ({row.paper.label})"
            stats.append([style.escape(label), ""] + [_paper_cell(row.paper, c.key) for c in COLUMNS])
        if row.vs_baseline is not None:
            vs_base.append([style.escape(row.variant), str(row.n_seeds)]
                           + [_delta_cell(row.vs_baseline[c.key], style) for c in COLUMNS])
        if row.vs_previous is not None:
            label = f"{row.variant} vs {row.previous}"
            vs_prev.append([style.escape(label), str(row.n_seeds)]
                           + [_delta_cell(row.vs_previous[c.key], style) for c in COLUMNS])
    return [_Block("Test metrics (%), mean ± std over seeds", stats),
            _Block(f"Δ vs baseline ({table.baseline}), percentage points [95% CI]", vs_base),
            _Block("Δ vs previous row, percentage points [95% CI]", vs_prev)]


def _stat_cell(mean: float, std: float, style: _Style) -> str:
    if math.isnan(mean):
        return "–"
    return f"{mean:.2f}" if math.isnan(std) else f"{mean:.2f}{style.pm}{std:.2f}"


def _paper_cell(paper: PaperRow, key: str) -> str:
    value = paper.values.get(key)
    return "–" if value is None else f"{value:.2f}"


def _delta_cell(delta: Difference, style: _Style) -> str:
    if math.isnan(delta.diff):
        return "–"
    interval = "n/a" if math.isnan(delta.lo) else f"{delta.lo:+.2f}, {delta.hi:+.2f}"
    mark = "" if delta.significant else style.dagger
    return f"{delta.diff:+.2f} [{interval}]{mark}"


def _markdown(blocks: list[_Block], footnote: str) -> str:
    header = ["Variant", "Seeds"] + [f"{c.group} {c.title}" for c in COLUMNS]
    parts = []
    for block in blocks:
        if not block.rows:
            continue
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * 2 + "--:|" * len(COLUMNS)]
        lines += ["| " + " | ".join(r) + " |" for r in block.rows]
        parts.append(f"**{block.title}**\n\n" + "\n".join(lines))
    return "\n\n".join(parts) + f"\n\n{footnote}\n"


def _latex(blocks: list[_Block], footnote: str) -> str:
    n_seg = sum(c.group == "Seg" for c in COLUMNS)
    spec = "ll" + "r" * len(COLUMNS)
    parts = []
    for block in blocks:
        if not block.rows:
            continue
        lines = [r"\begin{table}[ht]", r"\centering\small", rf"\caption{{{tex_escape(block.title)}}}",
                 rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
                 rf" & & \multicolumn{{{n_seg}}}{{c}}{{Segmentation}} & "
                 rf"\multicolumn{{{len(COLUMNS) - n_seg}}}{{c}}{{Classification}} \\",
                 rf"\cmidrule(lr){{3-{2 + n_seg}}}\cmidrule(lr){{{3 + n_seg}-{2 + len(COLUMNS)}}}",
                 "Variant & Seeds & " + " & ".join(c.title for c in COLUMNS) + r" \\", r"\midrule"]
        lines += [" & ".join(r) + r" \\" for r in block.rows]
        lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + f"\n\n{{\\footnotesize {footnote}}}\n"


def _html(blocks: list[_Block], footnote: str) -> str:
    groups = {c.group: sum(d.group == c.group for d in COLUMNS) for c in COLUMNS}
    group_row = '<tr><th rowspan="2">Variant</th><th rowspan="2">Seeds</th>' + "".join(
        f'<th colspan="{n}">{html.escape(g)}</th>' for g, n in groups.items()) + "</tr>"
    title_row = "<tr>" + "".join(f"<th>{html.escape(c.title)}</th>" for c in COLUMNS) + "</tr>"
    parts = []
    for block in blocks:
        if not block.rows:
            continue
        body = "\n".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in r) + "</tr>" for r in block.rows)
        parts.append(f"<table class=\"ablation\">\n<caption>{html.escape(block.title)}</caption>\n"
                     f"<thead>{group_row}\n{title_row}</thead>\n<tbody>\n{body}\n</tbody>\n</table>")
    return "\n".join(parts) + f'\n<p class="footnote">{footnote}</p>\n'


def tex_escape(text: str) -> str:
    """Text safe inside LaTeX, with the table's symbols (±, Δ, †, ...) as math."""
    replacements = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                    "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\^{}",
                    "±": r"$\pm$", "Δ": r"$\Delta$", "↳": r"$\hookrightarrow$", "†": r"$^\dagger$",
                    "×": r"$\times$"}
    return "".join(replacements.get(ch, ch) for ch in text)


def table_frame(table: AblationTable) -> pd.DataFrame:
    """The table in long numeric form: one row per variant × metric (percent / percentage points)."""
    records = []
    for row in table.rows:
        for column in COLUMNS:
            record = {"variant": row.variant, "metric": column.key, "n_seeds": row.n_seeds,
                      "mean": row.mean[column.key], "std": row.std[column.key],
                      "paper": row.paper.values.get(column.key, math.nan) if row.paper else math.nan,
                      "paper_source": f"{row.paper.source}: {row.paper.label}" if row.paper else "",
                      "baseline": table.baseline, "previous": row.previous or ""}
            record.update(_delta_record("d_base", row.vs_baseline, column.key))
            record.update(_delta_record("d_prev", row.vs_previous, column.key))
            records.append(record)
    return pd.DataFrame.from_records(records)


def _delta_record(prefix: str, deltas: Mapping[str, Difference] | None, key: str) -> dict:
    delta = deltas[key] if deltas else Difference(math.nan, math.nan, math.nan, 0, 0)
    return {prefix: delta.diff, f"{prefix}_lo": delta.lo, f"{prefix}_hi": delta.hi,
            f"{prefix}_significant": delta.significant if deltas else None,
            f"{prefix}_n_images": delta.n_images}

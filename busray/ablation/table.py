"""The Table-2-style ablation table: one row per variant, mean ± spread over seeds, Δ with bootstrap CIs.

Columns are the paper's (Table 2): Seg IoU, Dice, Sens, Prec / Clf Acc, F1, AUC, Prec, in percent.
Any other ``test/seg/*`` or ``test/clf/*`` metric the runs recorded (pooled IoU, ...) goes into a
separate "additional metrics" block rather than widening the main table. Blocks, in every format:

1. test metrics, ``mean ± std`` over seeds (sample std; ``spread="ci"``: ± the half width of the
   Student-t interval of the mean, :func:`~busray.ablation.stats.mean_interval`), the best mean of each
   column in bold, optionally with the paper's published row under the variant(s) it matches (BUSI only, :mod:`.paper`;
   once for consecutive variants sharing it);
2. additional metrics (when there are any), the same way;
3. Δ to the baseline variant, in percentage points, with a paired bootstrap CI (:mod:`.stats`);
4. Δ to the previous row: the step-by-step contribution along the ablation order. A row whose
   previous row is the baseline is left out: it would repeat its line of block 3.

A Δ whose interval contains 0 (or cannot be estimated) is marked ``†`` = not significant; when a
variant has fewer than :data:`~busray.ablation.stats.MIN_SEEDS` seeds the table carries a warning.
:func:`blocks` lays the table out as format-neutral cells; :mod:`.render` writes them as Markdown,
HTML or LaTeX. :func:`table_frame` is the long numeric form (one line per variant × metric, every
metric's Δs and both spreads included) behind ``--format csv``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

import pandas as pd

from busray.ablation.paper import PaperRow
from busray.ablation.stats import MIN_SEEDS, BootstrapConfig, Difference, VariantResults, compare, mean_interval

@dataclasses.dataclass(frozen=True)
class Column:
    group: str   # "Seg" | "Clf"
    title: str   # as in the paper's header
    key: str     # metric key, ``test/<key>`` in the runs table
    paper_key: str | None = None  # the key of the paper's number shown under it (default: ``key``);
    # e.g. Column("Seg", "IoU", "seg/iou_pooled", "seg/iou") compares our pooled IoU with the paper's

    def paper_value(self, paper: PaperRow | None) -> float | None:
        return paper.values.get(self.paper_key or self.key) if paper is not None else None


COLUMNS = (Column("Seg", "IoU", "seg/iou"), Column("Seg", "Dice", "seg/dice"),
           Column("Seg", "Sens", "seg/sens"), Column("Seg", "Prec", "seg/prec"),
           Column("Clf", "Acc", "clf/acc"), Column("Clf", "F1", "clf/f1"),
           Column("Clf", "AUC", "clf/auc"), Column("Clf", "Prec", "clf/prec"))
GROUPS = {"seg": "Seg", "clf": "Clf"}
_TITLES = {"iou": "IoU", "dice": "Dice", "sens": "Sens", "prec": "Prec", "acc": "Acc", "f1": "F1",
           "auc": "AUC"}

#: What follows a mean's ±: the sample std over seeds (how much one training run varies) or the half
#: width of the Student-t interval of the mean (how well the seeds pin the mean down).
SPREADS = ("std", "ci")
NOT_SIGNIFICANT = "†"
#: How the main block's title says the best means are shown (bold in the documents).
BEST_MARK = "best in bold"
FOOTNOTE = ("Δ in percentage points with a paired bootstrap {ci:.0%} CI ({n_boot} replicates) over seeds × "
            "test images for {per_image}, over seeds only for the per-run metrics ({per_run}); "
            "† = the interval contains 0 (not significant) or cannot be estimated.")


@dataclasses.dataclass(frozen=True)
class TableRow:
    """One variant: statistics in percent; Δs in percentage points (None where not applicable)."""

    variant: str
    n_seeds: int
    mean: Mapping[str, float]
    std: Mapping[str, float]
    ci: Mapping[str, float]  # half width of the t-interval of the mean, at the bootstrap's level
    vs_baseline: Mapping[str, Difference] | None
    previous: str | None
    vs_previous: Mapping[str, Difference] | None
    paper: PaperRow | None = None


@dataclasses.dataclass(frozen=True)
class AblationTable:
    rows: tuple[TableRow, ...]
    baseline: str
    boot: BootstrapConfig
    columns: tuple[Column, ...] = COLUMNS
    extra: tuple[Column, ...] = ()
    notes: tuple[str, ...] = ()   # shown under the table (e.g. the paper's metric convention)
    cautions: tuple[str, ...] = ()  # shown right under the first table (e.g. a setting unlike the paper's)
    spread: str = "std"  # one of SPREADS

    @property
    def spread_title(self) -> str:
        if self.spread == "ci":
            return f"mean ± {self.boot.ci:.0%} CI of the mean over seeds (Student t)"
        return "mean ± std over seeds"

    @property
    def footnote(self) -> str:
        """How the Δs were tested: which columns were resampled over images too (from the Δs themselves)."""
        deltas = [d for r in self.rows for d in (r.vs_baseline, r.vs_previous) if d]
        if not deltas:
            return ""
        over_images = {c.key for c in self.columns if any(d[c.key].n_images for d in deltas)}
        per_image = [c.title for c in self.columns if c.key in over_images]
        per_run = [c.title for c in self.columns if c.key not in over_images]
        return FOOTNOTE.format(ci=self.boot.ci, n_boot=self.boot.n_boot,
                               per_image=", ".join(per_image) or "no metric",
                               per_run=", ".join(dict.fromkeys(per_run)) or "none")

    @property
    def warnings(self) -> list[str]:
        """A visible caveat when the Δs rest on fewer than MIN_SEEDS seeds per variant."""
        few = [r for r in self.rows if r.n_seeds < MIN_SEEDS]
        if len(self.rows) < 2 or not few:
            return []
        seeds = ", ".join(f"{r.variant}: {r.n_seeds}" for r in few)
        return [f"Warning: significance rests on fewer than {MIN_SEEDS} seeds per variant ({seeds}). "
                "The intervals then reflect the test images only, not training-to-training variation; "
                "train more seeds (busray ablate FILE --resume --seeds N) before reading † marks."]

    def best(self, key: str) -> float | None:
        """The best (highest) mean of a column, rounded as printed; None with fewer than 2 variants."""
        values = [round(r.mean[key], 2) for r in self.rows if not math.isnan(r.mean[key])]
        return max(values) if len(values) > 1 else None

    def compared_rows(self, block: str) -> list[TableRow]:
        """The rows of a Δ block: ``vs_baseline`` or ``vs_previous`` (without the baseline repeats)."""
        if block == "vs_baseline":
            return [r for r in self.rows if r.vs_baseline is not None]
        return [r for r in self.rows if r.vs_previous is not None and r.previous != self.baseline]


def extra_columns(variants: Sequence[VariantResults], main: Sequence[Column] = COLUMNS) -> tuple[Column, ...]:
    """Every other ``test/seg/*`` / ``test/clf/*`` metric the runs recorded, Seg first, by key."""
    taken = {c.key for c in main}
    keys = {str(c)[5:] for v in variants for c in v.run_metrics.columns
            if str(c).startswith("test/") and pd.api.types.is_numeric_dtype(v.run_metrics[c])}
    # metric keys are "<group>/<name>"; bare loss terms ("test/clf", "test/seg") are not metrics
    extra = sorted((k for k in keys - taken if "/" in k and k.split("/")[0] in GROUPS), key=_column_order)
    # a metric whose other convention is in the main table (seg/iou beside seg/iou_pooled) says which it is
    return tuple(Column(GROUPS[k.split("/")[0]], _title(k) + (" per-image" if any(
        t.startswith(k + "_") for t in taken) else ""), k) for k in extra)


def _column_order(key: str) -> tuple:
    """Seg before Clf; within a group the paper's metric order (IoU, Dice, ...), then the key."""
    group, name = key.split("/", 1)
    known = [i for i, word in enumerate(_TITLES) if word in name.split("_")]
    return list(GROUPS).index(group), min(known, default=len(_TITLES)), key


def _title(key: str) -> str:
    """``seg/iou_pooled`` -> ``IoU pooled``."""
    return " ".join(_TITLES.get(word, word) for word in key.split("/", 1)[1].split("_"))


def build_table(variants: Sequence[VariantResults], baseline: str,
                boot: BootstrapConfig = BootstrapConfig(),
                paper: Mapping[str, PaperRow] | None = None,
                columns: Sequence[Column] = COLUMNS, notes: Sequence[str] = (),
                cautions: Sequence[str] = (), spread: str = "std") -> AblationTable:
    """Rows in the given order; ``paper`` maps variant names to published rows to show beside ours;
    ``spread`` is what the stats blocks print after ± (:data:`SPREADS`)."""
    by_name = {v.name: v for v in variants}
    if baseline not in by_name:
        raise ValueError(f"baseline variant '{baseline}' is not among the variants {list(by_name)}")
    if spread not in SPREADS:
        raise ValueError(f"unknown spread '{spread}' (choose from {', '.join(SPREADS)})")
    extra = extra_columns(variants, columns)
    keys = [c.key for c in (*columns, *extra)]
    rows = []
    for index, variant in enumerate(variants):
        previous = variants[index - 1] if index else None
        stats = {key: _seed_stat(variant, key, boot.ci) for key in keys}
        rows.append(TableRow(
            variant=variant.name, n_seeds=len(variant.seeds),
            mean={key: mean for key, (mean, _, _) in stats.items()},
            std={key: std for key, (_, std, _) in stats.items()},
            ci={key: half for key, (_, _, half) in stats.items()},
            vs_baseline=None if variant.name == baseline else _deltas(by_name[baseline], variant, keys, boot),
            previous=previous.name if previous else None,
            vs_previous=_deltas(previous, variant, keys, boot) if previous else None,
            paper=(paper or {}).get(variant.name)))
    return AblationTable(tuple(rows), baseline, boot, tuple(columns), extra, tuple(notes), tuple(cautions),
                         spread)


def _seed_stat(variant: VariantResults, key: str, level: float) -> tuple[float, float, float]:
    """Mean, std and t-interval half width over seeds, in percent."""
    column = f"test/{key}"
    if column not in variant.run_metrics:
        return math.nan, math.nan, math.nan
    mean, std, half = mean_interval(variant.run_metrics[column].to_numpy(dtype=float), level)
    return 100 * mean, 100 * std, 100 * half


def _deltas(reference: VariantResults, variant: VariantResults, keys: Sequence[str],
            boot: BootstrapConfig) -> dict[str, Difference]:
    return {key: compare(reference, variant, key, boot).scaled(100) for key in keys}


# ------------------------------------------------------------------------------- format-neutral cells

@dataclasses.dataclass(frozen=True)
class Cell:
    """A value as printed, its uncertainty (``± spread`` / ``[lo, hi]``), bold = best, † = not significant."""

    value: str
    detail: str = ""
    bold: bool = False
    dagger: bool = False


@dataclasses.dataclass(frozen=True)
class Line:
    label: str
    seeds: str
    cells: list[Cell]
    paper: bool = False
    variant: str = ""  # the variant alone, where ``label`` adds what it is compared to


@dataclasses.dataclass(frozen=True)
class Block:
    kind: str  # "stats" | "delta"
    title: str
    columns: tuple[Column, ...]
    lines: list[Line]
    part: str  # which of the table's blocks: one of BLOCK_PARTS


#: The blocks of :func:`blocks`, in order (see the module docstring): 1. to 4.
BLOCK_PARTS = ("main", "extra", "vs_baseline", "vs_previous")


def blocks(table: AblationTable) -> list[Block]:
    """The table's blocks (see the module docstring); empty blocks are left out."""
    out = [Block("stats", f"Test metrics (%), {table.spread_title}; {BEST_MARK}", table.columns,
                 _stat_lines(table, table.columns, paper=True), "main")]
    if table.extra:
        out.append(Block("stats", f"Additional test metrics (%), {table.spread_title}", table.extra,
                         _stat_lines(table, table.extra, paper=False), "extra"))
    ci = f"{table.boot.ci:.0%}"
    out.append(Block("delta", f"Δ vs baseline ({table.baseline}), percentage points [{ci} CI]",
                     table.columns, [Line(r.variant, str(r.n_seeds), _delta_cells(r.vs_baseline, table))
                                     for r in table.compared_rows("vs_baseline")], "vs_baseline"))
    out.append(Block("delta", f"Δ vs previous row, percentage points [{ci} CI]", table.columns,
                     [Line(f"{r.variant} vs {r.previous}", str(r.n_seeds), _delta_cells(r.vs_previous, table),
                           variant=r.variant) for r in table.compared_rows("vs_previous")], "vs_previous"))
    return [b for b in out if b.lines]


def _stat_lines(table: AblationTable, columns: Sequence[Column], paper: bool) -> list[Line]:
    """One line per variant; with ``paper``, the published row under the variants it matches, once
    for a run of consecutive variants that match the same row (a confirmation: all the full model)."""
    lines, sharing = [], 0
    for row, after in zip(table.rows, [*table.rows[1:], None], strict=True):
        spread = row.ci if table.spread == "ci" else row.std
        lines.append(Line(row.variant, str(row.n_seeds),
                          [_stat_cell(row.mean[c.key], spread[c.key], table.best(c.key)) for c in columns]))
        if not paper or row.paper is None:
            continue
        sharing += 1
        if after is not None and after.paper == row.paper:
            continue  # the next variant shares it: one line under the last of them
        lines.append(_paper_line(row.paper, columns, sharing))
        sharing = 0
    return lines


def _paper_line(paper: PaperRow, columns: Sequence[Column], sharing: int) -> Line:
    values = [c.paper_value(paper) for c in columns]
    shared = f", for the {sharing} rows above" if sharing > 1 else ""
    return Line(f"↳ paper, {paper.source} ({paper.label}){shared}", "",
                [Cell("–" if v is None else f"{v:.2f}") for v in values], paper=True)


def _stat_cell(mean: float, spread: float, best: float | None) -> Cell:
    if math.isnan(mean):
        return Cell("–")
    return Cell(f"{mean:.2f}", "" if math.isnan(spread) else f"± {spread:.2f}",
                bold=best is not None and round(mean, 2) == best)


def _delta_cells(deltas: Mapping[str, Difference], table: AblationTable) -> list[Cell]:
    cells = []
    for column in table.columns:
        delta = deltas[column.key]
        if math.isnan(delta.diff):
            cells.append(Cell("–"))
            continue
        interval = "n/a" if math.isnan(delta.lo) else f"{delta.lo:+.2f}, {delta.hi:+.2f}"
        cells.append(Cell(f"{delta.diff:+.2f}", f"[{interval}]", dagger=not delta.significant))
    return cells


def table_frame(table: AblationTable) -> pd.DataFrame:
    """The table in long numeric form: one row per variant × metric (percent / percentage points)."""
    records = []
    for row in table.rows:
        for column in (*table.columns, *table.extra):
            record = {"variant": row.variant, "metric": column.key, "n_seeds": row.n_seeds,
                      "mean": row.mean[column.key], "std": row.std[column.key],
                      "mean_ci_lo": row.mean[column.key] - row.ci[column.key],
                      "mean_ci_hi": row.mean[column.key] + row.ci[column.key],
                      "paper": _or_nan(column.paper_value(row.paper)),
                      "paper_source": f"{row.paper.source}: {row.paper.label}" if row.paper else "",
                      "baseline": table.baseline, "previous": row.previous or ""}
            record.update(_delta_record("d_base", row.vs_baseline, column.key))
            record.update(_delta_record("d_prev", row.vs_previous, column.key))
            records.append(record)
    return pd.DataFrame.from_records(records)


def _or_nan(value: float | None) -> float:
    return math.nan if value is None else value


def _delta_record(prefix: str, deltas: Mapping[str, Difference] | None, key: str) -> dict:
    delta = deltas[key] if deltas else Difference(math.nan, math.nan, math.nan, 0, 0)
    return {prefix: delta.diff, f"{prefix}_lo": delta.lo, f"{prefix}_hi": delta.hi,
            f"{prefix}_significant": delta.significant if deltas else None,
            f"{prefix}_n_images": delta.n_images}

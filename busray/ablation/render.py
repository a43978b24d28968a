"""The ablation table as Markdown, HTML or LaTeX (and CSV), from :func:`.table.blocks`.

- ``md``: one pipe table per block, ``value ± spread`` (std, or the CI of the mean) and ``Δ [lo, hi] †``
  inline, best values bold;
- ``html``: ``<table>`` fragments (the report wraps them into a page) with each uncertainty on a
  second, smaller line;
- ``tex``: booktabs ``table`` floats to ``\\input`` into a paper (needs ``booktabs`` and ``graphicx``),
  laid out for a one-column page (345 pt, LaTeX's ``article``): the spread of each mean on a second,
  smaller line; Δs with † in their own table; the confidence intervals, which would not fit beside
  them, in a third table with a lower-bound and an upper-bound line per comparison. With the shipped
  ablations' variant names the tables fit as they are; a tabular that would still be wider than the
  line (long names) is scaled down to ``\\linewidth`` rather than running into the margin.
- ``csv``: :func:`.table.table_frame`, long and numeric;
- :func:`console_table`: what ``busray report`` prints, the main block and the Δ vs baseline as aligned
  plain text, each uncertainty on a second line (as in HTML), a block too wide for a terminal split
  into its Seg and Clf columns.

Warnings (fewer than 3 seeds) are printed just above the Δ tables, notes and the footnote below.
"""

from __future__ import annotations

import html
import textwrap
from collections.abc import Callable, Sequence

from busray.ablation.table import (BEST_MARK, BLOCK_PARTS, NOT_SIGNIFICANT, AblationTable, Block, Cell,
                                   Column, Line, blocks, table_frame)

FORMATS = ("md", "tex", "csv", "html")


def render_table(table: AblationTable, fmt: str, label: str = "tab:ablation") -> str:
    """The table as text in ``fmt`` (one of :data:`FORMATS`); ``label`` prefixes LaTeX ``\\label``s."""
    if fmt == "csv":
        return table_frame(table).to_csv(index=False)
    writers = {"md": _markdown, "html": _html, "tex": lambda t: _latex(t, label)}
    if fmt not in writers:
        raise ValueError(f"unknown table format '{fmt}' (choose from {', '.join(FORMATS)})")
    return writers[fmt](table)


def _with_warnings(table: AblationTable, block_text: Callable[[Block], str],
                   warning_text: Callable[[str], str], parts_shown: Sequence[str] = BLOCK_PARTS) -> list[str]:
    """Each block's text (of the blocks ``parts_shown``), the table's cautions right after the first
    block and its warnings just before the first Δ block."""
    parts, warned = [], False
    for index, block in enumerate(b for b in blocks(table) if b.part in parts_shown):
        if block.kind == "delta" and not warned:
            parts += [warning_text(w) for w in table.warnings]
            warned = True
        parts.append(block_text(block))
        if index == 0:
            parts += [warning_text(c) for c in table.cautions]
    return parts


def _notes(table: AblationTable) -> list[str]:
    return [n for n in (table.footnote, *table.notes) if n]


# ------------------------------------------------------------------------------------------ Markdown

def _md_cell(cell: Cell) -> str:
    value = f"**{cell.value}**" if cell.bold else cell.value
    return " ".join(filter(None, [value, cell.detail, NOT_SIGNIFICANT if cell.dagger else ""]))


def _md_block(block: Block) -> str:
    header = ["Variant", "Seeds"] + [f"{c.group} {c.title}" for c in block.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * 2 + "--:|" * len(block.columns)]
    lines += ["| " + " | ".join([line.label.replace("|", "\\|"), line.seeds, *map(_md_cell, line.cells)])
              + " |" for line in block.lines]
    return f"**{block.title}**\n\n" + "\n".join(lines)


def _markdown(table: AblationTable) -> str:
    parts = _with_warnings(table, _md_block, lambda w: f"> **{w}**")
    return "\n\n".join(parts + _notes(table)) + "\n"


# ------------------------------------------------------------------------------------------- console

CONSOLE_WIDTH = 100        # a block wider than this is printed as two: its Seg columns, then its Clf ones
CONSOLE_PARTS = ("main", "vs_baseline")
CONSOLE_BEST = "*"         # the documents' bold


def console_table(table: AblationTable) -> str:
    """The main block and the Δ vs baseline as aligned plain text, with the cautions and warnings
    where the documents have them; the other blocks, the notes and the figures are in the report files."""
    def wrap(text: str) -> str:
        return textwrap.fill(text, CONSOLE_WIDTH)

    parts = _with_warnings(table, _console_block, wrap, CONSOLE_PARTS)
    if any(c.dagger for b in blocks(table) if b.part == "vs_baseline" for line in b.lines for c in line.cells):
        parts.append(f"{NOT_SIGNIFICANT} = not significant: the interval contains 0 or cannot be estimated")
    return "\n\n".join(parts)


def _console_block(block: Block) -> str:
    title = block.title.replace(BEST_MARK, f"best marked {CONSOLE_BEST}")
    grid = _console_grid(block.lines, block.columns)
    if max(map(len, grid.splitlines())) > CONSOLE_WIDTH:
        groups = dict.fromkeys(c.group for c in block.columns)
        grid = "\n\n".join(_console_grid(block.lines, block.columns, group) for group in groups)
    return f"{title}\n{grid}"


def _console_grid(lines: Sequence[Line], columns: Sequence[Column], group: str | None = None) -> str:
    """Rows of (label, seeds, cells): each value line followed by its uncertainties' line, if any.
    A column's marks (best, †) get a slot of their own, so its numbers and uncertainties line up."""
    shown = [i for i, c in enumerate(columns) if group in (None, c.group)]
    cells = [[line.cells[i] for i in shown] for line in lines]
    slots = [max((len(_console_mark(row[k])) for row in cells), default=0) for k in range(len(shown))]
    rows = [["Variant", "Seeds", *(f"{columns[i].group} {columns[i].title}" for i in shown)]]
    for line, row in zip(lines, cells):
        rows.append([line.label, line.seeds, *(c.value + _console_mark(c).ljust(n) for c, n in zip(row, slots))])
        if any(c.detail for c in row):
            rows.append(["", "", *(c.detail + " " * n for c, n in zip(row, slots))])
    widths = [max(len(row[k]) for row in rows) for k in range(len(rows[0]))]
    text = ["  ".join([row[0].ljust(widths[0]), *(v.rjust(w) for v, w in zip(row[1:], widths[1:]))]).rstrip()
            for row in rows]
    return "\n".join([text[0], "-" * max(map(len, text)), *text[1:]])


def _console_mark(cell: Cell) -> str:
    return (CONSOLE_BEST if cell.bold else "") + (f" {NOT_SIGNIFICANT}" if cell.dagger else "")


# ---------------------------------------------------------------------------------------------- HTML

def _html_cell(cell: Cell) -> str:
    value = f"<b>{html.escape(cell.value)}</b>" if cell.bold else html.escape(cell.value)
    dagger = f'<span class="ns">{NOT_SIGNIFICANT}</span>' if cell.dagger else ""
    detail = f'<br/><span class="detail">{html.escape(cell.detail)}</span>' if cell.detail else ""
    return f"<td>{value}{dagger}{detail}</td>"


def _html_block(block: Block) -> str:
    groups = dict.fromkeys(c.group for c in block.columns)
    group_row = '<tr><th rowspan="2">Variant</th><th rowspan="2">Seeds</th>' + "".join(
        f'<th colspan="{sum(c.group == g for c in block.columns)}">{html.escape(g)}</th>'
        for g in groups) + "</tr>"
    title_row = "<tr>" + "".join(f"<th>{html.escape(c.title)}</th>" for c in block.columns) + "</tr>"
    rows = [(' class="paper"' if line.paper else "", line) for line in block.lines]
    body = "\n".join(f"<tr{css}><td>{html.escape(line.label)}</td><td>{line.seeds}</td>"
                     + "".join(map(_html_cell, line.cells)) + "</tr>" for css, line in rows)
    return (f'<table class="ablation">\n<caption>{html.escape(block.title)}</caption>\n'
            f"<thead>{group_row}\n{title_row}</thead>\n<tbody>\n{body}\n</tbody>\n</table>")


def _html(table: AblationTable) -> str:
    parts = _with_warnings(table, _html_block, lambda w: f'<p class="warning">{html.escape(w)}</p>')
    notes = "".join(f'<p class="footnote">{html.escape(n)}</p>\n' for n in _notes(table))
    return "\n".join(parts) + "\n" + notes


# --------------------------------------------------------------------------------------------- LaTeX

_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
        "}": r"\}", "~": r"\textasciitilde{}", "^": r"\^{}", "±": r"$\pm$", "Δ": r"$\Delta$",
        "↳": r"$\hookrightarrow$", "†": r"$^\dagger$", "×": r"$\times$", "–": "--", "≥": r"$\geq$"}


def tex_escape(text: str) -> str:
    """Text safe inside LaTeX, with the table's symbols (±, Δ, †, ...) as math; ``--`` stays two hyphens."""
    out = [_TEX.get(ch, ch) for ch in text]
    return "".join(ch + "{}" if ch == "-" and text[i + 1:i + 2] == "-" else ch for i, ch in enumerate(out))


def _tex_number(text: str) -> str:
    """A printed number with a real minus sign ($-$), not a hyphen."""
    return "$-$" + tex_escape(text[1:]) if text.startswith("-") else tex_escape(text)


def _tex_head(columns: tuple[Column, ...], first: list[str]) -> list[str]:
    """Column spec, group header with cmidrules, and the title row; ``first``: the leading columns."""
    lead = len(first)
    spans, start = [], lead + 1
    for group in dict.fromkeys(c.group for c in columns):
        n = sum(c.group == group for c in columns)
        spans.append((group, start, start + n - 1))
        start += n
    names = {"Seg": "Segmentation", "Clf": "Classification"}
    return [rf"\begin{{tabular}}{{@{{}}{'l' * lead}{'r' * len(columns)}@{{}}}}", r"\toprule",
            " & " * lead + " & ".join(rf"\multicolumn{{{b - a + 1}}}{{c}}{{{names.get(g, g)}}}"
                                      for g, a, b in spans) + r" \\",
            "".join(rf"\cmidrule(lr){{{a}-{b}}}" for _, a, b in spans),
            " & ".join([*first, *(tex_escape(c.title) for c in columns)]) + r" \\", r"\midrule"]


def _tex_value(cell: Cell, paper: bool = False) -> str:
    text = _tex_number(cell.value) + (r"$^\dagger$" if cell.dagger else "")
    return rf"\textbf{{{text}}}" if cell.bold else rf"\textit{{{text}}}" if paper else text


def _tex_stats(block: Block) -> tuple[list[str], list[str]]:
    """The tabular of a stats block and, for its paper rows (labelled just "paper" to keep the first
    column narrow), a note saying which published row each one is."""
    lines, sources, variant = _tex_head(block.columns, ["Variant", "$n$"]), [], ""
    for line in block.lines:
        if line.paper:
            sources.append(f"{variant}: {line.label.removeprefix('↳ paper, ')}")
        variant = variant if line.paper else line.label
        label = r"\quad\textit{paper}" if line.paper else tex_escape(line.label)
        lines.append(" & ".join([label, line.seeds, *(_tex_value(c, line.paper) for c in line.cells)]) + r" \\")
        if any(c.detail for c in line.cells):
            details = [rf"{{\scriptsize {tex_escape(c.detail)}}}" if c.detail else "" for c in line.cells]
            lines.append(" & ".join(["", "", *details]) + r" \\[1pt]")
    notes = [tex_escape("Paper rows (published BUSI numbers): " + "; ".join(sources) + ".")] if sources else []
    return lines + [r"\bottomrule", r"\end{tabular}"], notes


def _tex_deltas(deltas: list[Block], columns: tuple[Column, ...], ci: bool) -> list[str]:
    """Δ values (``ci=False``) or their intervals: the lower bound, the upper one below (``ci=True``)."""
    lines = _tex_head(columns, ["Comparison" if ci else "Variant"])
    width = len(columns) + 1
    for index, block in enumerate(deltas):
        if index:
            lines.append(r"\midrule")
        lines.append(rf"\multicolumn{{{width}}}{{@{{}}l}}{{\emph{{{tex_escape(block.title.split(',')[0])}}}}} \\")
        for line in block.lines:
            label = tex_escape(line.variant or line.label)  # the panel title says what it is compared to
            if not ci:
                lines.append(" & ".join([label, *map(_tex_value, line.cells)]) + r" \\")
                continue
            bounds = [c.detail.strip("[]").split(", ") if "," in c.detail else ["--", "--"] for c in line.cells]
            lines.append(" & ".join([label, *(_tex_number(b[0]) for b in bounds)]) + r" \\")
            lines.append(" & ".join(["", *(_tex_number(b[1]) for b in bounds)]) + r" \\[3pt]")
    return lines + [r"\bottomrule", r"\end{tabular}"]


def _tex_float(caption: str, label: str, body: list[str], notes: list[str] = ()) -> str:
    """A table float; a tabular wider than the line (long variant names) is scaled down to fit it."""
    note_lines = [rf"\par\smallskip{{\footnotesize\raggedright {n}\par}}" for n in notes]
    fit = (rf"\ifdim\wd0>\linewidth\typeout{{busray: {label} scaled to the line width}}"
           r"\resizebox{\linewidth}{!}{\usebox0}\else\usebox0\fi")
    return "\n".join([r"\begin{table}[tbp]", r"\centering\small", r"\setlength{\tabcolsep}{3pt}",
                      rf"\caption{{{caption}}}", rf"\label{{{label}}}", r"\smallskip", r"\sbox0{%",
                      *body, "}%", fit, *note_lines, r"\end{table}"])


def _latex(table: AblationTable, label: str) -> str:
    all_blocks = blocks(table)
    stats = [b for b in all_blocks if b.kind == "stats"]
    deltas = [b for b in all_blocks if b.kind == "delta"]
    ci = f"{table.boot.ci:.0%}".replace("%", r"\%")
    body, paper_notes = _tex_stats(stats[0])
    below = ("standard deviation below" if table.spread == "std" else
             rf"half width of the {ci} confidence interval of the mean (Student $t$) below")
    floats = [_tex_float(rf"Test metrics (\%): mean over seeds, {below}; best in bold.",
                         f"{label}-metrics", body, [r"\textbf{" + tex_escape(c) + "}" for c in table.cautions]
                         + paper_notes + [tex_escape(n) for n in table.notes])]
    if len(stats) > 1:
        floats.append(_tex_float(rf"Additional test metrics (\%): mean over seeds, {below}.",
                                 f"{label}-extra", _tex_stats(stats[1])[0]))
    if deltas:
        warnings = [r"\textbf{" + tex_escape(w).replace(": ", ":} ", 1) for w in table.warnings]
        floats.append(_tex_float(
            rf"Differences in percentage points; $^\dagger$: not significant (the paired bootstrap {ci} "
            rf"interval contains 0; intervals in Table~\ref{{{label}-ci}}).",
            f"{label}-delta", _tex_deltas(deltas, table.columns, ci=False), warnings))
        floats.append(_tex_float(
            rf"Paired bootstrap {ci} confidence intervals of the differences in Table~\ref{{{label}-delta}}, "
            r"in percentage points: for each comparison the lower bound, and the upper bound below it.",
            f"{label}-ci", _tex_deltas(deltas, table.columns, ci=True), [tex_escape(table.footnote)]))
    return "\n\n".join(floats) + "\n"

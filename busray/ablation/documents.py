"""The report documents: Markdown and HTML pages, and a LaTeX file of tables to ``\\input``.

``md`` and ``html`` are self-contained reading documents: the tables (:mod:`.render`), the numbered
figures with captions, and the provenance (what the numbers were computed from). ``tex`` is meant
for a paper, not for reading on its own: only booktabs table floats (no ``\\documentclass``), the
provenance kept as ``%`` comments at the top so the file still says where its numbers came from;
the figures are the PNG files beside it, listed in the comments with their captions.
"""

from __future__ import annotations

import dataclasses
import html
import re
from typing import Any

from busray.ablation.render import render_table
from busray.ablation.table import AblationTable
from busray.results.query import counts_text

_STYLE = ("body{font-family:sans-serif;margin:2em;max-width:80em;color:#222}"
          "table{border-collapse:collapse;margin:1em 0}"
          "th,td{border:1px solid #bbb;padding:.25em .6em;text-align:right;vertical-align:top}"
          "th{text-align:center;background:#f4f4f4}td:first-child{text-align:left}"
          "caption{font-weight:bold;text-align:left;padding:.3em 0}"
          "tr.paper td{color:#666;font-style:italic}.detail{font-size:.8em;color:#555}"
          ".ns{color:#a40000}.warning{border-left:4px solid #e0a800;background:#fff8e1;padding:.5em .8em}"
          ".footnote{font-size:.85em;color:#444}figure{margin:1.5em 0}img{max-width:100%}"
          "figcaption{font-size:.9em;max-width:60em}")


@dataclasses.dataclass(frozen=True)
class FigureNote:
    """A figure as the report lists it: its file name (None when it could not be drawn) and caption."""

    file: str | None
    caption: str


def write(fmt: str, table: AblationTable, provenance: dict[str, Any], notes: list[FigureNote]) -> str:
    """The text of ``report.<fmt>``."""
    writers = {"md": _markdown, "html": _html, "tex": _latex,
               "csv": lambda t, p, n: render_table(t, "csv")}
    return writers[fmt](table, provenance, notes)


def summary_lines(p: dict[str, Any]) -> list[str]:
    """Provenance as short 'key: value' lines shared by every document format."""
    excluded = counts_text(p["excluded_runs"]) or "none"
    seeds = "; ".join(f"{v}: {', '.join(map(str, s))}" for v, s in p["seeds"].items())
    lines = [f"Ablation (sweep): {p['ablation']} (sweep ids: {', '.join(p['sweep_ids']) or 'n/a'})",
             f"Generated: {p['generated_at']} from the results store rows and run folders below",
             f"Runs: {p['n_runs']} completed (excluded: {excluded})",
             f"Dataset: {', '.join(p['datasets']) or 'n/a'}; "
             f"split hash: {', '.join(p['split_hashes']) or 'n/a'}",
             f"Baseline: {p['baseline']}; seeds per variant: {seeds}",
             "Setting: " + ("; ".join(f"{k} {' / '.join(map(str, v))}" for k, v in p.get("setting", {}).items())
                            or "n/a"),
             f"Bootstrap: {p['bootstrap']['n_boot']} replicates, {p['bootstrap']['ci']:.0%} CI, "
             f"RNG seed {p['bootstrap']['seed']}",
             f"busray: {', '.join(p['busray_versions']) or 'n/a'}; git: {', '.join(p['git_revs']) or 'n/a'}"]
    if missing := without_runs_line(p):
        lines.append(missing)
    if len(p["split_hashes"]) > 1:
        lines.append("Warning: runs used different test splits; "
                     "paired comparisons use the common image names only")
    return lines


def without_runs_line(p: dict[str, Any]) -> str:
    """``Not in the tables (no completed run): full (2 failed, e.g. ...)``; empty when every variant has one."""
    why = p["variants_without_runs"]
    return "Not in the tables (no completed run): " + "; ".join(f"{v} ({text})" for v, text in why.items()) \
        if why else ""


def _numbered(notes: list[FigureNote]) -> list[tuple[str, FigureNote]]:
    """("Figure k: caption", note) for the drawn figures, ("caption", note) for skipped ones."""
    out, k = [], 0
    for note in notes:
        k += bool(note.file)
        out.append((f"Figure {k}: {note.caption}" if note.file else note.caption, note))
    return out


def _markdown(table: AblationTable, p: dict[str, Any], notes: list[FigureNote]) -> str:
    missing = without_runs_line(p)
    parts = [f"# Ablation report: {p['ablation']}", "## Results", render_table(table, "md").strip(),
             *([f"> **{missing}**"] if missing else []), "## Figures"]
    parts += [f"![{n.caption}]({n.file})\n\n*{text}*" if n.file else f"*{text}*" for text, n in _numbered(notes)]
    parts += ["## Provenance", "\n".join(f"- {line}" for line in summary_lines(p)),
              "| Variant | Seed | Run id | Run folder |\n|---|--:|---|---|\n" + "\n".join(
                  f"| {r['variant']} | {r['seed']} | {r['run_id']} | `{r['run_dir']}` |" for r in p["runs"])]
    return "\n\n".join(parts) + "\n"


def _html(table: AblationTable, p: dict[str, Any], notes: list[FigureNote]) -> str:
    esc = html.escape
    missing = without_runs_line(p)
    figs = "\n".join(f'<figure><img src="{esc(n.file)}" alt="{esc(n.caption)}">'
                     f"<figcaption>{esc(text)}</figcaption></figure>" if n.file
                     else f"<p><em>{esc(text)}</em></p>" for text, n in _numbered(notes))
    items = "\n".join(f"<li>{esc(line)}</li>" for line in summary_lines(p))
    runs = "\n".join(f"<tr><td>{esc(r['variant'])}</td><td>{r['seed']}</td><td>{esc(r['run_id'])}</td>"
                     f"<td><code>{esc(r['run_dir'])}</code></td></tr>" for r in p["runs"])
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>Ablation report: {esc(p['ablation'])}</title><style>{_STYLE}</style></head><body>\n"
            f"<h1>Ablation report: {esc(p['ablation'])}</h1>\n<h2>Results</h2>\n{render_table(table, 'html')}"
            f"{f'<p><strong>{esc(missing)}</strong></p>' if missing else ''}"
            f"<h2>Figures</h2>\n{figs}\n<h2>Provenance</h2>\n<ul>\n{items}\n</ul>\n"
            f"<table><thead><tr><th>Variant</th><th>Seed</th><th>Run id</th><th>Run folder</th></tr></thead>"
            f"<tbody>\n{runs}\n</tbody></table>\n</body></html>\n")


def _latex(table: AblationTable, p: dict[str, Any], notes: list[FigureNote]) -> str:
    label = "tab:" + re.sub(r"[^A-Za-z0-9_-]", "-", p["ablation"])
    header = [f"% Ablation report '{p['ablation']}' from busray: table floats to \\input{{report.tex}} "
              "in a paper (needs \\usepackage{booktabs,graphicx}).",
              f"% Labels: {label}-metrics, {label}-delta, {label}-ci. Regenerate with: "
              f"busray report {p['ablation']} --format tex",
              *(f"% {line}" for line in summary_lines(p)),
              *(f"% run: {r['variant']} seed {r['seed']}, {r['run_id']}, {r['run_dir']}" for r in p["runs"]),
              *(f"% {n.file or 'figure not drawn'}: {n.caption}" for n in notes), ""]
    return "\n".join(header) + render_table(table, "tex", label=label)

"""``busray report ABLATION``: the ablation table, its figures and their provenance, from stored runs only.

Everything is recomputed from the results store's ``runs`` rows of one ablation (sweep name) and the run
folders they point to (``history.csv``, ``test_predictions.parquet``, ``test_samples.npz``), so a report
can be regenerated at any time and says exactly what it was computed from.

Run selection (choices the issue leaves open): only ``status == "completed"`` rows count (failed runs and
runs stopped by a scheduler have no trustworthy test metrics); if a (variant, seed) was recorded more
than once, the most recently finished row wins. Variant order is the given order (the ablation file's),
otherwise the baseline first and the rest in order of first appearance; the default baseline is the
variant named ``baseline``, else the first one. A relative ``run_dir`` is resolved against ``run_root``.
Fig. 3 uses the variant with the most TIM/UPA diagnostics (the full model), all its seeds pooled; the
prediction grid uses each variant's lowest seed.

Outputs in ``out_dir``: ``report.<fmt>``, ``provenance.json`` (always) and the PNGs. ``md`` and ``html``
are documents with the tables, the figures and a provenance section; ``tex`` holds only booktabs table
floats to ``\input`` into a paper (the provenance as ``%`` comments; the figures are the PNGs beside
it); ``csv`` is the table in long numeric form.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from busray.ablation import documents, figures
from busray.ablation.documents import FigureNote
from busray.ablation.paper import PAPER_SETTING, is_busi, measured_key, paper_row, setting_differences
from busray.ablation.stats import BootstrapConfig, VariantResults
from busray.ablation.render import FORMATS
from busray.ablation.table import COLUMNS, SPREADS, AblationTable, Column, build_table
from busray.results.query import counts_text
from busray.runfolder import CONFIG, HISTORY, PREDICTIONS, SAMPLES, RunFolder
from busray.storage import is_bucket, local_copy

USABLE_STATUS = "completed"
PROVENANCE = "provenance.json"
PREDICTION_COLUMNS = ("name", "label", "pred")
POOLED_NOTE = ("Seg IoU and Dice are pooled over each run's lesion test images (pixel counts summed, then one "
               "ratio), the paper's convention; the means of per-image scores are listed as IoU/Dice "
               "per-image under the additional metrics.")
FIGURE_FILES = {"fig3": "fig3_tim_upa.png", "curves": "training_curves.png", "grid": "prediction_grid.png"}


@dataclasses.dataclass(frozen=True)
class WrittenReport:
    """What :func:`build_report` wrote: ``report.<fmt>`` (``path``), the table in it and its provenance."""

    path: Path
    table: AblationTable
    provenance: dict[str, Any]


class ReportError(ValueError):
    """The report cannot be built; ``str(err)`` is one line naming the ablation, variant or file."""


@dataclasses.dataclass(frozen=True)
class AblationRuns:
    """The usable runs of one ablation: one row per (variant, seed), variants in report order."""

    name: str
    runs: pd.DataFrame
    order: tuple[str, ...]
    baseline: str
    excluded: dict[str, int]  # status -> number of rows left out
    missing: dict[str, str]  # variant without a completed run -> why ("2 failed, e.g. NonFiniteLoss: ...")
    run_root: Path

    def rows(self, variant: str) -> pd.DataFrame:
        """The variant's runs, by seed."""
        return self.runs[self.runs["variant"] == variant].sort_values("seed")

    def run_dirs(self, variant: str) -> list[tuple[int, Path]]:
        return [(int(r.seed), _resolve(r.run_dir, self.run_root, variant, r.seed))
                for r in self.rows(variant).itertuples()]


def select_runs(runs: pd.DataFrame, ablation: str, baseline: str | None = None,
                order: Sequence[str] | None = None, run_root: str | Path | None = None) -> AblationRuns:
    """Completed, de-duplicated runs of ``ablation`` with the variant order and baseline resolved."""
    missing = {"sweep", "variant", "seed", "status", "run_dir"} - set(runs.columns)
    if missing:
        raise ReportError(f"runs table lacks column(s) {sorted(missing)}")
    rows = runs[runs["sweep"] == ablation]
    usable = _completed_unique(rows, ablation)
    present = list(dict.fromkeys(usable["variant"]))
    baseline, ordered = _resolve_order(present, baseline, order, ablation)
    excluded = rows[rows["status"] != USABLE_STATUS]["status"].value_counts()
    return AblationRuns(ablation, usable[usable["variant"].isin(ordered)], tuple(ordered), baseline,
                        {str(k): int(v) for k, v in excluded.items()},
                        _without_runs(rows, present, order), Path(run_root or "."))


def _without_runs(rows: pd.DataFrame, present: list[str], order: Sequence[str] | None) -> dict[str, str]:
    """The variants (of ``order``, or recorded) without a completed run, and why: every run of a
    variant can fail (a NaN loss), and a report must not drop it without a word."""
    why = {}
    for variant in dict.fromkeys([*(order or ()), *rows["variant"].dropna()]):
        if variant in present:
            continue
        own = rows[rows["variant"] == variant]
        counts = counts_text(own["status"].value_counts())
        errors = own["error"].dropna() if "error" in own else pd.Series(dtype=object)
        example = f", e.g. {errors.iloc[0]}" if len(errors) else ""
        why[variant] = f"{counts}{example}" if counts else "no runs recorded"
    return why


def _completed_unique(rows: pd.DataFrame, ablation: str) -> pd.DataFrame:
    """Completed rows, one per (variant, seed): the most recently finished one."""
    usable = rows[rows["status"] == USABLE_STATUS]
    if usable.empty:
        raise ReportError(f"ablation '{ablation}': no completed runs in the results store "
                          f"({len(rows)} row(s) of any status)")
    if usable["variant"].isna().all():
        raise ReportError(f"'{ablation}' is a sweep, not an ablation (its trials have no variant): "
                          f"busray report compares the variants of a 'busray ablate' run; "
                          f"'busray results show {ablation}' ranks a sweep's trials")
    if usable["seed"].isna().any():
        raise ReportError(f"ablation '{ablation}': completed run(s) without a seed in the results store")
    if "finished_at" in usable:
        usable = usable.sort_values("finished_at", kind="stable")
    usable = usable.drop_duplicates(["variant", "seed"], keep="last").copy()
    usable["seed"] = usable["seed"].astype(int)
    return usable


def _resolve_order(present: list[str], baseline: str | None, order: Sequence[str] | None,
                   ablation: str) -> tuple[str, list[str]]:
    """(baseline, variants in report order); the baseline always has a row."""
    baseline = baseline or ("baseline" if "baseline" in present else list(order or present)[0])
    if baseline not in present:
        raise ReportError(f"ablation '{ablation}': baseline variant '{baseline}' has no completed runs "
                          f"(variants with runs: {', '.join(present)})")
    ordered = [v for v in order if v in present] if order else [v for v in present if v != baseline]
    return baseline, ordered if baseline in ordered else [baseline] + ordered


def _resolve(run_dir: Any, root: Path, variant: str, seed: Any) -> Path:
    if not isinstance(run_dir, str) or not run_dir:
        raise ReportError(f"run of variant '{variant}' seed {seed} has no run_dir in the results store")
    if is_bucket(run_dir):  # a bucket storage's run: the files the report reads, in this machine's mirror
        return local_copy(run_dir, *REPORT_FILES)
    path = Path(run_dir)
    return path if path.is_absolute() else root / path


# ------------------------------------------------------------------------------------ run folders
#: What the report reads of a run folder (pulled from a bucket storage, the checkpoints left there).
REPORT_FILES = (PREDICTIONS, HISTORY, SAMPLES, CONFIG)

def _read(path: Path, reader) -> Any:
    if not path.is_file():
        raise ReportError(f"{path}: missing (needed by the ablation report)")
    try:
        return reader(path)
    except Exception as err:  # a corrupt file: say which one
        raise ReportError(f"{path}: unreadable ({type(err).__name__}: {err})") from err


def load_variants(ablation: AblationRuns) -> list[VariantResults]:
    """Run-level test metrics (from the store rows) and per-image predictions (from the run folders)."""
    variants = []
    for name in ablation.order:
        rows = ablation.runs[ablation.runs["variant"] == name]
        metrics = rows.set_index("seed")[[c for c in rows.columns if c.startswith("test/")]]
        predictions = {seed: _predictions(RunFolder(run_dir).predictions)
                       for seed, run_dir in ablation.run_dirs(name)}
        variants.append(VariantResults(name, metrics.sort_index(), predictions))
    return variants


def _predictions(path: Path) -> pd.DataFrame:
    frame = _read(path, pd.read_parquet)
    missing = [c for c in PREDICTION_COLUMNS if c not in frame]
    if missing:
        raise ReportError(f"{path}: missing column(s) {missing}")
    return frame


def load_histories(ablation: AblationRuns) -> dict[str, list[pd.DataFrame]]:
    return {name: [_read(RunFolder(d).history, pd.read_csv) for _, d in ablation.run_dirs(name)]
            for name in ablation.order}


def load_first_samples(ablation: AblationRuns) -> dict[str, dict[str, np.ndarray]]:
    """Each variant's ``test_samples.npz`` of its lowest seed."""
    samples = {}
    for name in ablation.order:
        folder = RunFolder(ablation.run_dirs(name)[0][1])
        samples[name] = _read(folder.samples, lambda _: folder.read_samples())
    return samples


# ------------------------------------------------------------------------------------ the report

def build_report(store_or_runs: Any, ablation_name: str, fmt: str = "md", out_dir: str | Path = "report",
                 baseline: str | None = None, order: Sequence[str] | None = None,
                 show_paper: bool | None = None, boot: BootstrapConfig = BootstrapConfig(),
                 run_root: str | Path | None = None, spread: str = "std") -> WrittenReport:
    """Write ``report.<fmt>``, ``provenance.json`` and the figures into ``out_dir``; return what was written.

    ``store_or_runs`` is a runs DataFrame or a results store (anything with ``runs(sweep=...)``).
    ``show_paper=None`` shows the paper's numbers when every run's dataset is BUSI. ``spread``: what
    follows a mean's ± (:data:`~busray.ablation.table.SPREADS`: the std over seeds, or the CI of the mean).
    """
    if fmt not in FORMATS:
        raise ReportError(f"unknown report format '{fmt}' (choose from {', '.join(FORMATS)})")
    if spread not in SPREADS:
        raise ReportError(f"unknown spread '{spread}' (choose from {', '.join(SPREADS)})")
    runs = store_or_runs if isinstance(store_or_runs, pd.DataFrame) \
        else store_or_runs.runs(sweep=ablation_name)
    ablation = select_runs(runs, ablation_name, baseline, order, run_root)
    variants = load_variants(ablation)
    columns, notes = main_columns(variants)
    paper_rows = _paper_rows(ablation, show_paper)
    setting = _setting(ablation.runs)
    differences = setting_differences(setting) if paper_rows else []
    cautions = ["Not the paper's setting (Sec. 2.1, 2.4, 3.1): these runs differ in " + "; ".join(differences)
                + ". The paper's rows are a reference here, not a like-for-like comparison."] if differences else []
    table = build_table(variants, ablation.baseline, boot, paper_rows, columns, notes, cautions, spread)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figure_notes = _write_figures(ablation, variants, out)
    provenance = _provenance(ablation, boot) | {"setting": setting,
                                                 "figures": [dataclasses.asdict(n) for n in figure_notes]}
    (out / PROVENANCE).write_text(json.dumps(provenance, indent=2, default=str), encoding="utf-8")
    path = out / f"report.{fmt}"
    path.write_text(documents.write(fmt, table, provenance, figure_notes), encoding="utf-8")
    return WrittenReport(path, table, provenance)


def main_columns(variants: list[VariantResults]) -> tuple[tuple[Column, ...], tuple[str, ...]]:
    """The paper's columns, IoU and Dice in the paper's convention (:func:`.paper.measured_key`: pooled)
    where every run recorded it (older runs did not: then the per-image means), and a note saying so."""
    def recorded(key: str) -> bool:
        return all(f"test/{key}" in v.run_metrics and v.run_metrics[f"test/{key}"].notna().all()
                   for v in variants)

    columns = tuple(Column(c.group, c.title, measured_key(c.key), paper_key=c.key)
                    if measured_key(c.key) != c.key and recorded(measured_key(c.key)) else c for c in COLUMNS)
    return columns, (POOLED_NOTE,) if columns != COLUMNS else ()


def _paper_rows(ablation: AblationRuns, show_paper: bool | None) -> dict:
    datasets = set(ablation.runs["dataset"]) if "dataset" in ablation.runs else set()
    if show_paper is None:
        show_paper = bool(datasets) and all(is_busi(d) for d in datasets)
    if not show_paper:
        return {}
    first_rows = ablation.runs.drop_duplicates("variant").set_index("variant")
    rows = {v: paper_row(v, first_rows.loc[v].to_dict()) for v in ablation.order}
    return {v: row for v, row in rows.items() if row is not None}


def _write_figures(ablation: AblationRuns, variants: list[VariantResults], out: Path) -> list[FigureNote]:
    """Draw every figure it can; a figure that cannot be drawn is listed with the reason."""
    notes = [_fig3(variants, out)]
    figures.plot_training_curves(load_histories(ablation), out / FIGURE_FILES["curves"])
    notes.append(FigureNote(FIGURE_FILES["curves"], "Validation IoU and accuracy per epoch: the mean over "
                            "seeds (markers) with a ±1 std band"))
    grid_caption = ("Test images with the ground truth outlined in green and each variant's prediction "
                    "(probability ≥ 0.5, lowest seed) in red; IoU is given for images with a lesion, the "
                    "predicted area for images without one")
    try:
        figures.plot_prediction_grid(load_first_samples(ablation), out / FIGURE_FILES["grid"])
        notes.append(FigureNote(FIGURE_FILES["grid"], grid_caption))
    except ValueError as err:  # e.g. no test image common to every variant's samples
        notes.append(FigureNote(None, f"{grid_caption}: skipped, {err}"))
    return notes


def _fig3(variants: list[VariantResults], out: Path) -> FigureNote:
    """Fig. 3 from the variant with the most TIM/UPA diagnostics (ties: the later, fuller one)."""
    counts = {v.name: sum(figures.diagnostic_count(f) for f in v.predictions.values()) for v in variants}
    full = max(reversed(list(counts)), key=counts.get)
    caption = "TIM displacement and UPA weights per decoder level (as in the paper's Fig. 3)"
    if not counts[full]:
        return FigureNote(None, f"{caption}: skipped, no variant recorded TIM/UPA diagnostics")
    frames = list(next(v for v in variants if v.name == full).predictions.values())
    figures.plot_tim_upa(frames, out / FIGURE_FILES["fig3"],
                         title=f"TIM and UPA across decoder levels: '{full}', {len(frames)} seed(s)")
    return FigureNote(FIGURE_FILES["fig3"], f"{caption}, variant '{full}' ({len(frames)} seed(s) pooled)")


def _setting(runs: pd.DataFrame) -> dict[str, list]:
    """The distinct recorded values of the paper-setting keys (encoder, weights, size, epochs, τ, loss...)."""
    return {key: sorted({v.item() if hasattr(v, "item") else v for v in runs[key].dropna()}, key=str)
            for key in PAPER_SETTING if key in runs}


def _provenance(ablation: AblationRuns, boot: BootstrapConfig) -> dict[str, Any]:
    runs = ablation.runs

    def distinct(column: str) -> list[str]:
        return sorted({str(v) for v in runs[column].dropna()}) if column in runs else []

    run_list = [{"variant": variant, "seed": int(r["seed"]), "run_id": _run_id(r), "run_dir": str(r["run_dir"])}
                for variant in ablation.order for _, r in ablation.rows(variant).iterrows()]  # table order
    return {
        "ablation": ablation.name, "sweep_ids": distinct("sweep_id"),
        "generated_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "n_runs": len(runs), "excluded_runs": ablation.excluded,
        "datasets": distinct("dataset"), "split_hashes": distinct("split_hash"),
        "baseline": ablation.baseline, "variants": list(ablation.order),
        "variants_without_runs": dict(ablation.missing),
        "seeds": {v: sorted(int(s) for s in runs.loc[runs["variant"] == v, "seed"]) for v in ablation.order},
        "busray_versions": distinct("busray_version"), "git_revs": distinct("git_rev"),
        "bootstrap": dataclasses.asdict(boot), "runs": run_list,
    }


def _run_id(row: pd.Series) -> str:
    for column in ("trial_id", "trial_key"):
        if isinstance(row.get(column), str) and row.get(column):
            return row[column]
    return Path(str(row["run_dir"])).name


def read_provenance(report_path: str | Path) -> dict[str, Any]:
    """The ``provenance.json`` written beside ``report_path``."""
    return json.loads((Path(report_path).parent / PROVENANCE).read_text(encoding="utf-8"))

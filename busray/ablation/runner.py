"""``busray ablate``: every (variant, replicate) of an ablation file as one run on the sweep machinery.

The runs go through :func:`busray.sweep.run_configs` — the same Tune trainable, Ray Train workers, GPU
packing and results-store recording as sweeps — with the variant name and seed in each row. Like a
sweep, an ablation that already exists in the storage is refused unless ``resume`` is set (so two
experiments are never mixed by accident); ``resume`` finishes or grows it (``--seeds 5`` after
``--seeds 3``): every (variant, replicate) already recorded as completed is skipped, the others run --
one cut short continues from its ``last.pt``, a failed one starts again in its folder (each run's
folder and row are named ``<variant>-s<seed>-<key>``, :meth:`busray.sweep.trial.TrialJob.run_id`).
With ``cv_folds = k`` the driver makes the k folds once (fixed test split, k-fold on
train+val), saves them under ``<storage>/<name>/splits/`` and points each run's ``data.split_file`` at
its fold; replicate i is fold i.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from busray.ablation.spec import AblationSpec, load_ablation_spec, variant_config
from busray.results.query import counts_text
from busray.sweep.outcome import all_failed, count_of, resume_command, unfinished_text

DEFAULT_STORAGE = "busray_storage"


@dataclass
class AblationOutcome:
    name: str
    storage: str
    planned: int
    counts: dict[str, int]
    sweep_id: str
    interrupted: str = ""             # what stopped it early: "Ctrl-C", "SIGTERM" ("": nothing)
    unfinished: tuple[str, ...] = ()  # runs it cut short (not recorded; --resume runs them again)
    errors: tuple[str, ...] = ()      # the failed runs' errors, most frequent first

    def failure(self) -> str | None:
        """The one-line error when every run this ablation recorded failed (the CLI exits non-zero)."""
        return all_failed(f"ablation {self.name}", "run", self.counts, self.errors)

    def summary(self, command: str | None = None) -> str:
        """What was recorded and what to do next; ``command``: the one that ran it (for --resume)."""
        counts = counts_text(self.counts) or "none"
        earlier = " (including earlier rounds)" if sum(self.counts.values()) > self.planned else ""
        head = (f"ablation {self.name} ({self.sweep_id}): {count_of(self.planned, 'run')} planned; "
                f"recorded: {counts}{earlier}")
        if self.interrupted:
            head += f"; interrupted by {self.interrupted}{unfinished_text(self.unfinished)}"
        lines = [head, f"storage: {self.storage}"]
        if self.interrupted:
            lines.append(f"resume: {resume_command(command)}")
        lines.append(f"report: busray report {self.name} --storage {shlex.quote(str(self.storage))}")
        return "\n".join(lines)


def run_ablation(spec_path: str | Path, overrides: Iterable[str] = (), storage: str | None = None,
                 seeds: int | None = None, resume: bool = False, progress: bool = True,
                 verbose: bool = False) -> AblationOutcome:
    """Run every (variant, replicate) of the ablation file; returns what the store holds.

    ``resume``: the ablation may already exist; runs recorded as completed are skipped. Without it an
    existing ablation of this name in ``storage`` is a ``ConfigError`` that says to pass ``--resume``.
    """
    from busray.sweep import run_configs

    spec = load_ablation_spec(spec_path, overrides, seeds)
    storage = str(Path(storage or spec.storage or DEFAULT_STORAGE).expanduser().resolve())
    fold_files = make_folds(spec, storage) if spec.cv_folds > 1 else {}
    runs = planned_runs(spec, fold_files)
    out = run_configs(spec.name, runs, resources=spec.resources, storage=storage, resume=resume,
                      max_concurrent=spec.max_concurrent, objective=spec.objective, progress=progress,
                      verbose=verbose, tracking=spec.tracking)
    return AblationOutcome(name=spec.name, storage=storage, planned=len(runs), counts=out.counts,
                           sweep_id=out.sweep_id, interrupted=out.interrupted, unfinished=out.unfinished,
                           errors=out.errors)


def planned_runs(spec: AblationSpec, fold_files: dict[int, str]) -> list[tuple[str, dict, int, str]]:
    """``(run_name, config, seed, variant)`` for every variant x replicate, variants in file order."""
    runs = []
    for variant in spec.variants:
        for seed in spec.seed_list():
            config = variant_config(spec, variant, seed)
            if seed in fold_files:
                config.setdefault("data", {})["split_file"] = fold_files[seed]
            runs.append((f"{variant}-s{seed}", config, seed, variant))
    return runs


def make_folds(spec: AblationSpec, storage: str) -> dict[int, str]:
    """Write the k fold splits once (fixed test split) and return fold -> split.json path."""
    from busray.config import config_from_dict
    from busray.data import kfold_splits, load_dataset

    cfg = config_from_dict(variant_config(spec, spec.baseline_name, 0))
    ds = load_dataset(cfg.data)
    folder = Path(storage) / spec.name / "splits"
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for fold, split in enumerate(kfold_splits(ds, cfg.data, spec.cv_folds)):
        path = folder / f"fold-{fold}.json"
        if not path.is_file():  # a re-run must keep the folds its earlier runs used
            split.save(path, ds)
        files[fold] = str(path)
    return files

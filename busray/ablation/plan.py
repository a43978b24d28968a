"""``busray ablate --dry-run``: the variants x seeds an ablation would run, checked, started nowhere.

Validation is that of ``busray ablate`` (every variant's run config resolved as a full config, the
storage's existing ablation and ``--resume``); see :mod:`busray.sweep.plan` for what a plan leaves to
the real run. Cross-validation folds are named, not written (a real run writes them first).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from busray.ablation.runner import DEFAULT_STORAGE, planned_runs
from busray.ablation.spec import load_ablation_spec
from busray.configtools import flatten
from busray.models.config import ModelConfig
from busray.sweep.outcome import count_of
from busray.sweep.plan import aligned, check_encoders, resources_text, with_placement
from busray.sweep.state import open_sweep
from busray.sweep.storage import resolve_storage


def ablation_plan(source: str | Path, overrides: Iterable[str] = (), storage: str | None = None,
                  seeds: int | None = None, resume: bool = False) -> str:
    """The plan of ``busray ablate`` with these arguments, as printed lines."""
    spec = load_ablation_spec(source, overrides, seeds)
    where = resolve_storage(storage or spec.storage or DEFAULT_STORAGE)
    open_sweep(where, spec.name, resume=resume, add_trials=None, kind="ablation")
    runs = planned_runs(spec, {})
    default = ModelConfig().encoder
    check_encoders({f"{source}: variants.{variant}: model.encoder": config.get("model", {}).get("encoder", default)
                    for _, config, _, variant in runs})
    replicates = f"{spec.cv_folds} folds" if spec.cv_folds > 1 else f"seeds {spec.seed_list()}"
    lines = [f"ablation {spec.name}: {count_of(len(spec.variants), 'variant')} x {replicates} = "
             f"{count_of(len(runs), 'run')}, {spec.max_concurrent} at a time; objective {spec.objective}"
             + (" (recorded completed runs are skipped)" if resume else ""),
             f"each run: {resources_text(spec.resources)}; baseline {spec.baseline_name}",
             f"storage: {where}", "variants (their changes to base):"]
    lines += aligned({name: ", ".join(f"{k}={v}" for k, v in flatten(changes or {}).items()) or "(base)"
                      for name, changes in spec.variants.items()})
    lines += ["base (set by the file and --set):", *aligned(flatten(spec.base))]
    return with_placement(lines, spec.resources, [spec.resources.workers], spec.max_concurrent)

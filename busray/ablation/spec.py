"""``sweeps/NAME.yaml`` ablation files: a base config, named variants, replicates and resources.

An ablation is a fixed grid — every variant trained with every replicate — not a search::

    kind: ablation
    name: table2
    base: {model: {encoder: tf_efficientnet_b0}, train: {epochs: 30}}
    variants:                         # name -> overrides of base (dotted keys), in report order
      baseline: {model.hmsf: false, model.tim: false, model.upa: false}
      hmsf:     {model.hmsf: true,  model.tim: false, model.upa: false}
      full:     {}
    baseline: baseline                # what the report compares against (default: the first)
    seeds: 3                          # replicates: train.seed = 0, 1, 2 (or a list of seeds)
    cv_folds: 0                       # k > 1: k-fold CV on train+val, fixed test split, instead of seeds
    max_concurrent: 2
    resources: {workers: 1, cpus_per_worker: 1, gpus_per_worker: 0.25}

Variants are config switches on the one model (``model.hmsf``, ``model.tim_levels``,
``model.encoder_only``, ...), never forked code. Every (variant, replicate) run is validated as a full
:class:`~busray.config.Config` before Ray starts; a mistake names the file, the variant and the key.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import yaml

from busray.config import config_from_dict, resolve_run_paths
from busray.configtools import (RUN_GROUPS, ConfigError, apply_overrides, apply_values, check_file_kind,
                                flatten, from_dict, load_yaml, option)
from busray.objective import Objective
from busray.sweep.spec import ResourcesSpec, check_base, check_monitor
from busray.sweep.tracking import TrackingSpec, check_installed

@dataclass
class AblationSpec:
    kind: str = option("ablation", "marks the file as an ablation (sweep files have no kind)",
                       choices=("ablation",))
    name: str = option("ablation", "ablation name: folder under the storage and results 'sweep' column")
    storage: str | None = option(None, "default storage folder (the CLI's --storage wins)")
    description: str = option("", "one line shown in the report")
    base: dict[str, Any] = option({}, "the run config every variant starts from (model/loss/data/train)")
    variants: dict[str, Any] = option({}, "variant name -> config overrides (dotted or nested keys)")
    baseline: str | None = option(None, "the reference variant of the report (default: the first)")
    seeds: Any = option(2, "number of seeds (0..N-1) or an explicit list of train.seed values")
    cv_folds: int = option(0, "k > 1: k-fold cross-validation on train+val with a fixed test split "
                           "(replicate i = fold i) instead of seeds", range=(0, 100))
    max_concurrent: int = option(2, "runs training at once", range=(1, 10_000))
    objective: str = option("val/score:max", "metric:mode that picks each run's best epoch (train.monitor "
                            "follows it) and is recorded as the runs' objective")
    resources: ResourcesSpec = option(ResourcesSpec(), "per-run Ray Train resources")
    tracking: TrackingSpec = option(TrackingSpec(), "experiment trackers (MLflow, W&B) that log every run")

    def check(self) -> None:
        if not self.name or not self.name.replace("-", "").replace("_", "").isalnum():
            raise ConfigError(f"name: '{self.name}' must be letters, digits, '-' or '_'")
        if not self.variants:
            raise ConfigError("variants: at least one variant is needed")
        for variant, overrides in self.variants.items():
            if not isinstance(overrides, dict) and overrides is not None:
                raise ConfigError(f"variants.{variant}: expected a mapping of config overrides")
        if self.baseline is not None and self.baseline not in self.variants:
            raise ConfigError(f"baseline: '{self.baseline}' is not one of the variants "
                              f"({', '.join(self.variants)})")
        self.seed_list()
        Objective.parse(self.objective).check_validation()
        check_monitor(self.base, Objective.parse(self.objective))
        check_installed(self.tracking)

    def seed_list(self) -> list[int]:
        """The replicate ids: folds when ``cv_folds > 1``, else the seeds."""
        if self.cv_folds > 1:
            return list(range(self.cv_folds))
        seeds = self.seeds
        if isinstance(seeds, bool) or not isinstance(seeds, (int, list)):
            raise ConfigError(f"seeds: expected a count or a list of integers, got {seeds!r}")
        if isinstance(seeds, int):
            if seeds < 1:
                raise ConfigError(f"seeds: need at least 1, got {seeds}")
            return list(range(seeds))
        if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
            raise ConfigError(f"seeds: expected non-negative integers, got {seeds!r}")
        if len(set(seeds)) != len(seeds):
            raise ConfigError(f"seeds: {seeds!r} has duplicates")
        return list(seeds)

    @property
    def baseline_name(self) -> str:
        return self.baseline or next(iter(self.variants))


def load_ablation_spec(path: str | Path, overrides: Iterable[str] = (), seeds: int | None = None) -> AblationSpec:
    """Read, override (``--set``, ``--seeds``) and validate an ablation file, every run config included."""
    raw = load_yaml(path)
    check_file_kind(raw, path, "ablation")
    raw = apply_overrides(raw, overrides)
    if seeds is not None:
        raw["seeds"] = seeds
    try:
        check_run_keys_under_base(raw, AblationSpec)
        spec = from_dict(AblationSpec, raw)
        check_base(spec.base)  # a mistake in base is named there, not in the first variant
        for variant in spec.variants:
            variant_config(spec, variant, spec.seed_list()[0])
        spec.base = resolve_run_paths(spec.base, "base.")  # last: a placeholder root hides no other error
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    return spec


def check_run_keys_under_base(raw: dict, spec_cls: type) -> None:
    """A run-config group (``train``, ``model``, ...) at the top of a sweep or ablation file — usually
    ``--set train.epochs=1`` meant as ``--set base.train.epochs=1`` — is an error that names the fix."""
    fields = {f.name for f in dataclasses.fields(spec_cls)}
    for group in RUN_GROUPS:
        if group in raw and group not in fields:
            key, value = next(iter(flatten({group: raw[group]}).items()), (group, "..."))
            raise ConfigError(f"unknown config key '{key}': run settings go under 'base', "
                              f"e.g. --set base.{key}={_yaml_value(value)}")


def _yaml_value(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def variant_config(spec: AblationSpec, variant: str, seed: int) -> dict:
    """The nested run config of one (variant, replicate), validated as a full Config."""
    try:
        data = apply_values(spec.base, spec.variants[variant] or {})
        data.setdefault("train", {})["seed"] = seed
        config_from_dict(data)
    except ConfigError as err:
        raise ConfigError(f"variants.{variant}: {err}") from None
    return data


"""``ablations/NAME.yaml``: a base config, named variants, replicates and resources.

The keys every experiment file has (:mod:`busray.experiment.files`), plus a fixed grid — every
variant trained with every replicate — instead of a search::

    kind: ablation
    name: table2
    base: {model: {encoder: tf_efficientnet_b0}, train: {epochs: 30}}
    variants:                         # name -> overrides of base (dotted or nested keys), in report order
      baseline: {model.hmsf: false, model.tim: false, model.upa: false}
      hmsf:     {model.hmsf: true,  model.tim: false, model.upa: false}
      full:     {}
    baseline: baseline                # what the report compares against (default: the first)
    seeds: 3                          # replicates: train.seed = 0, 1, 2 (or a list of seeds)
    cv_folds: 0                       # k > 1: k-fold CV on train+val, fixed test split, instead of seeds
    objective: val/score:max          # or {metrics: [...], modes: [...]}, as in a sweep file

Variants are config switches on the one model (``model.hmsf``, ``model.tim_levels``,
``model.encoder_only``, ...), never forked code. Every (variant, replicate) run is built as a
:class:`~busray.experiment.request.RunRequest` — a full validated config — before Ray starts; a mistake
names the file, the variant and the key.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from busray.configtools import ConfigError, apply_values, option
from busray.experiment.files import ExperimentFile, build_spec, check_config, load_experiment
from busray.experiment.request import RunRequest, build_request


@dataclass
class AblationSpec(ExperimentFile):
    kind: str = option("ablation", "marks the file as an ablation (sweep files have no kind)",
                       choices=("ablation",))
    name: str = option("ablation", "ablation name: folder under the storage and the store's 'sweep' column")
    description: str = option("", "one line shown in the report")
    variants: dict[str, Any] = option({}, "variant name -> config overrides of base (dotted or nested keys)")
    baseline: str | None = option(None, "the reference variant of the report (default: the first)")
    seeds: Any = option(2, "replicates: a count N (train.seed = 0..N-1) or a list of train.seed values")
    cv_folds: int = option(0, "k > 1: k-fold cross-validation on train+val with a fixed test split "
                           "(replicate i = fold i) instead of seeds", range=(0, 100))

    def validate(self) -> None:
        super().validate()
        if not self.variants:
            raise ConfigError("variants: at least one variant is needed")
        for variant, overrides in self.variants.items():
            if not isinstance(overrides, dict) and overrides is not None:
                raise ConfigError(f"variants.{variant}: expected a mapping of config overrides")
            check_config(apply_values(self.base, overrides or {}), f"variants.{variant}")  # before paths
        if self.baseline is not None and self.baseline not in self.variants:
            raise ConfigError(f"baseline: '{self.baseline}' is not one of the variants "
                              f"({', '.join(self.variants)})")

    def seed_list(self) -> list[int]:
        """The replicate ids: folds when ``cv_folds > 1``, else the seeds."""
        return list(range(self.cv_folds)) if self.cv_folds > 1 else super().seed_list()

    @property
    def baseline_name(self) -> str:
        return self.baseline or next(iter(self.variants))

    def request(self, variant: str, seed: int, split_file: str | None = None) -> RunRequest:
        """The run of ``variant`` at replicate ``seed`` (``split_file``: its cross-validation fold)."""
        values = dict(self.variants[variant] or {})
        if split_file is not None:
            values["data.split_file"] = split_file
        return build_request(self.base, seed=seed, objective=self.objective, resources=self.resources,
                             values=values, variant=variant, where=f"variants.{variant}")

    def requests(self, fold_files: dict[int, str] | None = None) -> list[RunRequest]:
        """Every variant x replicate, variants in file order."""
        fold_files = fold_files or {}
        return [self.request(variant, seed, fold_files.get(seed))
                for variant in self.variants for seed in self.seed_list()]


def load_ablation_spec(source: "str | Path | dict | AblationSpec", overrides: Iterable[str] = (),
                       seeds: int | None = None) -> AblationSpec:
    """Read, override (``--set``, ``--seeds``) and validate an ablation file, every run config included."""
    overrides = [*overrides, *([f"seeds={seeds}"] if seeds is not None else [])]
    return load_experiment(AblationSpec, source, overrides, "ablation", parse_ablation)


def parse_ablation(raw: dict) -> AblationSpec:
    spec = build_spec(AblationSpec, raw)
    first = spec.seed_list()[0]
    for variant in spec.variants:  # each variant's request built once: its paths and threads checked
        spec.request(variant, first)
    return spec

"""``sweeps/NAME.yaml``: one sweep, validated before Ray starts.

The keys every experiment file has (``name``, ``base``, ``objective``, ``seeds``, ``max_concurrent``,
``resources``, ``tracking``, ``storage``: :mod:`busray.experiment.files`), plus the search::

    name: smoke
    base: {model: {encoder: test_efficientnet}, train: {epochs: 3}}
    space:                                                   # busray.experiment.params
      loss.w_seg: {type: uniform, low: 0.5, high: 0.9}      # loss.w_clf = 1 - loss.w_seg
      model.tau:  {type: loguniform, low: 0.1, high: 1.5}
      model.upa:  {type: categorical, choices: [true, false]}
      model.upa_norm: {type: categorical, choices: [batch, running], when: {model.upa: true}}
    objective: {metrics: [val/seg/iou], modes: [max]}
    num_trials: 4
    scheduler: {type: asha, grace_period: 1, reduction_factor: 2}
    search: {sampler: tpe, seed: 0}
    seeds: [0]                                               # trial n trains with seeds[n % len]

Every mistake raises :class:`~busray.configtools.ConfigError` naming the file and the dotted key
(``sweeps/x.yaml: space.model.tau.low: expected a number``). Space keys are checked against the real
run config: the base config is built with each parameter's extreme values, so a key that does not exist
or a range the config forbids is reported before any trial runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from busray.configtools import ConfigError, apply_values, option
from busray.experiment.files import (ExperimentFile, base_epochs, build_spec, check_config, config_default,
                                     load_experiment)
from busray.experiment.params import Param
from busray.experiment.request import RunRequest, build_request
from busray.experiment.space import SWEPT_RESOURCES, extreme_points, nest_space, parse_space


@dataclass
class SchedulerSpec:
    """Early stopping of poor trials; ASHA counts in epochs (``time_attr='epoch'``)."""
    type: str = option("asha", "asha (AsyncHyperBand) or none", choices=("asha", "none"))
    grace_period: int = option(1, "epochs every trial runs before it can be stopped", range=(1, None))
    reduction_factor: float = option(2.0, "ASHA keeps 1/reduction_factor of trials per rung",
                                     range=(1.01, None))
    max_t: int | None = option(None, "last rung in epochs; None: train.epochs + 1 so a trial's final "
                               "epoch never counts as a stop (it is still being tested)", range=(1, None))


@dataclass
class SearchSpec:
    sampler: str = option("tpe", "Optuna sampler (TPE handles multi-objective too)", choices=("tpe", "random"))
    seed: int = option(0, "sampler seed (reproducible suggestions; round k of --add-trials uses seed + k, "
                          "so added trials do not repeat earlier ones)", range=(0, 2**31 - 1))
    optuna_storage: str | None = option(None, "Optuna storage: None = journal file "
                                        "<storage>/<name>/optuna.journal; or an RDB URL")


@dataclass
class SweepSpec(ExperimentFile):
    name: str = option("sweep", "sweep name: folder under the storage and the store's 'sweep' column")
    space: dict[str, Param] = option({}, "search space: dotted config key -> parameter "
                                     "(busray.experiment.params)")
    num_trials: int = option(8, "trials to run (or to add with --add-trials)", range=(1, 100_000))
    scheduler: SchedulerSpec = option(SchedulerSpec(), "early stopping of poor trials")
    search: SearchSpec = option(SearchSpec(), "the Optuna sampler and its storage")

    def worker_counts(self) -> list[int]:
        """The Ray Train worker counts a trial may have: the spec's, or a searched range's ends."""
        param = self.space.get(SWEPT_RESOURCES[0])
        return [int(v) for v in param.extremes()] if param is not None else [self.resources.workers]

    def request(self, name: str, values: dict, trial_number: int) -> RunRequest:
        """The run of Optuna trial ``trial_number`` (Tune id ``name``) with the drawn ``values``; it
        trains with ``seeds[trial_number % len(seeds)]`` (stable across resumes and --add-trials). A
        combination a cross-field rule forbids gives a request that fails at once, saying why."""
        seeds = self.seed_list()
        return build_request(self.base, seed=seeds[trial_number % len(seeds)], objective=self.objective,
                             resources=self.resources, values=values, name=name, where="space",
                             strict=False)

    def validate(self) -> None:
        super().validate()
        if self.scheduler.type == "asha" and self.objective.multi:
            raise ConfigError("scheduler.type: ASHA needs a single objective; use 'none' with "
                              f"{len(self.objective.metrics)} metrics")
        self._check_rungs()
        if not self.space and len(self.seed_list()) == 1 and self.num_trials > 1:  # e.g. an empty file
            raise ConfigError(f"space: no parameter to search: all {self.num_trials} trials would train one "
                              f"config with seed {self.seed_list()[0]}; add a parameter (or seeds), or use "
                              "busray train")
        for point in extreme_points(self.space):
            check_config(apply_values(self.base, point), "space")

    def _check_rungs(self) -> None:
        """ASHA's first rung must come before a trial's last epoch, or it could never stop one."""
        epochs = base_epochs(self.base)
        if self.scheduler.type != "asha" or epochs is None:
            return
        max_t = self.scheduler.max_t or epochs + 1
        if self.scheduler.grace_period >= min(max_t, epochs):
            raise ConfigError(f"scheduler.grace_period: {self.scheduler.grace_period} epochs leaves ASHA no "
                              f"rung before the last of base.train.epochs={epochs}; lower it (--set "
                              f"scheduler.grace_period=1) or --set scheduler.type=none")

    def epochs(self) -> int:
        """Epochs of a trial (the base's, else the run config's default): ASHA's time axis."""
        return int(self.full_base()["train"]["epochs"])


def load_sweep_spec(source: "str | Path | dict | SweepSpec", overrides: Iterable[str] = ()) -> SweepSpec:
    """Read (a file, or a dict of the same shape), override (``--set num_trials=2``, ``--set
    base.train.epochs=1``, ``--set space.model.tau.low=0.3``) and validate a sweep."""
    return load_experiment(SweepSpec, source, overrides, "sweep", parse_sweep, prepare=_nested_space)


def _nested_space(raw: dict) -> dict:
    """The space nested (``model: {tau: {...}}``), so ``--set space.model.tau.low=...`` merges into it."""
    if isinstance(raw.get("space"), dict):
        return {**raw, "space": nest_space(raw["space"])}
    return raw


def parse_sweep(raw: dict) -> SweepSpec:
    """Validate a sweep mapping, including every space key against the run config."""
    return build_spec(SweepSpec, raw, space=parse_space(raw.get("space"), config_default))

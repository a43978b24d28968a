"""``sweeps/NAME.yaml``: the typed description of one sweep, validated before Ray starts.

A sweep file holds a name, the ``base`` run config (the same ``model/loss/data/train`` keys as
``busray train``), the search ``space`` (one entry per dotted config key), the ``objective``, the
trial budget and concurrency, the ``scheduler``, per-trial ``resources`` and the training ``seeds``::

    name: smoke
    base: {model: {encoder: test_efficientnet}, train: {epochs: 3}}
    space:
      loss.w_seg: {type: uniform, low: 0.5, high: 0.9}        # loss.w_clf = 1 - loss.w_seg
      model.tau:  {type: loguniform, low: 0.1, high: 1.5}
      model.upa:  {type: categorical, choices: [true, false]}
      model.upa_norm: {type: categorical, choices: [softmax, running], when: {model.upa: true}}
    objective: {metrics: [val/seg/iou], modes: [max]}
    num_trials: 4
    max_concurrent: 2
    scheduler: {type: asha, grace_period: 1, reduction_factor: 2}
    resources: {workers: 1, cpus_per_worker: 1, gpus_per_worker: 0}
    seeds: [0]

Every mistake raises :class:`~busray.configtools.ConfigError` naming the file and the dotted key
(``sweeps/x.yaml: space.model.tau.low: expected a number``). Space keys are checked against the real
run :class:`~busray.config.Config`: the base config is built once with each parameter's extreme values,
so a key that does not exist or a range the config forbids is reported before any trial runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from busray.config import resolve_run_paths
from busray.configtools import (RUN_GROUPS, ConfigError, apply_overrides, check_file_kind, from_dict, load_yaml,
                                option, set_dotted, unknown_key_error)
from busray.objective import DEFAULT_OBJECTIVE, Objective
from busray.sweep.tracking import TrackingSpec, check_installed

PARAM_TYPES = ("uniform", "loguniform", "int", "categorical", "fixed")
#: The loss weights must sum to one (paper Sec. 2.4: w_seg = 0.8, w_clf = 0.2); one is sampled, the
#: other is derived, so the sampler never wastes trials on infeasible pairs.
WEIGHT_PAIR = ("loss.w_seg", "loss.w_clf")
#: Resource keys a search space may hold besides run-config keys: the number of Ray Train workers of a
#: trial (1 = single process, > 1 = DDP), so one sweep can compare or mix both.
SWEPT_RESOURCES = ("resources.workers",)


@dataclass
class ParamSpec:
    """One search dimension; ``when`` makes it conditional (sampled only if all pairs match)."""
    type: str = option("uniform", "distribution", choices=PARAM_TYPES)
    low: float | None = option(None, "lower bound (uniform, loguniform, int)")
    high: float | None = option(None, "upper bound, inclusive (uniform, loguniform, int)")
    step: float | None = option(None, "quantisation step (uniform, int)")
    choices: list[Any] | None = option(None, "the values of a categorical")
    value: Any = option(None, "the value of a fixed parameter")
    when: dict[str, Any] = option({}, "sample only when these (earlier) keys have these values")

    def check(self) -> None:
        if self.type in ("uniform", "loguniform", "int"):
            if self.low is None or self.high is None:
                raise ConfigError(f"low: a {self.type} parameter needs low and high")
            if self.low > self.high:
                raise ConfigError(f"low: {self.low} is above high {self.high}")
            if self.type == "loguniform" and self.low <= 0:
                raise ConfigError(f"low: a loguniform parameter needs low > 0, got {self.low}")
            if self.type == "int" and (self.low != int(self.low) or self.high != int(self.high)):
                raise ConfigError("low: an int parameter needs integer low and high")
        if self.type == "categorical" and not self.choices:
            raise ConfigError("choices: a categorical parameter needs a non-empty list")
        if self.type == "fixed" and self.value is None:
            raise ConfigError("value: a fixed parameter needs a value")

    def extremes(self) -> list[Any]:
        """Values that together exercise every bound of this dimension (for validation)."""
        if self.type == "categorical":
            return list(self.choices)
        if self.type == "fixed":
            return [self.value]
        if self.type == "int":
            return [int(self.low), int(self.high)]
        return [float(self.low), float(self.high)]


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
class ResourcesSpec:
    """Per-trial resources; fractional GPUs pack several single-worker trials on one GPU."""
    workers: int = option(1, "Ray Train workers per trial (DDP when > 1)", range=(1, 1024))
    cpus_per_worker: float = option(1.0, "CPUs reserved per worker", range=(0.0, 1024.0))
    gpus_per_worker: float = option(0.0, "GPUs per worker (0.25 packs 4 trials on one GPU)",
                                    range=(0.0, 64.0))
    max_failures: int = option(2, "restarts of a trial whose process died (from its last checkpoint) "
                               "before it is recorded as failed; always bounded", range=(0, 100))


@dataclass
class SearchSpec:
    sampler: str = option("tpe", "Optuna sampler (TPE handles multi-objective too)",
                          choices=("tpe", "random"))
    seed: int = option(0, "sampler seed (reproducible suggestions; round k of --add-trials uses seed + k, "
                          "so added trials do not repeat earlier ones)", range=(0, 2**31 - 1))
    optuna_storage: str | None = option(None, "Optuna storage: None = journal file "
                                        "<storage>/<name>/optuna.journal; or an RDB URL")


@dataclass
class SweepSpec:
    name: str = option("sweep", "sweep name: folder under the storage and results 'sweep' column")
    storage: str | None = option(None, "default storage folder (the CLI's --storage wins)")
    base: dict[str, Any] = option({}, "the run config every trial starts from (model/loss/data/train)")
    space: dict[str, ParamSpec] = option({}, "search space: dotted config key -> parameter")
    objective: Objective = option(DEFAULT_OBJECTIVE, "what to optimise: 'val/score:max', or {metrics: "
                                  "[...], modes: [...]}; several metrics = multi-objective Optuna "
                                  "(Pareto front); train.monitor follows it")
    num_trials: int = option(8, "trials to run (or to add with --add-trials)", range=(1, 100_000))
    max_concurrent: int = option(2, "trials running at once", range=(1, 10_000))
    scheduler: SchedulerSpec = option(SchedulerSpec(), "early stopping of poor trials")
    resources: ResourcesSpec = option(ResourcesSpec(), "per-trial Ray Train resources")
    search: SearchSpec = option(SearchSpec(), "the Optuna sampler and its storage")
    seeds: list[int] = option([0], "train.seed of trial n is seeds[n % len(seeds)]")
    tracking: TrackingSpec = option(TrackingSpec(), "experiment trackers (MLflow, W&B) that log every trial")

    def worker_counts(self) -> list[int]:
        """The Ray Train worker counts a trial may have: the spec's, or a searched range's ends."""
        param = self.space.get("resources.workers")
        return [int(v) for v in param.extremes()] if param is not None else [self.resources.workers]

    def _check_rungs(self) -> None:
        """ASHA's first rung must come before a trial's last epoch, or it could never stop one."""
        epochs = _base_epochs(self.base)
        if self.scheduler.type != "asha" or epochs is None:
            return
        max_t = self.scheduler.max_t or epochs + 1
        if self.scheduler.grace_period >= min(max_t, epochs):
            raise ConfigError(f"scheduler.grace_period: {self.scheduler.grace_period} epochs leaves ASHA no "
                              f"rung before the last of base.train.epochs={epochs}; lower it (--set "
                              f"scheduler.grace_period=1) or --set scheduler.type=none")

    def check(self) -> None:
        if not self.name or not self.name.replace("-", "").replace("_", "").isalnum():
            raise ConfigError(f"name: '{self.name}' must be letters, digits, '-' or '_'")
        if self.scheduler.type == "asha" and self.objective.multi:
            raise ConfigError("scheduler.type: ASHA needs a single objective; use 'none' with "
                              f"{len(self.objective.metrics)} metrics")
        if not self.seeds:
            raise ConfigError("seeds: at least one seed is needed")
        self._check_rungs()
        if all(k in self.space for k in WEIGHT_PAIR):
            raise ConfigError(f"space.{WEIGHT_PAIR[1]}: derived as 1 - {WEIGHT_PAIR[0]} "
                              "(w_seg + w_clf = 1); sample only one of them")


def _base_epochs(base: dict) -> int | None:
    train = base.get("train") if isinstance(base.get("train"), dict) else {}
    epochs = train.get("epochs")
    return epochs if isinstance(epochs, int) and not isinstance(epochs, bool) else None


def load_sweep_spec(source: "str | Path | dict | SweepSpec", overrides: Iterable[str] = ()) -> "SweepSpec":
    """Read (a file, or a dict of the same shape), override (``--set num_trials=2``, ``--set
    base.train.epochs=1``) and validate a sweep. Validation imports neither torch nor Ray."""
    overrides = list(overrides)
    if isinstance(source, SweepSpec):
        return source
    name = "sweep" if isinstance(source, dict) else str(source)
    if isinstance(source, dict):
        raw = _deep(source)
    else:
        raw = load_yaml(source)
        check_file_kind(raw, name, "sweep")
    if isinstance(raw.get("space"), dict):  # nest dotted keys so `--set space.model.tau.low=...` merges
        raw["space"] = nest_space(raw["space"])
    try:
        raw = apply_overrides(raw, overrides)
    except ConfigError as err:
        raise ConfigError(f"{name}: {_suggest_base(str(err), overrides)}") from None
    try:
        spec = parse_sweep(raw)
        spec.base = resolve_run_paths(spec.base, "base.")
    except ConfigError as err:
        raise ConfigError(f"{name}: {_suggest_base(str(err), overrides)}") from None
    return spec


def _suggest_base(message: str, overrides: Iterable[str]) -> str:
    """``unknown config key 'train'`` -> add: run-config keys of a sweep live under ``base.``."""
    match = re.match(r"unknown config key '([^']+)'", message)  # a top-level key of the sweep file
    if not match or match.group(1).split(".")[0] not in RUN_GROUPS:
        return message
    key = next((o.split("=", 1)[0] for o in overrides if o.startswith(match.group(1))), match.group(1))
    return f"{match.group(0)}: run-config keys of a sweep file live under base, did you mean base.{key}?"


def parse_sweep(raw: dict) -> SweepSpec:
    """Validate a sweep mapping, including every space key against the run Config."""
    space_raw = raw.get("space") or {}
    if not isinstance(space_raw, dict):
        raise ConfigError(f"space: expected a mapping, got {space_raw!r}")
    flat = flatten_space(space_raw)
    for key in flat:  # a typo in a key reads as one, before its distribution's fields are checked
        if not key.startswith("resources."):
            config_default(key, "space")
    space = {key: from_dict(ParamSpec, value, f"space.{key}.") for key, value in flat.items()}
    objective = parse_objective(raw.get("objective")).check_validation()
    spec = from_dict(SweepSpec, {**{k: v for k, v in raw.items() if k != "objective"}, "space": {}})
    spec.space, spec.objective = space, objective
    spec.check()
    if not space and len(spec.seeds) == 1 and spec.num_trials > 1:  # e.g. an empty file
        raise ConfigError(f"space: no parameter to search: all {spec.num_trials} trials would train one "
                          f"config with seed {spec.seeds[0]}; add a parameter (or seeds), or use busray train")
    check_monitor(spec.base, objective)
    check_installed(spec.tracking)
    check_against_config(spec)
    return spec


def parse_objective(raw: Any, key: str = "objective") -> Objective:
    """``val/score:max`` or ``{metrics: [...], modes: [...]}`` (or nothing: the default)."""
    if raw is None or isinstance(raw, str):
        return Objective.parse(raw, key)
    if isinstance(raw, dict):
        unknown = sorted(set(raw) - {"metrics", "modes"})
        if unknown:
            raise ConfigError(f"{key}.{unknown[0]}: unknown key (metrics, modes)")
        metrics = raw.get("metrics") or []
        metrics = [metrics] if isinstance(metrics, str) else metrics
        modes = raw.get("modes")
        modes = [modes] if isinstance(modes, str) else modes
        if not isinstance(metrics, list) or not metrics or not all(isinstance(m, str) for m in metrics):
            raise ConfigError(f"{key}.metrics: expected a list of metric names, got {raw.get('metrics')!r}")
        return Objective.from_lists(metrics, modes, key)
    raise ConfigError(f"{key}: expected 'metric:mode' or {{metrics: [...], modes: [...]}}, got {raw!r}")


def check_monitor(base: dict, objective: Objective) -> None:
    """Trials monitor the objective (best checkpoint, early stopping); a base that says otherwise is
    refused rather than silently giving a trial two different best epochs."""
    train = base.get("train") if isinstance(base.get("train"), dict) else {}
    for key, wanted in (("monitor", objective.metric), ("monitor_mode", objective.mode)):
        if key in train and train[key] != wanted:
            raise ConfigError(f"base.train.{key}: '{train[key]}' disagrees with objective "
                              f"'{objective.label()}' (trials monitor the objective; remove the key)")


def flatten_space(raw: dict, prefix: str = "") -> dict[str, Any]:
    """Dotted keys for parameters given nested (``model: {tau: {...}}``, or by ``--set``) or dotted.

    A mapping with a ``type`` key, or with any value that is not a mapping (``{low: 0.2, high: 1.2}``:
    the default type, uniform), is a parameter; any other mapping is a group of parameters.
    """
    out: dict[str, Any] = {}
    for key, value in raw.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value and "type" not in value \
                and all(isinstance(v, dict) for v in value.values()):
            out.update(flatten_space(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def nest_space(raw: dict) -> dict:
    """The inverse of :func:`flatten_space`: ``{'model.tau': p}`` -> ``{'model': {'tau': p}}``."""
    out: dict[str, Any] = {}
    for dotted, value in flatten_space(raw).items():
        set_dotted(out, dotted, value)
    return out


def check_against_config(spec: SweepSpec) -> None:
    """Build the run Config from base alone, then with each parameter's extremes."""
    from busray.config import config_from_dict

    check_base(spec.base)
    for key, param in spec.space.items():
        if key.startswith("resources."):
            _check_resource_param(key, param)
            continue
        for cond_key in param.when:
            if cond_key not in spec.space and not _has_key(spec.base, cond_key):
                _build(config_from_dict, spec.base, [(cond_key, config_default(cond_key, "when"))], "space.")
        for value in param.extremes():
            pairs = [(key, value)] + _derived(key, value)
            _build(config_from_dict, spec.base, pairs, "space.")


def check_base(base: dict) -> None:
    """The ``base`` run config on its own (a sweep's or an ablation's), errors named ``base.<key>``."""
    from busray.config import config_from_dict

    _build(config_from_dict, base, (), "base.")


def _check_resource_param(key: str, param: ParamSpec) -> None:
    """``resources.workers`` may be searched (e.g. DDP with 1 or 2 workers); no other resource key."""
    if key not in SWEPT_RESOURCES:
        raise ConfigError(f"space.{key}: only {', '.join(SWEPT_RESOURCES)} can be searched among resources")
    for value in param.extremes():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"space.{key}: {value!r} is not a worker count (an integer >= 1)")


def _build(make, base: dict, pairs, prefix: str) -> None:
    data = _deep(base)
    for key, value in pairs:
        node = data
        *groups, leaf = key.split(".")
        for g in groups:
            node = node.setdefault(g, {}) if isinstance(node.get(g, {}), dict) else {}
        node[leaf] = value
    try:
        make(data)
    except ConfigError as err:
        raise ConfigError(f"{prefix}{err}" if not str(err).startswith("unknown") else
                          f"{prefix.rstrip('.')}: {err}") from None


def _deep(d: dict) -> dict:
    return {k: _deep(v) if isinstance(v, dict) else v for k, v in d.items()}


def _derived(key: str, value: Any) -> list[tuple[str, Any]]:
    """The partner of a loss weight: ``loss.w_clf = 1 - loss.w_seg`` (and vice versa)."""
    if key in WEIGHT_PAIR and isinstance(value, (int, float)):
        other = WEIGHT_PAIR[1 - WEIGHT_PAIR.index(key)]
        return [(other, round(1.0 - float(value), 12))]
    return []


def _has_key(base: dict, dotted: str) -> bool:
    node: Any = base
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def config_default(dotted: str, where: str) -> Any:
    """The run config's default of ``dotted``; an unknown key is a ``ConfigError`` prefixed ``where``
    (``space: unknown config key 'model.tua'; did you mean 'model.tau'? (known: ...)``)."""
    from busray.config import Config, config_to_dict

    node: Any = config_to_dict(Config())
    parts = dotted.split(".")
    for depth, part in enumerate(parts):
        prefix = ".".join(parts[:depth] + [""])
        if not isinstance(node, dict):
            raise ConfigError(f"{where}: unknown config key '{dotted}' ({prefix[:-1]} is a value, not a group)")
        if part not in node:
            raise ConfigError(f"{where}: {unknown_key_error(part, node, prefix)}")
        node = node[part]
    return node

"""The grammar sweep files and ablation files share, and the one loader both go through.

Both kinds of file describe *what to run*: a ``name``, the ``base`` run config every run starts from
(the ``model/loss/data/train`` keys of ``busray train``), the ``objective`` that picks each run's best
epoch, the training ``seeds``, ``max_concurrent``, per-run ``resources``, experiment ``tracking`` and a
default ``storage``. A sweep adds a search (:mod:`busray.experiment.sweepfile`), an ablation a grid of
variants (:mod:`busray.experiment.ablationfile`). One declaration of the shared keys
(:class:`ExperimentFile`) and one loader (:func:`load_experiment`) mean the two read the same way:
``objective: val/score:max`` or ``{metrics: [...], modes: [...]}`` in both, a run setting at the top
of either (``--set train.epochs=1``) named as ``base.train.epochs``, every error prefixed with the file
and the dotted key, and every run config validated before Ray starts. Torch-free and Ray-free.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

from busray.config import Config, config_from_dict, config_to_dict, resolve_run_paths
from busray.configtools import (RUN_GROUPS, ConfigError, apply_overrides, blame, check_file_kind,
                                flatten, from_dict, load_yaml, option, unknown_key_error, yaml_text)
from busray.data.embedded import is_embedded
from busray.experiment.storage import in_ray_job
from busray.experiment.tracking import TrackingSpec, check_installed
from busray.objective import DEFAULT_OBJECTIVE, Objective, check_reported
from busray.storage import is_uri

F = TypeVar("F", bound="ExperimentFile")


@dataclass
class ResourcesSpec:
    """Per-run resources; fractional GPUs pack several single-worker runs on one GPU."""
    workers: int = option(1, "Ray Train workers per run (DDP when > 1)", range=(1, 1024))
    cpus_per_worker: float = option(1.0, "CPUs reserved per worker; also the worker's torch threads "
                                    "unless train.num_threads says otherwise", range=(0.0, 1024.0))
    gpus_per_worker: float = option(0.0, "GPUs per worker (0.25 packs 4 runs on one GPU)", range=(0.0, 64.0))
    max_failures: int = option(2, "restarts of a run whose process died (from its last checkpoint) "
                               "before it is recorded as failed; always bounded", range=(0, 100))


@dataclass
class ExperimentFile:
    """The keys every sweep and ablation file has (their documented defaults)."""
    name: str = option("experiment", "name: folder under the storage and the store's 'sweep' column")
    storage: str | None = option(None, "default storage (the CLI's --storage wins)")
    base: dict[str, Any] = option({}, "the run config every run starts from (model/loss/data/train)")
    objective: Objective = option(DEFAULT_OBJECTIVE, "what picks a run's best epoch and ranks runs: "
                                  "'val/score:max', or {metrics: [...], modes: [...]}; several metrics = "
                                  "multi-objective (a Pareto front); train.monitor follows it")
    seeds: Any = option([0], "train.seed values: a list, or a count N for 0..N-1")
    max_concurrent: int | None = option(None, "runs training at once; auto: as many as the cluster places at "
                                        "once (on a CPU machine one 1-CPU, 1-thread run per core), at most "
                                        "the runs there are", range=(1, 10_000), none_word="auto")
    resources: ResourcesSpec = option(ResourcesSpec(), "per-run Ray Train resources")
    tracking: TrackingSpec = option(TrackingSpec(), "experiment trackers (MLflow, W&B) that log every run")

    def seed_list(self) -> list[int]:
        """The seeds as a list (``seeds: 3`` -> ``[0, 1, 2]``)."""
        return parse_seeds(self.seeds)

    def validate(self) -> None:
        """Cross-key rules shared by both kinds; a kind adds its own after calling this."""
        if not self.name or not self.name.replace("-", "").replace("_", "").isalnum():
            raise ConfigError(f"name: '{self.name}' must be letters, digits, '-' or '_'")
        self.seed_list()
        check_monitor(self.base, self.objective)
        check_installed(self.tracking)

    def full_base(self) -> dict:
        """``base`` with every default filled in (the run config a run gets before its own values)."""
        return config_to_dict(config_from_dict(self.base))


def load_experiment(cls: type[F], source: "str | Path | dict | F", overrides: Iterable[str], kind: str,
                    parse: Callable[[dict], F], prepare: Callable[[dict], dict] = lambda raw: raw) -> F:
    """Read a file (or a dict of the same shape), apply ``--set`` overrides and validate it: the one
    path of both kinds. ``prepare(raw)`` shapes the mapping before the overrides apply (a sweep nests
    its space), ``parse(raw)`` builds the spec after; every error is prefixed with the file's name."""
    if isinstance(source, cls):
        return source
    overrides = list(overrides)
    name = kind if isinstance(source, dict) else str(source)
    raw = dict(source) if isinstance(source, dict) else load_yaml(source)  # apply_overrides copies it whole
    if not isinstance(source, dict):
        check_file_kind(raw, name, kind)
    try:
        raw = apply_overrides(prepare(raw), overrides)
        check_run_keys_under_base(raw, cls)
        spec = parse(raw)
    except ConfigError as err:  # named after the file, or the --set that gave the bad value
        raise blame(err, name, overrides) from None
    return spec


def build_spec(cls: type[F], raw: dict, **parsed: Any) -> F:
    """``cls`` from ``raw`` with ``objective`` (string or mapping) parsed and ``parsed`` fields (the
    kind's own, e.g. the space) set, then validated as a whole, ``base`` first."""
    objective = check_metrics(parse_objective(raw.get("objective")).check_validation())
    plain = {k: v for k, v in raw.items() if k != "objective" and k not in parsed}
    spec = from_dict(cls, plain)
    spec.objective = objective
    for key, value in parsed.items():
        setattr(spec, key, value)
    check_base(spec.base)
    spec.validate()
    check_job_data_root(spec.base)
    spec.base = resolve_run_paths(spec.base, "base.")  # last: a placeholder root hides no other error
    return spec


def check_job_data_root(base: dict) -> None:
    """Under ``ray job submit`` the entrypoint runs in Ray's unpacked copy of ``--working-dir``, which
    every node unpacks at the same place: a relative ``data.root`` inside it (uploaded with the job) is
    found on every node; one outside it names a folder of Ray's temporary tree, so it is refused."""
    root = (base.get("data") or {}).get("root") if isinstance(base.get("data"), dict) else None
    if not in_ray_job() or not isinstance(root, str) or is_embedded(root) or is_uri(root) \
            or Path(root).expanduser().is_absolute():
        return
    here = Path.cwd().resolve()
    if not (here / root).resolve().is_relative_to(here):
        raise ConfigError(f"base.data.root: '{root}' is relative and outside the job's --working-dir, so under "
                          f"ray job submit it names a folder in Ray's temporary copy of it; give a path every node "
                          f"sees (absolute), or a bucket (s3://bucket/Dataset_BUSI_with_GT)")


def parse_objective(raw: Any, key: str = "objective") -> Objective:
    """``val/score:max`` or ``{metrics: [...], modes: [...]}`` (or nothing: the default)."""
    if raw is None or isinstance(raw, (str, Objective)):
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


def check_metrics(objective: Objective, key: str = "objective") -> Objective:
    """Every metric of ``objective`` is one a run reports (:func:`busray.objective.check_reported`)."""
    for name in objective.metrics:
        check_reported(name, key)
    return objective


def parse_seeds(seeds: Any, key: str = "seeds") -> list[int]:
    """A count N (``0..N-1``) or a list of distinct non-negative integers."""
    if isinstance(seeds, bool) or not isinstance(seeds, (int, list)):
        raise ConfigError(f"{key}: expected a count or a list of integers, got {seeds!r}")
    if isinstance(seeds, int):
        if seeds < 1:
            raise ConfigError(f"{key}: need at least 1, got {seeds}")
        return list(range(seeds))
    if not seeds:
        raise ConfigError(f"{key}: at least one seed is needed")
    if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
        raise ConfigError(f"{key}: expected non-negative integers, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"{key}: {seeds!r} has duplicates")
    return list(seeds)


def check_run_keys_under_base(raw: dict, spec_cls: type) -> None:
    """A run-config group (``train``, ``model``, ...) at the top of a sweep or ablation file — usually
    ``--set train.epochs=1`` meant as ``--set base.train.epochs=1`` — is an error that names the fix."""
    fields = {f.name for f in dataclasses.fields(spec_cls)}
    for group in RUN_GROUPS:
        if group in raw and group not in fields:
            key, value = next(iter(flatten({group: raw[group]}).items()), (group, "..."))
            raise ConfigError(f"unknown config key '{key}': run settings go under 'base', "
                              f"e.g. --set base.{key}={yaml_text(value)}")


def check_monitor(base: dict, objective: Objective) -> None:
    """Runs monitor the objective (best checkpoint, early stopping); a base that says otherwise is
    refused rather than silently giving a run two different best epochs."""
    train = base.get("train") if isinstance(base.get("train"), dict) else {}
    for key, wanted in (("monitor", objective.metric), ("monitor_mode", objective.mode)):
        if key in train and train[key] != wanted:
            raise ConfigError(f"base.train.{key}: '{train[key]}' disagrees with objective "
                              f"'{objective.label()}' (runs monitor the objective; remove the key)")


def check_base(base: dict) -> None:
    """The ``base`` run config on its own, errors named ``base.<key>``."""
    check_config(base, "base")


def check_config(data: dict, where: str) -> dict:
    """``data`` validated as a full run config; errors named ``<where>.<key>`` (an unknown key as
    ``<where>: unknown config key ...``). Returns the full config with defaults filled in."""
    try:
        return config_to_dict(config_from_dict(data))
    except ConfigError as err:
        text = str(err)
        raise ConfigError(f"{where}: {text}" if text.startswith("unknown") else f"{where}.{text}") from None


def config_default(dotted: str, where: str) -> Any:
    """The run config's default of ``dotted``; an unknown key is a ``ConfigError`` prefixed ``where``
    (``space: unknown config key 'model.tua'; did you mean 'model.tau'? (known: ...)``)."""
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


def base_epochs(base: dict) -> int | None:
    """``base.train.epochs`` when the file sets it."""
    train = base.get("train") if isinstance(base.get("train"), dict) else {}
    epochs = train.get("epochs")
    return epochs if isinstance(epochs, int) and not isinstance(epochs, bool) else None

"""A run request: what one trial of a sweep or one run of an ablation trains, built once, read by all.

:func:`build_request` is the one function that turns a file's ``base``, a run's own values (the
parameters Optuna drew, or an ablation variant's overrides) and a seed into a :class:`RunRequest`:

- ``config``: the full validated run config, every key of ``busray.config.Config`` (defaults filled
  in), ``train.seed`` set to the seed and ``train.monitor``/``monitor_mode`` to the objective (so
  ``best.pt``, early stopping, ASHA, Optuna and the store pick the same best epoch);
- ``resources``: the run's Ray resources (``resources.workers`` may be drawn by a sweep);
- ``key``: :func:`busray.results.trial_key` of :meth:`RunRequest.recorded` (config + resources) and
  the seed: the same experiment gets the same key from ``busray sweep`` and ``busray ablate``;
- ``name``: the run id that names its run folder, TensorBoard run and store row (a sweep trial's Tune
  id; an ablation run's ``<variant>-s<seed>-<8 hex of its key>``, stable across rounds, so a resumed
  ablation continues a run it cut short in its folder).

The trial trains ``request.config``; its ``config.yaml``, store row, TensorBoard HParams, tracker
params and key all come from the same dict, so the records are true by construction. A request
travels to the trial inside its Tune config (:meth:`RunRequest.to_dict`), and the driver reads the
same one back when it records the trial. Torch-free and Ray-free.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping

from busray.config import resolve_run_paths
from busray.configtools import ConfigError, apply_values, flatten
from busray.experiment.files import ResourcesSpec, check_config
from busray.objective import Objective
from busray.results.layout import file_safe
from busray.results.schema import trial_key

#: The resource keys recorded with a run (``max_failures`` is how the engine treats it, not what it ran).
RECORDED_RESOURCES = ("workers", "cpus_per_worker", "gpus_per_worker")


@dataclass(frozen=True)
class RunRequest:
    """One run: its name, full run config, seed, variant (ablations) and trial key."""
    name: str
    config: dict
    seed: int
    variant: str | None
    key: str
    resources: dict
    #: why ``config`` is not a valid run config (values Optuna drew that a cross-field rule forbids, such
    #: as ``train.lr_min`` above ``train.lr``): the trial fails at once with it, and is recorded so
    error: str | None = None

    @property
    def workers(self) -> int:
        return int(self.resources["workers"])

    def recorded(self) -> dict:
        """What the store row, the trial key, HParams and trackers record: config and resources."""
        return {**self.config, "resources": dict(self.resources)}

    def threads(self) -> int:
        """torch threads per worker: ``train.num_threads``, else the worker's reserved CPUs (the one
        rule, :func:`check_threads`)."""
        return int(self.config["train"].get("num_threads") or 0) or max(1, int(self.resources["cpus_per_worker"]))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "RunRequest":
        return cls(**dict(data))


def build_request(base: dict, *, seed: int, objective: Objective, resources: ResourcesSpec,
                  values: Mapping[str, Any] | None = None, variant: str | None = None,
                  name: str | None = None, where: str = "base", strict: bool = True) -> RunRequest:
    """The request of one run: ``base`` with ``values`` (dotted or nested; ``resources.*`` keys set
    the run's resources) applied, the seed and the objective set, validated as a full config.

    ``name``: the run id (a sweep passes its Tune trial id); default ``<variant>-s<seed>-<key[:8]>``.
    Errors are ``ConfigError`` named ``<where>.<key>`` (``variants.full.model.tau: 9.0 is outside``);
    with ``strict=False`` (a sweep's drawn values) the request is returned with the error instead.
    """
    flat = flatten(dict(values or {}))
    run_values = {k: v for k, v in flat.items() if not k.startswith("resources.")}
    res = {key: getattr(resources, key) for key in RECORDED_RESOURCES}
    res.update({k.split(".", 1)[1]: v for k, v in flat.items() if k.startswith("resources.")})
    data = apply_values(base, run_values)
    data.setdefault("train", {}).update(seed=seed, monitor=objective.metric, monitor_mode=objective.mode)
    try:
        config, error = resolve_run_paths(check_config(data, where), f"{where}."), None
        check_threads(config, res, where)
    except ConfigError as err:
        if strict:
            raise
        config, error = data, f"ConfigError: {err}"
    key = trial_key({**config, "resources": res}, seed)
    name = name or f"{file_safe(f'{variant}-s{seed}')}-{key[:8]}"
    return RunRequest(name=name, config=config, seed=seed, variant=variant, key=key, resources=res, error=error)


def check_threads(config: dict, resources: Mapping[str, Any], where: str = "base") -> None:
    """``train.num_threads`` may lower a worker's threads below its reserved CPUs, never raise them
    (more threads than reserved cores oversubscribe the node, silently slowing every run on it)."""
    threads = int(config["train"]["num_threads"])
    cpus = float(resources["cpus_per_worker"])
    if threads and cpus and threads > max(1, int(cpus)):
        raise ConfigError(f"{where}.train.num_threads: {threads} threads on resources.cpus_per_worker={cpus:g} "
                          f"would oversubscribe the CPUs reserved for a worker; raise resources.cpus_per_worker "
                          f"or set train.num_threads=0 (= the reserved CPUs)")

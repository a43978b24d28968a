"""``--dry-run``: what a sweep or an ablation would run, checked as a real run checks it, started nowhere.

A nightly job or a long GPU sweep is cheaper to get right before it starts. The plan reads and
validates the file and its ``--set`` overrides exactly as ``busray sweep`` / ``busray ablate`` do
(every run config resolved, the data folder found, the storage's existing sweep of that name and the
``--resume`` / ``--add-trials`` rules), then prints what would run: trials or variants x seeds, the
search space, the objective, early stopping, per-trial resources and where it would be stored. It
writes nothing and starts no Ray. Where a run would start a local Ray (no ``RAY_ADDRESS``), a trial's
CPUs and GPUs are checked against what that cluster would have, by Ray's own detection: a GPU preset on
a CPU machine is refused here with the run's one-line error; another cluster is checked when the run
connects to it. Unlike a run's driver, a plan imports timm (~3 s) to check the encoder names. No Ray
is imported, beyond Ray's own (private) resource detection.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from busray.configtools import ConfigError, flatten
from busray.models.config import ModelConfig
from busray.sweep.cluster import local_resources
from busray.sweep.placement import check_resources, concurrency, room_for_trials
from busray.sweep.outcome import count_of
from busray.experiment import (ResourcesSpec, SweepSpec, load_ablation_spec, load_sweep_spec, open_sweep,
                               resolve_storage)
from busray.experiment.params import Param
from busray.experiment.space import space_record
from busray.experiment.state import PYTHON_WORDS, SweepWords, check_journal, runs_left

NOTHING_STARTED = "nothing was started (--dry-run)"


class PlanRefused(ConfigError):
    """A plan whose trials this machine's local Ray could not place: the run would refuse it, so the
    dry run does too (one line, exit 2), after printing the plan (``plan``), which is still worth
    reading, e.g. before submitting a GPU preset to a cluster."""

    def __init__(self, message: str, plan: str) -> None:
        super().__init__(message)
        self.plan = plan


def check_encoders(encoders: dict[str, str]) -> None:
    """Refuse, as the first trial would, an encoder timm does not know (``encoders``: where it is set ->
    its name; the error names that place). A plan may import timm (and torch, seconds), which a real
    run's driver does not: a real run finds such a typo only in its trials."""
    from busray.models.weights import check_encoder  # lazy: torch and timm only for a plan

    for where, name in encoders.items():
        check_encoder(name, key=where)


def with_placement(lines: list[str], resources: ResourcesSpec, worker_counts: list[int],
                   concurrent: int | None) -> str:
    """The plan's text with its closing line, which says what was checked (and when the machine has
    room for fewer than the ``concurrent`` trials a file asks for, that Ray will queue the rest; None:
    ``max_concurrent: auto``, which asks for what fits); :class:`PlanRefused`,
    as the run would refuse it, when the local Ray a run here would start cannot place a trial."""
    have = local_resources()
    if have is None:
        end = f"{NOTHING_STARTED}; whether the cluster of RAY_ADDRESS can place a trial is checked when it runs"
        return "\n".join([*lines, end])
    try:
        check_resources(resources, worker_counts, [have])
    except ConfigError as err:  # a plan made here for a cluster elsewhere: say which cluster was meant
        raise PlanRefused(f"{err} (the local Ray a run here would start; with RAY_ADDRESS set, a run uses "
                          "that cluster)", "\n".join([*lines, NOTHING_STARTED])) from None
    fits = f"{count_of(int(have['CPU']), 'CPU')}, {count_of(int(have['GPU']), 'GPU')}"
    room = room_for_trials(resources, max(worker_counts), [have])
    if concurrent is not None and room < concurrent:
        fits += f"; room for {room} trial(s) at a time, not {concurrent}: the others wait"
    return "\n".join([*lines, f"{NOTHING_STARTED}; a trial fits the local Ray a run would start ({fits})"])


def sweep_plan(source: str | Path | dict, overrides: Iterable[str] = (), storage: str | None = None,
               resume: bool = False, add_trials: int | None = None, words: SweepWords = PYTHON_WORDS,
               allow_new_space: bool = False) -> str:
    """The plan of ``busray sweep`` with these arguments, as printed lines (refusals spelled in ``words``)."""
    spec = load_sweep_spec(source, overrides)
    where = resolve_storage(storage or spec.storage)
    state = open_sweep(where, spec.name, resume=resume, add_trials=add_trials, words=words,
                       space=space_record(spec.space), allow_new_space=allow_new_space)
    if not spec.search.optuna_storage:
        check_journal(where, state)
    check_encoders(_encoders(spec, source))
    trials = add_trials or spec.num_trials
    if resume:
        what = f"resume {state.sweep_id} (the trials its last round left unfinished)"
    elif add_trials:
        what = f"{count_of(trials, 'more trial')} in the study of {state.sweep_id}"
    else:
        what = count_of(trials, "trial")
    lines = [f"sweep {spec.name}: {what}, {_at_a_time(spec, trials, spec.worker_counts())}; objective "
             f"{spec.objective.label()}",
             f"search: {spec.search.sampler} sampler (seed {spec.search.seed}); {_early_stopping(spec)}",
             f"each trial: {resources_text(spec.resources)}; seeds {spec.seed_list()}",
             f"storage: {where.uri}", f"space ({len(spec.space)}):"]
    lines += aligned({key: _param(param) for key, param in spec.space.items()})
    lines += ["base (set by the file and --set):", *aligned(flatten(spec.base))]
    return with_placement(lines, spec.resources, spec.worker_counts(), spec.max_concurrent)


def ablation_plan(source: str | Path, overrides: Iterable[str] = (), storage: str | None = None,
                  seeds: int | None = None, resume: bool = False, words: SweepWords = PYTHON_WORDS) -> str:
    """The plan of ``busray ablate`` with these arguments, as printed lines. Cross-validation folds are
    named, not written (a real run writes them first)."""
    spec = load_ablation_spec(source, overrides, seeds)
    where = resolve_storage(storage or spec.storage)
    state = open_sweep(where, spec.name, resume=resume, add_trials=None, kind="ablation", words=words)
    requests = spec.requests()
    check_encoders({f"{source}: variants.{r.variant}: model.encoder": r.config["model"]["encoder"] for r in requests})
    replicates = f"{spec.cv_folds} folds" if spec.cv_folds > 1 else f"seeds {spec.seed_list()}"
    lines = [f"ablation {spec.name}: {count_of(len(spec.variants), 'variant')} x {replicates} = "
             f"{count_of(len(requests), 'run')}, {_at_a_time(spec, len(requests), [spec.resources.workers])}; "
             f"objective {spec.objective.label()}"
             + (_left_text(len(requests), len(runs_left(state, where, requests))) if resume else ""),
             f"each run: {resources_text(spec.resources)}; baseline {spec.baseline_name}",
             f"storage: {where.uri}", "variants (their changes to base):"]
    lines += aligned({name: ", ".join(f"{k}={v}" for k, v in flatten(changes or {}).items()) or "(base)"
                      for name, changes in spec.variants.items()})
    lines += ["base (set by the file and --set):", *aligned(flatten(spec.base))]
    return with_placement(lines, spec.resources, [spec.resources.workers], spec.max_concurrent)


def _left_text(runs: int, left: int) -> str:
    """What ``--resume`` leaves of an ablation's runs: `` (1 recorded as completed: 2 runs left)``."""
    return f" ({runs - left} recorded as completed: {count_of(left, 'run')} left)"


def _at_a_time(spec, runs: int, worker_counts: list[int]) -> str:
    """``2 at a time``; for ``max_concurrent: auto``, what the local Ray a run here would start places."""
    if spec.max_concurrent is not None:
        return f"{spec.max_concurrent} at a time"
    have = local_resources()
    if have is None:
        return "as many at a time as the cluster places (max_concurrent: auto)"
    n = concurrency(None, spec.resources, max(worker_counts), runs, [have])
    return f"{n} at a time (max_concurrent: auto, on this machine)"


def _encoders(spec: SweepSpec, source: str | Path | dict) -> dict[str, str]:
    """The base's encoder (else the default) and each one the space may draw, by where they are set."""
    where = "sweep" if isinstance(source, dict) else str(source)
    encoders = {f"{where}: base.model.encoder": flatten(spec.base).get("model.encoder", ModelConfig().encoder)}
    param = spec.space.get("model.encoder")
    if param is not None:
        for i, name in enumerate(param.extremes()):
            encoders[f"{where}: space.model.encoder[{i}]"] = name
    return {key: str(name) for key, name in encoders.items()}


def _early_stopping(spec: SweepSpec) -> str:
    s = spec.scheduler
    if s.type == "none":
        return "no early stopping"
    return f"ASHA early stopping (grace {count_of(s.grace_period, 'epoch')}, keeps 1/{s.reduction_factor:g} per rung)"


def resources_text(res: ResourcesSpec) -> str:
    gpus = f", {res.gpus_per_worker:g} GPU" if res.gpus_per_worker else ""
    kind = " (DDP)" if res.workers > 1 else ""
    return f"{count_of(res.workers, 'worker')}{kind} x {res.cpus_per_worker:g} CPU{gpus}"


def _param(p: Param) -> str:
    conditions = ", ".join(f"{k}={v}" for k, v in p.when.items())
    return p.describe() + (f" (when {conditions})" if conditions else "")


def aligned(rows: dict) -> list[str]:
    width = max((len(str(k)) for k in rows), default=0)
    return [f"  {str(key).ljust(width)}  {value}" for key, value in rows.items()]

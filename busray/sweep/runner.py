"""Running sweeps: Optuna-searched trials (:func:`run_sweep`) or fixed configs (:func:`run_configs`).

A sweep is one Ray Tune experiment per *round* under ``<storage>/<name>/tune/round-NNN``:

- search: ``OptunaSearch`` over :class:`~busray.sweep.space.DefineByRun` with a seeded TPE (or random)
  sampler; single or multi-objective (``metric``/``mode`` lists = Optuna Pareto front). The study lives
  in a persistent Optuna storage, by default a journal file ``<storage>/<name>/optuna.journal``
  (``JournalStorage(JournalFileBackend)``: no database server, safe for concurrent appends), or any RDB
  URL; its name is the sweep id, so ``optuna-dashboard <journal>`` shows it;
- early stopping: ``AsyncHyperBandScheduler`` with ``time_attr='epoch'`` (single objective only);
- ``--resume``: ``Tuner.restore`` of the last round: finished trials are kept (neither re-run nor
  re-recorded), unfinished ones are re-launched and continue from their Train checkpoint;
- ``--add-trials N``: a new round whose ``OptunaSearch`` loads the same study (``create_study(...,
  load_if_exists=True)`` inside Ray's ``OptunaSearch``), so TPE conditions on every earlier trial.

Fixed configs (ablations) are one round of a ``tune.grid_search`` over run names with the same trial
driver and recording, no searcher; resuming skips configs whose trial key is already recorded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd

from busray.configtools import ConfigError, flatten
from busray.sweep.cluster import ray_session, trial_driver_resources
from busray.sweep.space import DefineByRun
from busray.sweep.spec import ResourcesSpec, SweepSpec, load_sweep_spec
from busray.sweep.state import SweepState, open_sweep
from busray.sweep.trial import RUN_KEY, FixedRun, TrialJob, trial_driver

DEFAULT_STORAGE = "busray_storage"


@dataclass
class SweepOutcome:
    """What a finished sweep produced (the store holds the details)."""
    sweep: str
    sweep_id: str
    storage: str
    counts: dict[str, int]
    best: pd.DataFrame = field(repr=False)
    objective: str | None = None

    @property
    def num_trials(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        counts = ", ".join(f"{n} {s}" for s, n in self.counts.items() if n)
        lines = [f"sweep {self.sweep} ({self.sweep_id}): {self.num_trials} trials ({counts or 'none'})",
                 f"storage: {self.storage}"]
        if not self.best.empty:
            lines += [f"best trials by {self.objective}:", self.best.to_string(index=False)]
        return "\n".join(lines)


def run_sweep(spec_path: str | Path, overrides: Iterable[str] = (), storage: str | None = None,
              resume: bool = False, add_trials: int | None = None, progress: bool = True) -> SweepOutcome:
    """Run (or resume, or extend) the Optuna sweep described by ``spec_path``."""
    spec = load_sweep_spec(spec_path, overrides)
    if resume and add_trials:
        raise ConfigError("--resume and --add-trials are exclusive: resume first, then add trials")
    storage = str(Path(storage or spec.storage or DEFAULT_STORAGE).expanduser().resolve())
    state = open_sweep(storage, spec.name, resume=resume, add_trials=add_trials)
    job = sweep_job(spec, state, storage)
    with ray_session(spec.max_concurrent):
        if resume:
            _restore(job, state, progress)
        else:
            tuner = _search_tuner(spec, job, state, add_trials or spec.num_trials, progress)
            tuner.fit()
    return outcome(job, list(spec.space))


def run_configs(name: str, configs: Sequence[tuple[str, dict, int | None, str | None]],
                resources: ResourcesSpec | None = None, storage: str | None = None, resume: bool = False,
                max_concurrent: int = 2, objective: str | None = None,
                progress: bool = True) -> SweepOutcome:
    """Train a fixed list of ``(run_name, config_dict, seed, variant)`` (e.g. variants x seeds).

    ``config_dict`` is a full or partial nested run config (validated here, before Ray starts);
    ``seed`` is written to ``train.seed``. With ``resume``, configs already recorded as completed
    under this name's sweep id are skipped.
    """
    from busray.config import config_from_dict, config_to_dict
    from busray.results import ResultsStore, trial_key

    storage = str(Path(storage or DEFAULT_STORAGE).expanduser().resolve())
    state = open_sweep(storage, name, resume=resume, add_trials=None, kind="ablation")
    fixed = {}
    for run_name, config, seed, variant in configs:
        if run_name in fixed:
            raise ConfigError(f"{name}: run name '{run_name}' appears twice")
        full = config_to_dict(config_from_dict(_with_seed(config, seed)))
        fixed[run_name] = FixedRun(config=full, seed=seed, variant=variant)
    job = _job(name, state, storage, {}, objective, [], resources or ResourcesSpec(), fixed)
    store = ResultsStore(storage)
    todo = [n for n, run in fixed.items()
            if not (resume and store.has_run(state.sweep_id, trial_key(run.config, run.seed)))]
    if todo:
        with ray_session(max_concurrent):
            _grid_tuner(job, state, todo, max_concurrent, progress).fit()
    return outcome(job, [])


def sweep_job(spec: SweepSpec, state: SweepState, storage: str) -> TrialJob:
    return _job(spec.name, state, storage, spec.base, spec.objective.label(), list(spec.space),
                spec.resources, {})


def _job(name, state, storage, base, objective, swept, res: ResourcesSpec, fixed) -> TrialJob:
    return TrialJob(sweep=name, sweep_id=state.sweep_id, sweep_dir=state.folder, storage=storage,
                    base=base, objective=objective, swept_keys=swept, workers=res.workers,
                    cpus_per_worker=res.cpus_per_worker, gpus_per_worker=res.gpus_per_worker,
                    max_failures=res.max_failures, fixed=fixed)


def _search_tuner(spec: SweepSpec, job: TrialJob, state: SweepState, num_samples: int, progress: bool):
    from ray import tune

    from busray.sweep.searcher import ResumableOptunaSearch

    obj = spec.objective
    metric = obj.metrics if obj.multi else obj.metrics[0]
    mode = obj.modes if obj.multi else obj.modes[0]
    searcher = ResumableOptunaSearch(
        space=DefineByRun(spec.space, flatten(spec.base), spec.seeds), metric=metric, mode=mode,
        sampler=_sampler(spec), study_name=state.sweep_id, storage=optuna_storage(spec, state))
    tune_config = tune.TuneConfig(search_alg=searcher, scheduler=_scheduler(spec, metric, mode),
                                  num_samples=num_samples, max_concurrent_trials=spec.max_concurrent)
    return tune.Tuner(_trainable(job), tune_config=tune_config,
                      run_config=_run_config(job, state.tune_dir, state.new_round(), progress))


def _grid_tuner(job: TrialJob, state: SweepState, names: list[str], max_concurrent: int, progress: bool):
    from ray import tune

    return tune.Tuner(_trainable(job), param_space={RUN_KEY: tune.grid_search(names)},
                      tune_config=tune.TuneConfig(max_concurrent_trials=max_concurrent),
                      run_config=_run_config(job, state.tune_dir, state.new_round(), progress))


def _restore(job: TrialJob, state: SweepState, progress: bool) -> None:
    from ray import tune

    path = state.tune_dir / state.rounds[-1] if state.rounds else None
    if path is None or not tune.Tuner.can_restore(str(path)):
        raise ConfigError(f"sweep '{state.name}': no Tune experiment to restore under {state.tune_dir}")
    tune.Tuner.restore(str(path), trainable=_trainable(job), resume_unfinished=True,
                       resume_errored=False, restart_errored=False).fit()


def _trainable(job: TrialJob):
    from ray import tune

    return tune.with_resources(tune.with_parameters(trial_driver, job=job), trial_driver_resources())


def _run_config(job: TrialJob, tune_dir: Path, round_name: str, progress: bool):
    from ray import tune

    from busray.sweep.recording import RecordingCallback

    return tune.RunConfig(storage_path=str(tune_dir), name=round_name, verbose=1 if progress else 0,
                          callbacks=[RecordingCallback(job)],
                          failure_config=tune.FailureConfig(max_failures=0))


def _sampler(spec: SweepSpec):
    import optuna

    if spec.search.sampler == "random":
        return optuna.samplers.RandomSampler(seed=spec.search.seed)
    return optuna.samplers.TPESampler(seed=spec.search.seed)


def _scheduler(spec: SweepSpec, metric, mode):
    from ray.tune.schedulers import AsyncHyperBandScheduler

    sch = spec.scheduler
    if sch.type == "none":
        return None
    epochs = int(spec.base.get("train", {}).get("epochs") or _default_epochs())
    return AsyncHyperBandScheduler(time_attr="epoch", metric=metric, mode=mode,
                                   grace_period=sch.grace_period, reduction_factor=sch.reduction_factor,
                                   max_t=sch.max_t or epochs + 1)


def optuna_storage(spec: SweepSpec, state: SweepState):
    """The study's storage: the journal file by default, else the RDB URL of ``search.optuna_storage``."""
    from optuna.storages import JournalStorage, RDBStorage
    from optuna.storages.journal import JournalFileBackend

    url = spec.search.optuna_storage
    if url:
        return RDBStorage(url)
    return JournalStorage(JournalFileBackend(str(Path(state.folder) / "optuna.journal")))


def outcome(job: TrialJob, display_keys: list[str]) -> SweepOutcome:
    """Counts by status and the best trials of this sweep id, read back from the store."""
    from busray.results import STATUSES, ResultsStore

    runs = ResultsStore(job.storage).runs()
    runs = runs[runs["sweep_id"] == job.sweep_id] if "sweep_id" in runs else runs.iloc[0:0]
    counts = {s: int((runs["status"] == s).sum()) if len(runs) else 0 for s in STATUSES}
    return SweepOutcome(job.sweep, job.sweep_id, job.storage, counts,
                        best_trials(runs, job.objective, display_keys), job.objective)


def best_trials(runs: pd.DataFrame, objective: str | None, keys: list[str], top: int = 5) -> pd.DataFrame:
    """The top trials by the (first) objective, among completed and stopped-early trials."""
    first = (objective or "val/score:max").split(",")[0]
    metric, mode = first.rsplit(":", 1) if ":" in first else (first, "max")
    if runs.empty or metric not in runs:
        return pd.DataFrame()
    usable = runs[runs["status"] != "failed"].sort_values(metric, ascending=(mode == "min"))
    extra = [m.rsplit(":", 1)[0] for m in (objective or "").split(",")[1:]]
    columns = ["trial_id", "status", "variant", "seed", *keys, metric, *extra, "test/seg/iou", "test/clf/acc"]
    present = [c for c in dict.fromkeys(columns) if c in usable and usable[c].notna().any()]
    return usable[present].head(top).reset_index(drop=True)


def _with_seed(config: dict, seed: int | None) -> dict:
    if seed is None:
        return config
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in config.items()}
    out.setdefault("train", {})["seed"] = int(seed)
    return out


def _default_epochs() -> int:
    from busray.training.config import TrainConfig

    return TrainConfig().epochs


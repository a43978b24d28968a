"""Running sweeps: Optuna-searched trials (:func:`run_sweep`) or fixed configs (:func:`run_configs`).

A sweep is one Ray Tune experiment per *round* under ``<storage>/<name>/tune/round-NNN``:

- search: ``OptunaSearch`` (:class:`~busray.sweep.searcher.BusrayOptunaSearch`) over
  :class:`~busray.sweep.space.DefineByRun` with a seeded TPE (or random) sampler; single or
  multi-objective. The study lives in ``<storage>/<name>/optuna.journal`` (or an RDB URL), named by
  the sweep id, so ``optuna-dashboard <journal>`` shows it;
- early stopping: ``AsyncHyperBandScheduler`` on ``epoch`` (single objective only);
- the engine (:mod:`busray.sweep.trial`): warm, reused trial actors that call ``fit`` in-process;
  Tune's own loggers and console output are off, :mod:`busray.sweep.console` prints instead;
- ``--resume``: ``Tuner.restore`` of the last round: finished trials are kept, unfinished ones are
  re-launched and continue from their run folder's ``last.pt``;
- ``--add-trials N``: a new round whose searcher loads the same study, so TPE conditions on every
  earlier trial.

Fixed configs (ablations) are one round of a ``tune.grid_search`` over run names with the same
trainable and recording, no searcher; resuming skips configs already recorded as completed.

Ray Tune (and the modules of busray built on it: searcher, recording, console) is imported inside
the functions that build the Tuner: it takes ~1.7 s, and a sweep file or storage that
:func:`run_sweep` refuses should say so before that.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator, Sequence

import optuna
from optuna.exceptions import ExperimentalWarning
from optuna.storages import JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend

from busray.config import config_from_dict, config_to_dict, resolve_run_paths
from busray.configtools import ConfigError, flatten
from busray.objective import Objective
from busray.results import STATUSES, ResultsStore, trial_key
from busray.results.schema import in_store_order
from busray.sweep.cluster import check_resources, dashboard_url, ray_session, trial_resources
from busray.sweep.space import DefineByRun
from busray.sweep.spec import ResourcesSpec, SweepSpec, load_sweep_spec
from busray.sweep.state import SweepState, open_sweep
from busray.sweep.storage import resolve_storage
from busray.sweep.tracking import TrackingSpec, tracker_callbacks
from busray.sweep.outcome import SweepOutcome, count_of, sweep_outcome
from busray.sweep.trial import RUN_KEY, FixedRun, TrialJob, run_trial
from busray.training.config import TrainConfig

if TYPE_CHECKING:  # imported where the Tuner is built (the module docstring says why)
    from busray.sweep.recording import RecordingCallback

#: Tune's own CSV/JSON/TensorBoard result loggers off (busray's run folder and store hold all of it
#: once), and Tune's legacy output engine, whose ``verbose=0`` really is silent.
QUIET_TUNE = {"TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1", "RAY_AIR_NEW_OUTPUT": "0"}
#: Tune snapshots its experiment (trials, searcher) every second rather than every 10 s or more (its
#: "auto"): a trial that started, ended and was recorded between two snapshots is unknown to the
#: ``--resume`` of a SIGKILLed driver, which then starts one trial too many (seen: 5 store rows for a
#: 4-trial sweep). A trial takes longer than a second, so every recorded trial is in the snapshot; saving
#: a few hundred trials' state takes milliseconds. A value already in the environment is kept.
SNAPSHOT_TUNE = {"TUNE_GLOBAL_CHECKPOINT_S": "1"}
#: Loggers whose INFO/WARNING lines only repeat what the console says (or warn about the loggers
#: turned off above); --verbose leaves them alone.
QUIET_LOGGERS = ("optuna", "ray.tune", "ray.train")


def run_sweep(spec: str | Path | dict | SweepSpec, overrides: Iterable[str] = (), storage: str | None = None,
              resume: bool = False, add_trials: int | None = None, progress: bool = True,
              verbose: bool = False) -> SweepOutcome:
    """Run (or resume, or extend) a sweep: a sweep file, a dict of the same shape, or a SweepSpec."""
    spec = load_sweep_spec(spec, overrides)
    if resume and add_trials:
        raise ConfigError("--resume and --add-trials are exclusive: resume first, then add trials")
    storage = resolve_storage(storage or spec.storage)
    state = open_sweep(storage, spec.name, resume=resume, add_trials=add_trials)
    job = sweep_job(spec, state, storage)
    total = add_trials or spec.num_trials
    with ray_session(spec.max_concurrent, verbose), _quiet_tune(verbose):
        check_resources(job, spec.worker_counts())
        console = _console(job, total, in_store_order(list(spec.space)), progress)  # as the summary's table
        callbacks, recorder = _callbacks(job, console, spec.tracking)
        try:
            if resume and not _never_started(job, state):
                _restore(job, state, callbacks)
            else:
                _search_tuner(spec, job, state, total, callbacks, verbose).fit()
        finally:
            console.close()
    return sweep_outcome(job, journal=_journal(spec, state), interrupted=console.interrupted,
                         unfinished=recorder.unfinished)


def run_configs(name: str, configs: Sequence[tuple[str, dict, int | None, str | None]],
                resources: ResourcesSpec | None = None, storage: str | None = None, resume: bool = False,
                max_concurrent: int = 2, objective: str | Objective | None = None,
                progress: bool = True, verbose: bool = False, tracking: TrackingSpec | None = None) -> SweepOutcome:
    """Train a fixed list of ``(run_name, config_dict, seed, variant)`` (e.g. variants x seeds).

    ``config_dict`` is a full or partial nested run config (validated here, before Ray starts);
    ``seed`` is written to ``train.seed``. With ``resume``, configs already recorded as completed
    under this name's sweep id are skipped.
    """
    storage = resolve_storage(storage)
    fixed = {}
    for run_name, config, seed, variant in configs:  # all checked before anything is written
        if run_name in fixed:
            raise ConfigError(f"{name}: run name '{run_name}' appears twice")
        try:
            full = config_to_dict(config_from_dict(_with_seed(resolve_run_paths(config), seed)))
        except ConfigError as err:
            raise ConfigError(f"{name}: run '{run_name}': {err}") from None
        fixed[run_name] = FixedRun(config=full, seed=seed, variant=variant)
    state = open_sweep(storage, name, resume=resume, add_trials=None, kind="ablation")
    job = _job(name, state, storage, {}, Objective.parse(objective), [], resources or ResourcesSpec(), fixed)
    for run_name, run in fixed.items():
        run.key = trial_key(*_keyed(job, run_name))
    done = ResultsStore(storage).trial_keys(state.sweep_id) if resume else set()
    todo = [n for n in fixed if fixed[n].key not in done]
    interrupted, unfinished = "", []
    if todo:
        with ray_session(max_concurrent, verbose), _quiet_tune(verbose):
            check_resources(job, [job.workers])
            console = _console(job, len(todo), [], progress)
            callbacks, recorder = _callbacks(job, console, tracking or TrackingSpec())
            try:
                _grid_tuner(job, state, todo, max_concurrent, callbacks, verbose).fit()
            finally:
                console.close()
            interrupted, unfinished = console.interrupted, recorder.unfinished
    return sweep_outcome(job, interrupted=interrupted, unfinished=unfinished)


def sweep_job(spec: SweepSpec, state: SweepState, storage: str) -> TrialJob:
    return _job(spec.name, state, storage, spec.base, spec.objective, list(spec.space), spec.resources, {})


def _job(name, state, storage, base, objective: Objective, swept, res: ResourcesSpec, fixed) -> TrialJob:
    return TrialJob(sweep=name, sweep_id=state.sweep_id, sweep_dir=state.folder, storage=storage,
                    base=base, objective=objective, swept_keys=swept, workers=res.workers,
                    cpus_per_worker=res.cpus_per_worker, gpus_per_worker=res.gpus_per_worker,
                    max_failures=res.max_failures, fixed=fixed)


def _keyed(job: TrialJob, run_name: str) -> tuple[dict, int | None]:
    """What a fixed run's trial key hashes: its config as recorded (objective and resources in)."""
    config, seed, _ = job.resolve({RUN_KEY: run_name})
    return job.recorded_config(config, {}), seed


def _search_tuner(spec: SweepSpec, job: TrialJob, state: SweepState, num_samples: int, callbacks: list,
                  verbose: bool):
    from ray import tune

    from busray.sweep.searcher import BusrayOptunaSearch  # Ray Tune's OptunaSearch underneath

    round_name = state.new_round()  # the sweep exists from here on (its folder holds the study)
    obj = spec.objective
    metric = list(obj.metrics) if obj.multi else obj.metric
    mode = list(obj.modes) if obj.multi else obj.mode
    searcher = BusrayOptunaSearch(
        space=DefineByRun(spec.space, flatten(spec.base), spec.seeds), metric=metric, mode=mode,
        sampler=_sampler(spec, len(state.rounds) - 1), study_name=state.sweep_id, storage=optuna_storage(spec, state),
        runs_dir=str(Path(state.folder) / "runs"), metric_names=list(obj.metrics))
    tune_config = tune.TuneConfig(search_alg=searcher, scheduler=_scheduler(spec, metric, mode),
                                  num_samples=num_samples, max_concurrent_trials=spec.max_concurrent,
                                  reuse_actors=True)
    return tune.Tuner(_trainable(job), tune_config=tune_config,
                      run_config=_run_config(job, state.tune_dir, round_name, callbacks, verbose))


def _grid_tuner(job: TrialJob, state: SweepState, names: list[str], max_concurrent: int, callbacks: list,
                verbose: bool):
    from ray import tune

    return tune.Tuner(_trainable(job), param_space={RUN_KEY: tune.grid_search(names)},
                      tune_config=tune.TuneConfig(max_concurrent_trials=max_concurrent, reuse_actors=True),
                      run_config=_run_config(job, state.tune_dir, state.new_round(), callbacks, verbose))


def _never_started(job: TrialJob, state: SweepState) -> bool:
    """A sweep stopped while Tune started (no experiment saved yet) that recorded no trial: --resume
    starts it afresh, under the same sweep id and study."""
    from ray import tune

    path = _last_round(state)
    restorable = path is not None and tune.Tuner.can_restore(str(path))
    return not restorable and not ResultsStore(job.storage).trial_keys(state.sweep_id, STATUSES)


def _last_round(state: SweepState) -> Path | None:
    return state.tune_dir / state.rounds[-1] if state.rounds else None


def _restore(job: TrialJob, state: SweepState, callbacks: list) -> None:
    from ray import tune

    path = _last_round(state)
    if path is None or not tune.Tuner.can_restore(str(path)):
        raise ConfigError(f"sweep '{state.name}': no Tune experiment to restore under {state.tune_dir}")
    tuner = tune.Tuner.restore(str(path), trainable=_trainable(job), resume_unfinished=True,
                               resume_errored=False, restart_errored=False)
    # the restored RunConfig holds the callbacks of the killed driver: give it this driver's
    tuner._local_tuner._run_config.callbacks = callbacks
    tuner.fit()


def _trainable(job: TrialJob):
    from ray import tune

    return tune.with_resources(tune.with_parameters(run_trial, job=job), lambda cfg: trial_resources(job, cfg))


def _run_config(job: TrialJob, tune_dir: Path, round_name: str, callbacks: list, verbose: bool):
    from ray import tune

    return tune.RunConfig(storage_path=str(tune_dir), name=round_name, verbose=2 if verbose else 0,
                          callbacks=callbacks,
                          failure_config=tune.FailureConfig(max_failures=job.max_failures),
                          checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=False))


def _callbacks(job: TrialJob, console, tracking: TrackingSpec) -> tuple[list, RecordingCallback]:
    """busray's console and recorder, then the user's trackers (MLflow, W&B); and the recorder."""
    from busray.sweep.recording import RecordingCallback

    trackers = tracker_callbacks(tracking, job.sweep, tags={"busray.sweep_id": job.sweep_id})
    recorder = RecordingCallback(job, on_recorded=console.recorded)
    return [console, recorder, *trackers], recorder


def _console(job: TrialJob, total: int, swept: list[str], progress: bool):
    from busray.sweep.console import ConsoleCallback

    console = ConsoleCallback(total, job.objective, swept, show_bar=None if progress else False,
                              run_id=job.run_id_of)
    what = f"sweep {job.sweep} ({job.sweep_id}): {count_of(total, 'trial')}" if not job.fixed else \
        f"ablation {job.sweep} ({job.sweep_id}): {count_of(total, 'run')}"
    console.write(f"{what}, objective {job.objective.label()}, storage {job.storage}")
    url = dashboard_url()
    if url:
        console.write(f"Ray dashboard: {url}")
    return console


@contextlib.contextmanager
def _quiet_tune(verbose: bool) -> Iterator[None]:
    """Tune's environment for one sweep (:data:`QUIET_TUNE`, :data:`SNAPSHOT_TUNE`), restored after."""
    env = {**{k: v for k, v in SNAPSHOT_TUNE.items() if k not in os.environ}, **QUIET_TUNE}
    saved = {k: os.environ.get(k) for k in env}
    levels = {name: logging.getLogger(name).level for name in QUIET_LOGGERS}
    os.environ.update(env)
    if not verbose:
        for name in QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _sampler(spec: SweepSpec, round_index: int):
    """The round's sampler. Round k of ``--add-trials`` is seeded ``search.seed + k``: with the seed
    of round 0 it would draw round 0's points again (TPE samples at random for its first 10 trials)."""
    seed = (spec.search.seed + round_index) % 2**32
    if spec.search.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def _scheduler(spec: SweepSpec, metric, mode):
    from ray.tune.schedulers import AsyncHyperBandScheduler

    sch = spec.scheduler
    if sch.type == "none":
        return None
    epochs = int(spec.base.get("train", {}).get("epochs") or _default_epochs())
    # max_t is one past the last epoch: the last epoch's report must not count as a stop (the trial
    # still runs its test evaluation and its final report after it).
    return AsyncHyperBandScheduler(time_attr="epoch", metric=metric, mode=mode,
                                   grace_period=sch.grace_period, reduction_factor=sch.reduction_factor,
                                   max_t=sch.max_t or epochs + 1)


def optuna_storage(spec: SweepSpec, state: SweepState):
    """The study's storage: the journal file by default, else the RDB URL of ``search.optuna_storage``."""
    url = spec.search.optuna_storage
    if url:
        return RDBStorage(url)
    return JournalStorage(JournalFileBackend(_journal(spec, state)))


def _journal(spec: SweepSpec, state: SweepState) -> str | None:
    return None if spec.search.optuna_storage else str(Path(state.folder) / "optuna.journal")


def _with_seed(config: dict, seed: int | None) -> dict:
    if seed is None:
        return config
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in config.items()}
    out.setdefault("train", {})["seed"] = int(seed)
    return out


def _default_epochs() -> int:
    return TrainConfig().epochs

"""The engine: run a sweep's searched trials (:func:`run_sweep`) or fixed run requests (:func:`run_requests`).

Both take what :mod:`busray.experiment` built and share one path (:func:`_run`): the sweep's state
and :class:`~busray.sweep.job.TrialJob`, a Ray session, the pre-flight check of resources, the console,
the recorder and the trackers, one Tune round, and the outcome read back from the store. A sweep is one
Ray Tune experiment per *round* under ``<storage>/<name>/tune/round-NNN``:

- search: ``OptunaSearch`` (:class:`~busray.sweep.searcher.BusrayOptunaSearch`) over
  :class:`~busray.experiment.space.DefineByRun` with a seeded TPE (or random) sampler; single or
  multi-objective. The searcher turns each suggestion into the trial's
  :class:`~busray.experiment.request.RunRequest`. The study lives in ``<storage>/<name>/optuna.journal``
  (or an RDB URL), named by the sweep id, so ``optuna-dashboard <journal>`` shows it;
- early stopping: ``AsyncHyperBandScheduler`` on ``epoch`` (single objective only);
- the trials (:mod:`busray.sweep.trial`): warm, reused trial actors that call ``fit`` in-process;
  Tune's own loggers and console output are off, :mod:`busray.sweep.console` prints instead;
- ``resume``: ``Tuner.restore`` of the last round: finished trials are kept, unfinished ones are
  re-launched and continue from their run folder's ``last.pt``;
- ``add_trials``: a new round whose searcher loads the same study, so TPE conditions on every
  earlier trial.

Fixed requests (an ablation's variants x seeds) are one round of a ``tune.grid_search`` over the
requests themselves, no searcher; ``resume`` skips requests whose key is already recorded as completed.

Ray Tune (and the modules of busray built on it: searcher, recording, console, trackers) is imported
inside the functions that build the Tuner: it takes ~1.7 s, and a file or storage that is refused
should say so before that.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Sequence

import optuna
from optuna.exceptions import ExperimentalWarning
from optuna.storages import JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend

from busray.configtools import ConfigError
from busray.notice import warn
from busray.experiment import (ExperimentFile, RunRequest, SweepSpec, SweepState, load_sweep_spec, open_sweep,
                               resolve_storage)
from busray.experiment.space import DefineByRun, space_record
from busray.experiment.state import (JOURNAL, PYTHON_WORDS, SweepWords, check_journal, never_started,
                                     runs_left)
from busray.results import ResultsStore
from busray.results.schema import in_store_order
from busray.sweep.cluster import alive_nodes, ask_autoscaler, dashboard_url, node_types, ray_session
from busray.sweep.nodes import check_storage_on_nodes
from busray.sweep.placement import check_resources, concurrency, trial_resources
from busray.sweep.job import REQUEST_KEY, TrialJob, run_id_of
from busray.sweep.outcome import SweepOutcome, count_of, sweep_outcome
from busray.storage import Storage
from busray.sweep.trial import run_trial

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
#: Tune's logger of a failed experiment snapshot (a storage that turned read-only or full): its 22-line
#: traceback becomes one ``busray: warning:`` line, once per message (--verbose leaves it alone).
SNAPSHOT_LOGGER = "ray.tune.execution.experiment_state"


def run_sweep(spec: str | Path | dict | SweepSpec, overrides: Iterable[str] = (), storage: str | None = None,
              resume: bool = False, add_trials: int | None = None, progress: bool = True,
              verbose: bool = False, words: SweepWords = PYTHON_WORDS,
              allow_new_space: bool = False) -> SweepOutcome:
    """Run (or ``resume``, or extend by ``add_trials``) a sweep: a sweep file, a dict of the same shape,
    or a SweepSpec. A sweep of that name already in ``storage`` is refused unless ``resume`` or
    ``add_trials``, and added trials whose space differs from the last round's unless
    ``allow_new_space``; ``words``: how the refusals name them (the CLI passes its flags)."""
    spec = load_sweep_spec(spec, overrides)
    storage = resolve_storage(storage or spec.storage)
    state = open_sweep(storage, spec.name, resume=resume, add_trials=add_trials, words=words,
                       space=space_record(spec.space), allow_new_space=allow_new_space)
    if not spec.search.optuna_storage:
        check_journal(storage, state)
    job = experiment_job(spec, state, storage, "sweep", tuple(spec.space))
    total = add_trials or spec.num_trials

    restoring = resume and not never_started(state, storage)

    def tune_round(callbacks: list, verbose: bool, concurrent: int) -> None:
        if restoring:
            _restore(job, state, callbacks, words)
        else:
            _search_tuner(spec, job, state, total, concurrent, callbacks, verbose).fit()

    recorded = frozenset(ResultsStore(storage).trial_ids(state.sweep_id)) if restoring else frozenset()
    return _run(spec, job, total, spec.worker_counts(), tune_round, progress, verbose, _journal(spec, state),
                recorded)


def run_requests(spec: ExperimentFile, requests: Sequence[RunRequest], storage: str | None = None,
                 resume: bool = False, progress: bool = True, verbose: bool = False,
                 words: SweepWords = PYTHON_WORDS) -> SweepOutcome:
    """Train fixed run requests (an ablation's variants x replicates) under ``spec``'s name, resources,
    objective and trackers. With ``resume``, requests whose key is recorded as completed are skipped."""
    names = [r.name for r in requests]
    if len(set(names)) != len(names):
        raise ConfigError(f"{spec.name}: run '{next(n for n in names if names.count(n) > 1)}' appears twice")
    storage = resolve_storage(storage or spec.storage)
    state = open_sweep(storage, spec.name, resume=resume, add_trials=None, kind="ablation", words=words)
    job = experiment_job(spec, state, storage, "ablation", ())
    todo = runs_left(state, storage, requests) if resume else list(requests)
    if not todo:
        return sweep_outcome(job)

    def tune_round(callbacks: list, verbose: bool, concurrent: int) -> None:
        _grid_tuner(job, state, todo, concurrent, callbacks, verbose).fit()

    return _run(spec, job, len(todo), sorted({r.workers for r in todo}), tune_round, progress, verbose, None)


def experiment_job(spec: ExperimentFile, state: SweepState, storage: Storage, kind: str,
                   swept: tuple[str, ...]) -> TrialJob:
    return TrialJob(sweep=spec.name, sweep_id=state.sweep_id, storage=storage, kind=kind,
                    objective=spec.objective, swept_keys=swept, max_failures=spec.resources.max_failures)


def _run(spec: ExperimentFile, job: TrialJob, total: int, worker_counts: list[int],
         tune_round: Callable[[list, bool, int], None], progress: bool, verbose: bool,
         journal: str | None, recorded: frozenset[str] = frozenset()) -> SweepOutcome:
    """The path both kinds share: Ray, pre-flight, console, recorder and trackers, one Tune round.
    ``recorded``: the run ids a restored round had recorded already (the console numbers on from them)."""
    slots = spec.max_concurrent or total  # a local cluster's trial slots (DDP drivers); Tune bounds the rest
    with ray_session(slots, verbose), _quiet_tune(verbose):
        nodes, types = alive_nodes(), node_types()
        waiting = check_resources(spec.resources, worker_counts, nodes, types)
        check_storage_on_nodes(job.storage)
        concurrent = concurrency(spec.max_concurrent, spec.resources, max(worker_counts), total, nodes, types)
        console = _console(job, total, concurrent, progress, recorded)
        if waiting:  # an autoscaling cluster: start the nodes now, and say why nothing runs yet
            console.write(waiting)
            ask_autoscaler(spec.resources, max(worker_counts))
        callbacks, recorder = _callbacks(job, console, spec)
        try:
            tune_round(callbacks, verbose, concurrent)
        finally:
            console.close()
            job.storage.push(job.sweep, JOURNAL)  # a bucket: the study as it ended (trials push their own)
    return sweep_outcome(job, journal=journal, interrupted=console.interrupted, unfinished=recorder.unfinished)


def _search_tuner(spec: SweepSpec, job: TrialJob, state: SweepState, num_samples: int, concurrent: int,
                  callbacks: list, verbose: bool):
    from ray import tune

    from busray.sweep.searcher import BusrayOptunaSearch  # Ray Tune's OptunaSearch underneath

    round_name = state.new_round(space_record(spec.space))  # the sweep exists from here on
    obj = spec.objective
    metric = list(obj.metrics) if obj.multi else obj.metric
    mode = list(obj.modes) if obj.multi else obj.mode
    searcher = BusrayOptunaSearch(
        space=DefineByRun(spec.space, spec.full_base()), metric=metric, mode=mode,
        sampler=_sampler(spec, len(state.rounds) - 1), study_name=state.sweep_id,
        storage=optuna_storage(spec, state, job.storage), runs_dir=job.storage.location(spec.name, "runs"),
        metric_names=list(obj.metrics), requests=spec)
    tune_config = tune.TuneConfig(search_alg=searcher, scheduler=_scheduler(spec, metric, mode),
                                  num_samples=num_samples, max_concurrent_trials=concurrent,
                                  reuse_actors=True, trial_dirname_creator=run_id_of)
    return tune.Tuner(_trainable(job), tune_config=tune_config,
                      run_config=_run_config(job, state.tune_dir, round_name, callbacks, verbose))


def _grid_tuner(job: TrialJob, state: SweepState, requests: list[RunRequest], max_concurrent: int,
                callbacks: list, verbose: bool):
    from ray import tune

    grid = tune.grid_search([r.to_dict() for r in requests])
    return tune.Tuner(_trainable(job), param_space={REQUEST_KEY: grid},
                      tune_config=tune.TuneConfig(max_concurrent_trials=max_concurrent, reuse_actors=True,
                                                  trial_dirname_creator=run_id_of),
                      run_config=_run_config(job, state.tune_dir, state.new_round(), callbacks, verbose))


def _last_round(state: SweepState) -> str | None:
    return f"{state.tune_dir}/{state.rounds[-1]}" if state.rounds else None


def _restore(job: TrialJob, state: SweepState, callbacks: list, words: SweepWords) -> None:
    from ray import tune

    path = _last_round(state)
    if path is None or not tune.Tuner.can_restore(path):
        raise ConfigError(f"sweep '{state.name}': no Tune experiment to restore under {state.tune_dir}")
    try:
        tuner = tune.Tuner.restore(path, trainable=_trainable(job), resume_unfinished=True,
                                   resume_errored=False, restart_errored=False)
    except (ModuleNotFoundError, AttributeError) as err:  # pickled by a busray whose modules moved
        raise ConfigError(f"sweep '{state.name}': its Tune round {state.rounds[-1]} was saved by an older busray and "
                          f"cannot be restored ({type(err).__name__}: {err}); continue its Optuna study in a new "
                          f"round with {words.add_trials} instead: its recorded trials are kept, "
                          f"unfinished ones are not resumed") from None
    # the restored RunConfig holds the callbacks of the killed driver: give it this driver's
    tuner._local_tuner._run_config.callbacks = callbacks
    tuner.fit()


def _trainable(job: TrialJob):
    import ray
    from ray import tune

    from busray.sweep.job import request_of

    cluster = ray.cluster_resources()
    return tune.with_resources(tune.with_parameters(run_trial, job=job),
                               lambda cfg: trial_resources(request_of(cfg).resources, cluster))


def _run_config(job: TrialJob, tune_dir: str, round_name: str, callbacks: list, verbose: bool):
    from ray import tune

    return tune.RunConfig(storage_path=tune_dir, name=round_name, verbose=2 if verbose else 0,
                          callbacks=callbacks,
                          failure_config=tune.FailureConfig(max_failures=job.max_failures),
                          checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=False))


def _callbacks(job: TrialJob, console, spec: ExperimentFile) -> tuple[list, "RecordingCallback"]:
    """busray's console and recorder, then the user's trackers (MLflow, W&B); and the recorder. The
    recorder tells the console and the trackers what it recorded, so they show the store's outcome."""
    from busray.sweep.recording import RecordingCallback
    from busray.sweep.trackers import tracker_callbacks

    trackers = tracker_callbacks(spec.tracking, job.sweep, tags={"busray.sweep_id": job.sweep_id})
    recorder = RecordingCallback(job, listeners=[console.recorded, *(t.recorded for t in trackers)])
    return [console, recorder, *trackers], recorder


def _console(job: TrialJob, total: int, concurrent: int, progress: bool, recorded: frozenset[str]):
    from busray.sweep.console import ConsoleCallback

    swept = in_store_order(list(job.swept_keys))  # in the order of the summary's table
    console = ConsoleCallback(total, job.objective, swept, show_bar=None if progress else False,
                              recorded=recorded)
    noun = "trial" if job.kind == "sweep" else "run"
    console.write(f"{job.kind} {job.sweep} ({job.sweep_id}): {count_of(total, noun)}, {concurrent} at a time, "
                  f"objective {job.objective.label()}, storage {job.storage.uri}")
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
    one_line = _OneLineWarning()
    if not verbose:
        for name in QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)
        logging.getLogger(SNAPSHOT_LOGGER).addFilter(one_line)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            yield
    finally:
        logging.getLogger(SNAPSHOT_LOGGER).removeFilter(one_line)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class _OneLineWarning(logging.Filter):
    """A logged error with its traceback -> one ``busray: warning:`` line (the exception's first line),
    each distinct one once; the record itself is dropped."""

    def __init__(self) -> None:
        super().__init__()
        self.said: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        err = record.exc_info[1] if record.exc_info else None
        detail = f" ({type(err).__name__}: {(str(err).strip().splitlines() or [''])[0]})" if err else ""
        text = f"Ray Tune: {record.getMessage().strip().rstrip(':')}{detail}"
        if text not in self.said:
            self.said.add(text)
            warn(text)
        return False


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
    # max_t is one past the last epoch: the last epoch's report must not count as a stop (the trial
    # still runs its test evaluation and its final report after it).
    return AsyncHyperBandScheduler(time_attr="epoch", metric=metric, mode=mode,
                                   grace_period=sch.grace_period, reduction_factor=sch.reduction_factor,
                                   max_t=sch.max_t or spec.epochs() + 1)


def optuna_storage(spec: SweepSpec, state: SweepState, storage: Storage):
    """The study's storage: the journal file by default (in a bucket: its local mirror, pulled here
    first and pushed as trials end, so a driver on another machine continues the study), else the RDB
    URL of ``search.optuna_storage``."""
    url = spec.search.optuna_storage
    if url:
        return RDBStorage(url)
    storage.pull(spec.name, JOURNAL)
    return JournalStorage(JournalFileBackend(_journal(spec, state)))


def _journal(spec: SweepSpec, state: SweepState) -> str | None:
    return None if spec.search.optuna_storage else str(Path(state.folder) / JOURNAL)

"""Recording trials: the sweep driver is the one writer of every trial's store row and final outcome.

:class:`RecordingCallback` runs in the sweep driver and sees every decision Tune takes. What a trial
ran is its :class:`~busray.experiment.request.RunRequest`, read from the trial's Tune config: the row's
config columns, its trial key and the HParams entry are that request's, never rebuilt. How it ended:

- a trial whose last report is *final* trained to its end: its outcome travels in that report
  (:func:`~busray.sweep.job.outcome_of`: ``completed``, or ``failed`` on a non-finite loss or an
  exception, with the reason);
- a trial that ends without a final report was stopped by the scheduler (ASHA) at its last report: its
  outcome is built here from the epochs it reported (``history.csv`` up to the last reported epoch,
  best epoch by the sweep's :class:`~busray.objective.Objective`, wall time since it started), status
  ``stopped_early``, and written to its run folder too, so folder, store and Optuna (``PRUNED``) tell
  the same story;
- a trial Tune marks errored (its process died more than ``resources.max_failures`` times) is
  ``failed`` with Tune's error line.

``on_experiment_end`` records any finished trial still missing (the driver was killed between a
trial's end and its recording, then ``--resume``-d). A trial this driver started that Tune did not
end was cut short by Ctrl-C: Tune's clean-up marks it ``TERMINATED``, but the experiment state it saved
just before says ``RUNNING``, so ``--resume`` continues it from its last checkpoint. It is not
recorded (no row, no ``PRUNED``; its run folder still says ``running``): the callback lists it in
``unfinished`` instead. The store names each row by ``(sweep_id, trial_id)``, the request's name, so
recording a run twice replaces its row. Listeners (the console, the trackers) are told of each
recorded outcome, in order, so they show what the store holds.

A trial that cannot be recorded (the storage turned read-only or full, a bug) stops the experiment:
Tune would log the exception's traceback from inside its own loop and relaunch the trial (up to
``max_failures`` times) to fail the same way. The recorder keeps the exception, records nothing more,
and raises it at Tune's next step (:meth:`RecordingCallback.on_step_begin`), so it ends the sweep
like Ctrl-C does (Tune's last snapshot keeps the unfinished trials for ``--resume``) and the CLI prints
its one line. The trial it could not record is recorded by the ``--resume`` once the storage works.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Callable, Sequence

from ray.tune import Callback

from busray.configtools import flatten
from busray.experiment.request import RunRequest
from busray.experiment.state import JOURNAL
from busray.results import ResultsStore, RunIdentity, run_row
from busray.runfolder import RunOutcome, best_val
from busray.sweep.hparams import hparam_value, write_hparams
from busray.sweep.job import TrialJob, outcome_of, request_of, run_id_of

Listener = Callable[[object, RunOutcome], None]  # (Tune trial, recorded outcome)


def record_trial(job: TrialJob, request: RunRequest, last_result: dict | None,
                 error: str | None = None) -> RunOutcome:
    """Write the outcome of ``request``'s run (run folder + store row + HParams) and return it."""
    job.storage.pull(*job.run_parts(request.name))  # a bucket: what the trial pushed, on any node
    outcome = trial_outcome(job, request.name, last_result, error)
    outcome.run_dir = job.storage.location(*job.run_parts(request.name))  # what every machine can open
    if outcome.status == "stopped_early" or error:
        job.run_folder(request.name).write_outcome(outcome)
    identity = RunIdentity(sweep=job.sweep, sweep_id=job.sweep_id, trial_id=request.name,
                           variant=request.variant, seed=request.seed, objective=job.objective.label())
    ResultsStore(job.storage).record_run(run_row(identity, request.recorded(), outcome), outcome.history)
    write_hparams(job.tb_dir(request.name), hparams_of(request, job.swept_keys),
                  outcome.metric_columns(), step=outcome.epochs_run)
    job.push(request.name)
    job.storage.push(job.sweep, JOURNAL)  # a bucket: the study as far as it got
    return outcome


def trial_outcome(job: TrialJob, run_id: str, last_result: dict | None, error: str | None) -> RunOutcome:
    """The outcome of a trial that ended (see the module docstring for the three cases)."""
    folder = job.run_folder(run_id)
    history = folder.read_history()
    final = outcome_of(last_result) if error is None else None
    if final is not None:
        final.history = history
        return final
    last_epoch = int((last_result or {}).get("epoch") or 0)
    reported = [row for row in history if int(row.get("epoch") or 0) <= last_epoch] if last_result else history
    outcome = folder.read_outcome() or RunOutcome(run_dir=str(folder.path))
    best = job.objective.best_row(reported)
    outcome.history = reported
    outcome.epochs_run = max([int(r["epoch"]) for r in reported], default=0)
    outcome.best_epoch = int(best["epoch"]) if best else 0
    outcome.val = best_val(reported, outcome.best_epoch) if best else {}
    outcome.test = {}
    outcome.wall_time_s = seconds_since(outcome.started_at)
    if not (outcome.dataset and outcome.split_hash):  # a trial stopped before fit wrote them
        dataset, split_hash = folder.split_identity()
        outcome.dataset, outcome.split_hash = outcome.dataset or dataset, outcome.split_hash or split_hash
    return outcome.finish("failed" if error else "stopped_early", error)


def seconds_since(started_at: str | None) -> float:
    """Seconds from an ISO time (a run's ``started_at``) to now; 0 when it is missing or unreadable."""
    try:
        start = dt.datetime.fromisoformat(str(started_at))
    except ValueError:
        return 0.0
    if start.tzinfo is None:
        start = start.replace(tzinfo=dt.timezone.utc)
    return max(0.0, (dt.datetime.now(dt.timezone.utc) - start).total_seconds())


class RecordingCallback(Callback):
    """Sweep-driver hook: records every trial when Tune ends it (and any missed one at the end)."""

    def __init__(self, job: TrialJob, listeners: Sequence[Listener] = ()) -> None:
        self.job = job
        self.listeners = list(listeners)  # told of each recorded outcome: the console, the trackers
        self.live: set[str] = set()       # run ids this driver started and Tune has not ended yet
        self.unfinished: list[str] = []   # run ids still live when the experiment ended (Ctrl-C)
        self.failure: Exception | None = None  # why a trial could not be recorded: ends the experiment

    def on_step_begin(self, iteration: int, trials: list, **info) -> None:
        if self.failure is not None:  # out of Tune's loop (no traceback logged, no relaunch), to the CLI
            raise self.failure

    def on_trial_start(self, iteration: int, trials: list, trial, **info) -> None:
        self.live.add(run_id_of(trial))

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        self.live.discard(run_id_of(trial))
        self._record(trial, None)

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        self.live.discard(run_id_of(trial))
        self._record(trial, error_text(trial) or "the trial's process died")

    def on_experiment_end(self, trials: list, **info) -> None:
        run_ids = [run_id_of(trial) for trial in trials]
        self.unfinished = [run_id for run_id in run_ids if run_id in self.live]
        if self.failure is None:
            self._record_missed(trials, run_ids)
        if self.failure is not None:
            raise self.failure

    def _record_missed(self, trials: list, run_ids: list[str]) -> None:
        """Finished trials the store does not hold (a killed driver's, now resumed)."""
        try:
            recorded = ResultsStore(self.job.storage).trial_ids(self.job.sweep_id)  # one read of the store
            for trial, run_id in zip(trials, run_ids):
                if run_id in self.live or trial.status not in ("TERMINATED", "ERROR"):
                    continue
                if run_id not in recorded:
                    self._record(trial, (error_text(trial) or "trial errored") if trial.status == "ERROR" else None)
        except Exception as err:  # the store cannot be read
            self.failure = self.failure or err

    def _record(self, trial, error: str | None) -> None:
        if self.failure is not None:  # the storage failed: nothing more is recorded (--resume does it)
            return
        try:
            outcome = record_trial(self.job, request_of(trial.config), trial.last_result, error)
        except Exception as err:  # raised at the next step, out of Tune's loop (see the module docstring)
            self.failure = err
            return
        for listener in self.listeners:
            listener(trial, outcome)


def error_text(trial) -> str | None:
    """The last line of a Tune trial's error file (the exception), if any."""
    path = getattr(trial, "error_file", None)
    if path and Path(path).is_file():
        lines = [ln for ln in Path(path).read_text().splitlines() if ln.strip()]
        return lines[-1][:2000] if lines else None
    return None


def hparams_of(request: RunRequest, swept_keys: Sequence[str]) -> dict:
    """The HParams row of a run: its searched keys (every recorded key for an ablation run), seed, variant."""
    flat = flatten(request.recorded())
    out = {k: hparam_value(flat[k]) for k in (swept_keys or sorted(flat)) if k in flat}
    out["seed"] = int(request.seed)
    if request.variant:
        out["variant"] = request.variant
    return out

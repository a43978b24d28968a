"""Recording trials: the sweep driver is the one writer of every trial's store row and final outcome.

:class:`RecordingCallback` runs in the sweep driver and sees every decision Tune takes:

- a trial whose last report is *final* (``busray/final``) trained to its end: its outcome is the run
  folder's ``metrics.json``, which ``fit`` wrote (``completed``, or ``failed`` on a non-finite loss or
  an exception, with the reason);
- a trial that ends without a final report was stopped by the scheduler (ASHA) at its last report: its
  outcome is built here from the epochs it reported (``history.csv`` up to the last reported epoch,
  best epoch by the sweep's :class:`~busray.objective.Objective`), status ``stopped_early``, and
  written to its run folder too, so folder, store and Optuna (``PRUNED``) tell the same story;
- a trial Tune marks errored (its process died more than ``resources.max_failures`` times) is
  ``failed`` with Tune's error line.

``on_experiment_end`` records any finished trial still missing (the driver was killed between a
trial's end and its recording, then ``--resume``-d). A trial this driver started that Tune did not
end was cut short by Ctrl-C: Tune's clean-up marks it ``TERMINATED``, but the experiment state it saved
just before says ``RUNNING``, so ``--resume`` continues it from its last checkpoint. It is not
recorded (no row, no ``PRUNED``; its run folder still says ``running``): the callback lists it in
``unfinished`` instead, and the sweep says so. The store names each row by ``(sweep_id,
trial_id)``, the trial's run id (:meth:`~busray.sweep.trial.TrialJob.run_id`), so recording a run twice
replaces its row. Each row also gets its TensorBoard HParams
entry, in the trial's own TensorBoard run (:mod:`busray.sweep.hparams`).
"""

from __future__ import annotations

from pathlib import Path

from ray.tune import Callback

from busray.configtools import flatten
from busray.results import ResultsStore, RunIdentity, run_row
from busray.runfolder import RunOutcome, best_val
from busray.sweep.hparams import hparam_value, write_hparams
from busray.sweep.trial import TrialJob, is_final


def record_trial(job: TrialJob, run_id: str, tune_config: dict, last_result: dict | None,
                 error: str | None = None) -> RunOutcome:
    """Write the outcome of the run ``run_id`` (run folder + store row + HParams) and return it."""
    folder = job.run_folder(run_id)
    outcome = trial_outcome(job, run_id, last_result, error)
    if outcome.status == "stopped_early" or error:
        folder.write_outcome(outcome)
    config, seed, variant = job.resolve(tune_config)
    config = job.recorded_config(config, tune_config)
    identity = RunIdentity(sweep=job.sweep, sweep_id=job.sweep_id, trial_id=run_id, variant=variant,
                           seed=seed, objective=job.objective.label())
    row = run_row(identity, config, outcome)
    ResultsStore(job.storage).record_run(row, outcome.history)
    write_hparams(job.tb_dir(run_id), _hparams(job, config, seed, variant),
                  outcome.metric_columns(), step=outcome.epochs_run)
    return outcome


def trial_outcome(job: TrialJob, run_id: str, last_result: dict | None, error: str | None) -> RunOutcome:
    """The outcome of a trial that ended (see the module docstring for the three cases)."""
    folder = job.run_folder(run_id)
    history = folder.read_history()
    written = folder.read_outcome()
    if error is None and is_final(last_result) and written is not None:
        written.history = history
        return written
    last_epoch = int((last_result or {}).get("epoch") or 0)
    reported = [row for row in history if int(row.get("epoch") or 0) <= last_epoch] if last_result else history
    outcome = written or RunOutcome(run_dir=str(folder.path))
    best = job.objective.best_row(reported)
    outcome.history = reported
    outcome.epochs_run = max([int(r["epoch"]) for r in reported], default=0)
    outcome.best_epoch = int(best["epoch"]) if best else 0
    outcome.val = best_val(reported, outcome.best_epoch) if best else {}
    outcome.test = {}
    if not (outcome.dataset and outcome.split_hash):  # a trial stopped before fit wrote them
        dataset, split_hash = folder.split_identity()
        outcome.dataset, outcome.split_hash = outcome.dataset or dataset, outcome.split_hash or split_hash
    return outcome.finish("failed" if error else "stopped_early", error)


class RecordingCallback(Callback):
    """Sweep-driver hook: records every trial when Tune ends it (and any missed one at the end)."""

    def __init__(self, job: TrialJob, on_recorded=None) -> None:
        self.job = job
        self.on_recorded = on_recorded  # called with (trial, outcome): the console prints it
        self.live: set[str] = set()     # run ids this driver started and Tune has not ended yet
        self.unfinished: list[str] = []  # run ids still live when the experiment ended (Ctrl-C)

    def on_trial_start(self, iteration: int, trials: list, trial, **info) -> None:
        self.live.add(self.job.run_id_of(trial))

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        self.live.discard(self.job.run_id_of(trial))
        self._record(trial, None)

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        self.live.discard(self.job.run_id_of(trial))
        self._record(trial, error_text(trial) or "the trial's process died")

    def on_experiment_end(self, trials: list, **info) -> None:
        run_ids = [self.job.run_id_of(trial) for trial in trials]
        self.unfinished = [run_id for run_id in run_ids if run_id in self.live]
        store = ResultsStore(self.job.storage)
        for trial, run_id in zip(trials, run_ids):
            if run_id in self.live or trial.status not in ("TERMINATED", "ERROR"):
                continue
            if not store.is_recorded(self.job.sweep_id, run_id):
                self._record(trial, (error_text(trial) or "trial errored") if trial.status == "ERROR" else None)

    def _record(self, trial, error: str | None) -> None:
        outcome = record_trial(self.job, self.job.run_id_of(trial), trial.config, trial.last_result, error)
        if self.on_recorded is not None:
            self.on_recorded(trial, outcome)


def error_text(trial) -> str | None:
    """The last line of a Tune trial's error file (the exception), if any."""
    path = getattr(trial, "error_file", None)
    if path and Path(path).is_file():
        lines = [ln for ln in Path(path).read_text().splitlines() if ln.strip()]
        return lines[-1][:2000] if lines else None
    return None


def _hparams(job: TrialJob, config: dict, seed: int | None, variant: str | None) -> dict:
    flat = flatten(config)
    keys = job.swept_keys or sorted(flat)
    out = {k: hparam_value(flat[k]) for k in keys if k in flat}
    out["seed"] = -1 if seed is None else int(seed)
    if variant:
        out["variant"] = variant
    return out

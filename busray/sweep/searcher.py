"""Ray's ``OptunaSearch`` made to tell the Optuna study what really happened to each trial.

- **Per-epoch intermediate values**: every epoch report is ``trial.report(value, step=epoch)`` (Ray
  uses Tune's iteration counter, which the final report would bump once more).
- **States**: a trial with a final report of status ``completed`` is ``COMPLETE`` with the final
  report's value (its best epoch's metric, the same number as its store row); ``failed`` (non-finite
  loss, an exception, a dead process) is ``FAIL``; a trial without a final report was stopped by the
  scheduler and is ``PRUNED`` (Ray would have called it COMPLETE with its last epoch's value). Optuna
  gives a pruned trial its *last* intermediate value; busray writes its best epoch's instead, so the
  dashboard, ``study.trials_dataframe()``, the console and the store row show one score for it. TPE
  ranks pruned trials by their intermediate values (step, then value), so sampling is unchanged.
- **Requests**: each suggestion becomes the trial's :class:`~busray.experiment.request.RunRequest`
  (:meth:`busray.experiment.sweepfile.SweepSpec.request`: the sweep's base with the drawn values, the
  trial's seed), which Tune hands to the trial as its config: the trial trains it and the driver
  records it, whole.
- **Attributes**: each Optuna trial carries ``busray_trial_id`` and ``run_dir``, and the study names
  its metrics, so ``optuna-dashboard`` shows ``val/score`` rather than "Objective 0".
- **Fail fast**: when the first :data:`FAIL_FAST_AFTER` trials to end all failed with the same input
  error (:func:`~busray.sweep.trial.is_input_error`: a ``ConfigError`` for ``model.encoder``, say,
  which the driver cannot check without importing torch), no further trial is proposed; the
  running ones finish, and the CLI says every trial failed.
- **Resume**: ``Tuner.restore`` re-runs trials its last snapshot saw running; one that had already
  finished in the study raises ``UpdateFinishedTrialError`` in Optuna, which would abort the resumed
  sweep. The study already holds its outcome, so such late updates are dropped.

This module imports Ray and Optuna; only the sweep runner imports it (and pickle, on restore).
"""

from __future__ import annotations

import math
import warnings

import optuna
from optuna.exceptions import ExperimentalWarning, UpdateFinishedTrialError
from optuna.study import StudyDirection
from optuna.trial import TrialState
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from busray.experiment.sweepfile import SweepSpec
from busray.notice import warn
from busray.sweep.job import ERROR_KEY, REQUEST_KEY, STATUS_KEY, is_final, is_input_error

FAIL_FAST_AFTER = 2


class BusrayOptunaSearch(OptunaSearch):
    def __init__(self, *args, runs_dir: str, metric_names: list[str], requests: SweepSpec, **kwargs) -> None:
        self._runs_dir = runs_dir
        self._metric_names = metric_names
        self._requests = requests
        super().__init__(*args, **kwargs)

    def _setup_study(self, mode) -> None:
        super()._setup_study(mode)
        with warnings.catch_warnings():  # experimental since Optuna 3.2, and what the dashboard reads
            warnings.simplefilter("ignore", ExperimentalWarning)
            self._ot_study.set_metric_names(list(self._metric_names))

    def suggest(self, trial_id: str):
        if self._doomed():
            return Searcher.FINISHED
        suggestion = super().suggest(trial_id)
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is None or not isinstance(suggestion, dict):
            return suggestion
        ot_trial.set_user_attr("busray_trial_id", trial_id)
        ot_trial.set_user_attr("run_dir", f"{self._runs_dir}/{trial_id}")  # a folder, or a bucket URI
        request = self._requests.request(trial_id, suggestion, ot_trial.number)
        return {REQUEST_KEY: request.to_dict()}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if isinstance(self.metric, list) or is_final(result) or trial_id in self._completed_trials:
            return
        value = result.get(self.metric)
        if value is None or trial_id not in self._ot_trials:
            return
        try:
            self._ot_trials[trial_id].report(float(value), int(result.get("epoch", 0)))
        except UpdateFinishedTrialError:
            pass

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        if result and not error:
            # Tune hands the result on which the scheduler stopped a trial to on_trial_complete only
            self.on_trial_result(trial_id, result)
        state, values = _state_and_values(result, error, self.metric)
        self._note_first_ends(state, result, error)
        try:
            if state == TrialState.PRUNED and not isinstance(self.metric, list):
                self._tell_pruned(self._ot_trials[trial_id])
            else:
                self._ot_study.tell(self._ot_trials[trial_id], values, state=state)
        except UpdateFinishedTrialError:
            pass
        except Exception as err:  # e.g. a non-finite value: Optuna refuses it; the store still has the row
            warn(f"Optuna trial of {trial_id} not updated: {err}")
        self._completed_trials.add(trial_id)

    def _note_first_ends(self, state: TrialState, result: dict | None, error: bool) -> None:
        ends = self.__dict__.setdefault("_first_ends", [])  # a searcher restored from an older pickle
        if len(ends) < FAIL_FAST_AFTER:
            failed = state == TrialState.FAIL and not error
            ends.append((result or {}).get(ERROR_KEY) if failed else None)

    def _doomed(self) -> bool:
        """The first trials to end all failed with one input error: every other trial would too."""
        ends = self.__dict__.get("_first_ends", [])
        return len(ends) == FAIL_FAST_AFTER and len(set(ends)) == 1 and is_input_error(ends[0])

    def _tell_pruned(self, ot_trial: optuna.Trial) -> None:
        """PRUNED with the best intermediate value (``study.tell`` would take the last one)."""
        frozen = ot_trial.storage.get_trial(ot_trial._trial_id)
        reported = [v for v in frozen.intermediate_values.values() if math.isfinite(v)]
        if not reported:
            self._ot_study.tell(ot_trial, state=TrialState.PRUNED)
            return
        best = max(reported) if self._ot_study.direction == StudyDirection.MAXIMIZE else min(reported)
        self._ot_study.sampler.after_trial(self._ot_study, frozen, TrialState.PRUNED, [best])
        ot_trial.storage.set_trial_state_values(ot_trial._trial_id, TrialState.PRUNED, [best])


def _state_and_values(result: dict | None, error: bool, metric) -> tuple[TrialState, list | float | None]:
    if error or (is_final(result) and result.get(STATUS_KEY) != "completed"):
        return TrialState.FAIL, None
    if not is_final(result):
        return TrialState.PRUNED, None
    names = metric if isinstance(metric, list) else [metric]
    values = [result.get(name) for name in names]
    if any(v is None for v in values):
        return TrialState.FAIL, None
    return TrialState.COMPLETE, values if isinstance(metric, list) else values[0]

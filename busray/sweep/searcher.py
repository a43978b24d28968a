"""``OptunaSearch`` that tolerates a restored sweep re-running a trial Optuna already finished.

``Tuner.restore`` restarts every trial that its last experiment snapshot saw running. A trial that
finished after that snapshot but before the driver was killed is already COMPLETE in the Optuna journal
(and recorded in the results store, keyed by trial id, so re-recording replaces its row). Ray's
``OptunaSearch`` then reports the re-run's results to the finished Optuna trial, and Optuna raises
``UpdateFinishedTrialError``, which aborts the whole resumed sweep. The study already holds that
trial's outcome, so the late updates are dropped instead. This module imports Ray and is imported
only by the sweep runner (and by pickle, when a restored Tuner reloads its searcher).
"""

from __future__ import annotations

from optuna.exceptions import UpdateFinishedTrialError
from ray.tune.search.optuna import OptunaSearch


class ResumableOptunaSearch(OptunaSearch):
    def on_trial_result(self, trial_id: str, result: dict) -> None:
        try:
            super().on_trial_result(trial_id, result)
        except UpdateFinishedTrialError:
            pass

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        try:
            super().on_trial_complete(trial_id, result, error)
        except UpdateFinishedTrialError:
            pass

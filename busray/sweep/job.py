"""What the engine knows about a running sweep or ablation, and what its trials report back.

:class:`TrialJob` is handed to every Tune trial (``tune.with_parameters``) and to the driver's
callbacks: where the experiment lives (storage, its folder, TensorBoard runs) and how runs are judged
(the objective). *What* a trial trains is not here: it is the trial's
:class:`~busray.experiment.request.RunRequest`, which travels in the trial's Tune config under
:data:`REQUEST_KEY` (:func:`request_of`) so the trial and the driver read the same one.

A trial's reports are its epochs' metrics, then one *final* report (:func:`final_result`) flagged
:data:`FINAL_FLAG` that carries the run's whole outcome (:data:`OUTCOME_KEY`, the run folder's
``metrics.json`` record), so the driver learns how a trial ended from Tune, without reading the trial's
disk. Ray-free and torch-free: the trial, the DDP workers and the driver all import it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from busray.experiment.request import RunRequest
from busray.objective import DEFAULT_OBJECTIVE, Objective
from busray.runfolder import RunFolder, RunOutcome
from busray.storage import Storage

REQUEST_KEY = "busray_request"  # no "/": Tune (un)flattens configs on "/"
FINAL_FLAG = "busray/final"
STATUS_KEY = "busray/status"
ERROR_KEY = "busray/error"
OUTCOME_KEY = "busray/outcome"
FINISHED = ("completed", "failed")
SPLITS = "splits"  # <storage>/<name>/splits: an ablation's cross-validation folds
#: Errors a trial raises for its config or data (a bad ``model.encoder``, an unreadable weights file):
#: when the sweep's first trials all fail with the same one, every trial would.
INPUT_ERRORS = ("ConfigError", "DataError", "CheckpointError")


@dataclass
class TrialJob:
    """Where an experiment's trials write and how they are judged (shared by every trial).

    Paths are this machine's (:meth:`busray.storage.Storage.path`: the storage folder, or the local
    mirror of a bucket, which :meth:`pull` and :meth:`push` keep in step with the bucket)."""
    sweep: str
    sweep_id: str
    storage: Storage
    kind: str = "sweep"          # "sweep" (searched trials) or "ablation" (fixed runs, rerun when failed)
    objective: Objective = DEFAULT_OBJECTIVE
    swept_keys: tuple[str, ...] = ()  # the searched keys (the console's and HParams' columns)
    max_failures: int = 2

    def run_parts(self, run_id: str) -> tuple[str, ...]:
        return (self.sweep, "runs", run_id)

    def tb_parts(self, run_id: str) -> tuple[str, ...]:
        """The run's TensorBoard run: ``<storage>/tb/<sweep>/<run_id>``."""
        return ("tb", self.sweep, run_id)

    def run_folder(self, run_id: str) -> RunFolder:
        return RunFolder(self.storage.path(*self.run_parts(run_id)))

    def tb_dir(self, run_id: str) -> Path:
        return self.storage.path(*self.tb_parts(run_id))

    def ray_train_dir(self, run_id: str) -> str:
        """Ray Train's own folder of a DDP run (its controller state; busray reads nothing there): in the
        storage itself, which Ray Train writes through pyarrow.fs when it is a bucket."""
        return self.storage.location(self.sweep, "train", run_id)

    def pull(self, run_id: str) -> None:
        """This machine's copy of a run's folder and TensorBoard run, from a bucket (a trial that
        restarts on another node resumes from what its last epoch pushed)."""
        self.storage.pull(*self.run_parts(run_id))
        self.storage.pull(*self.tb_parts(run_id))

    def push(self, run_id: str) -> None:
        """A run's folder (checkpoints, history, outcome) and TensorBoard run, to a bucket."""
        self.storage.push(*self.run_parts(run_id))
        self.storage.push(*self.tb_parts(run_id))


def request_of(tune_config: Mapping) -> RunRequest:
    """The run request a Tune trial carries in its config."""
    return RunRequest.from_dict(tune_config[REQUEST_KEY])


def run_id_of(trial) -> str:
    """The run id of a Tune ``Trial`` (what the driver's callbacks are given): its request's name."""
    return request_of(trial.config).name


def final_result(outcome: RunOutcome, objective: Objective) -> dict:
    """The last report of a trial: its best epoch's validation metrics and its outcome, flagged final.

    ``epoch`` is the last epoch trained (ASHA's clock must not go backwards); the objective's metrics
    are the best epoch's, so Optuna's value equals the store row's. A trial that failed before its first
    validation (a model that cannot be built, out of memory in epoch 1) reports its objective as NaN:
    Tune refuses a result without the metric its scheduler watches, which would end the whole sweep
    instead of this trial.
    """
    metrics = {k: v for k, v in outcome.metric_columns().items() if k.startswith("val/") and v is not None}
    metrics = {**{name: math.nan for name in objective.metrics}, **metrics}
    return {**metrics, "epoch": int(outcome.epochs_run), FINAL_FLAG: 1.0, STATUS_KEY: outcome.status,
            "best_epoch": int(outcome.best_epoch), ERROR_KEY: outcome.error or "",
            OUTCOME_KEY: json.dumps(outcome.to_json())}


def outcome_of(result: Mapping | None) -> RunOutcome | None:
    """The outcome a final report carries (None for any other report)."""
    if not is_final(result) or not result.get(OUTCOME_KEY):
        return None
    return RunOutcome.from_json(json.loads(result[OUTCOME_KEY]))


def is_input_error(text: str | None) -> bool:
    """Whether a failed trial's error (``"ConfigError: ..."``) is one of :data:`INPUT_ERRORS`."""
    return bool(text) and text.split(":", 1)[0] in INPUT_ERRORS


def is_final(result: Mapping | None) -> bool:
    return bool(result) and bool(result.get(FINAL_FLAG))

"""Experiment trackers that agree with the store: MLflow and W&B runs of a sweep's trials.

Ray Tune's logger callbacks (``MLflowLoggerCallback``, ``WandbLoggerCallback``) log one tracker run
per Tune trial; as they are, they disagree with busray's records: a run's params are the Tune config
(here: the request, nested), every report is a point (the final report adds one after the last
epoch, at Tune's iteration counter), and a trial ASHA stopped ends ``FINISHED`` with its last epoch's
value. The subclasses here make the tracker say what the store says:

- params: the run request's recorded config, flat (``model.tau``, ``resources.workers``), plus seed
  and variant -- the store row's config columns;
- metrics: each epoch's report at ``step = epoch``; nothing for the final report;
- at the end, told by the recorder (:meth:`recorded`, after the row is written): the best epoch's
  validation metrics as ``best/val/<metric>`` and the test metrics as ``test/<metric>`` (at the last
  epoch's step, so no point lies after it), and the run's status: MLflow ``FINISHED`` (completed),
  ``KILLED`` (stopped early) or ``FAILED``, with a ``busray.status`` tag; W&B the same in its config.

A trial that ends unrecorded (cut short by Ctrl-C, continued by ``--resume``) ends ``KILLED``. The
settings (``tracking:`` of a sweep or ablation file) are :mod:`busray.experiment.tracking`.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

from ray.air.integrations.mlflow import MLflowLoggerCallback
from ray.air.integrations.wandb import WandbLoggerCallback, _QueueItem
from ray.tune.result import TRAINING_ITERATION

from busray.configtools import flatten
from busray.experiment.tracking import MLflowSpec, TrackingSpec, WandbSpec, is_file_store, require
from busray.runfolder import RunOutcome
from busray.sweep.job import is_final, request_of

MLFLOW_STATUS = {"completed": "FINISHED", "stopped_early": "KILLED", "failed": "FAILED"}


def tracker_callbacks(spec: TrackingSpec, sweep_name: str, tags: Mapping[str, str] | None = None) -> list:
    """The tracker callbacks of the enabled trackers of ``spec`` (an empty list when none is).

    ``tags`` (e.g. ``{"busray.sweep_id": ...}``) are added to every tracker run. Raises
    ``ConfigError("tracking.<name>: ...")`` when a tracker's package is not installed.
    """
    tags = {"busray.sweep": sweep_name, **(tags or {})}
    callbacks = []
    if spec.mlflow.enabled:
        callbacks.append(_mlflow_callback(spec.mlflow, sweep_name, tags))
    if spec.wandb.enabled:
        callbacks.append(_wandb_callback(spec.wandb, sweep_name, tags))
    return callbacks


def run_params(trial) -> dict[str, Any]:
    """A trial's tracker params: its request's recorded config, flat, with seed and variant."""
    request = request_of(trial.config)
    params = {k: _param_value(v) for k, v in flatten(request.recorded()).items()}
    return {**params, "seed": request.seed, **({"variant": request.variant} if request.variant else {})}


def epoch_metrics(result: Mapping[str, Any]) -> dict[str, float]:
    """The numbers of an epoch report (``busray/*`` flags and Tune's bookkeeping left out)."""
    return {k: float(v) for k, v in result.items()
            if "/" in k and not k.startswith(("busray/", "config/")) and isinstance(v, (int, float))
            and not isinstance(v, bool)}


def outcome_metrics(outcome: RunOutcome) -> dict[str, float]:
    """``best/val/<metric>`` (the best epoch's, the row's ``val/*``) and ``test/<metric>``."""
    out = {}
    for key, value in outcome.metric_columns().items():
        if value is not None:
            out[f"best/{key}" if key.startswith("val/") else key] = value
    return out


def _param_value(value: Any) -> Any:
    return value if isinstance(value, (bool, int, float, str)) else str(value)


class BusrayMLflowCallback(MLflowLoggerCallback):
    """``MLflowLoggerCallback`` made to agree with the store (module docstring)."""

    def setup(self, *args, **kwargs) -> None:
        super().setup(*args, **kwargs)
        self._recorded: set[str] = set()

    def log_trial_start(self, trial) -> None:
        if trial not in self._trial_runs:
            tags = {**self.tags, "trial_name": request_of(trial.config).name}
            run = self.mlflow_util.start_run(tags=tags, run_name=request_of(trial.config).name)
            self._trial_runs[trial] = run.info.run_id
            self.mlflow_util.log_params(run_id=self._trial_runs[trial], params_to_log=run_params(trial))

    def log_trial_result(self, iteration: int, trial, result: dict) -> None:
        if is_final(result) or trial not in self._trial_runs:
            return
        self.mlflow_util.log_metrics(run_id=self._trial_runs[trial], metrics_to_log=epoch_metrics(result),
                                     step=int(result.get("epoch") or result.get(TRAINING_ITERATION) or 0))

    def recorded(self, trial, outcome: RunOutcome) -> None:
        """The recorder wrote ``outcome``: log its numbers and end the run with its status."""
        if trial not in self._trial_runs:
            self.log_trial_start(trial)
        run_id = self._trial_runs[trial]
        self.mlflow_util.log_metrics(run_id=run_id, metrics_to_log=outcome_metrics(outcome),
                                     step=int(outcome.epochs_run))
        client = self.mlflow_util._mlflow.tracking.MlflowClient()
        client.set_tag(run_id, "busray.status", outcome.status)
        client.set_tag(run_id, "busray.best_epoch", str(outcome.best_epoch))
        if outcome.error:
            client.set_tag(run_id, "busray.error", outcome.error[:5000])
        self.mlflow_util.end_run(run_id=run_id, status=MLFLOW_STATUS.get(outcome.status, "FAILED"))
        self._recorded.add(run_id)

    def log_trial_end(self, trial, failed: bool = False) -> None:
        run_id = self._trial_runs.get(trial)
        if run_id is not None and run_id not in self._recorded:  # cut short, not recorded
            self.mlflow_util.end_run(run_id=run_id, status="KILLED")


class BusrayWandbCallback(WandbLoggerCallback):
    """``WandbLoggerCallback`` made to agree with the store (module docstring). W&B steps only grow, so
    the outcome is logged at the last epoch's step; the status goes into the run's config."""

    def log_trial_start(self, trial) -> None:
        self.kwargs.setdefault("name", request_of(trial.config).name)
        super().log_trial_start(trial)
        self._trial_queues[trial].put((_QueueItem.RESULT, {"config": run_params(trial)}))

    def log_trial_result(self, iteration: int, trial, result: dict) -> None:
        if is_final(result):
            return
        epoch = int(result.get("epoch") or result.get(TRAINING_ITERATION) or 0)
        super().log_trial_result(iteration, trial, {**epoch_metrics(result), TRAINING_ITERATION: epoch})

    def recorded(self, trial, outcome: RunOutcome) -> None:
        """The recorder wrote ``outcome``: log its numbers and status (the run ends in log_trial_end)."""
        if trial not in self._trial_logging_actors:
            self.log_trial_start(trial)
        status = {"busray.status": outcome.status, "busray.best_epoch": outcome.best_epoch}
        self._trial_queues[trial].put((_QueueItem.RESULT, {**outcome_metrics(outcome), "config": status,
                                                           TRAINING_ITERATION: int(outcome.epochs_run)}))


def _mlflow_callback(spec: MLflowSpec, sweep_name: str, tags: Mapping[str, str]) -> BusrayMLflowCallback:
    require("mlflow", "mlflow")
    if spec.tracking_uri and is_file_store(spec.tracking_uri):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return BusrayMLflowCallback(tracking_uri=spec.tracking_uri, experiment_name=spec.experiment_name or sweep_name,
                                tags={**tags, **spec.tags}, save_artifact=spec.save_artifact)


def _wandb_callback(spec: WandbSpec, sweep_name: str, tags: Mapping[str, str]):
    require("wandb", "wandb")
    extra = {"entity": spec.entity} if spec.entity else {}
    return BusrayWandbCallback(project=spec.project or sweep_name, group=spec.group or sweep_name,
                               api_key_file=spec.api_key_file, excludes=list(spec.excludes),
                               tags=[*spec.tags, *(f"{k}={v}" for k, v in tags.items())], mode=spec.mode,
                               **extra)

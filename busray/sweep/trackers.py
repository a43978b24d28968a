"""Experiment trackers that agree with the store: MLflow and W&B runs of a sweep's trials.

Ray Tune's logger callbacks (``MLflowLoggerCallback``, ``WandbLoggerCallback``) log one tracker run
per Tune trial; as they are, they disagree with busray's records: a run's params are the Tune config
(here: the request, nested), every report is a point (the final report adds one after the last
epoch, at Tune's iteration counter), and a trial ASHA stopped ends ``FINISHED`` with its last epoch's
value. The subclasses here make the tracker say what the store says:

- params: the run request's recorded config, flat (``model.tau``, ``resources.workers``), plus seed
  and variant -- the store row's config columns (MLflow params are text; a W&B run's config holds
  them as recorded, lists and nulls, beside Ray's ``trial_log_path``; a W&B run is named by its trial);
- metrics: each epoch's report at ``step = epoch``; nothing for the final report;
- at the end, told by the recorder (:meth:`recorded`, after the row is written): the best epoch's
  validation metrics as ``best/val/<metric>`` and the test metrics as ``test/<metric>`` (at the last
  epoch's step, so no point lies after it), and the run's status: MLflow ``FINISHED`` (completed),
  ``KILLED`` (stopped early) or ``FAILED``, with a ``busray.status`` tag; W&B the same in its config.

A trial that ends unrecorded (cut short by Ctrl-C, continued by ``--resume``) ends ``KILLED`` in MLflow.
A W&B run ends ``finished`` whatever its status (the SDK sets no other end state): ``busray.status`` in
its config tells a stopped or failed trial apart, and its ``val/*`` summary is the last epoch's, its
``best/val/*`` the best epoch's. W&B logs from a Ray actor on the driver's node, which gets the driver's
``WANDB_*`` environment variables (``WANDB_MODE``, ``WANDB_DIR``, ``WANDB_BASE_URL``...; Ray passes on only
``WANDB_API_KEY``), so they apply on a cluster started elsewhere too. The settings (``tracking:`` of a
sweep or ablation file) are :mod:`busray.experiment.tracking`.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

from ray.air.integrations.mlflow import MLflowLoggerCallback
from ray.air.integrations.wandb import WandbLoggerCallback, _QueueItem, _WandbLoggingActor
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


def run_config(trial) -> dict[str, Any]:
    """A trial's tracker config: its request's recorded config, flat, with seed and variant (the store
    row's config columns, values as recorded: lists, None)."""
    request = request_of(trial.config)
    return {**flatten(request.recorded()), "seed": request.seed,
            **({"variant": request.variant} if request.variant else {})}


def run_params(trial) -> dict[str, Any]:
    """:func:`run_config` as MLflow params: numbers, flags and text; anything else (lists, None) as text."""
    return {k: _param_value(v) for k, v in run_config(trial).items()}


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


class _WandbActor(_WandbLoggingActor):
    """Ray's W&B logging actor, in the driver's ``WANDB_*`` environment, that shuts W&B down
    (``wandb.teardown``: wandb-core writes the run out and exits) once its run finished. Ray kills the
    actor as soon as :meth:`run` returns, so W&B's atexit hook never runs: without the teardown the last
    trial's offline ``.wandb`` file was sometimes a bare header (3 sweeps in about 20, on a loaded 2-core
    machine), its wandb-core gone with the actor before writing the run out."""

    def __init__(self, *args, env: Mapping[str, str], **kwargs) -> None:
        os.environ.update(env)
        super().__init__(*args, **kwargs)

    def run(self) -> None:
        try:
            super().run()
        finally:
            self._wandb.teardown()  # waits for wandb-core to write out the run and exit


class BusrayWandbCallback(WandbLoggerCallback):
    """``WandbLoggerCallback`` made to agree with the store (module docstring). W&B steps only grow, so
    the outcome is logged at the last epoch's step; the status goes into the run's config."""

    _logger_actor_cls = _WandbActor

    def _start_logging_actor(self, trial, exclude_results: list, **wandb_init_kwargs) -> None:
        # Each run's own name and config (not the Tune config), and the driver's W&B environment (the
        # API key travels as Ray sends it).
        env = {k: v for k, v in os.environ.items() if k.startswith("WANDB_") and k != "WANDB_API_KEY"}
        own = {"name": request_of(trial.config).name, "config": run_config(trial), "env": env}
        super()._start_logging_actor(trial, exclude_results, **{**wandb_init_kwargs, **own})

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

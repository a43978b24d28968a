"""The Tune function trainable: one Tune trial = one ``fit`` of one config, in a warm process.

Two paths, one contract (the run folder, :mod:`busray.runfolder`):

- **single-worker trials** (the common case) call :func:`busray.training.fit` right inside the Tune
  trial actor. Tune reuses trial actors (``reuse_actors=True``), so torch, timm, the model code and
  the decoded dataset stay loaded from one trial to the next: a trial costs what its ``fit`` costs.
  ``fit`` reports each epoch with ``tune.report`` (:class:`TuneReporter`); Tune's function API
  hands a result to the driver and blocks only until the driver has taken the scheduler's decision,
  so an ASHA stop ends the trial at that report: no epoch runs after the stop is decided.
- **multi-worker (DDP) trials** run Ray Train's ``TorchTrainer`` from the same function
  (:mod:`busray.sweep.ddp`), its rank 0 writing the same run folder.

Checkpoints live once, in the run folder (``runs/<run_id>/checkpoints``); nothing is reported to
Tune's or Train's storage. A re-launched trial (worker crash under ``resources.max_failures``, or a
resumed sweep) finds ``last.pt`` there and continues; a trial whose run folder already holds a final
outcome (it finished while the driver was down) re-reports it instead of training again.

The run id (:meth:`TrialJob.run_id`) names the run folder, the TensorBoard run and the store row. A
searched trial's is its Tune trial id. A fixed run's (an ablation's ``<variant>-s<seed>``) is its
name plus the first 8 hex digits of its trial key, ``full-s0-3fa2b1c4``: the same run gets the same
folder in every Tune round, so a resumed ablation continues a run it cut short from its ``last.pt``
(a new round means new Tune trial ids), and re-running a failed one replaces its folder and its row;
an edited variant is another config, so another key, folder and row.

After ``fit`` returns, the trial makes one *final* report (:func:`final_result`: the best epoch's
validation metrics and ``busray/final = 1``), which is what Optuna records as the trial's value. The
sweep driver (:mod:`busray.sweep.recording`) writes the store row; nothing here writes the store.
"""

from __future__ import annotations

import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from busray.objective import DEFAULT_OBJECTIVE, Objective
from busray.results.layout import file_safe
from busray.runfolder import LAST, RunFolder, RunOutcome
from busray.sweep.space import resolve_config
from busray.sweep.spec import SWEPT_RESOURCES

SLOT_RESOURCE = "busray_trial_slot"
RUN_KEY = "run"  # the Tune config key naming a fixed run (run_configs / ablations)
FINAL_FLAG = "busray/final"
STATUS_KEY = "busray/status"
ERROR_KEY = "busray/error"
FINISHED = ("completed", "failed")
#: Errors a trial raises for its config or data (a bad ``model.encoder``, an unreadable weights file):
#: when the sweep's first trials all fail with the same one, every trial would.
INPUT_ERRORS = ("ConfigError", "DataError", "CheckpointError")


@dataclass
class FixedRun:
    """One fixed config of ``run_configs``: a named variant at a seed (``key``: its trial key)."""
    config: dict
    seed: int | None = None
    variant: str | None = None
    key: str = ""


@dataclass
class TrialJob:
    """Everything a trial needs besides its sampled parameters (passed via ``tune.with_parameters``)."""
    sweep: str
    sweep_id: str
    sweep_dir: str
    storage: str
    base: dict
    objective: Objective = DEFAULT_OBJECTIVE
    swept_keys: list[str] = field(default_factory=list)
    workers: int = 1
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    max_failures: int = 2
    fixed: dict[str, FixedRun] = field(default_factory=dict)

    def resolve(self, tune_config: dict) -> tuple[dict, int | None, str | None]:
        """(nested run config, seed, variant) of a trial from its Tune config.

        ``train.monitor`` is set to the objective, so ``best.pt``, early stopping and the recorded best
        epoch follow the same rule as Optuna and ASHA (the spec refuses a base that disagrees).
        """
        if RUN_KEY in tune_config:
            run = self.fixed[tune_config[RUN_KEY]]
            config, seed, variant = run.config, run.seed, run.variant or tune_config[RUN_KEY]
        else:
            params = {k: v for k, v in tune_config.items() if "." in k and k not in SWEPT_RESOURCES}
            config = resolve_config(self.base, params)
            seed, variant = config.get("train", {}).get("seed"), None
        train = {**config.get("train", {}), "monitor": self.objective.metric,
                 "monitor_mode": self.objective.mode}
        return {**config, "train": train}, seed, variant

    def worker_count(self, tune_config: dict) -> int:
        """Ray Train workers of a trial: searched (``resources.workers`` in the space) or the spec's."""
        return int(tune_config.get(SWEPT_RESOURCES[0], self.workers))

    def recorded_config(self, config: dict, tune_config: dict) -> dict:
        """The config as recorded in the store: with the trial's resources."""
        resources = {"workers": self.worker_count(tune_config), "cpus_per_worker": self.cpus_per_worker,
                     "gpus_per_worker": self.gpus_per_worker}
        return {**config, "resources": resources}

    def run_id(self, trial_id: str, tune_config: dict) -> str:
        """The store's ``trial_id`` of a Tune trial, and its folder's name (module docstring)."""
        if RUN_KEY not in tune_config:
            return trial_id
        name = tune_config[RUN_KEY]  # a variant may be called "w/o TIM": its folder w_o_TIM-s0-...
        return f"{file_safe(name)}-{self.fixed[name].key[:8]}"

    def run_id_of(self, trial) -> str:
        """:meth:`run_id` of a Tune ``Trial`` (what the driver's callbacks are given)."""
        return self.run_id(trial.trial_id, trial.config)

    def run_folder(self, run_id: str) -> RunFolder:
        return RunFolder(Path(self.sweep_dir) / "runs" / run_id)

    def tb_dir(self, run_id: str) -> Path:
        """The run's TensorBoard run: ``<storage>/tb/<sweep>/<run_id>``."""
        return Path(self.storage) / "tb" / self.sweep / run_id

    def ray_train_dir(self, run_id: str) -> Path:
        """Ray Train's own folder of a DDP run (its controller state; busray reads nothing there)."""
        return Path(self.sweep_dir) / "train" / run_id


class TuneReporter:
    """The training layer's ``Reporter`` for a single-process trial: epochs go to ``tune.report``."""

    def __init__(self, folder: RunFolder) -> None:
        self.folder = folder

    def report(self, epoch: int, metrics: dict[str, float], checkpoint_dir: str | None) -> None:
        from ray import tune  # the trial actor has Ray loaded already; keeps this module driver-light

        tune.report({k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))})

    def resume_checkpoint_dir(self) -> str | None:
        return str(self.folder.checkpoints) if (self.folder.checkpoints / LAST).is_file() else None

    def is_main(self) -> bool:
        return True


def run_trial(tune_config: dict, job: TrialJob) -> None:
    """The Tune trainable: fit the trial's config (or re-report a finished one), then report final."""
    from ray import tune

    run_id = job.run_id(tune.get_context().get_trial_id(), tune_config)
    done = job.run_folder(run_id).read_outcome()
    if done is not None and done.status == "failed" and RUN_KEY in tune_config:
        _clear_failed_run(job, run_id)  # a resumed ablation runs its failed runs again, from scratch
        done = None
    if done is None or done.status not in FINISHED:
        config, _, _ = job.resolve(tune_config)
        done = _fit(job, run_id, config, job.worker_count(tune_config))
    tune.report(final_result(done, job.objective))


def _clear_failed_run(job: TrialJob, run_id: str) -> None:
    """Empty the folder, TensorBoard run and (DDP) Ray Train folder of a failed fixed run before its new
    attempt (whose row will replace the failed one's): one attempt per folder, nothing of the failed
    one resumed."""
    shutil.rmtree(job.run_folder(run_id).path)
    shutil.rmtree(job.tb_dir(run_id), ignore_errors=True)
    shutil.rmtree(job.ray_train_dir(run_id), ignore_errors=True)


def _fit(job: TrialJob, run_id: str, config: dict, workers: int) -> RunOutcome:
    """Train; an exception is a failed trial (fit wrote why), not a Tune error to retry: only a dead
    process (the trial's outcome still ``running``) is retried, up to ``resources.max_failures``."""
    try:
        if workers > 1:
            from busray.sweep.ddp import fit_with_ray_train  # Ray Train only for DDP trials
            return fit_with_ray_train(job, run_id, config, workers)
        return _fit_here(job, run_id, config)
    except Exception as err:
        outcome = job.run_folder(run_id).read_outcome()
        if outcome is None or outcome.status not in FINISHED:
            outcome = RunOutcome(run_dir=str(job.run_folder(run_id).path))
            outcome.finish("failed", f"{type(err).__name__}: {err}".splitlines()[0])
        return outcome


def _fit_here(job: TrialJob, run_id: str, config: dict) -> RunOutcome:
    import torch

    from busray.config import config_from_dict
    from busray.training import fit

    torch.set_num_threads(max(1, int(job.cpus_per_worker)))
    os.environ.setdefault("PYTHONHASHSEED", "0")
    folder = job.run_folder(run_id)
    return fit(config_from_dict(config), TuneReporter(folder), folder.path, tb_dir=job.tb_dir(run_id))


def final_result(outcome: RunOutcome, objective: Objective) -> dict:
    """The last report of a trial: its best epoch's validation metrics, flagged final.

    ``epoch`` is the last epoch trained (ASHA's clock must not go backwards); the objective's
    metrics are the best epoch's, so Optuna's value equals the store row's. A trial that failed
    before its first validation (a model that cannot be built, out of memory in epoch 1) reports
    its objective as NaN: Tune refuses a result without the metric its scheduler watches, which
    would end the whole sweep instead of this trial.
    """
    metrics = {k: v for k, v in outcome.metric_columns().items() if k.startswith("val/") and v is not None}
    metrics = {**{name: math.nan for name in objective.metrics}, **metrics}
    return {**metrics, "epoch": int(outcome.epochs_run), FINAL_FLAG: 1.0, STATUS_KEY: outcome.status,
            "best_epoch": int(outcome.best_epoch), ERROR_KEY: outcome.error or ""}


def is_input_error(text: str | None) -> bool:
    """Whether a failed trial's error (``"ConfigError: ..."``) is one of :data:`INPUT_ERRORS`."""
    return bool(text) and text.split(":", 1)[0] in INPUT_ERRORS


def is_final(result: dict | None) -> bool:
    return bool(result) and bool(result.get(FINAL_FLAG))

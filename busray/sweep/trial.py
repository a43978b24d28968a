"""The Tune function trainable: one Tune trial drives one Ray Train V2 ``TorchTrainer`` run.

Why a function trainable: Ray Train V2 (the default in Ray 2.60, ``RAY_TRAIN_V2_ENABLED=1``) refuses
``Tuner(TorchTrainer(...))``; the supported pattern is a Tune function that builds and fits a
``TorchTrainer`` and forwards rank 0's reports to Tune with ``TuneReportCallback``.

Resources: the trial driver itself needs no CPU (it only waits on the Train controller). It asks for
one ``busray_trial_slot`` custom resource instead, of which a local cluster gets ``max_concurrent``:
a driver holding a whole CPU while its two 1-CPU workers wait for CPUs deadlocks a 2-core machine.
The workers' CPUs/GPUs come from the ``ScalingConfig`` (fractional GPUs = trial packing).

Storage per trial (``<storage>/<sweep>/``): ``runs/<trial_id>/`` is fit's run folder (history, tb/,
metrics.json, checkpoints), ``train/<trial_id>/`` Ray Train's checkpoints and run snapshot. Naming the
Train run by the Tune trial id makes a re-launched trial (``Tuner.restore``) continue from its last
checkpoint: Train V2 reloads the run snapshot it finds under the same storage path and name.

The trial driver records the trials whose fit returned (completed, or failed on a NaN loss): it holds the
outcome. Trials that ASHA stops (their ``trainer.fit()`` is interrupted) and trials whose workers died
more than ``max_failures`` times are recorded by :class:`~busray.sweep.recording.RecordingCallback` on
the sweep driver, which knows which of the two happened. A failed fit (NaN loss) raises :class:`TrialFailed` after recording, so Tune marks
the trial errored and Optuna records it as FAIL while the sweep goes on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from busray.sweep.space import resolve_config
from busray.sweep.spec import SWEPT_RESOURCES

SLOT_RESOURCE = "busray_trial_slot"
RUN_KEY = "run"  # the Tune config key naming a fixed run (run_configs / ablations)


class TrialFailed(RuntimeError):
    """A trial whose fit failed (e.g. a non-finite loss); the message is fit's error text."""


@dataclass
class FixedRun:
    """One fixed config of ``run_configs``: a named variant at a seed."""
    config: dict
    seed: int | None = None
    variant: str | None = None


@dataclass
class TrialJob:
    """Everything a trial needs besides its sampled parameters (passed via ``tune.with_parameters``)."""
    sweep: str
    sweep_id: str
    sweep_dir: str
    storage: str
    base: dict
    objective: str | None = None
    swept_keys: list[str] = field(default_factory=list)
    workers: int = 1
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    max_failures: int = 2
    fixed: dict[str, FixedRun] = field(default_factory=dict)

    def resolve(self, tune_config: dict) -> tuple[dict, int | None, str | None]:
        """(nested run config, seed, variant) of a trial from its Tune config."""
        if RUN_KEY in tune_config:
            run = self.fixed[tune_config[RUN_KEY]]
            return run.config, run.seed, run.variant or tune_config[RUN_KEY]
        params = {k: v for k, v in tune_config.items() if "." in k and k not in SWEPT_RESOURCES}
        config = resolve_config(self.base, params)
        return config, config.get("train", {}).get("seed"), None

    def worker_count(self, tune_config: dict) -> int:
        """Ray Train workers of a trial: searched (``resources.workers`` in the space) or the spec's."""
        return int(tune_config.get(SWEPT_RESOURCES[0], self.workers))

    def recorded_config(self, config: dict, tune_config: dict) -> dict:
        """The config as recorded in the store: a searched worker count becomes a column too."""
        if SWEPT_RESOURCES[0] not in tune_config:
            return config
        return {**config, "resources": {"workers": self.worker_count(tune_config)}}

    def run_dir(self, trial_id: str) -> Path:
        return Path(self.sweep_dir) / "runs" / trial_id

    def train_dir(self) -> Path:
        return Path(self.sweep_dir) / "train"


def trial_driver(tune_config: dict, job: TrialJob) -> None:
    """The Tune trainable: fit the trial's config with a TorchTrainer and record the outcome."""
    import ray.tune
    from ray.train import RunConfig, ScalingConfig, CheckpointConfig, FailureConfig
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    from busray.sweep.recording import record_fit
    from busray.sweep.worker import train_worker

    trial_id = ray.tune.get_context().get_trial_id()
    config, seed, variant = job.resolve(tune_config)
    workers = job.worker_count(tune_config)
    payload = {"config": config, "run_dir": str(job.run_dir(trial_id)),
               "train_run_dir": str(job.train_dir() / trial_id),
               "threads": max(1, int(job.cpus_per_worker))}
    trainer = TorchTrainer(
        train_worker, train_loop_config=payload,
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=job.gpus_per_worker > 0,
                                     resources_per_worker=_worker_resources(job)),
        run_config=RunConfig(storage_path=str(job.train_dir()), name=trial_id,
                             callbacks=[TuneReportCallback()],
                             failure_config=FailureConfig(max_failures=job.max_failures),
                             checkpoint_config=CheckpointConfig(num_to_keep=2)))
    # If fit raises (workers died more than max_failures times), or Tune stops this trial (ASHA)
    # and trainer.fit() is interrupted, nothing is recorded here: Tune marks the trial ERROR or
    # TERMINATED and the sweep driver's RecordingCallback records it as failed or stopped early.
    result = trainer.fit()
    summary = _read_summary(result.checkpoint, job, trial_id)
    record_fit(job, trial_id, job.recorded_config(config, tune_config), seed, variant, summary)
    if summary["status"] == "failed":
        raise TrialFailed(summary.get("error") or "fit failed")


def _worker_resources(job: TrialJob) -> dict[str, float]:
    resources = {"CPU": job.cpus_per_worker}
    if job.gpus_per_worker > 0:
        resources["GPU"] = job.gpus_per_worker
    return resources


def _read_summary(checkpoint, job: TrialJob, trial_id: str) -> dict:
    """fit's outcome from the final report's checkpoint (or its folder in the Train storage)."""
    from busray.sweep.recording import find_final_summary
    from busray.sweep.worker import FINAL_FILE

    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            path = Path(folder) / FINAL_FILE
            if path.is_file():
                return json.loads(path.read_text())
    summary = find_final_summary(job, trial_id)
    if summary is None:
        raise TrialFailed("the Train run ended without its final report")
    return summary

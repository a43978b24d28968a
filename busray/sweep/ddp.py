"""Multi-worker (DDP) trials: Ray Train V2's ``TorchTrainer`` run from inside the Tune trial.

Ray Train sets up ``torch.distributed`` across the request's ``resources.workers`` workers and restarts a
worker group that died (``FailureConfig(max_failures)``); each worker runs :func:`busray.training.fit`
on the request's config behind :class:`RayTrainReporter`:

- ``report`` calls ``ray.train.report`` on *every* rank once per epoch (Train V2 treats a report as a
  barrier across the group), metrics only: ``TuneReportCallback`` forwards rank 0's to the Tune
  trial, so ASHA and Optuna see DDP trials exactly like single-process ones;
- no checkpoint is handed to Ray: rank 0 writes ``last.pt``/``best.pt`` into the run folder and pushes
  it to the storage at every epoch (a no-op for a shared folder; a bucket: :mod:`busray.storage`), and
  a restarted group pulls it and resumes from there: one copy of each checkpoint.

Ray Train collects reports by polling its workers (``RAY_TRAIN_HEALTH_CHECK_INTERVAL_S``, 2 s by
default); :mod:`busray.sweep.cluster` lowers it for local clusters so an epoch is not paced by the poll.
"""

from __future__ import annotations

from busray.config import config_from_dict
from busray.experiment.request import RunRequest
from busray.runfolder import LAST, RunOutcome
from busray.sweep.job import TrialJob


class RayTrainReporter:
    """The ``Reporter`` of ``busray.training`` for a Ray Train V2 worker; rank 0 pushes the run folder
    to the storage before each report."""

    def __init__(self, job: TrialJob, run_id: str) -> None:
        import ray.train

        self._train = ray.train
        self.job, self.run_id = job, run_id
        self.folder = job.run_folder(run_id)
        self.rank = ray.train.get_context().get_world_rank()

    def is_main(self) -> bool:
        return self.rank == 0

    def report(self, epoch: int, metrics: dict[str, float], checkpoint_dir: str | None) -> None:
        if self.is_main():
            self.job.push(self.run_id)
        self._train.report({k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))})

    def resume_checkpoint_dir(self) -> str | None:
        return str(self.folder.checkpoints) if (self.folder.checkpoints / LAST).is_file() else None


def train_worker(payload: dict) -> None:
    """``train_loop_per_worker``: payload = {request, job}. A restarted group (on other nodes) pulls the
    run folder first and resumes from its ``last.pt``."""
    import torch

    from busray.training import fit

    request, job = RunRequest.from_dict(payload["request"]), payload["job"]
    torch.set_num_threads(request.threads())
    job.pull(request.name)
    reporter = RayTrainReporter(job, request.name)
    fit(config_from_dict(request.config), reporter, reporter.folder.path, tb_dir=job.tb_dir(request.name))
    if reporter.is_main():
        job.push(request.name)


def fit_with_ray_train(job: TrialJob, request: RunRequest) -> RunOutcome:
    """Run the request on its ``workers`` Ray Train workers; the outcome is what rank 0 wrote."""
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    folder = job.run_folder(request.name)
    payload = {"request": request.to_dict(), "job": job}
    cpus, gpus = request.resources["cpus_per_worker"], request.resources["gpus_per_worker"]
    trainer = TorchTrainer(
        train_worker, train_loop_config=payload,
        scaling_config=ScalingConfig(num_workers=request.workers, use_gpu=gpus > 0,
                                     resources_per_worker={"CPU": cpus, **({"GPU": gpus} if gpus else {})}),
        run_config=RunConfig(storage_path=job.ray_train_dir(request.name).rsplit("/", 1)[0], name=request.name,
                             callbacks=[TuneReportCallback()],
                             failure_config=FailureConfig(max_failures=job.max_failures)))
    trainer.fit()
    job.pull(request.name)  # rank 0 may have run on another node
    outcome = folder.read_outcome()
    if outcome is None:
        raise RuntimeError(f"{folder.path}: the DDP workers ended without writing an outcome")
    return outcome

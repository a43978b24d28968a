"""The Tune function trainable: one Tune trial = one ``fit`` of one run request, in a warm process.

Two paths, one contract (the run folder, :mod:`busray.runfolder`):

- **single-worker trials** (the common case) call :func:`busray.training.fit` right inside the Tune
  trial actor. Tune reuses trial actors (``reuse_actors=True``), so torch, timm, the model code and
  the decoded dataset stay loaded from one trial to the next: a trial costs what its ``fit`` costs.
  ``fit`` reports each epoch with ``tune.report`` (:class:`TuneReporter`); Tune's function API
  hands a result to the driver and blocks only until the driver has taken the scheduler's decision,
  so an ASHA stop ends the trial at that report: no epoch runs after the stop is decided.
- **multi-worker (DDP) trials** run Ray Train's ``TorchTrainer`` from the same function
  (:mod:`busray.sweep.ddp`), its rank 0 writing the same run folder.

What a trial trains is its :class:`~busray.experiment.request.RunRequest` (in its Tune config), whole:
nothing here rebuilds a config. Checkpoints live once, in the run folder
(``runs/<run_id>/checkpoints``). A re-launched trial (worker crash under ``resources.max_failures``,
or a resumed sweep) finds ``last.pt`` there and continues; a trial whose run folder already holds a
final outcome (it finished while the driver was down) re-reports it instead of training again; a
failed ablation run is run again from scratch (its folder and row are replaced).

After ``fit`` returns, the trial makes one *final* report (:func:`~busray.sweep.job.final_result`),
which is what Optuna records as the trial's value and what the driver records. Nothing here writes the
results store.
"""

from __future__ import annotations

import os
import shutil

from busray.config import config_from_dict
from busray.experiment.request import RunRequest
from busray.runfolder import LAST, RunOutcome
from busray.sweep.job import FINISHED, SPLITS, TrialJob, final_result, request_of


class TuneReporter:
    """The training layer's ``Reporter`` for a single-process trial: epochs go to ``tune.report``, after
    the run folder (this epoch's checkpoint, history, TensorBoard events) went to the storage."""

    def __init__(self, job: TrialJob, run_id: str) -> None:
        self.job, self.run_id = job, run_id
        self.folder = job.run_folder(run_id)

    def report(self, epoch: int, metrics: dict[str, float], checkpoint_dir: str | None) -> None:
        from ray import tune  # the trial actor has Ray loaded already; keeps this module driver-light

        self.job.push(self.run_id)  # before the report: ASHA may stop the trial right there
        tune.report({k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))})

    def resume_checkpoint_dir(self) -> str | None:
        return str(self.folder.checkpoints) if (self.folder.checkpoints / LAST).is_file() else None

    def is_main(self) -> bool:
        return True


def run_trial(tune_config: dict, job: TrialJob) -> None:
    """The Tune trainable: fit the trial's request (or re-report a finished run), then report final."""
    from ray import tune

    request = request_of(tune_config)
    job.pull(request.name)  # a restart on another node resumes from what the last epoch pushed
    done = job.run_folder(request.name).read_outcome()
    if done is not None and done.status == "failed" and job.kind == "ablation":
        _clear_failed_run(job, request.name)  # a resumed ablation runs its failed runs again, from scratch
        done = None
    if done is None or done.status not in FINISHED:
        job.storage.pull(job.sweep, SPLITS)  # an ablation's cross-validation folds, if it has any
        done = _fit(job, request)
        job.push(request.name)
    tune.report(final_result(done, job.objective))


def _clear_failed_run(job: TrialJob, run_id: str) -> None:
    """Empty the folder, TensorBoard run and (DDP) Ray Train folder of a failed fixed run before its new
    attempt (whose row will replace the failed one's): one attempt per folder, nothing of the failed
    one resumed."""
    shutil.rmtree(job.run_folder(run_id).path)
    shutil.rmtree(job.tb_dir(run_id), ignore_errors=True)
    if not job.storage.remote:  # a bucket's Ray Train folder is Ray's; a new attempt starts its own run
        shutil.rmtree(job.ray_train_dir(run_id), ignore_errors=True)
    job.push(run_id)  # and in a bucket: the deleted files go there too


def _fit(job: TrialJob, request: RunRequest) -> RunOutcome:
    """Train; an exception is a failed trial (fit wrote why), not a Tune error to retry: only a dead
    process (the trial's outcome still ``running``) is retried, up to ``resources.max_failures``."""
    folder = job.run_folder(request.name)
    try:
        if request.error:
            raise _InvalidRequest(request.error)
        if request.workers > 1:
            from busray.sweep.ddp import fit_with_ray_train  # Ray Train only for DDP trials
            return fit_with_ray_train(job, request)
        return _fit_here(job, request)
    except Exception as err:
        outcome = folder.read_outcome()
        if outcome is None or outcome.status not in FINISHED:
            outcome = RunOutcome(run_dir=str(folder.path))
            outcome.finish("failed", str(err) if isinstance(err, _InvalidRequest)
                           else f"{type(err).__name__}: {err}".splitlines()[0])
        return outcome


class _InvalidRequest(Exception):
    """A request whose config broke a rule when it was built (its ``error`` says which)."""


def _fit_here(job: TrialJob, request: RunRequest) -> RunOutcome:
    import torch

    from busray.training import fit

    torch.set_num_threads(request.threads())
    os.environ.setdefault("PYTHONHASHSEED", "0")
    folder = job.run_folder(request.name)
    return fit(config_from_dict(request.config), TuneReporter(job, request.name), folder.path,
               tb_dir=job.tb_dir(request.name))

"""What runs inside each Ray Train worker: :func:`busray.training.fit` behind a Ray reporter.

:class:`RayTrainReporter` implements the training layer's ``Reporter`` protocol on Ray Train V2:

- ``report`` calls ``ray.train.report`` on *every* rank once per epoch (V2 treats a report as a
  barrier across the worker group); only rank 0, which writes the run folder, attaches its
  ``checkpoints/`` directory as a ``Checkpoint``, which Ray copies into the trial's Train storage.
  ``TuneReportCallback`` then forwards rank 0's metrics to Tune (ASHA and Optuna see them).
- ``resume_checkpoint_dir`` downloads the latest checkpoint (see :func:`latest_checkpoint`) when the
  worker group was restarted after a crash (``FailureConfig``) or the sweep was resumed: ``fit``
  continues from ``last.pt`` there instead of starting over.

After ``fit`` returns, every rank makes one more report, the *final* one: rank 0 attaches a checkpoint
holding ``fit_result.json`` (status, error, best epoch, best validation and test metrics, history), so
the trial driver reads the outcome from ``Result.checkpoint``, with no race with Tune's result queue. Its metrics are the best epoch's validation metrics (what Optuna
should optimise, not the last epoch's) plus ``busray/final = 1``. A run whose Train storage already
holds a final checkpoint (a resumed sweep re-launching a finished trial) re-reports it instead of
training again.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

FINAL_FILE = "fit_result.json"
FINAL_FLAG = "busray/final"
CKPT_PREFIX = "checkpoint_epoch"          # Train checkpoint folders: checkpoint_epoch000003, ...
FINAL_CKPT = "checkpoint_final"           # ... and the final report's fit_result.json
COMPLETE_MARKER = ".busray_complete"


class RayTrainReporter:
    """The ``Reporter`` of ``busray.training`` for a Ray Train V2 worker.

    ``train_run_dir`` is this run's Ray Train storage folder (``<train storage>/<trial_id>``).
    """

    def __init__(self, train_run_dir: str) -> None:
        import ray.train

        self._train = ray.train
        self.rank = ray.train.get_context().get_world_rank()
        self.train_run_dir = Path(train_run_dir)
        self._resume = latest_checkpoint(self.train_run_dir, ray.train.get_checkpoint())

    def is_main(self) -> bool:
        return self.rank == 0

    def report(self, epoch: int, metrics: dict[str, float], checkpoint_dir: str | None) -> None:
        self._report(dict(metrics, epoch=epoch), checkpoint_dir, f"{CKPT_PREFIX}{epoch:06d}")

    def _report(self, metrics: dict, checkpoint_dir: str | None, name: str) -> None:
        checkpoint = None
        if checkpoint_dir and self.is_main():
            checkpoint = self._train.Checkpoint.from_directory(checkpoint_dir)
            (self.train_run_dir / name / COMPLETE_MARKER).unlink(missing_ok=True)  # being rewritten
        self._train.report(metrics, checkpoint=checkpoint,
                           checkpoint_dir_name=name if checkpoint else None)
        if checkpoint is not None:  # the upload is synchronous: the copy is complete now
            (self.train_run_dir / name / COMPLETE_MARKER).touch()

    def resume_checkpoint_dir(self) -> str | None:
        if self._resume is None:
            return None
        return self._resume.to_directory(tempfile.mkdtemp(prefix="busray-resume-"))

    def finished_result(self) -> dict | None:
        """The ``fit_result.json`` of an earlier attempt that already finished, if any."""
        if self._resume is None:
            return None
        with self._resume.as_directory() as folder:
            path = Path(folder) / FINAL_FILE
            return json.loads(path.read_text()) if path.is_file() else None

    def report_final(self, summary: dict) -> None:
        metrics = {"epoch": summary.get("epochs_run") or summary.get("best_epoch") or 0,
                   FINAL_FLAG: 1, "busray/status": summary["status"]}
        metrics.update({f"val/{k}": v for k, v in (summary.get("val") or {}).items()
                        if isinstance(v, (int, float))})
        folder = None
        if self.is_main():
            folder = Path(tempfile.mkdtemp(prefix="busray-final-"))
            (folder / FINAL_FILE).write_text(json.dumps(summary, default=_jsonable))
        self._report(metrics, str(folder) if folder else None, FINAL_CKPT)


def latest_checkpoint(train_run_dir: Path, registered):
    """The newest usable checkpoint: Ray's registered one, or a newer complete one on storage.

    Ray Train V2 collects reports when it polls the workers (every 2 s by default,
    ``RAY_TRAIN_HEALTH_CHECK_INTERVAL_S``): a worker that dies within that window after reporting
    loses the report, although its checkpoint was already copied to storage. The reporter marks each
    copied checkpoint complete, so a restarted worker resumes from the newest one either way.
    """
    from ray.train import Checkpoint

    marked = [p.parent for p in train_run_dir.glob(f"{CKPT_PREFIX}*/{COMPLETE_MARKER}")]
    if registered is not None:
        marked.append(Path(registered.path))
    if not marked:
        return registered
    newest = max(marked, key=lambda p: (p.name == FINAL_CKPT, p.name))
    if registered is not None and newest == Path(registered.path):
        return registered
    return Checkpoint.from_directory(str(newest))


def train_worker(payload: dict) -> None:
    """The Ray Train ``train_loop_per_worker``: ``payload`` = {config, run_dir, train_run_dir, threads}."""
    _quiet_per_report_logs()
    reporter = RayTrainReporter(payload["train_run_dir"])
    summary = reporter.finished_result()
    if summary is None:
        summary = run_fit(payload, reporter)
    reporter.report_final(summary)


def _quiet_per_report_logs() -> None:
    """Ray Train logs every report and every checkpoint at INFO from each worker (two long lines per
    epoch per trial), which buries a sweep's own output. Raise those two loggers to WARNING; their
    warnings and errors still show. Private modules: if Ray moves them, nothing is changed."""
    import importlib
    import logging

    for name in ("ray.train.v2._internal.execution.context", "ray.train.v2._internal.execution.storage"):
        try:
            getattr(importlib.import_module(name), "logger").setLevel(logging.WARNING)
        except (ImportError, AttributeError):
            pass


def run_fit(payload: dict, reporter: RayTrainReporter) -> dict:
    """Build the Config and call ``busray.training.fit`` (imported here: workers import it lazily)."""
    from busray.config import config_from_dict
    from busray.training import fit

    if payload.get("threads"):
        import torch
        torch.set_num_threads(int(payload["threads"]))
    os.environ.setdefault("PYTHONHASHSEED", "0")
    result = fit(config_from_dict(payload["config"]), reporter, payload["run_dir"])
    return fit_summary(result)


def fit_summary(result: Any) -> dict:
    """The JSON-able outcome of a ``FitResult`` (what the results row needs)."""
    return {
        "status": result.status, "error": result.error, "best_epoch": result.best_epoch,
        "epochs_run": getattr(result, "epochs_run", None), "val": dict(result.best_val or {}),
        "test": dict(result.test or {}), "history": list(getattr(result, "history", []) or []),
        "run_dir": result.run_dir, "wall_time_s": result.wall_time_s, "device": result.device,
        "dataset": getattr(result, "dataset", None), "split_hash": getattr(result, "split_hash", None),
    }


def _jsonable(value: Any) -> Any:
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)

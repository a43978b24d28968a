"""What runs inside each Ray Train worker: :func:`busray.training.fit` behind a Ray reporter.

:class:`RayTrainReporter` implements the training layer's ``Reporter`` protocol on Ray Train V2:

- ``report`` calls ``ray.train.report`` on *every* rank once per epoch (V2 treats a report as a
  barrier across the worker group); only rank 0, which writes the run folder, attaches its
  ``checkpoints/`` directory as a ``Checkpoint``, which Ray copies into the trial's Train storage.
  ``TuneReportCallback`` then forwards rank 0's metrics to Tune (ASHA and Optuna see them).
- ``resume_checkpoint_dir`` downloads ``ray.train.get_checkpoint()`` when the worker group was
  restarted after a crash (``FailureConfig``) or the sweep was resumed: ``fit`` continues from
  ``last.pt`` there instead of starting over.

After ``fit`` returns, every rank makes one more report, the *final* one: rank 0 attaches a checkpoint
holding ``fit_result.json`` (status, error, best epoch, best validation and test metrics, history), so
the trial driver reads the outcome from ``Result.checkpoint`` with no shared-filesystem assumption and
no race with Tune's result queue. Its metrics are the best epoch's validation metrics (what Optuna
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


class RayTrainReporter:
    """The ``Reporter`` of ``busray.training`` for a Ray Train V2 worker."""

    def __init__(self) -> None:
        import ray.train

        self._train = ray.train
        self.rank = ray.train.get_context().get_world_rank()
        self._resume = ray.train.get_checkpoint()

    def is_main(self) -> bool:
        return self.rank == 0

    def report(self, epoch: int, metrics: dict[str, float], checkpoint_dir: str | None) -> None:
        checkpoint = None
        if checkpoint_dir and self.is_main():
            checkpoint = self._train.Checkpoint.from_directory(checkpoint_dir)
        self._train.report(dict(metrics, epoch=epoch), checkpoint=checkpoint)

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
        checkpoint = None
        if self.is_main():
            folder = Path(tempfile.mkdtemp(prefix="busray-final-"))
            (folder / FINAL_FILE).write_text(json.dumps(summary, default=_jsonable))
            checkpoint = self._train.Checkpoint.from_directory(str(folder))
        self._train.report(metrics, checkpoint=checkpoint)


def train_worker(payload: dict) -> None:
    """The Ray Train ``train_loop_per_worker``: ``payload`` = {config, run_dir, threads}."""
    reporter = RayTrainReporter()
    summary = reporter.finished_result()
    if summary is None:
        summary = run_fit(payload, reporter)
    reporter.report_final(summary)


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

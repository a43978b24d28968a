"""Recording trials: one results-store row per trial, epoch rows, and TensorBoard's HParams view.

Who records what, so that every trial ends up with exactly one row:

- the trial driver (:func:`record_fit`) records *completed* and *failed* trials the moment its
  ``TorchTrainer`` returns: it holds the fit outcome (best validation and test metrics);
- :class:`RecordingCallback` on the sweep driver records trials that ASHA *stopped early*: Tune kills
  those trainables mid-epoch, so nothing inside them can be relied on to run;
- ``RecordingCallback.on_experiment_end`` records any finished trial still missing (the sweep
  driver was killed between a trial's end and its recording, then resumed); it prefers the final
  ``fit_result.json`` the trial's workers left in its Train checkpoints.

The store names each file by ``(sweep_id, trial_id)``, so a second write of one trial replaces the first
(no duplicates), and the callback never overwrites a row a trial driver already wrote.
The HParams summary goes to ``<run_dir>/tb/hparams/`` beside fit's scalar curves, so
``tensorboard --logdir <storage>`` shows every trial's config against its final metrics.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from busray.configtools import flatten

try:  # Tune's Callback base class: imported lazily elsewhere, but this module is Ray-side anyway
    from ray.tune import Callback
except ImportError:  # pragma: no cover - busray.sweep always has Ray
    Callback = object  # type: ignore[misc,assignment]


def record_fit(job, trial_id: str, config: dict, seed: int | None, variant: str | None,
               summary: dict, status: str | None = None) -> None:
    """Write one trial's run row (+ epoch rows) and its HParams summary."""
    from busray.results import ResultsStore, build_run_row

    run_dir = summary.get("run_dir") or str(job.run_dir(trial_id))
    row = build_run_row(
        sweep=job.sweep, sweep_id=job.sweep_id, trial_id=trial_id, config=config, seed=seed,
        status=status or summary.get("status") or "failed", error=summary.get("error"),
        best_epoch=summary.get("best_epoch"), val=_numbers(summary.get("val")),
        test=_numbers(summary.get("test")), wall_time_s=summary.get("wall_time_s"),
        device=summary.get("device"), run_dir=run_dir, dataset=summary.get("dataset") or None,
        split_hash=summary.get("split_hash") or None, variant=variant, objective=job.objective)
    history = summary.get("history") or read_history(Path(run_dir))
    ResultsStore(job.storage).record_run(row, [_numbers(h) for h in history])
    write_hparams(Path(run_dir), _hparams(job, config, seed, variant), row)


def is_recorded(job, trial_id: str) -> bool:
    from busray.results import ResultsStore
    from busray.results.store import run_file_name

    return (ResultsStore(job.storage).runs_dir / run_file_name(job.sweep_id, trial_id)).is_file()


def record_from_tune(job, trial_id: str, tune_config: dict, last_result: dict | None,
                     error: str | None = None) -> None:
    """Record a trial from what the driver can see, unless its trial driver already did.

    A final ``fit_result.json`` in the trial's Train storage wins (the trial finished but its
    driver was killed before recording); otherwise the run folder's history gives the best epoch.
    """
    if is_recorded(job, trial_id):
        return
    config, seed, variant = job.resolve(tune_config)
    config = job.recorded_config(config, tune_config)
    final = find_final_summary(job, trial_id)
    if final is not None:
        record_fit(job, trial_id, config, seed, variant, final)
        return
    run_dir = job.run_dir(trial_id)
    history = read_history(run_dir)
    summary: dict[str, Any] = {"error": error, "run_dir": str(run_dir), "history": history,
                               **_split_identity(run_dir)}
    if history:
        best = _best_epoch(history, job.objective)
        summary["best_epoch"] = int(best["epoch"])
        summary["val"] = {k: v for k, v in best.items() if k.startswith("val/")}
    elif last_result:
        summary["val"] = {k: v for k, v in last_result.items() if k.startswith("val/")}
    record_fit(job, trial_id, config, seed, variant, summary,
               status="failed" if error else "stopped_early")


def _split_identity(run_dir: Path) -> dict[str, Any]:
    """Dataset and split hash of a trial that never returned, from the split.json fit wrote at start."""
    path = run_dir / "split.json"
    try:
        split = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {"dataset": split.get("dataset"), "split_hash": split.get("split_hash")}


def find_final_summary(job, trial_id: str) -> dict | None:
    """The ``fit_result.json`` a trial's workers left in its Train checkpoints, if any."""
    from busray.sweep.worker import FINAL_CKPT, FINAL_FILE

    path = job.train_dir() / trial_id / FINAL_CKPT / FINAL_FILE
    return json.loads(path.read_text()) if path.is_file() else None


class RecordingCallback(Callback):
    """Sweep-driver hook: records trials that ended without their trial driver recording them."""

    def __init__(self, job) -> None:
        self.job = job

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        record_from_tune(self.job, trial.trial_id, trial.config, trial.last_result)

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        record_from_tune(self.job, trial.trial_id, trial.config, trial.last_result,
                         error=error_text(trial) or "trial errored")

    def on_experiment_end(self, trials: list, **info) -> None:
        """Record finished trials still missing (e.g. finished while the driver was dead)."""
        for trial in trials:
            if trial.status == "TERMINATED":
                record_from_tune(self.job, trial.trial_id, trial.config, trial.last_result)
            elif trial.status == "ERROR":
                record_from_tune(self.job, trial.trial_id, trial.config, trial.last_result,
                                 error=error_text(trial) or "trial errored")


def error_text(trial) -> str | None:
    """The first line of a Tune trial's error file."""
    path = getattr(trial, "error_file", None)
    if path and Path(path).is_file():
        lines = [ln for ln in Path(path).read_text().splitlines() if ln.strip()]
        return lines[-1][:2000] if lines else None
    return None


def read_history(run_dir: Path) -> list[dict]:
    """fit's ``history.csv`` (one row per epoch) as numbers; [] when the trial never got that far."""
    path = Path(run_dir) / "history.csv"
    if not path.is_file():
        return []
    with path.open(newline="") as fh:
        return [_numbers(row) for row in csv.DictReader(fh)]


def write_hparams(run_dir: Path, hparams: dict[str, Any], row: dict) -> None:
    """One HParams entry (config vs. final metrics) in ``<run_dir>/tb/hparams``."""
    from torch.utils.tensorboard import SummaryWriter

    metrics = {f"hparams/{k}": v for k, v in row.items()
               if k.startswith(("val/", "test/")) and isinstance(v, float) and math.isfinite(v)}
    if not metrics:
        metrics = {"hparams/failed": 1.0}
    writer = SummaryWriter(log_dir=str(run_dir / "tb" / "hparams"))
    try:
        writer.add_hparams(hparams, metrics, run_name=".")
    finally:
        writer.close()


def _hparams(job, config: dict, seed: int | None, variant: str | None) -> dict[str, Any]:
    flat = flatten(config)
    keys = job.swept_keys or sorted(flat)
    out = {k: _scalar(flat.get(k)) for k in keys if k in flat}
    out["seed"] = -1 if seed is None else int(seed)
    if variant:
        out["variant"] = variant
    return out


def _scalar(value: Any) -> Any:
    return value if isinstance(value, (bool, int, float, str)) else str(value)


def _numbers(row: dict | None) -> dict:
    """Values as floats where they parse as numbers (CSV gives strings); others kept."""
    out = {}
    for key, value in (row or {}).items():
        try:
            out[key] = float(value) if not isinstance(value, bool) and value not in ("", None) else None
        except (TypeError, ValueError):
            out[key] = value
    return out


def _best_epoch(history: list[dict], objective: str | None) -> dict:
    metric, mode = (objective.split(",")[0].rsplit(":", 1) if objective else ("val/score", "max"))
    scored = [h for h in history if isinstance(h.get(metric), float) and math.isfinite(h[metric])]
    if not scored:
        return history[-1]
    return (max if mode == "max" else min)(scored, key=lambda h: h[metric])

"""``busray ablate``: every (variant, replicate) of an ablation file as one run on the sweep machinery.

The runs are the file's :class:`~busray.experiment.request.RunRequest` objects, run by
:func:`busray.sweep.run_requests` on the engine path a sweep's trials take (Tune trainable, Ray Train
workers, GPU packing, results-store recording), with the variant name and seed in each row. Like a
sweep, an ablation that already exists in the storage is refused unless ``resume`` is set (so two
experiments are never mixed by accident); ``resume`` finishes or grows it (``--seeds 5`` after
``--seeds 3``): every (variant, replicate) already recorded as completed is skipped, the others run --
one cut short continues from its ``last.pt``, a failed one starts again in its folder (each run's
folder and row are named ``<variant>-s<seed>-<key>``, the request's name).
With ``cv_folds = k`` the driver makes the k folds once (fixed test split, k-fold on
train+val), saves them under ``<storage>/<name>/splits/`` and points each run's ``data.split_file`` at
its fold; replicate i is fold i.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from busray.experiment import AblationSpec, load_ablation_spec, open_sweep, resolve_storage
from busray.experiment.state import PYTHON_WORDS, SweepWords
from busray.storage import Storage
from busray.sweep.job import SPLITS
from busray.results.query import counts_text
from busray.sweep.outcome import all_failed, count_of, resume_command, unfinished_text


@dataclass
class AblationOutcome:
    name: str
    storage: str
    planned: int
    counts: dict[str, int]
    sweep_id: str
    interrupted: str = ""             # what stopped it early: "Ctrl-C", "SIGTERM" ("": nothing)
    unfinished: tuple[str, ...] = ()  # runs it cut short (not recorded; --resume runs them again)
    errors: tuple[str, ...] = ()      # the failed runs' errors, most frequent first

    def failure(self) -> str | None:
        """The one-line error when every run this ablation recorded failed (the CLI exits non-zero)."""
        return all_failed(f"ablation {self.name}", "run", self.counts, self.errors)

    def summary(self, command: str | None = None) -> str:
        """What was recorded and what to do next; ``command``: the one that ran it (for --resume)."""
        counts = counts_text(self.counts) or "none"
        earlier = " (including earlier rounds)" if sum(self.counts.values()) > self.planned else ""
        head = (f"ablation {self.name} ({self.sweep_id}): {count_of(self.planned, 'run')} planned; "
                f"recorded: {counts}{earlier}")
        if self.interrupted:
            head += f"; interrupted by {self.interrupted}{unfinished_text(self.unfinished)}"
        lines = [head, f"storage: {self.storage}"]
        if self.interrupted:
            lines.append(f"resume: {resume_command(command)}")
        lines.append(f"report: busray report {self.name} --storage {shlex.quote(str(self.storage))}")
        return "\n".join(lines)


def run_ablation(spec: "str | Path | dict | AblationSpec", overrides: Iterable[str] = (),
                 storage: str | None = None, seeds: int | None = None, resume: bool = False,
                 progress: bool = True, verbose: bool = False, words: SweepWords = PYTHON_WORDS) -> AblationOutcome:
    """Run every (variant, replicate) of an ablation (a file, a dict of the same shape, or a spec);
    returns what the store holds.

    ``resume``: the ablation may already exist; runs recorded as completed are skipped. Without it an
    existing ablation of this name in ``storage`` is a ``ConfigError`` that says to pass ``resume``
    (``words``: how it is named; the CLI passes its flags).
    """
    from busray.sweep import run_requests  # lazy: Ray, once the file passed

    spec = load_ablation_spec(spec, overrides, seeds)
    storage = resolve_storage(storage or spec.storage)
    open_sweep(storage, spec.name, resume=resume, add_trials=None, kind="ablation", words=words)  # before folds
    requests = spec.requests(make_folds(spec, storage) if spec.cv_folds > 1 else {})
    out = run_requests(spec, requests, storage=storage, resume=resume, progress=progress, verbose=verbose,
                       words=words)
    return AblationOutcome(name=spec.name, storage=storage.uri, planned=len(requests), counts=out.counts,
                           sweep_id=out.sweep_id, interrupted=out.interrupted, unfinished=out.unfinished,
                           errors=out.errors)


def make_folds(spec: AblationSpec, storage: Storage) -> dict[int, str]:
    """Write the k fold splits once (fixed test split) and return fold -> split.json path."""
    from busray.config import config_from_dict
    from busray.data import kfold_splits, load_dataset

    cfg = config_from_dict(spec.request(spec.baseline_name, 0).config)
    ds = load_dataset(cfg.data)
    storage.pull(spec.name, SPLITS)
    folder = storage.path(spec.name, SPLITS)
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for fold, split in enumerate(kfold_splits(ds, cfg.data, spec.cv_folds)):
        path = folder / f"fold-{fold}.json"
        if not path.is_file():  # a re-run must keep the folds its earlier runs used
            split.save(path, ds)
        files[fold] = str(path)
    storage.push(spec.name, SPLITS)  # a bucket: each trial pulls them into its own mirror
    return files

"""Run-folder rules of a plain training run, shared by ``busray train`` and :func:`busray.training.fit`.

Refuse before touching anything, and never lose a finished run:

- a run folder that already holds a run (a ``config.yaml`` or a checkpoint) is refused unless the
  run is resumed (``--resume`` / ``resume=True``: continue it) or overwritten (``--overwrite`` /
  ``overwrite=True``: replace it); a non-empty folder that is not a run is always refused; a run
  folder naming a file is refused.
- resuming needs ``checkpoints/last.pt`` and compares the saved ``config.yaml`` with the requested
  config *before* anything is written: keys that change what is learned must match, only
  :data:`RESUMABLE` keys may differ.
- overwriting moves the old run aside (a hidden sibling ``.RUN.busray-old-*``), trains, and deletes
  the old run only when the new one completed; if the new one fails or is interrupted, the new
  folder is removed and the old run is put back.
- a run folder the run created itself (and the parents it created, like ``runs/``) is removed again
  when training stopped before the first checkpoint (bad data, a crash at start-up), so no folder
  that merely looks like a run is left; once a checkpoint exists the folder stays, with
  ``metrics.json`` saying ``failed`` (and resuming continues it).

The rules live here once; the messages name the caller's own words (:data:`CLI_WORDS` for the
command line's flags, :data:`PYTHON_WORDS` for ``fit``'s arguments). Torch-free, so the CLI refuses
a bad folder before it imports torch.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from busray.atomic import missing_folders, remove_empty_folders, writing_to
from busray.config import Config, ConfigError, config_from_dict, config_to_dict
from busray.configtools import flatten, load_yaml
from busray.runfolder import LAST, RunFolder

#: Keys that may differ between a run and its resumption: they change how, not what, is trained.
RESUMABLE = frozenset({
    "train.epochs", "train.patience", "train.device", "train.progress", "train.num_threads",
    "train.tb_images", "train.eval_batch_size", "train.compile", "train.debug_crash_at_epoch",
    "train.debug_nan_at_epoch", "data.cache", "data.cache_dir", "data.decode_workers",
})


class RunFolderError(ValueError):
    """A run folder (or any output folder) that may not be used as asked; ``str(err)`` is one line
    naming the caller's words."""


@dataclass(frozen=True)
class GuardWords:
    """How a caller spells the run folder and the two modes in its messages."""

    out: str              # the run folder: ``--out`` or ``run_dir``
    resume: str           # ``--resume`` or ``resume=True``
    overwrite: str        # ``--overwrite`` or ``overwrite=True``
    as_saved: str         # how to resume with the saved config; ``{config}`` is its path


CLI_WORDS = GuardWords("--out", "--resume", "--overwrite", "drop --config/--set to resume as saved")
PYTHON_WORDS = GuardWords("run_dir", "resume=True", "overwrite=True",
                          "pass load_config('{config}') to resume as saved")


@dataclass
class RunPlan:
    """Where a run writes, with what config, and how to undo it on failure."""

    folder: RunFolder
    cfg: Config
    created: bool = False          # the folder did not exist (or was empty): undo it if nothing was trained
    backup: Path | None = None     # overwrite: the old run, put back unless the new one completes
    new_parents: tuple[Path, ...] = ()  # parents the run will create (e.g. ``runs/``): undone with it


def plan_run(run_dir: str | Path | None, config_for: Callable[[Config | None], Config], *,
             resume: bool, overwrite: bool, words: GuardWords) -> RunPlan:
    """Check the run folder against the mode asked for and decide the config; writes nothing.

    ``config_for(saved)`` returns the config to train: ``saved`` is the run's saved config when
    resuming (``busray train --resume`` without ``--config`` builds on it), else None.
    """
    if resume and overwrite:
        raise RunFolderError(f"{words.resume} and {words.overwrite} exclude each other")
    if resume and run_dir is None:
        raise RunFolderError(f"{words.resume} needs {words.out} (the run to continue)")
    folder = RunFolder(run_dir if run_dir is not None else default_run_dir())
    check_folder_target(folder.path, words.out)
    if resume:
        saved = _saved_config(folder, words)
        cfg = config_for(saved)
        _check_resumable(folder, saved, cfg, words)
        return RunPlan(folder, cfg)
    cfg = config_for(None)
    exists = folder.path.is_dir() and any(folder.path.iterdir())
    if exists and not _looks_like_run(folder):
        raise RunFolderError(f"{words.out}: {folder.path} is a non-empty folder that is not a run "
                             f"folder; choose a new {words.out}")
    if exists and not overwrite:
        raise RunFolderError(f"{words.out}: {folder.path} already holds a run; pass {words.resume} to "
                             f"continue it, {words.overwrite} to replace it, or choose a new {words.out}")
    return RunPlan(folder, cfg, created=not exists,
                   backup=_backup_name(folder.path) if exists else None,
                   new_parents=missing_folders(folder.path.parent))


def run_planned(plan: RunPlan, train: Callable[[Config, Path], Any]) -> Any:
    """Call ``train(cfg, run_dir)`` under the plan's rules; returns what ``train`` returns."""
    if plan.backup is not None:
        os.replace(plan.folder.path, plan.backup)
    try:
        with writing_to(plan.folder.path):
            result = train(plan.cfg, plan.folder.path)
    except BaseException:
        _undo(plan)
        raise
    if plan.backup is not None:
        if getattr(result, "status", "completed") == "completed":
            shutil.rmtree(plan.backup, ignore_errors=True)
        else:
            _undo(plan)
    return result


def _undo(plan: RunPlan) -> None:
    path = plan.folder.path
    if plan.backup is not None:
        shutil.rmtree(path, ignore_errors=True)
        os.replace(plan.backup, path)
    elif plan.created and not (plan.folder.checkpoints / LAST).is_file():
        shutil.rmtree(path, ignore_errors=True)  # a folder that existed empty is left out: no run
        remove_empty_folders(plan.new_parents)


def _looks_like_run(folder: RunFolder) -> bool:
    return folder.is_run() or folder.checkpoints.is_dir() or folder.outcome.is_file()


def _backup_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.busray-old-{os.getpid()}-{time.time_ns() % 10**6}")


def default_run_dir() -> Path:
    """``runs/<timestamp>``, with ``-2``, ``-3`` ... when two runs start in the same second."""
    base = Path("runs") / time.strftime("%Y%m%d-%H%M%S")
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def _saved_config(folder: RunFolder, words: GuardWords) -> Config:
    """The config a run to resume was trained with, after checking there is something to resume."""
    if not (folder.checkpoints / LAST).is_file():
        raise RunFolderError(f"{words.resume}: {folder.checkpoints / LAST} not found; nothing to resume")
    if not folder.config.is_file():
        raise RunFolderError(f"{words.resume}: {folder.config} not found; cannot check the run's config")
    try:
        return config_from_dict(load_yaml(folder.config))
    except ConfigError as err:
        message = str(err)
        raise ConfigError(message if str(folder.config) in message
                          else f"{folder.config}: {message}") from None


def _check_resumable(folder: RunFolder, saved: Config, requested: Config, words: GuardWords) -> None:
    differing = config_differences(saved, requested)
    as_saved = words.as_saved.format(config=folder.config)
    if len(differing) == 1:
        key, old, new = differing[0]
        raise RunFolderError(f"{words.resume}: {key} is {new!r} but the run in {folder.path} was "
                             f"trained with {old!r}; {as_saved}, or train a new {words.out}")
    if differing:
        keys = ", ".join(k for k, _, _ in differing[:8]) + (", ..." if len(differing) > 8 else "")
        raise RunFolderError(f"{words.resume}: {len(differing)} keys differ from {folder.config} "
                             f"({keys}); {as_saved}, or train a new {words.out}")


def config_differences(saved: Config, requested: Config) -> list[tuple[str, Any, Any]]:
    """(key, saved, requested) for each key that differs and may not change on resume."""
    old, new = flatten(config_to_dict(saved)), flatten(config_to_dict(requested))
    return [(k, old.get(k), new.get(k)) for k in sorted(set(old) | set(new))
            if old.get(k) != new.get(k) and k not in RESUMABLE]


def check_folder_target(path: Path, name: str) -> None:
    """``path`` may be created as (or already is) a folder: no file at it or at any parent."""
    if path.exists() and not path.is_dir():
        raise RunFolderError(f"{name}: {path} is a file, not a folder")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise RunFolderError(f"{name}: {parent} is a file, not a folder")
            break

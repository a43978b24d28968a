"""Run-folder rules of ``busray train``: refuse before touching anything, and never lose a finished run.

- ``--out RUN`` that already holds a run (a ``config.yaml`` or a checkpoint) is refused unless
  ``--resume`` (continue it) or ``--overwrite`` (replace it) is given; a non-empty folder that is not
  a run is always refused; ``--out`` naming a file is refused.
- ``--resume`` needs ``checkpoints/last.pt`` and compares the saved ``config.yaml`` with the requested
  one *before* anything is written: without ``--config`` the saved config is reused (``--set`` may
  change it); keys that change what is learned must match, only :data:`RESUMABLE` keys may differ.
- ``--overwrite`` moves the old run aside (a hidden sibling ``.RUN.busray-old-*``), trains, and
  deletes the old run only when the new one completed; if the new one fails or is interrupted, the
  new folder is removed and the old run is put back.
- A run folder the command created itself (and the parents it created, like ``runs/``) is removed
  again when training stopped before the first checkpoint (bad data, a crash at start-up), so no
  folder that merely looks like a run is left; once a checkpoint exists the folder stays, with
  ``metrics.json`` saying ``failed`` (and ``--resume`` continues it).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from busray.atomic import missing_folders, remove_empty_folders
from busray.cli.errors import CliError, writing_to
from busray.config import Config, ConfigError, config_from_dict, config_to_dict, load_config
from busray.configtools import apply_overrides, flatten, load_yaml
from busray.runfolder import LAST, RunFolder

#: Keys that may differ between a run and its resumption: they change how, not what, is trained.
RESUMABLE = frozenset({
    "train.epochs", "train.patience", "train.device", "train.progress", "train.num_threads",
    "train.tb_images", "train.eval_batch_size", "train.compile", "train.debug_crash_at_epoch",
    "train.debug_nan_at_epoch", "data.cache", "data.cache_dir", "data.decode_workers",
})


@dataclass
class TrainPlan:
    """Where a ``busray train`` writes, with what config, and how to undo it on failure."""

    folder: RunFolder
    cfg: Config
    created: bool = False          # the folder did not exist (or was empty): undo it if nothing was trained
    backup: Path | None = None     # --overwrite: the old run, put back unless the new one completes
    new_parents: tuple[Path, ...] = ()  # parents the run will create (e.g. ``runs/``): undone with it


def plan_train(out: str | None, *, resume: bool, overwrite: bool, config: str | None,
               overrides: list[str]) -> TrainPlan:
    """Validate everything a ``train`` needs and decide its run folder; writes nothing."""
    if resume and overwrite:
        raise CliError("--resume and --overwrite exclude each other")
    if resume and not out:
        raise CliError("--resume needs --out RUN_FOLDER (the run to continue)")
    folder = RunFolder(out if out else default_run_dir())
    check_folder_target(folder.path, "--out")
    if resume:
        cfg = resumed_config(folder, config, overrides)
        check_device(cfg.train.device, "train.device")
        return TrainPlan(folder, cfg)
    cfg = load_config(config, overrides)
    check_device(cfg.train.device, "train.device")
    exists = folder.path.is_dir() and any(folder.path.iterdir())
    if exists and not _looks_like_run(folder):
        raise CliError(f"--out: {folder.path} is a non-empty folder that is not a run folder; "
                       f"choose a new --out")
    if exists and not overwrite:
        raise CliError(f"--out: {folder.path} already holds a run; pass --resume to continue it, "
                       f"--overwrite to replace it, or choose a new --out")
    return TrainPlan(folder, cfg, created=not exists,
                     backup=_backup_name(folder.path) if exists else None,
                     new_parents=missing_folders(folder.path.parent))


def run_train(plan: TrainPlan, train: Callable[[Config, Path], Any]) -> Any:
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


def _undo(plan: TrainPlan) -> None:
    path = plan.folder.path
    if plan.backup is not None:
        shutil.rmtree(path, ignore_errors=True)
        os.replace(plan.backup, path)
    elif plan.created and not (plan.folder.checkpoints / LAST).is_file():
        shutil.rmtree(path, ignore_errors=True)  # an --out that existed empty is left out: no run
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


def resumed_config(folder: RunFolder, config: str | None, overrides: list[str]) -> Config:
    """The config to resume with, after checking it against the run's saved ``config.yaml``."""
    if not (folder.checkpoints / LAST).is_file():
        raise CliError(f"--resume: {folder.checkpoints / LAST} not found; nothing to resume")
    if not folder.config.is_file():
        raise CliError(f"--resume: {folder.config} not found; cannot check the run's config")
    try:
        saved = config_from_dict(load_yaml(folder.config))
    except ConfigError as err:
        message = str(err)
        raise ConfigError(message if str(folder.config) in message
                          else f"{folder.config}: {message}") from None
    if config:
        requested = load_config(config, overrides)
    else:
        requested = config_from_dict(apply_overrides(config_to_dict(saved), overrides))
    differing = config_differences(saved, requested)
    if len(differing) == 1:
        key, old, new = differing[0]
        raise CliError(f"--resume: {key} is {new!r} but the run in {folder.path} was trained with "
                       f"{old!r}; drop --config/--set to resume as saved, or train a new --out")
    if differing:
        keys = ", ".join(k for k, _, _ in differing[:8]) + (", ..." if len(differing) > 8 else "")
        raise CliError(f"--resume: {len(differing)} keys differ from {folder.config} ({keys}); drop "
                       f"--config/--set to resume as saved, or train a new --out")
    return requested


def config_differences(saved: Config, requested: Config) -> list[tuple[str, Any, Any]]:
    """(key, saved, requested) for each key that differs and may not change on resume."""
    old, new = flatten(config_to_dict(saved)), flatten(config_to_dict(requested))
    return [(k, old.get(k), new.get(k)) for k in sorted(set(old) | set(new))
            if old.get(k) != new.get(k) and k not in RESUMABLE]


def check_folder_target(path: Path, flag: str) -> None:
    """``path`` may be created as (or already is) a folder: no file at it or at any parent."""
    if path.exists() and not path.is_dir():
        raise CliError(f"{flag}: {path} is a file, not a folder")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise CliError(f"{flag}: {parent} is a file, not a folder")
            break


def check_writable_folder(path: Path, flag: str) -> None:
    """Fail now, not mid-run, when ``path`` (or, if it does not exist yet, the nearest existing
    folder above it) cannot be written: a probe file is created and removed; nothing else is made."""
    check_folder_target(path, flag)
    probe_dir = next((p for p in (path, *path.parents) if p.exists()), Path("."))
    try:
        fd, probe = tempfile.mkstemp(prefix=".busray-probe-", dir=probe_dir)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise CliError(f"{flag}: {path} is not writable ({err.strerror or type(err).__name__})") from None


def check_device(name: str, key: str) -> None:
    """Refuse ``cuda``/``cuda:N`` on a machine without that CUDA device, naming the key."""
    if not (name in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", name)):
        raise CliError(f"{key}: '{name}' is not auto, cpu, cuda or cuda:N")
    if not name.startswith("cuda"):
        return
    import torch  # lazy: only commands that train or infer reach this, and they import torch anyway

    if not torch.cuda.is_available():
        raise CliError(f"{key}: '{name}' requested but this machine has no CUDA device "
                       f"(use auto or cpu)")
    index = name.partition(":")[2]
    if index and int(index) >= torch.cuda.device_count():
        raise CliError(f"{key}: '{name}' requested but this machine has "
                       f"{torch.cuda.device_count()} CUDA device(s)")

"""Run-folder rules of ``busray train``: the shared rules of :mod:`busray.training.runguard`, in flag words.

``--out RUN`` that already holds a run is refused unless ``--resume`` (continue it) or ``--overwrite``
(replace it, once the new run completes) is given; see that module for every rule. What is the
command line's own: ``--resume`` without ``--config`` reuses the run's saved config (``--set`` may
change it), and ``train.device`` is checked before torch trains. Also here: the output-folder and
device checks of the other commands.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from busray.cli.errors import CliError
from busray.config import Config, config_from_dict, config_to_dict, load_config
from busray.configtools import apply_overrides
from busray.training.runguard import CLI_WORDS, RunPlan, check_folder_target, plan_run


def plan_train(out: str | None, *, resume: bool, overwrite: bool, config: str | None,
               overrides: list[str]) -> RunPlan:
    """Validate everything a ``train`` needs and decide its run folder; writes nothing."""
    def config_for(saved: Config | None) -> Config:
        if saved is None or config:
            cfg = load_config(config, overrides)
        else:
            cfg = config_from_dict(apply_overrides(config_to_dict(saved), overrides))
        check_device(cfg.train.device, "train.device")
        return cfg

    return plan_run(out, config_for, resume=resume, overwrite=overwrite, words=CLI_WORDS)


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

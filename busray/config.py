"""The top-level run configuration: ``model.*``, ``loss.*``, ``data.*`` and ``train.*``.

Each group is the typed dataclass of its own layer (:class:`~busray.models.config.ModelConfig`,
:class:`~busray.losses.LossConfig`, :class:`~busray.data.config.DataConfig`,
:class:`~busray.training.config.TrainConfig`), with documented defaults. A YAML file and ``--set a.b=c``
overrides only override those defaults; the resolved config is saved beside every run as ``config.yaml``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from busray.configtools import (ConfigError, apply_overrides, blame, check_file_kind, describe, from_dict,
                                load_yaml, option, save_yaml, to_dict)
from busray.data.config import DataConfig
from busray.data.embedded import is_embedded, parse_embedded
from busray.data.errors import DataError
from busray.losses import LossConfig
from busray.models.config import NAMED_WEIGHTS, PACKAGE_PREFIX, ModelConfig, weights_file
from busray.storage import Storage, is_bucket
from busray.training.config import TrainConfig

__all__ = ["Config", "ConfigError", "load_config", "config_from_dict", "config_to_dict", "save_config",
           "config_keys", "resolve_run_paths"]


@dataclass
class Config:
    model: ModelConfig = option(ModelConfig(), "The network (paper Sec. 2.1-2.3).")
    loss: LossConfig = option(LossConfig(), "The multi-task loss (paper Sec. 2.4).")
    data: DataConfig = option(DataConfig(), "Dataset, split and augmentation (paper Sec. 3.1).")
    train: TrainConfig = option(TrainConfig(), "Optimisation and logging (paper Sec. 3.1).")

    def check(self) -> None:
        """A ``synthetic:...`` data.root within its bounds (busray.data.embedded), refused with the
        config rather than once a command generates it."""
        if is_embedded(self.data.root):
            try:
                parse_embedded(self.data.root)
            except DataError as err:  # its message names data.root
                raise ConfigError(str(err)) from None


def config_from_dict(data: dict | None) -> Config:
    """Validate a (partial) nested dict into a :class:`Config`; errors name the dotted key."""
    return from_dict(Config, data or {})


def config_to_dict(cfg: Config) -> dict:
    return to_dict(cfg)


def load_config(path: str | Path | None = None, overrides: Iterable[str] = ()) -> Config:
    """Defaults, then the YAML file (if any), then each ``key=value`` override, validated at once."""
    base, overrides = (load_yaml(path) if path else {}), list(overrides)
    check_file_kind(base, path, "run config")
    try:
        return config_from_dict(apply_overrides(base, overrides))
    except ConfigError as err:  # named after the file, or the --set that gave the bad value
        raise blame(err, path, overrides) from None


def save_config(cfg: Config, path: str | Path) -> None:
    save_yaml(config_to_dict(cfg), path)


def config_keys() -> list[tuple[str, object, str]]:
    """(key, default, help) for every config key, for ``busray config`` and the README."""
    return describe(Config)


_NOT_PATHS = {"model.weights": NAMED_WEIGHTS}
"""Values of path keys that name something else (``model.weights: imagenet``)."""
_MUST_EXIST = {"data.root": "dataset folder or manifest", "data.split_file": "split file",
               "model.weights": "weights file"}
_ANCHORED = ("data.cache_dir",)  # made absolute, may not exist yet


def _check_weights(value: str, prefix: str) -> None:
    try:
        weights_file(value)
    except ConfigError as err:  # its message names model.weights
        raise ConfigError(f"{prefix}{err}") from None


def _check_bucket_root(value: str, prefix: str) -> None:
    """A bucket dataset (``s3://lab/Dataset_BUSI_with_GT``) exists and this machine can read it."""
    try:
        found = Storage.at(value, f"{prefix}data.root").exists(quick=True)
    except OSError as err:
        raise ConfigError(f"{prefix}data.root: cannot read {value} ({str(err).splitlines()[0]})") from None
    if not found:
        raise ConfigError(f"{prefix}data.root: dataset folder or manifest not found: {value}")


def resolve_run_paths(data: dict, prefix: str = "") -> dict:
    """A copy of the nested run config ``data`` whose relative paths are absolute, checked to exist.

    Trials of a sweep or ablation run in Ray workers whose working directory is not the one busray was
    started in, so ``data.root: data/busi`` must be anchored by the driver, as ``busray train`` reads it.
    A missing dataset, split file or weights file (or a weights file whose first bytes are not a PyTorch
    file's) is a ``ConfigError`` naming the key (``prefix`` + key) before any trial starts. ``synthetic...`` roots are not paths; ``package:`` weights stay as
    written (a worker finds its own install) once the file is found in this one; a bucket dataset
    (``s3://...``) stays a URI, checked to exist (each node stages it into its own cache).
    """
    out = copy.deepcopy(data)
    for dotted in (*_MUST_EXIST, *_ANCHORED):
        group, key = dotted.split(".")
        section = out.get(group)
        value = section.get(key) if isinstance(section, dict) else None
        if not isinstance(value, str) or value in _NOT_PATHS.get(dotted, ()) or is_embedded(value):
            continue
        if dotted == "model.weights" and value.startswith(PACKAGE_PREFIX):
            _check_weights(value, prefix)
            continue
        if dotted == "data.root" and is_bucket(value):  # staged into each node's cache when loaded
            _check_bucket_root(value, prefix)
            continue
        path = Path(value).expanduser().absolute()
        if dotted in _MUST_EXIST and not path.exists():
            raise ConfigError(f"{prefix}{dotted}: {_MUST_EXIST[dotted]} not found: {path}")
        if dotted == "model.weights":  # a weights file's name and first bytes (not a text file)
            _check_weights(str(path), prefix)
        out[group][key] = str(path)
    return out

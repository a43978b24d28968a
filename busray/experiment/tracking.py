"""Experiment tracker settings: a sweep's (or ablation's) trials logged to MLflow and/or Weights & Biases.

Researchers who already follow their runs in MLflow or W&B should see busray's trials there too. Ray
Tune ships logger callbacks for both (``ray.air.integrations.mlflow.MLflowLoggerCallback``,
``ray.air.integrations.wandb.WandbLoggerCallback``): one tracker run per Tune trial, the trial's
sampled parameters as its params/config and every epoch's report (``epoch``, ``train/*``, ``val/*``)
as metrics. This module declares the ``tracking:`` section of a sweep or ablation file (Ray-free);
:mod:`busray.sweep.trackers` turns it into those callbacks, made to agree with the store::

    tracking:
      mlflow: {tracking_uri: file:///home/me/mlruns, experiment_name: busi-tau}
      wandb: {project: busray, entity: my-lab, mode: offline}

Giving a section turns its tracker on (``mlflow: {}`` uses every default); ``enabled: false`` turns it
off again, e.g. ``--set tracking.wandb.enabled=false``. The packages are optional extras
(``pip install 'busray[mlflow]'``: the light ``mlflow-skinny`` client, enough to log to a file store or
a server; ``busray[wandb]``); a missing one is a one-line ``ConfigError`` naming the section, raised
before Ray starts. W&B credentials are never part of a sweep file: ``wandb login``, ``WANDB_API_KEY``
or ``api_key_file``.

MLflow 3 refuses its file store (``file://`` or a plain folder as tracking URI) unless
``MLFLOW_ALLOW_FILE_STORE=true``; a file store named in ``tracking_uri`` is an explicit choice, so
busray sets that variable (unless it is already set) for the driver, where the callback logs.
"""

from __future__ import annotations

import importlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from busray.configtools import ConfigError, did_you_mean, option

WANDB_MODES = ("online", "offline", "disabled")
#: The tracking-URI schemes MLflow 3 has a store for ("" is a plain folder: a file store).
MLFLOW_SCHEMES = ("", "file", "http", "https", "sqlite", "postgresql", "mysql", "mssql", "databricks",
                  "databricks-uc", "uc")
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"


@dataclass
class MLflowSpec:
    """``tracking.mlflow.*``: log every trial as an MLflow run."""

    enabled: bool = option(True, "log to MLflow (on as soon as the tracking.mlflow section is given)")
    tracking_uri: str | None = option(None, "MLflow tracking URI: http://host:5000, file:///abs/mlruns, "
                                      "sqlite:///mlflow.db; None: $MLFLOW_TRACKING_URI or MLflow's default")
    experiment_name: str | None = option(None, "MLflow experiment; None: the sweep's name")
    tags: dict[str, str] = option({}, "tags set on every run (busray adds busray.sweep)")
    save_artifact: bool = option(False, "upload each trial's Tune folder as run artifacts")


@dataclass
class WandbSpec:
    """``tracking.wandb.*``: log every trial as a Weights & Biases run."""

    enabled: bool = option(True, "log to W&B (on as soon as the tracking.wandb section is given)")
    project: str | None = option(None, "W&B project; None: the sweep's name")
    entity: str | None = option(None, "W&B entity (user or team); None: your default entity")
    group: str | None = option(None, "W&B run group; None: the sweep's name")
    tags: list[str] = option([], "tags set on every run")
    mode: str = option("online", "online, offline (sync later with `wandb sync`) or disabled",
                       choices=WANDB_MODES)
    api_key_file: str | None = option(None, "file holding the API key; None: `wandb login` or "
                                      "$WANDB_API_KEY (never put the key itself in a sweep file)")
    excludes: list[str] = option([], "result keys not to log")


@dataclass
class TrackingSpec:
    """``tracking.*``: experiment trackers the trials are logged to (all off by default)."""

    mlflow: MLflowSpec = option(MLflowSpec(enabled=False), "MLflow (pip install 'busray[mlflow]')")
    wandb: WandbSpec = option(WandbSpec(enabled=False), "Weights & Biases (pip install 'busray[wandb]')")

    @property
    def active(self) -> list[str]:
        return [name for name in ("mlflow", "wandb") if getattr(self, name).enabled]


def check_installed(spec: TrackingSpec) -> None:
    """The one-line errors of a tracker section, before anything starts: a missing package, an MLflow
    tracking URI of a form MLflow cannot use (``tracking_uri``, else ``$MLFLOW_TRACKING_URI``)."""
    for name in spec.active:
        require(name, name)
    if spec.mlflow.enabled:
        uri, key = spec.mlflow.tracking_uri, "tracking.mlflow.tracking_uri"
        if not uri and os.environ.get(TRACKING_URI_ENV):
            uri, key = os.environ[TRACKING_URI_ENV], f"${TRACKING_URI_ENV}"
        if uri:
            check_tracking_uri(uri, key)


def check_tracking_uri(uri: str, key: str) -> None:
    """An MLflow tracking URI MLflow can use: a scheme it knows (:data:`MLFLOW_SCHEMES`), a server's host,
    a file store's folder that exists or can be created, an SQLite file's existing folder. Nothing is
    created or contacted (a server that is down is still found by the trial that logs to it)."""
    parsed = urlparse(uri)
    scheme = parsed.scheme.split("+", 1)[0].lower()  # postgresql+psycopg2: the dialect, then the driver
    if scheme not in MLFLOW_SCHEMES:
        raise ConfigError(f"{key}: '{uri}' has a scheme MLflow does not know ('{parsed.scheme}'"
                          f"{did_you_mean(scheme, MLFLOW_SCHEMES)}; known: {', '.join(s for s in MLFLOW_SCHEMES if s)})")
    if scheme in ("http", "https") and not parsed.netloc:
        raise ConfigError(f"{key}: '{uri}' names no server (http://host:5000)")
    if scheme == "sqlite":
        folder = Path(parsed.path[1:] if parsed.path.startswith("//") else parsed.path).expanduser().parent
        if parsed.path not in ("", "/:memory:") and not folder.is_dir():
            raise ConfigError(f"{key}: '{uri}': folder {folder.absolute()} not found (SQLite creates the file, "
                              f"not its folder)")
    if is_file_store(uri):
        _check_creatable(Path(parsed.path if scheme == "file" else uri).expanduser().absolute(), uri, key)


def _check_creatable(folder: Path, uri: str, key: str) -> None:
    """A file store's folder is a folder, or can be made: its nearest existing parent takes a probe file."""
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{key}: '{uri}': {folder} is not a folder")
    parent = next(p for p in (folder, *folder.parents) if p.exists())
    if not parent.is_dir():
        raise ConfigError(f"{key}: '{uri}': {parent} is not a folder, so {folder} cannot be created")
    try:
        fd, probe = tempfile.mkstemp(prefix=".busray-probe-", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise ConfigError(f"{key}: '{uri}': cannot create {folder} ({err.strerror or type(err).__name__} "
                          f"in {parent})") from None


def require(section: str, module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(f"tracking.{section}: the '{module}' package is not installed "
                          f"(pip install 'busray[{section}]', or remove tracking.{section})") from None


def is_file_store(uri: str) -> bool:
    """``file:///...`` or a plain folder path: MLflow's file-store backend."""
    return uri.startswith("file:") or ("://" not in uri and not uri.startswith(("databricks", "sqlite:")))

"""Checkpoints: weights + optimiser/scheduler state + resolved config, loadable with ``weights_only=True``.

A checkpoint holds only tensors and plain Python values (no pickled classes), so it loads with
``torch.load(..., weights_only=True)`` — safe for files from elsewhere. ``last.pt`` is rewritten every
epoch (resume point); ``best.pt`` whenever the monitored validation metric improves.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

LAST = "last.pt"
BEST = "best.pt"


@dataclass
class TrainingState:
    """What must survive a restart besides the weights."""

    epoch: int = 0  # last completed epoch
    best_value: float | None = None
    best_epoch: int = 0
    bad_epochs: int = 0  # epochs since the monitor last improved (early stopping)
    history: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"epoch": self.epoch, "best_value": self.best_value, "best_epoch": self.best_epoch,
                "bad_epochs": self.bad_epochs, "history": self.history}


def save_checkpoint(path: Path, model: nn.Module, config: dict, state: TrainingState,
                    optimizer=None, scheduler=None) -> None:
    """Write atomically (temp + rename): a crash mid-save never leaves a truncated checkpoint."""
    payload = {"model": model.state_dict(), "config": config, "state": state.as_dict()}
    if optimizer is not None:
        payload["optimizer"] = optimizer.state_dict()
    if scheduler is not None:
        payload["scheduler"] = scheduler.state_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Load a checkpoint file (or a run folder / checkpoints folder holding best.pt or last.pt)."""
    path = resolve_checkpoint(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # corrupt or foreign file: one clear line
        raise ValueError(f"{path}: not a readable busray checkpoint ({type(err).__name__})") from None


def resolve_checkpoint(path: str | Path, prefer: str = BEST) -> Path:
    """A file stays itself; a run folder or checkpoints folder resolves to best.pt (else last.pt)."""
    path = Path(path)
    if path.is_file():
        return path
    for folder in (path / "checkpoints", path):
        for name in (prefer, LAST, BEST):
            if (folder / name).is_file():
                return folder / name
    raise FileNotFoundError(f"{path}: no checkpoint file (expected a .pt file or a run folder)")


def restore_training_state(payload: dict, model: nn.Module, optimizer=None, scheduler=None) -> TrainingState:
    model.load_state_dict(payload["model"])
    if optimizer is not None and "optimizer" in payload:
        optimizer.load_state_dict(payload["optimizer"])
    if scheduler is not None and "scheduler" in payload:
        scheduler.load_state_dict(payload["scheduler"])
    return TrainingState(**payload["state"])

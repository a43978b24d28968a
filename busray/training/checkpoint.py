"""Checkpoints: weights + optimiser/scheduler state + resolved config, loadable with ``weights_only=True``.

``last.pt`` also holds the random streams an epoch draws from (torch's global generator -- dropout,
drop-path --, the CUDA generators, and the augmentation generator): a run killed after epoch k and
resumed trains epoch k+1 on exactly what the uninterrupted run would have (batch order is seeded per
epoch anyway), so ``--resume`` and a re-launched trial give the uninterrupted run's numbers.

A checkpoint holds only tensors and plain Python values (no pickled classes), so it loads with
``torch.load(..., weights_only=True)`` — safe for files from elsewhere. ``last.pt`` is rewritten every
epoch (resume point); ``best.pt`` whenever the monitored validation metric improves. Saving goes
through :func:`busray.atomic.atomic_write`, so a full disk never leaves a truncated checkpoint or a
temp file behind; loading checks the structure (a mapping with ``model`` weights and a ``config``
mapping) and names the file in a one-line :class:`CheckpointError` when it is anything else.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from torch import nn

from busray.atomic import atomic_write

LAST = "last.pt"
BEST = "best.pt"
REQUIRED = {"model": "the weights", "config": "the resolved config"}


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used; ``str(err)`` is one line naming the file."""


@dataclass
class TrainingState:
    """What must survive a restart besides the weights."""

    epoch: int = 0  # last completed epoch
    best_value: float | None = None
    best_epoch: int = 0
    bad_epochs: int = 0  # epochs since the monitor last improved (early stopping)
    history: list[dict] = field(default_factory=list)
    started_at: str = ""  # when the run's first process started (UTC ISO): a resumed run keeps it
    wall_s: float = 0.0   # seconds the run has trained up to this state, over all its processes

    def as_dict(self) -> dict:
        return asdict(self)


def save_checkpoint(path: Path, model: nn.Module, config: dict, state: TrainingState,
                    optimizer=None, scheduler=None, rng: dict | None = None) -> None:
    """Write atomically (temp + rename): a crash mid-save never leaves a truncated checkpoint."""
    payload = {"model": model.state_dict(), "config": config, "state": state.as_dict()}
    if optimizer is not None:
        payload["optimizer"] = optimizer.state_dict()
    if scheduler is not None:
        payload["scheduler"] = scheduler.state_dict()
    if rng is not None:
        payload["rng"] = rng
    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write(path, buf.getvalue())


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Load a checkpoint file (or a run folder / checkpoints folder holding best.pt or last.pt)."""
    path = resolve_checkpoint(path)
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except MemoryError:
        raise CheckpointError(f"{path}: out of memory loading the checkpoint") from None
    except Exception as err:  # corrupt, truncated or foreign file (torch raises many types): one line
        raise CheckpointError(f"{path}: not a readable busray checkpoint ({type(err).__name__})") from None
    check_payload(payload, path)
    return payload


def check_payload(payload, path: str | Path) -> None:
    """Refuse anything but a busray checkpoint: a bare tensor, a plain state dict, missing keys."""
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path}: not a busray checkpoint (holds a {type(payload).__name__}, "
                              f"expected a mapping with {', '.join(REQUIRED)})")
    for key, what in REQUIRED.items():
        if key not in payload:
            raise CheckpointError(f"{path}: not a busray checkpoint (no '{key}' entry with {what})")
    model = payload["model"]
    if not isinstance(model, dict) or not all(isinstance(v, torch.Tensor) for v in model.values()):
        raise CheckpointError(f"{path}: 'model' entry is not a state dict of tensors")
    if not isinstance(payload["config"], dict):
        raise CheckpointError(f"{path}: 'config' entry is not a mapping")


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
    if not isinstance(payload.get("state"), dict):
        raise CheckpointError("checkpoint has no training state (only last.pt can be resumed from)")
    model.load_state_dict(payload["model"])
    if optimizer is not None and "optimizer" in payload:
        optimizer.load_state_dict(payload["optimizer"])
    if scheduler is not None and "scheduler" in payload:
        scheduler.load_state_dict(payload["scheduler"])
        _lr_from_this_schedule(scheduler)
    known = {f.name for f in fields(TrainingState)}  # a newer version's extra keys are not ours
    return TrainingState(**{k: v for k, v in payload["state"].items() if k in known})


def _lr_from_this_schedule(scheduler) -> None:
    """The next epoch's learning rate from this config's schedule (a ``LambdaLR``). The saved
    optimiser holds the LR the saved run's schedule set; when ``train.epochs`` grew on resume
    (``--set train.epochs=10`` after 5), that was the old schedule's floor, and the first new epoch
    would train at it. Without a change both are the same number."""
    epoch = scheduler.last_epoch
    for group, fn, base in zip(scheduler.optimizer.param_groups, scheduler.lr_lambdas, scheduler.base_lrs):
        group["lr"] = base * fn(epoch)


def rng_state(augment: torch.Generator | None) -> dict:
    """The random streams of this process that training draws from (all CPU byte tensors)."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if augment is not None:
        state["augment"] = augment.get_state()
    return state


def restore_rng(payload: dict, augment: torch.Generator | None) -> None:
    """Put back what :func:`rng_state` saved (nothing for an older busray's checkpoint without it)."""
    state = payload.get("rng")
    if not isinstance(state, dict) or "torch" not in state:
        return
    torch.set_rng_state(state["torch"].cpu())  # (the checkpoint may have been loaded onto a GPU)
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([t.cpu() for t in cuda])
    if augment is not None and "augment" in state:
        augment.set_state(state["augment"].cpu())

"""A sweep's identity on disk: ``<storage>/<name>/sweep.json`` with its id and Tune rounds.

The sweep id is minted once (``<name>-<UTC time>-<4 hex>``) and reused by ``--resume`` (the same Tune
experiment, restored) and ``--add-trials N`` (a new Tune *round* that continues the same Optuna study,
whose name is the sweep id). Results rows of all rounds share the id, so ``busray results show`` sees
one sweep. Starting a sweep whose folder already exists without either flag is refused rather than
silently mixing two experiments.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path

from busray.atomic import atomic_write
from busray.configtools import ConfigError

STATE_FILE = "sweep.json"


@dataclass
class SweepState:
    name: str
    sweep_id: str
    folder: str
    rounds: list[str] = field(default_factory=list)

    @property
    def tune_dir(self) -> Path:
        return Path(self.folder) / "tune"

    def new_round(self) -> str:
        name = f"round-{len(self.rounds):03d}"
        self.rounds.append(name)
        self.save()
        return name

    def save(self) -> None:
        atomic_write(Path(self.folder) / STATE_FILE, json.dumps(asdict(self), indent=1))


def open_sweep(storage: str | Path, name: str, *, resume: bool, add_trials: int | None,
               kind: str = "sweep") -> SweepState:
    """Create (fresh run) or load (``resume`` / ``add_trials``) the state of sweep ``name``."""
    folder = (Path(storage).expanduser() / name).resolve()
    path = folder / STATE_FILE
    if path.is_file():
        if not (resume or add_trials):
            raise ConfigError(f"{kind} '{name}' already exists in {folder}: use --resume to finish it"
                              + (" or --add-trials N to extend it" if kind == "sweep" else "")
                              + ", or another --storage")
        data = json.loads(path.read_text())
        return SweepState(**{**data, "folder": str(folder)})
    if resume and kind == "sweep":
        raise ConfigError(f"{kind} '{name}': nothing to resume in {folder}")
    if add_trials:
        raise ConfigError(f"{kind} '{name}': no study to add trials to in {folder}; run it first")
    folder.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
    state = SweepState(name=name, sweep_id=f"{name}-{stamp}-{secrets.token_hex(2)}", folder=str(folder))
    state.save()
    return state

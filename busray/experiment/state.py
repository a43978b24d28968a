"""A sweep's identity on disk: ``<storage>/<name>/sweep.json`` with its id and Tune rounds.

The sweep id is minted once (``<name>-<UTC time>-<4 hex>``) and reused by ``--resume`` (the same Tune
experiment, restored) and ``--add-trials N`` (a new Tune *round* that continues the same Optuna study,
whose name is the sweep id). Results rows of all rounds share the id, so ``busray results show`` sees
one sweep. Starting a sweep whose folder already exists without either flag is refused rather than
silently mixing two experiments.

``sweep.json`` is written by the first round (:meth:`SweepState.new_round`), just before Tune starts:
a sweep refused earlier (a pre-flight check, Ctrl-C while Ray starts) leaves nothing behind, and the
same command then runs as if it was never tried. A ``sweep.json`` without rounds (an older busray
wrote it before its checks) counts as absent too.

The refusals name the caller's own words (:data:`CLI_WORDS` for ``busray sweep|ablate``'s flags,
:data:`PYTHON_WORDS` for ``run_sweep``/``run_ablation``'s arguments), as
:mod:`busray.training.runguard` does for ``fit``.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path

from busray.atomic import atomic_write
from busray.configtools import ConfigError
from busray.storage import Storage

STATE_FILE = "sweep.json"


@dataclass(frozen=True)
class SweepWords:
    """How a caller spells the options of an existing sweep or ablation in its messages."""

    resume: str       # ``--resume`` or ``resume=True``
    add_trials: str   # ``--add-trials N`` or ``add_trials=N``
    storage: str      # ``--storage`` or ``storage=``


CLI_WORDS = SweepWords("--resume", "--add-trials N", "--storage")
PYTHON_WORDS = SweepWords("resume=True", "add_trials=N", "storage=")


@dataclass
class SweepState:
    """``folder``: the sweep's folder on this machine; ``location``: the same in the storage (the
    folder, or its bucket URI: where Ray Tune keeps its rounds)."""
    name: str
    sweep_id: str
    folder: str
    rounds: list[str] = field(default_factory=list)
    location: str = ""

    @property
    def tune_dir(self) -> str:
        """Ray Tune's storage path of the rounds (Tune writes a bucket itself, through pyarrow.fs)."""
        return f"{self.location or self.folder}/tune"

    def new_round(self) -> str:
        name = f"round-{len(self.rounds):03d}"
        self.rounds.append(name)
        self.save()
        return name

    def save(self) -> None:
        atomic_write(Path(self.folder) / STATE_FILE, json.dumps(asdict(self), indent=1))
        if self.location and self.location != self.folder:  # a bucket: the state file goes there too
            Storage.at(self.location.rsplit("/", 1)[0]).push(self.name, STATE_FILE)


def open_sweep(storage: "str | Path | Storage", name: str, *, resume: bool, add_trials: int | None,
               kind: str = "sweep", words: SweepWords = PYTHON_WORDS) -> SweepState:
    """Create (fresh run) or load (``resume`` / ``add_trials``) the state of sweep ``name``; refusals
    are spelled in ``words``."""
    if resume and add_trials:
        raise ConfigError(f"{words.resume} and {words.add_trials} are exclusive: resume first, then add trials")
    where = Storage.at(storage)
    where.pull(name, STATE_FILE)
    folder = where.path(name).resolve()
    saved = _saved_state(folder, where.location(name))
    folder = where.location(name) if where.remote else folder
    if saved is not None:
        if not (resume or add_trials):
            raise ConfigError(f"{kind} '{name}' already exists in {folder}: use {words.resume} to finish it"
                              + (f" or {words.add_trials} to extend it" if kind == "sweep" else "")
                              + f", or another {words.storage}")
        return saved
    if resume and kind == "sweep":
        raise ConfigError(f"{kind} '{name}': nothing to resume in {folder}")
    if add_trials:
        raise ConfigError(f"{kind} '{name}': no study to add trials to in {folder}; run it first")
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
    return SweepState(name=name, sweep_id=f"{name}-{stamp}-{secrets.token_hex(2)}",
                      folder=str(where.path(name).resolve()), location=where.location(name))


def _saved_state(folder: Path, location: str) -> SweepState | None:
    """The sweep's saved state, or None when it never started a round."""
    path = folder / STATE_FILE
    if not path.is_file():
        return None
    state = SweepState(**{**json.loads(path.read_text()), "folder": str(folder), "location": location})
    return state if state.rounds else None

"""A sweep's identity on disk: ``<storage>/<name>/sweep.json`` with its id and Tune rounds.

The sweep id is minted once (``<name>-<UTC time>-<4 hex>``) and reused by ``--resume`` (the same Tune
experiment, restored) and ``--add-trials N`` (a new Tune *round* that continues the same Optuna study,
whose name is the sweep id). Results rows of all rounds share the id, so ``busray results show`` sees
one sweep. Starting a sweep whose folder already exists without either flag is refused rather than
silently mixing two experiments.

``sweep.json`` is written by the first round (:meth:`SweepState.new_round`), just before Tune starts:
a sweep refused earlier (a pre-flight check, Ctrl-C while Ray starts) leaves nothing behind, and the
same command then runs as if it was never tried. A sweep whose round never got going counts as never
started too (:func:`never_started`: Tune saved no experiment for its last round and the store holds
none of its trials -- a start that failed inside Tune's set-up, or a ``sweep.json`` without rounds
that an older busray wrote before its checks): the same command runs it afresh, under the same sweep
id (its Optuna study, if one was created, is still empty), and so does ``--resume``.

Each round records its space (``spaces``, by round name): ``--add-trials`` with a space that differs
from the last recorded one is refused unless allowed (``--allow-new-space``), since one study would
then mix trials drawn from two spaces. A damaged ``sweep.json`` or Optuna journal
(:func:`check_journal`) is refused naming the file and what to do, before Optuna or Tune read it.

The refusals name the caller's own words (:data:`CLI_WORDS` for ``busray sweep|ablate``'s flags,
:data:`PYTHON_WORDS` for ``run_sweep``/``run_ablation``'s arguments), as
:mod:`busray.training.runguard` does for ``fit``.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import secrets
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Sequence

from busray.atomic import atomic_write
from busray.configtools import ConfigError
from busray.experiment.request import RunRequest
from busray.experiment.space import space_change
from busray.results import STATUSES, ResultsStore
from busray.storage import Storage

STATE_FILE = "sweep.json"
JOURNAL = "optuna.journal"  # <storage>/<name>/optuna.journal: a sweep's Optuna study
#: Tune saves a round's experiment as ``experiment_state-<time>.json`` in ``<sweep>/tune/<round>/``
#: (Ray 2.60's ``TuneController.CKPT_FILE_TMPL``) once it runs, before any trial can end.
TUNE_STATE = re.compile(r"^experiment_state.*\.json$")


@dataclass(frozen=True)
class SweepWords:
    """How a caller spells the options of an existing sweep or ablation in its messages."""

    resume: str           # ``--resume`` or ``resume=True``
    add_trials: str       # ``--add-trials N`` or ``add_trials=N``
    storage: str          # ``--storage`` or ``storage=``
    allow_new_space: str  # ``--allow-new-space`` or ``allow_new_space=True``


CLI_WORDS = SweepWords("--resume", "--add-trials N", "--storage", "--allow-new-space")
PYTHON_WORDS = SweepWords("resume=True", "add_trials=N", "storage=", "allow_new_space=True")


@dataclass
class SweepState:
    """``folder``: the sweep's folder on this machine; ``location``: the same in the storage (the
    folder, or its bucket URI: where Ray Tune keeps its rounds)."""
    name: str
    sweep_id: str
    folder: str
    rounds: list[str] = field(default_factory=list)
    location: str = ""
    spaces: dict[str, dict] = field(default_factory=dict)  # round name -> its space (space_record)

    @property
    def tune_dir(self) -> str:
        """Ray Tune's storage path of the rounds (Tune writes a bucket itself, through pyarrow.fs)."""
        return f"{self.location or self.folder}/tune"

    def new_round(self, space: dict | None = None) -> str:
        """Start the next round (saved now); ``space``: its space, as ``space_record`` gives it."""
        name = f"round-{len(self.rounds):03d}"
        self.rounds.append(name)
        if space is not None:
            self.spaces[name] = space
        self.save()
        return name

    def last_space(self) -> tuple[str, dict] | None:
        """The latest round that recorded its space, and that space (None: none did)."""
        return next(((r, self.spaces[r]) for r in reversed(self.rounds) if r in self.spaces), None)

    def save(self) -> None:
        atomic_write(Path(self.folder) / STATE_FILE, json.dumps(asdict(self), indent=1))
        if self.location and self.location != self.folder:  # a bucket: the state file goes there too
            Storage.at(self.location.rsplit("/", 1)[0]).push(self.name, STATE_FILE)


def open_sweep(storage: "str | Path | Storage", name: str, *, resume: bool, add_trials: int | None,
               kind: str = "sweep", words: SweepWords = PYTHON_WORDS, space: dict | None = None,
               allow_new_space: bool = False) -> SweepState:
    """Create (fresh run) or load (``resume`` / ``add_trials``) the state of sweep ``name``; refusals
    are spelled in ``words``. ``space`` (``space_record`` of the file's space): with ``add_trials``, a
    space other than the last round's is refused unless ``allow_new_space``."""
    if resume and add_trials:
        raise ConfigError(f"{words.resume} and {words.add_trials} are exclusive: resume first, then add trials")
    where = Storage.at(storage)
    where.pull(name, STATE_FILE)
    folder = where.path(name).resolve()
    saved = _saved_state(folder, where.location(name), where)
    folder = where.location(name) if where.remote else folder
    fresh = None
    if saved is not None and never_started(saved, where):  # its own id again: the study it made is empty
        fresh, saved = replace(saved, rounds=[], spaces={}), None
    if saved is not None:
        if not (resume or add_trials):
            raise ConfigError(f"{kind} '{name}' already exists in {folder}: use {words.resume} to finish it"
                              + (f" or {words.add_trials} to extend it" if kind == "sweep" else "")
                              + f", or another {words.storage}")
        if add_trials and space is not None and not allow_new_space:
            _check_same_space(saved, space, words)
        return saved
    if resume and kind == "sweep" and fresh is None:
        raise ConfigError(f"{kind} '{name}': nothing to resume in {folder}")
    if add_trials:
        raise ConfigError(f"{kind} '{name}': no study to add trials to in {folder}; run it first")
    if fresh is not None:
        return fresh
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
    return SweepState(name=name, sweep_id=f"{name}-{stamp}-{secrets.token_hex(2)}",
                      folder=str(where.path(name).resolve()), location=where.location(name))


def never_started(state: SweepState, storage: Storage) -> bool:
    """Whether the sweep never got going: Tune saved no experiment for its rounds (no
    ``experiment_state*.json`` in ``<sweep>/tune/<round>/``: Tune's set-up failed, or the driver died
    before Tune's first snapshot) and the store holds no trial of the sweep. Files only (the storage's
    own, a bucket's too), no Tune. ``--resume`` and a plain rerun then start it afresh."""
    for round_name in reversed(state.rounds):  # the last one first: it decides for a sweep that ran
        if any(TUNE_STATE.match(n) for n in storage.names(state.name, "tune", round_name)):
            return False
    return not ResultsStore(storage).trial_keys(state.sweep_id, STATUSES)


def runs_left(state: SweepState, storage: Storage, requests: Sequence[RunRequest]) -> list[RunRequest]:
    """The fixed runs (an ablation's) that ``--resume`` still runs: those whose key the store does not
    hold as completed (a cut run continues in its folder, a failed one runs again)."""
    done = ResultsStore(storage).trial_keys(state.sweep_id)
    return [r for r in requests if r.key not in done]


def check_journal(storage: Storage, state: SweepState) -> None:
    """Refuse a damaged Optuna journal (``<sweep>/optuna.journal``: one JSON record per line) before
    Optuna reads it or appends to it, naming the file and what to do: a record cut short (a full disk,
    a copy interrupted) or one that is not JSON would otherwise fail deep in Optuna with a bare JSON
    message, or be glued to the next record Optuna appends."""
    storage.pull(state.name, JOURNAL)
    path = storage.path(state.name, JOURNAL)
    if not path.is_file():
        return
    where = storage.location(state.name, JOURNAL)
    *lines, tail = path.read_bytes().split(b"\n")
    if tail.strip():
        raise ConfigError(f"{where}: the Optuna journal is cut short (its last record, line {len(lines) + 1}, "
                          f"is incomplete); restore the file from a copy, or delete that line to keep the "
                          f"{len(lines)} complete record{'s' if len(lines) != 1 else ''}")
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except ValueError as err:
            record, reason = None, _json_problem(err)
        else:
            reason = "not a journal record"
        if not (isinstance(record, dict) and "op_code" in record):
            raise ConfigError(f"{where}: line {number} is damaged ({reason}); restore the file from a copy, or "
                              f"move it aside to start the study afresh (the store keeps the recorded trials, "
                              f"the search forgets them)")


def _check_same_space(state: SweepState, space: dict, words: SweepWords) -> None:
    """``--add-trials`` continues one study: a changed space is refused unless allowed."""
    last = state.last_space()
    change = space_change(last[1], space) if last else None
    if change:
        raise ConfigError(f"sweep '{state.name}': the space changed since {last[0]} ({change}): one study would "
                          f"mix trials drawn from two spaces; pass {words.allow_new_space} to add them anyway, "
                          f"or give the new space another sweep name")


def _saved_state(folder: Path, location: str, storage: Storage) -> SweepState | None:
    """The sweep's saved state (None when there is none); a damaged file is named, with what to do."""
    path = folder / STATE_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        state = SweepState(**{**data, "folder": str(folder), "location": location})
        if not (isinstance(state.sweep_id, str) and isinstance(state.rounds, list)
                and isinstance(state.spaces, dict)):
            raise TypeError("a field has the wrong type")
    except (ValueError, TypeError) as err:
        reason = _json_problem(err) if isinstance(err, ValueError) else str(err).replace("SweepState.", "")
        raise ConfigError(f"{storage.location(folder.name, STATE_FILE) if storage.remote else path}: not a "
                          f"readable sweep state ({reason}); restore the file from a copy, or move the folder "
                          f"{location} aside to run the sweep afresh") from None
    return state


def _json_problem(err: ValueError) -> str:
    """``not JSON (Unterminated string starting at char 32)``: json's message without its line/column."""
    if isinstance(err, json.JSONDecodeError):
        return f"not JSON ({err.msg.removesuffix(' at')} at char {err.pos})"
    return str(err)

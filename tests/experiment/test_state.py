"""Sweep state on disk: a start Tune never saved counts as never started (in a folder and in a bucket), a
damaged ``sweep.json`` or Optuna journal is named with what to do, each round records its space and
``add_trials`` with another space is refused unless allowed."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from busray.configtools import ConfigError
from busray.experiment import load_sweep_spec, open_sweep
from busray.experiment.space import space_record
from busray.experiment.state import CLI_WORDS, JOURNAL, check_journal, never_started
from busray.storage import Storage
from tinyrun import round_saved_by_tune

TINY_SPEC = Path(__file__).parents[1] / "sweep" / "fixtures" / "tiny.yaml"


def _space(*overrides: str) -> dict:
    return space_record(load_sweep_spec(TINY_SPEC, overrides).space)


def _started(storage, name: str = "s", space: dict | None = None):
    state = open_sweep(storage, name, resume=False, add_trials=None)
    state.new_round(space)
    round_saved_by_tune(state)
    return state


def test_a_round_tune_never_saved_leaves_nothing_that_blocks_the_same_command(tmp_path):
    """What a start that failed inside Tune's set-up leaves (sweep.json with its round, tuner.pkl, an
    empty study): the same command runs, under the same id, from round 0 again."""
    state = open_sweep(tmp_path, "s", resume=False, add_trials=None)
    state.new_round(_space())
    (Path(state.folder) / "tune" / "round-000").mkdir(parents=True)
    (Path(state.folder) / "tune" / "round-000" / "tuner.pkl").write_bytes(b"x")
    again = open_sweep(tmp_path, "s", resume=False, add_trials=None, space=_space())
    assert (again.sweep_id, again.rounds, again.spaces) == (state.sweep_id, [], {})
    assert again.new_round() == "round-000"


def test_a_started_sweep_in_a_bucket_is_found_there(s3):
    storage = Storage.at(s3)
    state = open_sweep(storage, "s", resume=False, add_trials=None)
    state.new_round()
    assert never_started(state, storage)
    round_saved_by_tune(state)  # in the mirror only: Tune writes the bucket itself
    assert never_started(state, storage)
    storage.push(state.name, "tune")
    assert not never_started(state, Storage.at(s3))
    assert storage.names(state.name, "tune", "round-000") == ["experiment_state-2026-01-01_00-00-00.json"]


@pytest.mark.parametrize("text, reason", [
    ('{"name": "s", "sweep_id": "s-1", "rou', "not a readable sweep state (not JSON (Unterminated string "
                                               "starting at char 33))"),
    ("", "not a readable sweep state (not JSON (Expecting value at char 0))"),
    ('{"name": "s", "sweep_id": "s-1", "colour": 1}', "not a readable sweep state (__init__() got an unexpected"),
    ('{"name": "s", "sweep_id": 1, "rounds": ["round-000"]}', "not a readable sweep state (a field has the wrong"),
])
def test_a_damaged_sweep_json_is_named_with_what_to_do(tmp_path, text, reason):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "sweep.json").write_text(text)
    with pytest.raises(ConfigError) as err:
        open_sweep(tmp_path, "s", resume=True, add_trials=None)
    message = str(err.value)
    assert message.startswith(f"{tmp_path / 's' / 'sweep.json'}: {reason}"), message
    assert message.endswith(f"restore the file from a copy, or move the folder {tmp_path / 's'} aside to run "
                            "the sweep afresh") and "\n" not in message


def _journal_with_trials(path: Path, name: str) -> bytes:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(study_name=name, storage=JournalStorage(JournalFileBackend(str(path))))
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    return path.read_bytes()


@pytest.mark.parametrize("damage, message", [
    (lambda data: data[:-10], "the Optuna journal is cut short (its last record, line 10, is incomplete); "
                              "restore the file from a copy, or delete that line to keep the 9 complete records"),
    # cut short, then Optuna appended a record to the broken line
    (lambda data: data[:300] + data[-120:], "line 3 is damaged (not JSON (Expecting ':' delimiter at char "),
    (lambda data: b"[1, 2]\n" + data, "line 1 is damaged (not a journal record)"),
])
def test_a_damaged_journal_is_named_before_optuna_reads_it(tmp_path, damage, message):
    state = _started(tmp_path)
    path = tmp_path / "s" / JOURNAL
    data = _journal_with_trials(path, state.sweep_id)
    check_journal(Storage.at(tmp_path), state)  # intact
    path.write_bytes(damage(data))
    with pytest.raises(ConfigError) as err:
        check_journal(Storage.at(tmp_path), state)
    assert str(err.value).startswith(f"{path}: {message}"), str(err.value)


def test_each_round_records_its_space_and_added_trials_keep_it(tmp_path):
    state = _started(tmp_path, space=_space())
    assert json.loads((tmp_path / "s" / "sweep.json").read_text())["spaces"] == {"round-000": _space()}
    same = open_sweep(tmp_path, "s", resume=False, add_trials=2, space=_space())
    assert same.sweep_id == state.sweep_id
    changed = _space("space.model.tau.low=0.3")
    with pytest.raises(ConfigError) as err:
        open_sweep(tmp_path, "s", resume=False, add_trials=2, space=changed, words=CLI_WORDS)
    assert str(err.value) == ("sweep 's': the space changed since round-000 (space.model.tau: low 0.1 -> 0.3): one "
                              "study would mix trials drawn from two spaces; pass --allow-new-space to add them "
                              "anyway, or give the new space another sweep name")
    with pytest.raises(ConfigError, match=r"\(space.train.lr removed\).* pass allow_new_space=True"):
        open_sweep(tmp_path, "s", resume=False, add_trials=2, space={k: v for k, v in _space().items()
                                                                     if k != "train.lr"})
    allowed = open_sweep(tmp_path, "s", resume=False, add_trials=2, space=changed, allow_new_space=True)
    allowed.new_round(changed)
    assert allowed.last_space() == ("round-001", changed)
    assert open_sweep(tmp_path, "s", resume=False, add_trials=2, space=changed).rounds == ["round-000", "round-001"]

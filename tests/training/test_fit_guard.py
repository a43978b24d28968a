"""``fit``'s run folder follows ``busray train``'s rules, and its refusals name Python arguments.

The rules themselves (busray/training/runguard.py) are exercised through the CLI in tests/cli; here:
the same refusals reached from Python, worded as ``run_dir``/``resume=True``/``overwrite=True``, and
the two ways out (resume, overwrite) doing what the message promises.
"""

from __future__ import annotations

import shutil

import pytest

from busray.config import load_config
from busray.training import NullReporter, fit
from busray.training.runguard import RunFolderError

from tinyrun import tiny


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A completed one-epoch run to copy, and its outcome."""
    run = tmp_path_factory.mktemp("guard") / "r"
    outcome = fit(load_config(None, tiny("train.epochs=1")), run_dir=run)
    assert outcome.status == "completed"
    return run, outcome


def _copy(finished, tmp_path):
    run = tmp_path / "r"
    shutil.copytree(finished[0], run)
    return run


REFUSALS = [  # (name, fit's keyword arguments given the run folder, words the message must hold)
    ("finished-run", lambda run: {"run_dir": run}, ("run_dir:", "already holds a run", "resume=True",
                                                    "overwrite=True")),
    ("resume-and-overwrite", lambda run: {"run_dir": run, "resume": True, "overwrite": True},
     ("resume=True and overwrite=True",)),
    ("resume-without-run-dir", lambda run: {"resume": True}, ("resume=True needs run_dir",)),
    ("not-a-run", lambda run: {"run_dir": run / "checkpoints"}, ("not a run folder", "new run_dir")),
    ("resume-nothing", lambda run: {"run_dir": run.parent / "empty", "resume": True}, ("last.pt not found",)),
    ("a-file", lambda run: {"run_dir": run / "config.yaml"}, ("run_dir:", "is a file")),
]


@pytest.mark.parametrize("case", REFUSALS, ids=[c[0] for c in REFUSALS])
def test_refusals_name_python_arguments_and_touch_nothing(case, finished, tmp_path):
    _, kwargs, words = case
    run = _copy(finished, tmp_path)
    before = sorted((p.relative_to(tmp_path), p.stat().st_mtime_ns) for p in tmp_path.rglob("*"))
    with pytest.raises(RunFolderError) as err:
        fit(load_config(None, tiny("train.epochs=1")), **kwargs(run))
    for word in words:
        assert word in str(err.value)
    assert "--" not in str(err.value)  # no command-line flag in a Python error
    assert sorted((p.relative_to(tmp_path), p.stat().st_mtime_ns) for p in tmp_path.rglob("*")) == before


def test_resume_with_another_config_is_refused_and_the_advice_works(finished, tmp_path):
    run = _copy(finished, tmp_path)
    with pytest.raises(RunFolderError, match=r"model\.tau is 0\.5 .*load_config\('.*config\.yaml'\)"):
        fit(load_config(None, tiny("train.epochs=2", "model.tau=0.5")), run_dir=run, resume=True)
    resumed = fit(load_config(str(run / "config.yaml"), ["train.epochs=2"]), run_dir=run, resume=True)
    assert resumed.status == "completed" and [row["epoch"] for row in resumed.history] == [1, 2]
    assert resumed.history[:1] == finished[1].history  # epoch 1 was not trained again


def test_overwrite_replaces_the_run_and_keeps_no_copy(finished, tmp_path):
    run = _copy(finished, tmp_path)
    again = fit(load_config(None, tiny("train.epochs=1", "train.seed=1")), run_dir=run, overwrite=True)
    assert again.status == "completed" and load_config(str(run / "config.yaml")).train.seed == 1
    assert [p.name for p in tmp_path.iterdir()] == ["r"]  # the old run's hidden copy is gone


def test_a_reporter_owns_its_folder_so_resume_and_overwrite_are_refused(tmp_path):
    with pytest.raises(ValueError, match="reporter"):
        fit(load_config(None, tiny()), NullReporter(), tmp_path / "r", overwrite=True)
    assert not (tmp_path / "r").exists()

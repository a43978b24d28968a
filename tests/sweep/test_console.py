"""What the sweep console prints for each trial event (no Ray cluster: Tune's hooks called directly)."""

from __future__ import annotations

import pickle
from types import SimpleNamespace

import pytest

from busray.objective import Objective
from busray.runfolder import RunOutcome
from busray.sweep.console import ConsoleCallback
from busray.sweep.trial import RUN_KEY


def _outcome(status: str, error: str | None = None, epochs: int = 4) -> RunOutcome:
    outcome = RunOutcome(best_epoch=2, epochs_run=epochs, val={"score": 0.4567},
                         test={"seg/iou": 0.41, "clf/acc": 0.8} if status == "completed" else {})
    return outcome.finish(status, error)


@pytest.mark.parametrize("trial_id, config, outcome, started, ended", [
    ("a08529ac", {"loss.w_seg": 0.712345, "model.tau": 0.85}, _outcome("completed"),
     "[1/2] a08529ac started   loss.w_seg=0.7123  model.tau=0.85",
     "[1/2] a08529ac completed val/score 0.457 (best epoch 2), test seg/iou 0.410 clf/acc 0.800"),
    ("a8c6e_00003", {RUN_KEY: "full-s3"}, _outcome("stopped_early", epochs=3),
     "[1/2] a8c6e_00003 started   run full-s3",
     "[1/2] a8c6e_00003 stopped   by ASHA after epoch 3: val/score 0.457 (best epoch 2)"),
    ("9c7d1e2a", {"loss.w_seg": 0.6, "model.tau": 1.0}, _outcome("failed", "NonFiniteLoss: epoch 2"),
     "[1/2] 9c7d1e2a started   loss.w_seg=0.6  model.tau=1",
     "[1/2] 9c7d1e2a failed    NonFiniteLoss: epoch 2"),
])
def test_one_line_per_event_with_the_whole_trial_id(capsys, trial_id, config, outcome, started, ended):
    console = ConsoleCallback(2, Objective.parse("val/score:max"), ["loss.w_seg", "model.tau"], show_bar=False)
    trial = SimpleNamespace(trial_id=trial_id, config=config)
    console.on_trial_start(0, [trial], trial)
    console.on_trial_result(0, [trial], trial, {"epoch": 1})
    console.recorded(trial, outcome)
    console.close()
    assert capsys.readouterr().out.splitlines() == [started, ended]


def test_pickled_console_keeps_its_state_but_not_the_bar():
    console = ConsoleCallback(3, Objective.parse("val/loss:min"), [], show_bar=False)
    console.started["t1"] = 1
    copy = pickle.loads(pickle.dumps(console))
    assert copy.started == {"t1": 1} and copy.total == 3 and copy.bar.disable

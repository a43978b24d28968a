"""Progress lines where no bar is drawn (a log file): at most one a minute per trial, with the pace."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from busray.experiment import ResourcesSpec, build_request
from busray.objective import Objective
from busray.sweep.console import ConsoleCallback
from busray.sweep.heartbeat import EVERY_S, Heartbeat, duration
from busray.sweep.job import REQUEST_KEY


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("seconds, text", [
    (0.4, "0 s"), (45, "45 s"), (60, "1 min"), (163.2, "2 min 43 s"), (3600, "1 h"), (5700, "1 h 35 min"),
])
def test_durations_read_at_a_glance(seconds, text):
    assert duration(seconds) == text


def test_one_line_a_minute_with_the_best_value_and_the_time_to_go():
    clock = Clock()
    beat = Heartbeat(Objective.parse("val/score:max"), clock=clock)
    beat.start("r")
    lines = []
    for epoch, score in enumerate([0.5, 0.634, 0.61, 0.612], start=1):
        clock.now += 40  # an epoch every 40 s: a line every second epoch
        lines.append(beat.line("r", {"epoch": epoch, "val/score": score, "time/epoch_s": 40.0}, 40))
    assert lines[0] is None and lines[2] is None
    assert lines[1] == ("epoch 2/40", "val/score 0.634 (best 0.634, epoch 2), 40 s an epoch, ~25 min 20 s to epoch 40")
    assert lines[3] == ("epoch 4/40", "val/score 0.612 (best 0.634, epoch 2), 40 s an epoch, ~24 min to epoch 40")


def test_a_minimised_metric_and_a_missing_value_and_the_last_epoch():
    clock = Clock()
    beat = Heartbeat(Objective.parse("val/loss:min"), every_s=0, clock=clock)
    assert beat.line("r", {"epoch": 1, "val/loss": 0.9}, 2)[1] == "val/loss 0.900 (best 0.900, epoch 1)"
    assert beat.line("r", {"epoch": 2, "val/loss": 0.7, "time/epoch_s": 3.0}, 2)[1] == \
        "val/loss 0.700 (best 0.700, epoch 2), 3 s an epoch"  # nothing left to go
    assert beat.line("s", {"epoch": 1, "val/loss": float("nan")}, 2)[1] == "val/loss n/a"


def _trial(name: str, epochs: int) -> SimpleNamespace:
    request = build_request({"train": {"epochs": epochs}}, seed=0, objective=Objective.parse("val/score:max"),
                            resources=ResourcesSpec(), values={}, name=name)
    return SimpleNamespace(trial_id=name, config={REQUEST_KEY: request.to_dict()})


def test_the_console_without_a_bar_writes_each_trials_line_when_due(capsys):
    console = ConsoleCallback(2, Objective.parse("val/score:max"), [], show_bar=False)
    clock = Clock()
    console.heartbeat.clock = clock
    slow, fast = _trial("slow", 40), _trial("fast", 3)
    for trial in (slow, fast):
        console.on_trial_start(0, [slow, fast], trial)
    clock.now += EVERY_S + 1
    console.on_trial_result(0, [slow, fast], slow, {"epoch": 1, "val/score": 0.5, "time/epoch_s": 61.0})
    console.on_trial_result(0, [slow, fast], slow, {"epoch": 2, "val/score": 0.6, "time/epoch_s": 61.0})
    assert capsys.readouterr().out.splitlines() == [
        "[1/2] slow started", "[2/2] fast started",
        "[1/2] slow epoch 1/40 val/score 0.500 (best 0.500, epoch 1), 1 min 1 s an epoch, ~39 min 39 s to epoch 40"]


def test_a_terminal_gets_the_bar_and_no_progress_lines():
    assert ConsoleCallback(1, Objective.parse("val/score:max"), [], show_bar=True).heartbeat is None

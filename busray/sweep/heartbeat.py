"""Progress lines for a console with no bar: a log file, ``ray job logs``, a batch scheduler's output.

The tqdm bar (:mod:`busray.sweep.console`) is drawn only on a terminal. A sweep or an ablation run
with ``nohup ... > log`` or submitted with ``ray job submit`` would otherwise say nothing between a
trial's ``started`` and its end, which on a CPU can be hours apart (one 224 px BUSI run of
``ablations/reference_cpu.yaml``: about 1.8 h on 2 cores). There, each running trial gets at most one
line every ``EVERY_S`` seconds, written on the epoch report that comes due::

    [1/3] full-s0-3421bd92 epoch 5/40 val/score 0.612 (best 0.634, epoch 4), 2 min 43 s an epoch, ~1 h 35 min to epoch 40

The time to go is the mean epoch time this driver has seen times the epochs left: a ceiling when ASHA or
``train.patience`` ends the run earlier. Trials shorter than ``EVERY_S`` (the demo's) end before their
first line is due, so short sweeps print what they printed before.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Mapping

from busray.objective import Objective

#: Seconds between two progress lines of one trial.
EVERY_S = 60.0


@dataclass
class _Pace:
    """One running trial, as far as its progress lines go."""
    since: float  # when its last line was written (or it started)
    best: float | None = None
    best_epoch: int = 0
    seconds: float = 0.0  # the epoch times reported so far, summed
    timed: int = 0  # how many epochs reported a time


class Heartbeat:
    """Decides when a running trial's next progress line is due and words it."""

    def __init__(self, objective: Objective, every_s: float = EVERY_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.objective, self.every_s, self.clock = objective, every_s, clock
        self.paces: dict[str, _Pace] = {}

    def start(self, run_id: str) -> None:
        self.paces[run_id] = _Pace(self.clock())

    def end(self, run_id: str) -> None:
        self.paces.pop(run_id, None)

    def line(self, run_id: str, result: Mapping[str, object], epochs: int) -> tuple[str, str] | None:
        """``(event, text)`` for the console when ``run_id``'s line is due with this epoch report, else
        None. Every report counts towards the best value and the epoch time, due or not."""
        pace = self.paces.setdefault(run_id, _Pace(self.clock()))
        epoch = int(result.get("epoch", 0) or 0)
        value = self.objective.value(result)
        if self.objective.better(value, pace.best):
            pace.best, pace.best_epoch = value, epoch
        seconds = result.get("time/epoch_s")
        if isinstance(seconds, (int, float)) and seconds > 0:
            pace.seconds, pace.timed = pace.seconds + float(seconds), pace.timed + 1
        now = self.clock()
        if now - pace.since < self.every_s:
            return None
        pace.since = now
        return f"epoch {epoch}/{epochs}", self._text(pace, value, epoch, epochs)

    def _text(self, pace: _Pace, value: float | None, epoch: int, epochs: int) -> str:
        name = self.objective.metric
        text = f"{name} n/a" if value is None else f"{name} {value:.3f}"
        if pace.best is not None:
            text += f" (best {pace.best:.3f}, epoch {pace.best_epoch})"
        if pace.timed:
            mean = pace.seconds / pace.timed
            text += f", {duration(mean)} an epoch"
            if epoch < epochs:
                text += f", ~{duration(mean * (epochs - epoch))} to epoch {epochs}"
        return text


def duration(seconds: float) -> str:
    """``45 s``, ``2 min 43 s``, ``1 h 35 min``: what a person reads at a glance."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s" if seconds else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"

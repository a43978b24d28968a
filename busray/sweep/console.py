"""The sweep console: one line per trial event, a progress bar, the best trials and what to do next.

Tune's own output (status tables, per-result boxes) is off (``verbose=0``) and workers' log lines are
not forwarded (``log_to_driver=False``) unless ``--verbose``. What a researcher sees instead::

    sweep smoke (smoke-20261126T120000-ab12): 4 trials, objective val/score:max, storage /srv/demo
    Ray dashboard: http://127.0.0.1:8265
    [1/4] a08529ac started   model.tau=0.85  loss.w_seg=0.71  train.lr=0.0012
    [1/4] a08529ac stopped   by ASHA after epoch 3: val/score 0.222 (best epoch 2)
    [2/4] 01f970e5 completed val/score 0.459 (best epoch 7), test seg/iou 0.41 clf/acc 0.80
    [3/4] 9c7d1e2a failed    NonFiniteLoss: non-finite loss at epoch 2

Run ids are printed whole: they are the store's ``trial_id`` and the run folder's name. A sweep's are
Tune's 8-hex-digit trial ids; an ablation's name the variant and seed, ``full-s0-3fa2b1c4``
(:meth:`busray.sweep.trial.TrialJob.run_id`).

A tqdm bar (trials done / total, epoch of the running trials) is drawn on stderr only when stderr
is a terminal; event lines go through ``tqdm.write`` so the two never tear. No escape codes are
written when output is not a terminal; there (a log file, ``ray job logs``) each running trial gets a
progress line a minute instead (:mod:`busray.sweep.heartbeat`)::

    [1/3] full-s0-3421bd92 epoch 5/40 val/score 0.612 (best 0.634, epoch 4), 2 min 43 s an epoch, ~1 h 35 min to epoch 40

Ctrl-C is Tune's to handle (it saves the experiment state and stops the running trials; ``--resume``
takes up what is left); the console only says so the moment it happens, since the stop takes a few
seconds: it wraps the SIGINT handler Tune installed, and puts it back when the sweep ends. SIGTERM
(``timeout``, systemd, a batch scheduler) gets the same treatment -- Tune itself leaves SIGTERM
fatal, which skips the summary and Tune's last save -- and a second one quits at once.
"""

from __future__ import annotations

import signal
import sys
from typing import Any

from ray.tune import Callback
from tqdm import tqdm

from busray.configtools import flatten
from busray.experiment import RunRequest
from busray.objective import Objective
from busray.runfolder import RunOutcome
from busray.sweep.heartbeat import Heartbeat
from busray.sweep.job import FINAL_FLAG, request_of, run_id_of

WORDS = {"completed": "completed", "stopped_early": "stopped", "failed": "failed"}
#: The signals that stop a sweep cleanly, by the name the console and the summary give them.
STOP_SIGNALS = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}


def interrupt_notice(name: str) -> str:
    """What the console prints the moment ``name`` (``Ctrl-C``, ``SIGTERM``) arrives."""
    return (f"{name}: stopping the running trials, not recording them; --resume takes up what is "
            f"left ({name} again quits at once)")


INTERRUPT_NOTICE = interrupt_notice("Ctrl-C")


class ConsoleCallback(Callback):
    """Prints trial events; :meth:`recorded` is given to the recording callback (row written)."""

    def __init__(self, total: int, objective: Objective, swept: list[str], show_bar: bool | None = None,
                 recorded: frozenset[str] = frozenset()) -> None:
        self.total = max(1, total)
        self.recorded_before = recorded  # run ids the store held when a --resume began
        self.objective = objective
        self.swept = swept
        self.done = 0
        self.before = -1  # trials of this round recorded before this driver (a --resume); -1: not yet known
        self.started: dict[str, int] = {}
        self.epochs: dict[str, int] = {}
        tty = sys.stderr.isatty() if show_bar is None else show_bar
        self.bar = tqdm(total=total, unit="trial", desc="trials", file=sys.stderr, disable=not tty,
                        dynamic_ncols=True, leave=False)
        self.heartbeat = None if tty else Heartbeat(objective)  # no bar: a progress line a minute a trial
        self._handlers: dict = {}  # signal -> (the handler before ours, ours) while a sweep runs
        self.interrupted = ""  # the STOP_SIGNALS name of the signal that stopped the sweep, if any

    def __getstate__(self) -> dict:
        """Tune pickles its run config (callbacks included) into the experiment folder: drop the bar
        and the signal handler."""
        return {k: v for k, v in self.__dict__.items() if k not in ("bar", "_handlers")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.bar = tqdm(disable=True)
        self._handlers = {}

    # ------------------------------------------------------------------ Tune hooks
    def setup(self, **info) -> None:
        """Tune calls this after installing its SIGINT handler: on SIGINT or SIGTERM, announce the
        stop, then hand it to Tune's handler."""
        tune_handler = signal.getsignal(signal.SIGINT)
        if not callable(tune_handler):
            return

        def announce_then_stop(signum, frame):
            self.interrupted = STOP_SIGNALS.get(signum, "Ctrl-C")
            self.write(interrupt_notice(self.interrupted))
            self._restore(signal.SIGTERM)  # a second SIGTERM quits at once, as a second Ctrl-C does
            tune_handler(signal.SIGINT, frame)  # Tune's: stop the experiment, restore SIGINT's handler

        try:
            for signum in STOP_SIGNALS:
                self._handlers[signum] = (signal.signal(signum, announce_then_stop), announce_then_stop)
        except ValueError:  # not the main thread: Tune's handler stays as it is
            self._handlers = {}

    def on_trial_start(self, iteration: int, trials: list, trial, **info) -> None:
        if self.before < 0:  # a resumed round numbers its trials on from those already recorded
            self.before = sum(self.run_id(t) in self.recorded_before for t in trials)
            self.done += self.before
            self.bar.update(self.before)
        run_id = self.run_id(trial)
        if run_id not in self.started:
            self.started[run_id] = self.before + len(self.started) + 1
        if self.heartbeat is not None:
            self.heartbeat.start(run_id)
        self.say(run_id, "started", format_params(request_of(trial.config).recorded(), self.swept))

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info) -> None:
        if not result.get(FINAL_FLAG):
            request = request_of(trial.config)  # parsed once per report: the bar and the progress line
            self.epochs[request.name] = int(result.get("epoch", 0))
            running = ", ".join(f"{t}@{e}" for t, e in self.epochs.items())
            self.bar.set_postfix_str(f"epoch {running}", refresh=True)
            self._pulse(request, result)

    def recorded(self, trial, outcome: RunOutcome) -> None:
        """Called by the recording callback once a trial's row is written."""
        run_id = self.run_id(trial)
        self.epochs.pop(run_id, None)
        if self.heartbeat is not None:
            self.heartbeat.end(run_id)
        self.done += 1
        self.bar.update(1)
        self.say(run_id, WORDS.get(outcome.status, outcome.status), self.describe(outcome))

    def run_id(self, trial) -> str:
        """The id the store and the run folder give a Tune trial: its request's name."""
        return run_id_of(trial)

    def _pulse(self, request: RunRequest, result: dict) -> None:
        """With no bar, the trial's progress line when one is due (:mod:`busray.sweep.heartbeat`)."""
        if self.heartbeat is None:
            return
        due = self.heartbeat.line(request.name, result, int(request.config["train"]["epochs"]))
        if due is not None:
            self.say(request.name, *due)

    # ------------------------------------------------------------------ text
    def describe(self, outcome: RunOutcome) -> str:
        if outcome.status == "failed":
            return outcome.error or "failed"
        name = self.objective.metric
        value = outcome.metric_columns().get(name)
        score = f"{name} {value:.3f}" if value is not None else f"{name} n/a"
        text = f"{score} (best epoch {outcome.best_epoch})"
        if outcome.status == "stopped_early":
            return f"by ASHA after epoch {outcome.epochs_run}: {text}"
        tests = [f"{k} {outcome.test[k]:.3f}" for k in ("seg/iou", "clf/acc") if outcome.test.get(k) is not None]
        return text + (f", test {' '.join(tests)}" if tests else "")

    def say(self, trial_id: str, event: str, text: str) -> None:
        index = self.started.get(trial_id, self.done + 1)
        self.write(f"[{index}/{self.total}] {trial_id} {event:<9} {text}".rstrip())

    def write(self, line: str) -> None:
        tqdm.write(line, file=sys.stdout)
        sys.stdout.flush()

    def close(self) -> None:
        self.bar.close()
        for signum in list(self._handlers):
            self._restore(signum)  # the handlers from before the sweep (Tune's, for SIGINT) back

    def _restore(self, signum) -> None:
        previous, ours = self._handlers.pop(signum, (None, None))
        if ours is not None and signal.getsignal(signum) is ours:
            signal.signal(signum, previous)


def format_params(recorded: dict, swept: list[str]) -> str:
    """The searched values of a trial's recorded config as ``key=value`` pairs (none for a fixed run:
    its run id names it)."""
    flat = flatten(recorded)
    return "  ".join(f"{k}={_short(flat[k])}" for k in swept if k in flat)


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


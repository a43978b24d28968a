"""What a sweep (or a fixed-config run of an ablation) produced, as its driver tells the user.

:class:`SweepOutcome` is read back from the results store once Tune is done: counts by status, the
best trials by the sweep's objective, the failed trials' errors, and, when Ctrl-C or SIGTERM ended
it, the trials it cut short. Its :meth:`~SweepOutcome.summary` is what ``busray sweep`` prints last:
the result, then what to do next.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from typing import Sequence

import pandas as pd

from busray.objective import Objective
from busray.results import STATUSES, ResultsStore
from busray.results.query import counts_text, format_table, pareto_note, show_table
from busray.storage import Storage
from busray.sweep.job import TrialJob


@dataclass
class SweepOutcome:
    """What a finished sweep produced (the store holds the details)."""
    sweep: str
    sweep_id: str
    storage: str
    counts: dict[str, int]
    best: pd.DataFrame = field(repr=False)
    objective: Objective | None = None
    journal: str | None = None
    interrupted: str = ""              # what stopped the sweep early: "Ctrl-C", "SIGTERM" ("": nothing)
    unfinished: tuple[str, ...] = ()   # the trials it cut short: not recorded, --resume continues them
    errors: tuple[str, ...] = ()       # the failed trials' errors, most frequent first

    @property
    def num_trials(self) -> int:
        return sum(self.counts.values())

    def failure(self) -> str | None:
        """The one-line error when every trial this sweep recorded failed (the CLI exits non-zero)."""
        return all_failed(f"sweep {self.sweep}", "trial", self.counts, self.errors)

    def summary(self, command: str | None = None) -> str:
        """What the sweep did and what to do next; ``command``: the one that ran it (for --resume)."""
        done = f"{count_of(self.num_trials, 'trial')} ({counts_text(self.counts) or 'none'})"
        if self.interrupted:
            done = f"interrupted by {self.interrupted}; {done} recorded{unfinished_text(self.unfinished)}"
        lines = [f"sweep {self.sweep} ({self.sweep_id}): {done}"]
        if not self.best.empty:
            lines += [f"best trials by {self.objective.label()}{pareto_note(self.best)}:", format_table(self.best)]
        lines.append("next:")
        if self.interrupted:
            lines.append(f"  {resume_command(command)}")
        # shell-quoted and a Python string literal: a storage path with spaces still pastes as it is
        where = Storage.at(self.storage)
        lines += [f"  busray results show {self.sweep} --storage {shlex.quote(where.uri)}",
                  f"  tensorboard --logdir {shlex.quote(where.location('tb', self.sweep))}"]
        if self.journal:
            lines.append(f"  optuna-dashboard {shlex.quote(str(self.journal))}")
        runs_dir = json.dumps(ResultsStore(where).runs_location)
        lines.append(f"  pandas: pd.read_parquet({runs_dir})   # one row per trial")
        return "\n".join(lines)


def unfinished_text(unfinished: Sequence[str]) -> str:
    """``", 2 unfinished (a1, c3)"`` for the trials Ctrl-C or SIGTERM cut short; empty when none."""
    return f", {len(unfinished)} unfinished ({', '.join(unfinished)})" if unfinished else ""


def count_of(n: int, noun: str) -> str:
    """``"1 trial"``, ``"4 trials"``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def all_failed(what: str, noun: str, counts: dict[str, int], errors: Sequence[str]) -> str | None:
    """``"sweep x: all 3 trials failed, e.g. ConfigError: ..."`` when every recorded run failed, else
    None: a sweep that produced nothing must not look like a success to cron or a CI job."""
    total = sum(counts.values())
    if not total or counts.get("failed", 0) != total:
        return None
    first = errors[0] if errors else "no error recorded"
    more = f"; {len(errors) - 1} other error{'s' if len(errors) > 2 else ''} in the store" if len(errors) > 1 else ""
    return f"{what}: all {count_of(total, noun)} failed, e.g. {first}{more}"


def failure_texts(runs: pd.DataFrame) -> tuple[str, ...]:
    """The distinct errors of the failed rows, most frequent first."""
    if runs.empty or "error" not in runs:
        return ()
    return tuple(runs.loc[runs["status"] == "failed", "error"].dropna().value_counts().index)


def resume_command(command: str | None) -> str:
    """The command that continues an interrupted sweep or ablation."""
    return f"{command or 'the same command'} --resume   # runs what is left"


def sweep_outcome(job: TrialJob, journal: str | None = None, interrupted: str = "",
                  unfinished: Sequence[str] = ()) -> SweepOutcome:
    """Counts by status and the best trials of this sweep id, read back from the store."""
    runs = ResultsStore(job.storage).runs()
    runs = runs[runs["sweep_id"] == job.sweep_id] if "sweep_id" in runs else runs.iloc[0:0]
    counts = {s: int((runs["status"] == s).sum()) if len(runs) else 0 for s in STATUSES}
    return SweepOutcome(job.sweep, job.sweep_id, job.storage.uri, counts, best_trials(runs, job.objective),
                        job.objective, journal, interrupted or ("Ctrl-C" if unfinished else ""),
                        tuple(unfinished), failure_texts(runs))


def best_trials(runs: pd.DataFrame, objective: Objective, top: int = 5) -> pd.DataFrame:
    """The top completed and stopped-early trials, as ``busray results show`` ranks and lays them out
    (the config keys that vary in the sweep, a ``pareto`` mark for several metrics, the test metrics
    of ``TEST_METRICS_SHOWN``: IoU, lesion sensitivity and precision, accuracy)."""
    if runs.empty or objective.metric not in runs:
        return pd.DataFrame()
    table = show_table(runs, list(zip(objective.metrics, objective.modes)))
    return table[table["status"] != "failed"].head(top).reset_index(drop=True)

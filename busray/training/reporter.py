"""The hook through which an outer layer (Ray Train/Tune) observes and steers :func:`fit`.

``fit`` knows nothing about Ray: it calls ``reporter.report`` once per epoch with that epoch's metrics and
the directory holding the freshly written checkpoint, asks ``resume_checkpoint_dir`` once at start-up
(a restarted worker resumes from the last checkpoint), and writes the run folder only where
``is_main`` is true (rank 0 under DDP). :class:`NullReporter` is the default for plain runs.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class Reporter(Protocol):
    def report(self, epoch: int, metrics: dict[str, float], checkpoint_dir: str | None) -> None:
        """Called after every epoch; ``checkpoint_dir`` holds ``last.pt`` (and ``best.pt``) or is None."""

    def resume_checkpoint_dir(self) -> str | None:
        """A directory with ``last.pt`` to resume from, or None for a fresh start."""

    def is_main(self) -> bool:
        """Whether this process writes the run folder (rank 0)."""


class NullReporter:
    """Reports nowhere, never resumes, always the main process."""

    def report(self, epoch: int, metrics: dict[str, float], checkpoint_dir: str | None) -> None:
        return None

    def resume_checkpoint_dir(self) -> str | None:
        return None

    def is_main(self) -> bool:
        return True


class ResumeFromDir(NullReporter):
    """Plain-run resume: continue the run whose ``checkpoints/`` folder is given."""

    def __init__(self, checkpoint_dir: str) -> None:
        self._dir = checkpoint_dir

    def resume_checkpoint_dir(self) -> str | None:
        return self._dir

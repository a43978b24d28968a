"""Nothing of a run outlives ``fit``, and the memory it freed goes back to the system.

A sweep runs trial after trial in one warm process; a model or optimiser that outlived its trial, or
freed memory kept by malloc, made that process grow by a trial's working set per trial
(``benchmarks/sweep_memory.py`` measures it through the real sweep engine).
"""

from __future__ import annotations

import gc
import threading
import weakref

import pytest
import torch
from torch import nn

from busray.config import load_config
from busray.training import fit
from busray.training.memory import _malloc_trim, release_memory
from busray.training.reporter import NullReporter

from tinyrun import tiny


class Snoop(NullReporter):
    """At its first report, weak references to every module and optimiser alive that was not alive
    before the run began: the run's model (and its submodules), its loss and its optimiser."""

    def __init__(self) -> None:
        self.before = weakref.WeakSet(_modules_and_optimizers())
        self.refs: list[weakref.ref] = []
        self.seen: set[str] = set()  # the class names snooped on

    def report(self, epoch: int, metrics: dict, checkpoint_dir: str | None) -> None:
        if not self.refs:
            run = [o for o in _modules_and_optimizers() if o not in self.before]
            self.refs, self.seen = [weakref.ref(o) for o in run], {type(o).__name__ for o in run}

    def alive(self) -> list[str]:
        return sorted({type(o).__name__ for o in (r() for r in self.refs) if o is not None})


def _modules_and_optimizers() -> list:
    return [o for o in gc.get_objects() if issubclass(type(o), (nn.Module, torch.optim.Optimizer))]


@pytest.mark.parametrize("extra, status", [
    (["train.epochs=2"], "completed"),
    (["train.epochs=2", "train.debug_nan_at_epoch=2"], "failed"),  # ends inside an epoch
])
def test_the_model_and_optimizer_do_not_outlive_fit(extra, status, tmp_path):
    # without the cycle collector: fit's objects must go as its frames go (reference counting), so
    # that the memory fit releases on return is really free
    snoop = Snoop()
    gc.disable()
    try:
        outcome = fit(load_config(None, tiny(*extra)), snoop, run_dir=tmp_path / "run")
        alive = snoop.alive()
    finally:
        gc.enable()
    assert outcome.status == status
    assert {"Adam", "MultiTaskNet", "MultiTaskLoss"} <= snoop.seen
    assert alive == []


@pytest.mark.skipif(_malloc_trim() is None, reason="no malloc_trim in this C library (glibc only)")
def test_release_memory_returns_what_a_finished_thread_freed():
    """A sweep trial runs in a new thread, so in its own malloc arena: what it freed stays resident
    (holes between a few live blocks cannot be trimmed from the top) until released."""
    kept = []

    def work():  # 192 MiB in 64-KiB tensors (below malloc's mmap threshold: served from the arena)
        blocks = [torch.ones(16 * 1024) for _ in range(3072)]
        kept.extend(blocks[::64])  # a few survive, scattered among the freed ones

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    before = _rss()
    release_memory()
    assert before - _rss() > 128 * 2**20, "fewer than 128 of the 189 freed MiB went back to the system"


def _rss() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmRSS:"))

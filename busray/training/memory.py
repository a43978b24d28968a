"""Giving a run's freed memory back to the system, so that a process running many ``fit`` calls stays flat.

A sweep runs its trials one after another in a warm process (a reused Ray Tune trial actor), and Tune
runs each trial's function in a **new thread**. glibc's malloc serves threads from separate arenas (up
to 8 per core), and a Ray worker has some 25 threads of its own, so a trial's thread seldom gets the
arena of the one before: the memory a finished trial freed (its activations, gradients, optimiser
state, data splits: about 0.5 GiB for Lite0 at 128 px on 120 BUSI images, more on more images) stayed
resident in an arena the next trial did not use. Nothing of the trial was alive -- the memory malloc
had in use stayed at 195 MiB from trial to trial while its free-but-kept memory grew by 550 MiB a
trial -- yet the actor's RSS grew by one trial's working set per trial until every arena held one
(measured by ``benchmarks/sweep_memory.py``: +345 MiB per trial, 1.9 GiB after the first trial and
5.0 GiB after the tenth). ``malloc_trim(0)`` returns the free pages of every arena to the system.

On CUDA, the caching allocator keeps a finished run's blocks reserved for this process; a warm actor
waiting for its next trial would hold them while other trial processes on the same GPU
(``resources.gpus_per_worker`` < 1) run short, so they go back to the driver too.
"""

from __future__ import annotations

import ctypes
import functools

import torch


def release_memory() -> None:
    """Hand what the allocators keep for reuse (malloc's arenas, CUDA's cache) back to the system.

    A run's objects are freed by reference counting as soon as ``fit`` returns (a test holds this: no
    reference cycle keeps a model or optimiser alive), so no ``gc.collect()`` is needed first -- it
    would cost 0.3 s over the ~400,000 objects torch and timm load. ``fit`` calls this when it
    starts and when it ends; milliseconds.
    """
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim():
    """glibc's ``malloc_trim``, or None where the C library has none (musl, macOS, Windows)."""
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError, TypeError):
        return None

"""Model-test fixtures: a fixed seed, and one intra-op thread for the tiny models.

Tiny convolutions gain nothing from threads, and on a loaded two-core machine thread contention
made each 64x64 forward pass ~50x slower; the previous setting is restored after each test.
"""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

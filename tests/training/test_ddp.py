"""DDP equals single-process training: ``fit`` on 2 gloo ranks x batch b against 1 process x batch 2b.

Same data order: ``epoch_batches`` gives every rank the same permutation and rank r its indices
r, r+2, ...; step s of rank r holds ``perm[2bs + r + 2k]`` (k < b), so the union of a step's two
rank batches is the single process's step-s batch ``perm[2bs : 2b(s+1)]``. ``train.steps_per_epoch``
keeps only full steps (the single process would otherwise see the odd image the ranks drop).
Augmentation and dropout are off: their random draws are per rank (the dropout masks of two half
batches are not those of one whole batch), which makes the runs equal in distribution only.

Tolerance: the two runs differ only in float32 summation order (a batch statistic summed over 8
images vs two sums of 4 added by the all-reduce; the gradients averaged by DDP), about 1e-7 relative
per sum, carried through the network and three Adam steps: the epoch's losses agree to ~1e-6
(measured; the same as one process on 1 vs 2 torch threads, which also reorders sums). ``RTOL`` =
1e-4 leaves that a wide margin and is still 25x below the smallest difference per-rank statistics
make here (``train.sync_batchnorm=false``: >= 2.5e-3 in every training loss term, 5 % in
``train/loss``).
"""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from busray.config import load_config
from busray.losses import LOSS_KEYS
from busray.training import fit
from busray.training.batches import epoch_batches

from ddp_rank import EveryRankWrites, run_ranks
from tinyrun import tiny

B = 4
WORLD = 2
RTOL = 1e-4
STATS_TOL = dict(rtol=1e-4, atol=1e-4)
SAME_ORDER = tiny("data.augment.enabled=false", "model.decoder_dropout=0", "model.clf_dropout=0",
                  "train.epochs=1", "train.steps_per_epoch=3", "train.device=cpu")
LOSSES = [f"{split}/{k}" for split in ("train", "val") for k in LOSS_KEYS]


@pytest.mark.parametrize("n, b, world", [(33, 4, 2), (547, 12, 2), (100, 3, 4), (50, 5, 3)])
def test_a_steps_rank_batches_together_are_the_single_process_batch(n, b, world):
    """Every full step; the last, short step may differ by the images the ranks leave out (n % world,
    and a rank's batch of one, which BatchNorm cannot train on)."""
    one = epoch_batches(n, world * b, torch.Generator().manual_seed(5))
    ranks = [epoch_batches(n, b, torch.Generator().manual_seed(5), r, world) for r in range(world)]
    assert len({len(batches) for batches in ranks}) == 1
    full = [step for step, whole in enumerate(one) if len(whole) == world * b]
    assert full == list(range(n // (world * b)))
    for step in full:
        union = torch.cat([batches[step] for batches in ranks])
        assert sorted(union.tolist()) == sorted(one[step].tolist()), step
    trained = sum(len(batch) for batches in ranks for batch in batches)
    assert 0 <= sum(len(batch) for batch in one) - trained < 2 * world


def _fit(run_dir, world, batch, *extra):
    """Run ``fit`` on ``world`` ranks; each rank's (first-epoch history row, last.pt model state)."""
    dirs = [run_dir / f"rank{r}" for r in range(world)]
    overrides = [*SAME_ORDER, f"train.batch_size={batch}", *extra]
    if world == 1:  # in this process: no process group, as a single-worker trial
        assert fit(load_config(None, overrides), EveryRankWrites(), dirs[0]).status == "completed"
    else:
        run_ranks("fit", world, run_dir / "store", dirs, *overrides)
    return [(pd.read_csv(d / "history.csv").iloc[0],
             torch.load(d / "checkpoints" / "last.pt", weights_only=False)["model"]) for d in dirs]


def _statistics(state: dict) -> dict:
    """BatchNorm running means/variances and UPA's running mean."""
    return {k: v for k, v in state.items() if k.rsplit(".", 1)[-1] in ("running_mean", "running_var", "running_u")}


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    return _fit(tmp_path_factory.mktemp("single"), 1, WORLD * B)[0]


def _relative(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-12)


@pytest.mark.parametrize("sync", [True, False], ids=["sync_batchnorm", "per_rank_statistics"])
def test_two_ranks_train_like_one_process_with_the_global_batch(tmp_path, single, sync):
    ranks = _fit(tmp_path, WORLD, B, f"train.sync_batchnorm={str(sync).lower()}")
    (history, state), (history1, state1) = ranks
    one_history, one_state = single
    # every rank reports the global epoch's train/* (with per-rank statistics, not the same val/*:
    # each rank evaluates with its own BatchNorm running statistics)
    for key in LOSSES if sync else [k for k in LOSSES if k.startswith("train/")]:
        assert history[key] == history1[key], key
    worst = max(_relative(history[k], one_history[k]) for k in LOSSES)
    stats, one_stats = _statistics(state), _statistics(one_state)
    assert len(stats) > 20 and stats.keys() == one_stats.keys()
    if sync:
        assert worst < RTOL, history[LOSSES] - one_history[LOSSES]
        for name, value in stats.items():  # running statistics: equal on every rank, and the one process's
            assert torch.equal(value, state1[name]), name
            torch.testing.assert_close(value, one_stats[name], **STATS_TOL, msg=name)
    else:  # the tolerance tells the two apart
        assert worst > 25 * RTOL
        assert _relative(history["train/loss"], one_history["train/loss"]) > 1e-2

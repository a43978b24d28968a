"""A split's metrics do not depend on how its images are ordered or batched (default upa_norm)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from busray.config import load_config
from busray.data import load_dataset
from busray.losses import MultiTaskLoss
from busray.models import create_model
from busray.models.calibration import calibrate_upa
from busray.training.batches import DeviceSplit, to_model_input
from busray.training.epoch import StepContext, eval_order, evaluate, sample_picks

from tinyrun import tiny

BATCH_SIZES = (1, 3, 32)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def dataset():
    cfg = load_config(None, tiny("data.root=synthetic:n=24,size=64"))
    return cfg, load_dataset(cfg.data)


def _context(cfg, norm: str) -> StepContext:
    """A tiny model whose BatchNorm running statistics have seen a few training batches and whose
    UPA running mean was then calibrated on them in evaluation mode, as ``fit`` does."""
    torch.manual_seed(0)
    model = create_model(dataclasses.replace(cfg.model, upa_norm=norm))
    model.train()
    batches = [to_model_input(torch.randint(0, 255, (6, 1, 64, 64)), 3, model.input_mean,
                              model.input_std) for _ in range(3)]
    with torch.no_grad():
        for x in batches:
            model(x)
    calibrate_upa(model, batches)
    return StepContext(model=model, loss_fn=MultiTaskLoss(cfg.loss), optimizer=None,
                       device=torch.device("cpu"), in_chans=3, mean=model.input_mean,
                       std=model.input_std, data_cfg=cfg.data.augment)


def _split(ds, order) -> DeviceSplit:
    return DeviceSplit.from_dataset(ds, list(order), torch.device("cpu"))


def _results(ctx, ds, orders):
    return [evaluate(ctx, _split(ds, order), batch_size, 3, prefix="test", collect=True)
            for order in orders for batch_size in BATCH_SIZES]


def test_metrics_are_the_same_for_any_order_and_batch_size(dataset):
    cfg, ds = dataset
    identity = np.arange(len(ds))
    shuffled = np.random.default_rng(1).permutation(len(ds))
    results = _results(_context(cfg, "running"), ds, [identity, shuffled])
    reference = results[0].metrics
    assert not any(math.isnan(reference[k]) for k in ("test/seg/iou", "test/clf/acc", "test/loss"))
    for res in results[1:]:
        assert res.metrics.keys() == reference.keys()
        for key, value in reference.items():
            assert res.metrics[key] == pytest.approx(value, abs=1e-5, nan_ok=True), key
    # per-image outputs come back in the split's order, so they follow the permutation
    back = np.argsort(shuffled)
    for key in ("seg/iou", "prob", "label"):
        np.testing.assert_allclose(results[-1].per_image[key][back], results[0].per_image[key],
                                   atol=1e-5)
    np.testing.assert_allclose(results[-1].diagnostics["upa_w_seg"][back],
                               results[0].diagnostics["upa_w_seg"], atol=1e-5)


def test_batch_mean_normalisation_is_what_made_it_depend_on_batching(dataset):
    """Batch-mean UPA in evaluation (the authors' code): a batch of one and a batch of 32 give an
    image different UPA weights (a batch of one has u~ = 1 whatever the image)."""
    cfg, ds = dataset
    ctx = _context(cfg, "batch")
    one, many = (evaluate(ctx, _split(ds, range(len(ds))), b, 3, collect=True) for b in (1, 32))
    assert np.abs(one.diagnostics["upa_w_seg"] - many.diagnostics["upa_w_seg"]).max() > 1e-3


def test_evaluation_order_mixes_the_classes_and_is_fixed():
    """Splits are stored class by class; the evaluation order is a fixed shuffle of them."""
    order = eval_order(90)
    assert torch.equal(order, eval_order(90)) and sorted(order.tolist()) == list(range(90))
    labels = torch.arange(90) // 30                        # three classes, sorted
    first_batch = labels[order[:32]]
    assert len(first_batch.unique()) == 3


@pytest.mark.parametrize("labels, k, picks", [
    ([0, 0, 0, 1, 1, 2], 4, [0, 3, 5, 1]),        # one of each class first, in split order
    ([0, 0, 0, 1, 1, 2], 10, [0, 3, 5, 1, 4, 2]),  # k beyond the split: every image once
    ([2, 2, 0], 2, [2, 0]),                        # classes in label order, whatever the split order
    ([1, 1], 0, []),
])
def test_sample_picks_take_the_classes_in_turn(labels, k, picks):
    assert sample_picks(torch.tensor(labels), k) == picks


def test_kept_samples_are_the_picked_images_in_pick_order(dataset):
    cfg, ds = dataset
    split = _split(ds, np.arange(len(ds)))
    ctx = _context(cfg, "running")
    picks = [5, 0, 17]
    kept = evaluate(ctx, split, 4, 3, keep=picks).sample_probs
    for row, index in enumerate(picks):  # each image alone gives the same probability map
        alone = evaluate(ctx, _split(ds, [index]), 1, 3, keep=[0]).sample_probs[0]
        np.testing.assert_allclose(kept[row], alone, atol=1e-5)

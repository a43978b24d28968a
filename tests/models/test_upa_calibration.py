"""UPA calibration (busray/models/calibration.py): u_bar estimated in evaluation mode, so that the
mean u~ evaluation feeds UPA's MLP (Eq. 7) is 1 on the calibration images, as it is in training."""

from __future__ import annotations

import pytest
import torch

from busray.models import create_model
from busray.models.calibration import (calibrate_upa, mean_normalised_uncertainty, mean_uncertainty,
                                       upa_modules)
from tinymodels import tiny_config


def _batches(n_batches: int = 3, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(4, 3, 64, 64, generator=g) for _ in range(n_batches)]


def _trained_a_little(calibration: str) -> torch.nn.Module:
    """A tiny model with dropout (the authors' 0.3) after a few training-mode forwards."""
    torch.manual_seed(0)
    model = create_model(tiny_config(decoder_dropout=0.3, clf_dropout=0.3,
                                     upa_calibration=calibration)).train()
    with torch.no_grad():
        for x in _batches(seed=1):
            model(x)
    return model


def test_eval_pass_models_do_not_track_in_training_and_train_models_do():
    tracked = {mode: [int(m.num_batches_tracked) for m in upa_modules(_trained_a_little(mode)).values()]
               for mode in ("eval_pass", "train")}
    assert tracked == {"eval_pass": [0] * 4, "train": [3] * 4}


def test_calibration_makes_the_mean_u_tilde_one_on_its_images():
    model = _trained_a_little("eval_pass")
    images = _batches()
    means = calibrate_upa(model, images)
    assert sorted(means) == ["upa.1", "upa.2", "upa.3", "upa.4"]
    for name, module in upa_modules(model).items():
        torch.testing.assert_close(module.running_u, means[name])
    # 1e-3: one pass, and level l's u depends on the u_bar of levels < l, which the pass itself
    # changes (upstream levels used their batch means before it); this model is within 3e-5
    for name, value in mean_normalised_uncertainty(model, images).items():
        torch.testing.assert_close(value, torch.ones(2), rtol=0, atol=1e-3, msg=name)


def test_training_mode_running_mean_is_what_calibration_corrects():
    """Train-mode means (dropout, batch-statistics BatchNorm) are not evaluation's: the tiny model's
    tracked u_bar leaves evaluation's mean u~ far from 1 on the very images it was tracked on."""
    model = _trained_a_little("train")
    before = mean_normalised_uncertainty(model, _batches(seed=1))
    assert max(float((v - 1).abs().max()) for v in before.values()) > 0.2
    calibrate_upa(model, _batches(seed=1))
    after = mean_normalised_uncertainty(model, _batches(seed=1))
    assert max(float((v - 1).abs().max()) for v in after.values()) < 0.01


def test_calibration_restores_the_mode_and_leaves_no_hooks():
    model = _trained_a_little("eval_pass")
    calibrate_upa(model, _batches())
    assert model.training
    assert all(not m._forward_pre_hooks for m in upa_modules(model).values())
    model.eval()
    mean_uncertainty(model, _batches(1))
    assert not model.training


def test_batch_mean_upa_has_nothing_to_calibrate():
    model = create_model(tiny_config(upa_norm="batch"))
    assert calibrate_upa(model, _batches(1)) == {}
    with pytest.raises(ValueError, match="upa norm 'batch' has no running mean"):
        upa_modules(model)["upa.1"].set_reference(torch.ones(2))
    assert mean_normalised_uncertainty(create_model(tiny_config(upa=False, tim=False)),
                                       _batches(1)) == {}

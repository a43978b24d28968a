"""``fit``: the run folder it writes, resume, failure on NaN, early stopping, schedule, learning."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from busray.atomic import HOST
from busray.config import config_to_dict, load_config
from busray.data import load_dataset, load_split
from busray.metrics import METRIC_KEYS
from busray.models.calibration import mean_normalised_uncertainty
from busray.objective import Objective
from busray.runfolder import RunFolder
from busray.training import ResumeFromDir, fit
from busray.training.batches import to_model_input
from busray.training.checkpoint import TrainingState
from busray.training.inference import load_trained
from busray.training.loop import _update_state
from busray.training.reporter import NullReporter
from busray.training.setup import build_scheduler

from tinyrun import busi_root, tiny

RUN_FILES = ("config.yaml", "split.json", "history.csv", "metrics.json", "test_predictions.parquet",
             "test_samples.npz", "checkpoints/best.pt", "checkpoints/last.pt")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    cfg = load_config(None, tiny("train.epochs=2"))
    run_dir = tmp_path_factory.mktemp("run") / "r"
    return cfg, fit(cfg, run_dir=run_dir)


def test_run_folder_has_every_file(tiny_run):
    cfg, result = tiny_run
    assert result.status == "completed", result.error
    run = result.run_dir
    for name in RUN_FILES:
        assert (pytest.importorskip("pathlib").Path(run) / name).is_file(), name
    assert load_config(f"{run}/config.yaml") == cfg
    metrics = json.loads(open(f"{run}/metrics.json").read())
    assert metrics["status"] == "completed" and metrics["best_epoch"] in (1, 2)
    assert set(METRIC_KEYS) <= set(metrics["test"]) and set(METRIC_KEYS) <= set(metrics["val"])
    assert len(pd.read_csv(f"{run}/history.csv")) == 2
    assert RunFolder(run).read_outcome().status == "completed" and result.finished_at is not None


def test_failure_mid_run_says_so_in_the_folder(tmp_path, monkeypatch):
    """Any exception after the folder exists leaves metrics.json with status failed and the error
    (in a folder the caller owns: a sweep trial's, whose reporter is given)."""
    import busray.training.loop as loop

    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(loop, "_save", boom)
    with pytest.raises(OSError):
        fit(load_config(None, tiny("train.epochs=1")), NullReporter(), run_dir=tmp_path / "r")
    outcome = RunFolder(tmp_path / "r").read_outcome()
    assert outcome.status == "failed" and "No space left" in outcome.error


def test_a_plain_run_that_fails_before_its_first_checkpoint_leaves_no_folder(tmp_path, monkeypatch):
    """As ``busray train``: a folder fit created (and the parents it created) goes again when no
    checkpoint was written, so nothing that merely looks like a run is left."""
    import busray.training.loop as loop

    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(loop, "_save", boom)
    with pytest.raises(OSError):
        fit(load_config(None, tiny("train.epochs=1")), run_dir=tmp_path / "runs" / "r")
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_leaves_a_folder_that_says_how_far_it_got(tmp_path):
    class CtrlCAtEpoch2(NullReporter):
        def report(self, epoch, metrics, checkpoint_dir):
            if epoch == 2:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(load_config(None, tiny("train.epochs=4")), reporter=CtrlCAtEpoch2(), run_dir=tmp_path / "r")
    folder = RunFolder(tmp_path / "r")
    outcome = folder.read_outcome()
    assert (outcome.status, outcome.error, outcome.epochs_run) == ("failed", "interrupted", 2)
    assert 1 <= outcome.best_epoch <= 2 and outcome.val and len(folder.read_history()) == 2
    assert (folder.checkpoints / "last.pt").is_file()  # what --resume continues from


def test_test_predictions_hold_diagnostics(tiny_run):
    _, result = tiny_run
    preds = pd.read_parquet(f"{result.run_dir}/test_predictions.parquet")
    split = json.loads(open(f"{result.run_dir}/split.json").read())
    assert len(preds) == split["sizes"]["test"]
    for key in ("upa_w_seg", "upa_w_clf", "tim_seg2clf", "tim_clf2seg"):
        assert [f"{key}_{lvl}" for lvl in range(1, 5)] == [c for c in preds.columns if c.startswith(key)]
    weights = preds[[f"upa_w_seg_{lvl}" for lvl in range(1, 5)]].to_numpy() + \
        preds[[f"upa_w_clf_{lvl}" for lvl in range(1, 5)]].to_numpy()
    np.testing.assert_allclose(weights, 1.0, atol=1e-5)  # UPA softmax per image and level
    samples = np.load(f"{result.run_dir}/test_samples.npz")
    assert samples["image"].dtype == np.uint8 and samples["prob"].shape == samples["image"].shape


def test_evaluation_feeds_upa_a_mean_u_tilde_of_one(tiny_run):
    """The saved model was calibrated in evaluation mode (model.upa_calibration: eval_pass, all 34
    training images here): evaluation's mean u~ = u / u_bar is 1 on those images (to 1e-2: each
    pass starts from the previous epoch's u_bar at the levels upstream) and near 1 on the 7 test
    images (to 0.15: a mean over 7 images differs from the training images' by sampling alone;
    the tracked train-mode mean this replaces left the tiny model's u~ at 0.002-0.08)."""
    cfg, result = tiny_run
    model, _, _ = load_trained(result.run_dir)
    ds = load_dataset(cfg.data)
    split = load_split(f"{result.run_dir}/split.json", ds)
    for part, tolerance in (("train", 1e-2), ("test", 0.15)):
        x = to_model_input(ds.images[split.indices(part)], 3, model.input_mean, model.input_std)
        u_tilde = mean_normalised_uncertainty(model, [x])
        assert len(u_tilde) == 4
        for name, value in u_tilde.items():
            torch.testing.assert_close(value, torch.ones(2), rtol=0, atol=tolerance, msg=f"{part} {name}")


def test_training_throughput_leaves_evaluation_out(tiny_run):
    """time/train_img_per_s: training images over the training steps' time, not the whole epoch's."""
    history = pd.read_csv(f"{tiny_run[1].run_dir}/history.csv")
    train_s = len(load_split(f"{tiny_run[1].run_dir}/split.json",
                             load_dataset(tiny_run[0].data)).train) / history["time/train_img_per_s"]
    assert (train_s < 0.9 * history["time/epoch_s"]).all()   # calibration and validation take > 10 %


def test_checkpoint_loads_with_weights_only(tiny_run):
    cfg, result = tiny_run
    payload = torch.load(f"{result.run_dir}/checkpoints/last.pt", weights_only=True)
    assert payload["config"] == config_to_dict(cfg)
    assert payload["state"]["epoch"] == 2 and "optimizer" in payload


def test_tensorboard_events_hold_scalars_and_overlays(tiny_run):
    _, result = tiny_run
    acc = EventAccumulator(f"{result.run_dir}/tb").Reload()
    assert [e.step for e in acc.Scalars("train/loss")] == [1, 2]
    assert len(acc.Scalars("val/seg/iou")) == 2
    assert "val/overlay" in acc.Tags()["images"]


def test_resume_continues_from_last_checkpoint(tiny_run, tmp_path):
    _, first = tiny_run
    run = tmp_path / "resumed"
    shutil.copytree(first.run_dir, run)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    killed = run / "checkpoints" / f".last.pt.{HOST}.{dead}.0badc0de.tmp"  # what a kill -9 mid-write leaves
    killed.write_bytes(b"half a checkpoint")
    cfg = load_config(None, tiny("train.epochs=3"))
    result = fit(cfg, reporter=ResumeFromDir(str(run / "checkpoints")), run_dir=run)
    assert not killed.exists()
    assert [row["epoch"] for row in result.history] == [1, 2, 3]
    assert result.history[:2] == first.history  # the first two epochs were not re-run
    assert len(pd.read_csv(run / "history.csv")) == 3


class CtrlCAfter(NullReporter):
    """Raises KeyboardInterrupt after epoch ``k`` was saved (as ``busray train`` sees a Ctrl-C)."""

    def __init__(self, k: int) -> None:
        self.k = k

    def report(self, epoch, metrics, checkpoint_dir):
        if epoch == self.k:
            raise KeyboardInterrupt


def _without_timing(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if not k.startswith("time/")} for row in history]


def test_a_stopped_and_resumed_run_equals_the_uninterrupted_one(tmp_path):
    """last.pt carries the random streams (dropout, augmentation): resuming after epoch 2 trains
    epochs 3-4 on exactly what the uninterrupted run drew, so the numbers are the same."""
    cfg = load_config(None, tiny("train.epochs=4"))
    whole = fit(cfg, run_dir=tmp_path / "whole")
    with pytest.raises(KeyboardInterrupt):
        fit(cfg, reporter=CtrlCAfter(2), run_dir=tmp_path / "cut")
    payload = torch.load(tmp_path / "cut" / "checkpoints" / "last.pt", weights_only=True)
    assert {"torch", "augment"} <= set(payload["rng"])
    torch.manual_seed(12345)  # whatever this process drew since: the checkpoint's streams win
    resumed = fit(cfg, reporter=ResumeFromDir(str(tmp_path / "cut" / "checkpoints")), run_dir=tmp_path / "cut")
    assert _without_timing(resumed.history) == _without_timing(whole.history)
    assert resumed.test == whole.test and resumed.best_epoch == whole.best_epoch


def test_a_resumed_run_counts_the_time_of_its_earlier_process(tmp_path):
    """started_at is the first process's; wall_time_s adds what it trained up to last.pt."""
    cfg = load_config(None, tiny("train.epochs=3"))
    with pytest.raises(KeyboardInterrupt):
        fit(cfg, reporter=CtrlCAfter(2), run_dir=tmp_path / "cut")
    first = RunFolder(tmp_path / "cut").read_outcome()
    before = torch.load(tmp_path / "cut" / "checkpoints" / "last.pt", weights_only=True)["state"]["wall_s"]
    assert before > 0 and first.started_at
    t0 = time.time()
    resumed = fit(cfg, reporter=ResumeFromDir(str(tmp_path / "cut" / "checkpoints")), run_dir=tmp_path / "cut")
    this_process = time.time() - t0
    assert resumed.started_at == first.started_at
    assert before < resumed.wall_time_s <= before + this_process
    assert RunFolder(tmp_path / "cut").read_outcome().wall_time_s == resumed.wall_time_s


def test_a_checkpoint_without_random_streams_still_resumes(tmp_path):
    """An older busray's last.pt has no 'rng' entry: the run resumes (from fresh streams)."""
    cfg = load_config(None, tiny("train.epochs=2"))
    with pytest.raises(KeyboardInterrupt):
        fit(cfg, reporter=CtrlCAfter(1), run_dir=tmp_path / "old")
    last = tmp_path / "old" / "checkpoints" / "last.pt"
    payload = torch.load(last, weights_only=True)
    del payload["rng"]
    torch.save(payload, last)
    resumed = fit(cfg, reporter=ResumeFromDir(str(last.parent)), run_dir=tmp_path / "old")
    assert resumed.status == "completed" and [row["epoch"] for row in resumed.history] == [1, 2]


def test_more_epochs_on_resume_follow_the_longer_schedule(tmp_path):
    """A 2-epoch run resumed with train.epochs=4 trains epochs 3-4 at the 4-epoch schedule's rates,
    not at the 2-epoch schedule's floor."""
    short, longer = (load_config(None, tiny(f"train.epochs={n}", "train.lr=0.001")) for n in (2, 4))
    fit(short, run_dir=tmp_path / "r")
    resumed = fit(longer, reporter=ResumeFromDir(str(tmp_path / "r" / "checkpoints")), run_dir=tmp_path / "r")
    factor = build_scheduler(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.001), longer).lr_lambdas[0]
    planned = [0.001 * factor(epoch) for epoch in range(4)]  # the LR of epochs 1..4
    assert [row["lr"] for row in resumed.history[2:]] == pytest.approx(planned[2:])
    assert planned[2] > 10 * planned[3]  # (epoch 3 of 4 is well above the floor)


def test_nan_loss_fails_with_reason(tmp_path):
    cfg = load_config(None, tiny("train.epochs=3", "train.debug_nan_at_epoch=2"))
    result = fit(cfg, run_dir=tmp_path / "nan")
    assert result.status == "failed" and "non-finite" in result.error and "epoch 2" in result.error
    metrics = json.loads((tmp_path / "nan" / "metrics.json").read_text())
    assert metrics["status"] == "failed" and metrics["test"] == {}
    assert not (tmp_path / "nan" / "test_predictions.parquet").exists()
    assert result.epochs_run == 1


@pytest.mark.parametrize("values, mode, patience, stop_at", [
    ([0.1, 0.2, 0.15, 0.15, 0.3], "max", 2, 4),
    ([0.5, 0.4, 0.45, 0.3, 0.31, 0.32], "min", 2, 6),
    ([0.1, float("nan"), 0.1], "max", 2, 3),
    ([0.1, 0.2, 0.3], "max", 1, None),
])
def test_early_stopping_counts_epochs_without_improvement(values, mode, patience, stop_at):
    state = TrainingState()
    stopped = None
    for epoch, v in enumerate(values, start=1):
        _update_state(state, {"epoch": epoch, "val/x": v}, Objective.parse(f"val/x:{mode}"))
        if state.bad_epochs >= patience:
            stopped = epoch
            break
    assert stopped == stop_at


@pytest.mark.parametrize("extra, expected", [
    (["train.epochs=4", "train.lr=1.0e-2", "train.lr_min=1.0e-4"], [1e-2, None, None, 1e-4]),
    (["train.epochs=4", "train.lr=1.0e-2", "train.lr_floor_fraction=0.03"], [1e-2, None, None, 3e-4]),
    (["train.epochs=4", "train.lr=1.0e-2", "train.warmup_epochs=1", "train.scheduler=constant"],
     [5e-3, 1e-2, 1e-2, 1e-2]),
])
def test_schedule(extra, expected):
    cfg = load_config(None, extra)
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=cfg.train.lr)
    sched = build_scheduler(opt, cfg)
    lrs = []
    for _ in range(4):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(expected[0]) and lrs[-1] == pytest.approx(expected[-1])
    if extra[-1].endswith("constant"):
        assert lrs == pytest.approx(expected)
    else:
        floor = expected[-1]
        assert lrs[1] == pytest.approx(floor + (1e-2 - floor) * 0.5 * (1 + math.cos(math.pi / 3)))


@pytest.mark.slow
def test_full_model_learns_synthetic_lesions(tmp_path):
    """The whole network (tiny encoder) learns: validation IoU rises well above its first epoch."""
    cfg = load_config(None, tiny("data.root=synthetic:n=96,size=64", "train.epochs=8", "train.lr=2.0e-3",
                                 "train.batch_size=8", "model.decoder_channels=[32,24,16,16]"))
    result = fit(cfg, run_dir=tmp_path / "learn")
    ious = [row["val/seg/iou"] for row in result.history]
    assert result.status == "completed"
    assert max(ious) >= ious[0] + 0.2, ious
    assert result.test["seg/iou"] > 0.15


@pytest.mark.slow
def test_real_busi_subset_writes_run_folder(tmp_path):
    root = busi_root()
    if root is None:
        pytest.skip("real BUSI not found (../shared/data or $BUSRAY_BUSI_ROOT)")
    cfg = load_config(None, tiny(f"data.root={root}", "data.limit_per_class=12", "data.cache=false",
                                 "train.epochs=2"))
    result = fit(cfg, run_dir=tmp_path / "busi")
    assert result.status == "completed" and result.dataset == "busi"
    for name in RUN_FILES:
        assert (tmp_path / "busi" / name).is_file(), name
    split = json.loads((tmp_path / "busi" / "split.json").read_text())
    assert split["split_hash"] == result.split_hash


class _Terminal:
    """A stand-in for a terminal's stderr (what tqdm writes to)."""

    def __init__(self, tty: bool) -> None:
        self.text, self.tty = "", tty

    def write(self, text: str) -> int:
        self.text += text
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.parametrize("tty", [True, False])
def test_a_terminal_sees_the_steps_of_each_epoch(tmp_path, monkeypatch, tty):
    """Under the epochs bar a terminal gets the running epoch's steps (cleared when it ends); a log
    file only the epochs bar."""
    stderr = _Terminal(tty)
    monkeypatch.setattr(sys, "stderr", stderr)
    cfg = load_config(None, tiny("train.epochs=1", "train.progress=true", "data.root=synthetic:n=24,size=64"))
    fit(cfg, run_dir=tmp_path / "r")
    train_images = json.loads((tmp_path / "r" / "split.json").read_text())["sizes"]["train"]
    steps = math.ceil(train_images / cfg.train.batch_size)
    assert "epochs: 100%" in stderr.text  # the epochs bar, either way
    # the step bar is drawn when it starts; whether tqdm draws it again before it is cleared depends on
    # how fast the steps run (it redraws at most every 0.1 s), so only its first line is certain
    assert ("epoch 1:   0%|" in stderr.text and f"| 0/{steps} [" in stderr.text and "step/s" in stderr.text) == tty

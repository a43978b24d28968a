"""The plain ``busray`` commands: data synth, train, evaluate, predict, config; and their errors."""

from __future__ import annotations

import contextlib
import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from busray.cli import main
from busray.cli.commands_train import train_summary
from busray.cli.outputs import predictions_text
from busray.runfolder import RunOutcome

from tinyrun import tiny


def _sets(overrides):
    return [arg for o in overrides for arg in ("--set", o)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    console = io.StringIO()
    with contextlib.redirect_stdout(console):
        assert main(["train", *_sets(tiny("train.epochs=1", "train.progress=false")), "--out", str(out)]) == 0
    (out.parent / "console.txt").write_text(console.getvalue())
    return out


def test_train_prints_metrics_and_writes_run(trained):
    assert (trained / "metrics.json").is_file() and (trained / "checkpoints" / "best.pt").is_file()
    lines = (trained.parent / "console.txt").read_text().splitlines()
    saved = json.loads((trained / "metrics.json").read_text())
    assert lines[0] == f"run folder: {trained}"
    assert lines[1].startswith(f"status: completed, best epoch 1 of 1 (val/score {saved['val']['score']:.4f}), ")
    assert lines[2].split() == ["metric", "val", "test"]
    assert any(line.split() == ["seg/iou", f"{saved['val']['seg/iou']:.4f}", f"{saved['test']['seg/iou']:.4f}"]
               for line in lines)
    assert lines[-4:] == ["next:", f"  busray evaluate {trained} --data OTHER_DATASET --split all",
                          f"  busray predict {trained} IMAGE.png --out preds/",
                          f"  tensorboard --logdir {trained / 'tb'}"]


@pytest.mark.parametrize("outcome, status_line", [
    (RunOutcome(status="failed", error="loss is NaN at epoch 2", epochs_run=2, run_dir="r"),
     "status: failed (loss is NaN at epoch 2)"),
    (RunOutcome(status="failed", error="loss is NaN at epoch 3", best_epoch=1, epochs_run=3, wall_time_s=4.24,
                val={"score": 0.5}, run_dir="r"),
     "status: failed (loss is NaN at epoch 3), best epoch 1 of 3 (val/score 0.5000), 4.2 s"),
    (RunOutcome(status="stopped_early", best_epoch=4, epochs_run=6, wall_time_s=9.0, val={}, run_dir="r"),
     "status: stopped_early, best epoch 4 of 6, 9.0 s"),
])
def test_train_summary_of_runs_that_did_not_complete(outcome, status_line):
    assert train_summary(outcome).splitlines() == ["run folder: r", status_line]  # no metrics, no "next:"


def test_evaluate_run_folder_uses_its_split(trained, capsys):
    assert main(["evaluate", str(trained), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    saved = json.loads((trained / "metrics.json").read_text())["test"]
    assert metrics["test/seg/iou"] == pytest.approx(saved["seg/iou"], abs=1e-6)
    assert metrics["test/clf/acc"] == pytest.approx(saved["clf/acc"], abs=1e-6)


def test_predict_writes_masks_and_csv(trained, tmp_path, capsys):
    image = tmp_path / "scan.png"
    Image.fromarray((np.random.default_rng(0).random((50, 70)) * 255).astype(np.uint8)).save(image)
    assert main(["predict", str(trained / "checkpoints" / "best.pt"), str(image), "--out", str(tmp_path / "p")]) == 0
    mask = Image.open(tmp_path / "p" / "scan.pred_mask.png")
    assert mask.size == (70, 50)  # back at the input's own size
    rows = list(csv.DictReader(open(tmp_path / "p" / "predictions.csv")))
    assert rows[0]["class"] in ("normal", "benign", "malignant")
    probs = [float(rows[0][f"prob_{c}"]) for c in ("normal", "benign", "malignant")]
    assert sum(probs) == pytest.approx(1.0, abs=1e-5)
    for lvl in range(1, 5):
        assert float(rows[0][f"upa_w_seg_{lvl}"]) + float(rows[0][f"upa_w_clf_{lvl}"]) == pytest.approx(1.0, abs=1e-5)
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["image", "class", "probability", "lesion", "%", "of", "image"]
    assert out[2].split()[:2] == ["scan.png", rows[0]["class"]]
    assert float(out[2].split()[2]) == pytest.approx(max(probs), abs=1e-3)
    assert out[-1] == f"wrote 1 mask(s) and {tmp_path / 'p' / 'predictions.csv'}"


def test_predict_says_when_images_are_named_like_masks(trained, tmp_path, capsys):
    """A glob over a BUSI class folder takes its masks too: predicted, and said."""
    for name in ("case1.png", "case1_mask.png", "case1_mask_1.png"):
        Image.fromarray((np.random.default_rng(0).random((40, 40)) * 255).astype(np.uint8)).save(tmp_path / name)
    images = sorted(str(p) for p in tmp_path.glob("case1*.png"))
    assert main(["predict", str(trained), *images, "--out", str(tmp_path / "p")]) == 0
    err = capsys.readouterr().err
    assert "note: 2 of the 3 images are named like BUSI masks (case1_mask.png, ...); predict expects scans" in err


def test_predict_takes_a_folders_scans_once_and_leaves_its_masks_out(trained, tmp_path, capsys):
    scans = tmp_path / "benign"
    (scans / "sub").mkdir(parents=True)
    for name in ("case (2).png", "case (10).png", "case (2)_mask.png", "case (2)_mask_1.png", "sub/deeper.png"):
        Image.fromarray((np.random.default_rng(0).random((40, 40)) * 255).astype(np.uint8)).save(scans / name)
    (scans / "notes.txt").write_text("not an image")
    # the folder, then one of its files again (by another spelling of its path): predicted once
    again = str(scans / ".." / "benign" / "case (10).png")
    assert main(["predict", str(trained), str(scans), again, "--out", str(tmp_path / "p")]) == 0
    rows = list(csv.DictReader(open(tmp_path / "p" / "predictions.csv")))
    assert [Path(r["image"]).name for r in rows] == ["case (2).png", "case (10).png"]  # natural order
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == [
        "case (10).pred_mask.png", "case (2).pred_mask.png", "predictions.csv"]
    assert "named like BUSI masks" not in capsys.readouterr().err


def test_predict_lists_the_first_images_and_counts_the_rest(tmp_path):
    (tmp_path / "predictions.csv").write_text("image,class,lesion_pixels_fraction,prob_benign,prob_malignant\n" + "".join(
        f"/x/{i}.png,benign,0.{i},0.9,0.1\n" for i in range(3)))
    lines = predictions_text(tmp_path / "predictions.csv", limit=2).splitlines()
    assert [line.split() for line in lines[2:4]] == [["0.png", "benign", "0.9", "0"], ["1.png", "benign", "0.9", "10"]]
    assert lines[4:] == [f"... and 1 more in {tmp_path / 'predictions.csv'}"]


def test_data_synth_then_inspect(tmp_path, capsys):
    assert main(["data", "synth", str(tmp_path / "s"), "--n", "24", "--size", "48"]) == 0
    assert len(list((tmp_path / "s" / "benign").glob("*_mask.png"))) > 0
    assert main(["data", "inspect", str(tmp_path / "s"), "--set", "data.image_size=48"]) == 0
    assert "24 images" in capsys.readouterr().out


def test_config_keys_lists_every_group(capsys):
    assert main(["config", "--keys"]) == 0
    out = capsys.readouterr().out
    for key in ("model.tau", "loss.w_seg", "data.image_size", "train.epochs", "data.augment.rotation_deg"):
        assert key in out


@pytest.mark.parametrize("argv, needle", [
    (["train", "--set", "model.taux=1"], "model.taux"),
    (["train", "--set", "model.tau=9"], "model.tau"),
    (["train", "--set", "train.epochs=many"], "train.epochs"),
    (["train", "--config", "/nonexistent/cfg.yaml"], "/nonexistent/cfg.yaml"),
    (["train", "--set", "model.weights=/nope/w.pth", "--set", "model.encoder=test_efficientnet",
      "--set", "data.root=synthetic:n=24,size=48", "--set", "data.image_size=48"], "/nope/w.pth"),
    (["evaluate", "/nonexistent/run"], "/nonexistent/run"),
    (["predict", "/nonexistent/best.pt", "/nonexistent/img.png", "--out", "/tmp/x"], "/nonexistent/img.png"),
    (["train", "--data", "/nonexistent/busi", "--set", "model.weights=none"], "/nonexistent/busi"),
    (["config", "--kind", "sweep"], "--kind sweep lists the keys of sweep files: add --keys"),
    (["config", "--keys", "--kind", "ablation", "--set", "seeds=3"], "--kind ablation lists keys and reads no"),
])
def test_bad_input_is_one_line_and_exit_2(argv, needle, capsys, tmp_path):
    code = main(argv + (["--out", str(tmp_path / "r")] if argv[0] == "train" else []))
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("busray: error:") and needle in err and "\n" not in err


def test_bad_yaml_config_names_file(tmp_path, capsys):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("model:\n  tau: [1\n")
    assert main(["train", "--config", str(cfg)]) == 2
    assert str(cfg) in capsys.readouterr().err


def test_docs_config_md_is_current(capsys):
    """docs/CONFIG.md is generated from the dataclasses; regenerate it when a key changes."""
    assert main(["config", "--keys", "--markdown"]) == 0
    current = (Path(__file__).resolve().parents[2] / "docs" / "CONFIG.md").read_text()
    assert capsys.readouterr().out == current, "run: busray config --keys --markdown > docs/CONFIG.md"


@pytest.mark.parametrize("kind", ["sweep", "ablation"])
def test_docs_sweeps_md_is_current(kind, capsys):
    """docs/SWEEPS.md (both kinds of file, one page) is generated from the declarations the loaders use."""
    assert main(["config", "--keys", "--kind", kind, "--markdown"]) == 0
    current = (Path(__file__).resolve().parents[2] / "docs" / "SWEEPS.md").read_text()
    assert capsys.readouterr().out == current, "run: busray config --keys --kind sweep --markdown > docs/SWEEPS.md"


@pytest.mark.parametrize("kind, present, absent, types", [
    ("sweep", ["num_trials", "scheduler.grace_period", "search.sampler", "resources.workers"],
     ["variants", "cv_folds", "model.tau"],
     ["uniform", "loguniform", "int", "categorical", "fixed", "complement", "when"]),
    ("ablation", ["variants", "cv_folds", "baseline", "resources.workers", "tracking.wandb.mode"],
     ["num_trials", "space", "model.tau"], []),
])
def test_config_keys_of_a_kind_of_file(kind, present, absent, types, capsys):
    assert main(["config", "--keys", "--kind", kind]) == 0
    lines = capsys.readouterr().out.splitlines()
    keys = {line.split()[0] for line in lines if not line.startswith(" ")}
    assert set(present) <= keys and not keys & set(absent)
    assert [line.split()[0] for line in lines if line.startswith("  ")] == types  # space parameter types


@pytest.mark.parametrize("checkpointed", [True, False])
def test_ctrl_c_during_train_says_how_to_continue(tmp_path, monkeypatch, capsys, checkpointed):
    import busray.training

    def interrupted_fit(cfg, reporter=None, run_dir=None):
        if checkpointed:
            (Path(run_dir) / "checkpoints").mkdir(parents=True)
            (Path(run_dir) / "checkpoints" / "last.pt").write_bytes(b"")
        raise KeyboardInterrupt

    monkeypatch.setattr(busray.training, "fit", interrupted_fit)
    out = tmp_path / "run"
    assert main(["train", *_sets(tiny("train.epochs=3")), "--out", str(out)]) == 130
    err = capsys.readouterr().err.splitlines()
    hint = f"interrupted; the run keeps its last checkpoint: busray train --out {out} --resume continues it"
    assert err == ([hint] if checkpointed else []) + ["busray: interrupted"]
    assert out.exists() is checkpointed  # a run with nothing to continue leaves no folder

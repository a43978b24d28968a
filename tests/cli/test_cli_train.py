"""The plain ``busray`` commands: data synth, train, evaluate, predict, config; and their errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from busray.cli import main

from tinyrun import tiny


def _sets(overrides):
    return [arg for o in overrides for arg in ("--set", o)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", *_sets(tiny("train.epochs=1")), "--out", str(out)]) == 0
    return out


def test_train_prints_metrics_and_writes_run(trained, capsys):
    assert (trained / "metrics.json").is_file() and (trained / "checkpoints" / "best.pt").is_file()


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

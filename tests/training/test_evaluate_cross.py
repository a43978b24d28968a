"""``busray evaluate``: cross-dataset evaluation (classes mapped by name), --batch-size, --out."""

from __future__ import annotations

import json
import math
import shutil

import pandas as pd
import pytest

from busray.cli import main
from busray.data.embedded import materialize

from tinyrun import tiny

SYNTH = "synthetic:n=48,size=64"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A BUSI-style (normal/benign/malignant) model trained for one epoch."""
    out = tmp_path_factory.mktemp("cross") / "run"
    sets = [arg for o in tiny("train.epochs=1", f"data.root={SYNTH}") for arg in ("--set", o)]
    assert main(["train", *sets, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def two_class_folder(tmp_path_factory):
    """A BUSI-layout folder with benign/ and malignant/ only (like BUSI-WHU: benign is label 0)."""
    source = materialize(SYNTH)
    root = tmp_path_factory.mktemp("two") / "bm"
    for cls in ("benign", "malignant"):
        shutil.copytree(source / cls, root / cls)
    return root


def _csv_manifest(folder, rows) -> None:
    lines = ["image,mask,label"] + [f"{image},{mask},{label}" for image, mask, label in rows]
    (folder / "manifest.csv").write_text("\n".join(lines) + "\n")


def _evaluate(capsys, *argv) -> dict:
    assert main(["evaluate", *map(str, argv), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_a_two_class_folder_is_mapped_by_name(run, two_class_folder, tmp_path, capsys):
    metrics = _evaluate(capsys, run, "--data", two_class_folder, "--split", "all", "--out", tmp_path / "e")
    table = pd.read_csv(tmp_path / "e" / "per_image.csv")
    assert len(table) == len(list(two_class_folder.glob("*/*_mask.png")))
    folder_class = table["name"].str.split("/").str[0]
    assert (table["label_name"] == folder_class).all()            # benign stays benign (index 1)
    assert set(table["label"]) == {1, 2}
    assert metrics["all/clf/acc"] == pytest.approx((table["pred_name"] == table["label_name"]).mean())
    assert math.isnan(metrics["all/clf/auc"])                    # no normal images: undefined
    assert 0.0 <= metrics["all/clf/bm_acc"] <= 1.0 and 0.0 <= metrics["all/clf/bm_auc"] <= 1.0
    for column in ("prob_normal", "prob_benign", "prob_malignant", "seg/iou", "seg/dice", "tp",
                   "upa_w_seg_1", "upa_w_clf_4"):
        assert column in table.columns, column
    saved = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert saved["dataset_classes"] == ["benign", "malignant"]
    assert saved["model_classes"] == ["normal", "benign", "malignant"]


def test_a_csv_manifest_gets_the_same_labels_as_the_folder(run, two_class_folder, capsys):
    """A manifest without normal images used to load with benign = 0 and score a shifted label."""
    rows = [(p.relative_to(two_class_folder), str(p.relative_to(two_class_folder)).replace(
        ".png", "_mask.png"), p.parent.name)
        for p in sorted(two_class_folder.glob("*/*.png")) if not p.stem.endswith("_mask")]
    _csv_manifest(two_class_folder, rows)
    try:
        via_csv = _evaluate(capsys, run, "--data", two_class_folder / "manifest.csv", "--split", "all")
    finally:
        (two_class_folder / "manifest.csv").unlink()
    via_folder = _evaluate(capsys, run, "--data", two_class_folder, "--split", "all")
    for key in ("all/clf/acc", "all/clf/bm_acc", "all/clf/bm_auc", "all/seg/iou_pooled"):
        assert via_csv[key] == pytest.approx(via_folder[key], abs=1e-6), key


def test_classes_the_model_lacks_are_refused_in_one_line(run, two_class_folder, tmp_path, capsys):
    image = next(two_class_folder.glob("benign/*).png"))
    shutil.copy(image, tmp_path / "a.png")
    _csv_manifest(tmp_path, [("a.png", "", "cyst"), ("a.png", "", "benign")])
    assert main(["evaluate", str(run), "--data", str(tmp_path), "--split", "all"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("busray: error:") and "\n" not in err
    assert "(benign, cyst)" in err and "(normal, benign, malignant)" in err


def test_batch_size_does_not_change_the_metrics(run, capsys):
    one = _evaluate(capsys, run, "--batch-size", "1")
    many = _evaluate(capsys, run, "--batch-size", "64")
    assert one.keys() == many.keys()
    for key, value in many.items():
        assert one[key] == pytest.approx(value, abs=1e-5, nan_ok=True), key


def test_out_is_not_overwritten_without_asking(run, tmp_path, capsys):
    assert main(["evaluate", str(run), "--out", str(tmp_path)]) == 0
    assert "wrote" in capsys.readouterr().out
    assert main(["evaluate", str(run), "--out", str(tmp_path)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["evaluate", str(run), "--out", str(tmp_path), "--overwrite"]) == 0


def test_the_console_says_what_was_scored(run, capsys):
    images = json.loads((run / "split.json").read_text())["sizes"]["val"]
    assert main(["evaluate", str(run), "--split", "val", "--batch-size", "5"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith(f"scored {run / 'checkpoints' / 'best.pt'} on the val split of ")
    assert first.endswith(f"(synthetic): {images} images, batches of 5"), first

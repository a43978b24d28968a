"""End to end on real local Ray: a 2-variant x 2-seed ablation (tiny encoder, synthetic data), its resume,
and the report in every format with every figure, built only from the store and the run folders."""

from __future__ import annotations

import json

import pytest
import yaml
from PIL import Image

from busray.ablation import run_ablation
from busray.ablation.report import FIGURE_FILES, build_report
from busray.ablation.stats import BootstrapConfig
from busray.cli import main
from busray.results import ResultsStore

pytestmark = [pytest.mark.ray, pytest.mark.slow]

ABLATION = {
    "kind": "ablation",
    "name": "mini",
    "base": {
        "model": {"encoder": "test_efficientnet", "weights": "none", "decoder_channels": [16, 8, 8, 8],
                  "clf_dim": 16},
        "data": {"root": "synthetic:n=36,size=64", "image_size": 64, "detect_near_duplicates": False},
        "train": {"epochs": 2, "batch_size": 4, "steps_per_epoch": 3, "progress": False, "tb_images": 0,
                  "num_threads": 1, "patience": 0},
    },
    "variants": {"baseline": {"model.hmsf": False, "model.tim": False, "model.upa": False}, "full": {}},
    "seeds": 2,
    "max_concurrent": 1,  # one trial actor for all four runs: each new one imports torch (~7 CPU-s)
    "resources": {"workers": 1, "cpus_per_worker": 1},
}


@pytest.fixture(scope="module")
def ablation_store(local_ray, tmp_path_factory):
    folder = tmp_path_factory.mktemp("abl")
    spec = folder / "mini.yaml"
    spec.write_text(yaml.safe_dump(ABLATION))
    storage = folder / "store"
    outcome = run_ablation(spec, storage=str(storage), progress=False)
    return spec, storage, outcome


def test_every_variant_and_seed_is_one_row(ablation_store):
    _, storage, outcome = ablation_store
    runs = ResultsStore(storage).runs(sweep="mini")
    assert outcome.planned == 4 and len(runs) == 4, runs[["variant", "seed", "status", "error"]]
    assert sorted(zip(runs["variant"], runs["seed"])) == [("baseline", 0), ("baseline", 1), ("full", 0), ("full", 1)]
    assert (runs["status"] == "completed").all()
    assert set(runs.loc[runs["variant"] == "baseline", "model.tim"]) == {False}
    assert runs["test/seg/iou"].notna().all()


def test_resume_skips_completed_runs(ablation_store):
    spec, storage, _ = ablation_store
    again = run_ablation(spec, storage=str(storage), resume=True, progress=False)
    assert again.counts.get("completed") == 4
    assert len(ResultsStore(storage).runs(sweep="mini")) == 4  # nothing re-run or re-recorded


@pytest.mark.parametrize("fmt", ["md", "tex", "csv", "html"])
def test_report_in_every_format(ablation_store, fmt, tmp_path):
    _, storage, _ = ablation_store
    path = build_report(ResultsStore(storage), "mini", fmt, tmp_path / fmt, boot=BootstrapConfig(n_boot=200)).path
    text = path.read_text()
    assert path.suffix == f".{fmt}" and "baseline" in text and "full" in text
    provenance = json.loads((tmp_path / fmt / "provenance.json").read_text())
    assert provenance and "mini" in json.dumps(provenance)
    for name in FIGURE_FILES.values() if fmt != "csv" else ():
        with Image.open(tmp_path / fmt / name) as image:
            assert image.format == "PNG" and min(image.size) > 100


def test_report_command(ablation_store, tmp_path, capsys):
    _, storage, _ = ablation_store
    assert main(["report", "mini", "--storage", str(storage), "--out", str(tmp_path / "r")]) == 0
    assert "mean ± std over seeds" in (tmp_path / "r" / "report.md").read_text()
    printed = capsys.readouterr().out  # the table on the console too, then where the files are
    assert printed.startswith("Test metrics (%), mean ± std over seeds")
    stats, deltas = printed.split("Δ vs baseline (baseline)")
    assert {line.split()[0] for line in stats.splitlines() if line.startswith(("baseline ", "full "))} == \
        {"baseline", "full"}
    assert any(line.startswith("full ") for line in deltas.splitlines())  # (the baseline has no Δ row)
    assert not any(line.startswith("baseline ") for line in deltas.splitlines())
    written = f"report written to {tmp_path / 'r' / 'report.md'} (all tables, figures, provenance)"
    assert printed.rstrip().endswith(written)
    assert main(["report", "mini", "--storage", str(storage), "--out", str(tmp_path / "ci"), "--spread", "ci"]) == 0
    assert "mean ± 95% CI of the mean over seeds (Student t)" in (tmp_path / "ci" / "report.md").read_text()
    assert main(["report", "nothing", "--storage", str(storage), "--out", str(tmp_path / "x")]) == 2
    assert "nothing" in capsys.readouterr().err

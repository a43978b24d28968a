"""``busray confirm`` on a tiny sweep through the real CLI and local Ray: the sweep's top configs and the
paper-default reference with fresh seeds, recorded as their own group, a report with the paired
differences and their CIs, and how often the winner stays the best."""

from __future__ import annotations

import json

import pytest

from busray.ablation.confirm import REFERENCE, confirm_plan
from busray.cli import main
from busray.config import Config
from busray.results import ResultsStore
from busray.sweep import run_sweep

pytestmark = [pytest.mark.ray, pytest.mark.slow]

SWEEP = {
    "name": "tinyc",
    "base": {"model": {"encoder": "test_efficientnet", "weights": "none", "decoder_channels": [16, 8, 8, 8],
                       "clf_dim": 16},
             "data": {"root": "synthetic:n=36,size=64", "image_size": 64, "detect_near_duplicates": False},
             "train": {"epochs": 2, "batch_size": 4, "steps_per_epoch": 3, "progress": False, "tb_images": 0,
                       "num_threads": 1, "patience": 0}},
    "space": {"model.tau": {"type": "uniform", "low": 0.2, "high": 1.2},
              "loss.w_seg": {"type": "uniform", "low": 0.5, "high": 0.9}},
    "num_trials": 3, "max_concurrent": 1, "scheduler": {"type": "none"}, "seeds": [0],
    "resources": {"workers": 1, "cpus_per_worker": 1},
}


@pytest.fixture(scope="module")
def swept(local_ray, tmp_path_factory):
    storage = tmp_path_factory.mktemp("confirm") / "store"
    run_sweep(SWEEP, storage=str(storage), progress=False)
    return storage


def test_the_plan_is_the_top_configs_and_the_papers_defaults(swept):
    runs = ResultsStore(swept).runs(sweep="tinyc")
    plan = confirm_plan(runs, "tinyc", top=2, seeds=2)
    best = runs.sort_values("val/score", ascending=False).iloc[0]
    names = list(plan.spec["variants"])
    assert names[:2] == [REFERENCE, f"top1_{best['trial_id']}"] and names[2].startswith("top2_")
    winner, reference = plan.spec["variants"][plan.winner], plan.spec["variants"][REFERENCE]
    assert winner["model.tau"] == best["model.tau"] and winner["train.epochs"] == 2
    assert (reference["model.tau"], reference["loss.w_seg"], reference["loss.w_clf"]) == \
        (Config().model.tau, Config().loss.w_seg, Config().loss.w_clf)  # the searched keys at the paper's values
    assert reference["model.encoder"] == "test_efficientnet"  # the rest as the winner's
    assert plan.spec["seeds"] == [1, 2] and plan.spec["baseline"] == REFERENCE  # seeds the sweep never used


def test_confirm_runs_records_and_reports(swept, capsys):
    assert main(["confirm", "tinyc", "--storage", str(swept), "--top", "2", "--seeds", "2", "--no-progress"]) == 0
    out = capsys.readouterr().out
    runs = ResultsStore(swept).runs(sweep="tinyc_confirm")
    assert len(runs) == 6 and set(runs["status"]) == {"completed"} and sorted(set(runs["seed"])) == [1, 2]
    assert "Δ vs baseline (reference)" in out and "[95% CI]" in out  # paired differences, with their CIs
    assert "the sweep's winner top1_" in out and "fresh seeds by val/score" in out
    report = swept / "reports" / "tinyc_confirm"
    text = (report / "report.md").read_text()
    assert "The sweep's winner on fresh seeds" in text and "reference" in text
    stability = json.loads((report / "winner.json").read_text())
    assert stability["seeds"] == 2 and 0 <= stability["val_wins"] <= 2
    # resumable: the same command again runs nothing new
    assert main(["confirm", "tinyc", "--storage", str(swept), "--top", "2", "--seeds", "2", "--resume",
                 "--no-progress"]) == 0
    assert len(ResultsStore(swept).runs(sweep="tinyc_confirm")) == 6

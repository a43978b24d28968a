"""The whole report from fake-but-realistic run folders: 2 variants × 2 seeds, every format."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from busray.ablation import report as report_module
from busray.ablation.render import CONSOLE_WIDTH, console_table
from busray.ablation.report import FIGURE_FILES, ReportError, build_report
from busray.ablation.stats import BootstrapConfig

BOOT = BootstrapConfig(n_boot=300, seed=0)
N_TEST, SIZE, SPLIT = 18, 32, "split-7f3a"
LEVELS = (1, 2, 3, 4)


def _write_run(run_dir: Path, seed: int, quality: float, modules_on: bool) -> dict[str, float]:
    """Write history.csv, test_predictions.parquet, test_samples.npz, metrics.json; return test metrics."""
    rng = np.random.default_rng(seed)
    run_dir.mkdir(parents=True)
    labels = np.arange(N_TEST) % 3
    lesion = labels != 0
    iou = np.where(lesion, np.clip(rng.uniform(0.45, 0.75, N_TEST) + quality, 0, 1), 1.0)
    correct = rng.uniform(size=N_TEST) < 0.7 + quality
    pred = np.where(correct, labels, (labels + 1) % 3)
    tp = np.where(lesion, np.round(200 * iou), 0)              # 200 - tp pixels wrong, half FP half FN
    fp = np.where(lesion, (200 - tp) // 2, rng.integers(0, 30, N_TEST))
    fn = np.where(lesion, 200 - tp - fp, 0)
    frame = {"name": [f"case_{i:03d}" for i in range(N_TEST)], "label": labels, "pred": pred,
             **{f"prob_{c}": np.where(pred == k, 0.8, 0.1)
                for k, c in enumerate(("normal", "benign", "malignant"))},
             "has_lesion": lesion, "seg/iou": iou, "seg/dice": 2 * iou / (1 + iou), "tp": tp, "fp": fp, "fn": fn}
    pooled = tp[lesion].sum() / (tp + fp + fn)[lesion].sum()
    for k in LEVELS:
        w_seg = rng.uniform(0.3, 0.7, N_TEST) if modules_on else np.full(N_TEST, np.nan)
        frame |= {f"upa_w_seg_{k}": w_seg, f"upa_w_clf_{k}": 1 - w_seg,
                  f"tim_seg2clf_{k}": rng.uniform(0.2, 0.6, N_TEST) if modules_on else np.nan,
                  f"tim_clf2seg_{k}": rng.uniform(0.0, 0.2, N_TEST) if modules_on else np.nan}
    pd.DataFrame(frame).to_parquet(run_dir / "test_predictions.parquet")
    epochs = np.arange(1, 7)
    pd.DataFrame({"epoch": epochs, "train/loss": 1 / epochs, "val/loss": 1.1 / epochs,
                  "val/seg/iou": (0.5 + quality) * (1 - np.exp(-epochs / 2)),
                  "val/clf/acc": (0.6 + quality) * (1 - np.exp(-epochs / 3))}).to_csv(run_dir / "history.csv",
                                                                                      index=False)
    _write_samples(run_dir / "test_samples.npz", frame["name"][:4], rng)
    test = {"seg/iou": float(iou[lesion].mean()), "seg/dice": float(frame["seg/dice"][lesion].mean()),
            "seg/sens": 0.75 + quality, "seg/prec": 0.78 + quality, "clf/acc": float(correct.mean()),
            "clf/f1": 0.8 + quality, "clf/auc": 0.9 + quality / 2, "clf/prec": 0.8 + quality,
            "seg/iou_pooled": float(pooled), "seg/dice_pooled": float(2 * pooled / (1 + pooled))}
    (run_dir / "metrics.json").write_text(json.dumps({"status": "completed", "test": test,
                                                      "split_hash": SPLIT, "dataset": "busi"}))
    return test


def _write_samples(path: Path, names: list[str], rng: np.random.Generator) -> None:
    yy, xx = np.mgrid[:SIZE, :SIZE]
    mask = np.stack([((yy - 16) ** 2 + (xx - 14 - i) ** 2 < 50) for i in range(len(names))]).astype(np.uint8)
    prob = np.clip(mask * 190 + rng.integers(0, 90, mask.shape), 0, 255).astype(np.uint8)
    image = rng.integers(0, 256, mask.shape).astype(np.uint8)
    np.savez(path, names=np.array(names), image=image, mask=mask, prob=prob)


def _row(root: Path, variant: str, seed: int, quality: float, modules_on: bool, **extra) -> dict:
    run_dir = root / "runs" / f"{variant}_s{seed}"
    test = _write_run(run_dir, seed, quality, modules_on)
    return {"sweep": "table2", "sweep_id": "sw-001", "trial_id": f"{variant}-{seed}", "variant": variant,
            "seed": seed, "status": "completed", "run_dir": str(run_dir), "dataset": "busi",
            "split_hash": SPLIT, "model.hmsf": modules_on, "model.tim": modules_on, "model.upa": modules_on,
            "finished_at": pd.Timestamp("2025-01-01") + pd.Timedelta(hours=seed),
            **{f"test/{k}": v for k, v in test.items()}, **extra}


@pytest.fixture()
def runs(tmp_path) -> pd.DataFrame:
    rows = [_row(tmp_path, "baseline", s, 0.0, False) for s in (0, 1)]
    rows += [_row(tmp_path, "full", s, 0.15, True) for s in (0, 1)]
    failed = {**rows[0], "trial_id": "full-9", "variant": "full", "seed": 9, "status": "failed",
              "run_dir": str(tmp_path / "gone")}
    return pd.DataFrame(rows + [failed])


@pytest.fixture()
def text_only(monkeypatch):
    """For tests that read only the report's text: skip drawing the figures (~2.5 CPU-s a report on
    the CI machine); test_report_in_every_format and the Fig. 3 test draw them all."""
    monkeypatch.setattr(report_module, "_write_figures", lambda *args: [])


def _assert_png(path: Path) -> None:
    with Image.open(path) as image:
        assert image.format == "PNG" and 300 <= image.size[0] <= 4000 and 200 <= image.size[1] <= 4000


@pytest.mark.parametrize("fmt", ["md", "tex", "html", "csv"])
def test_report_in_every_format(runs, tmp_path, fmt):
    out = tmp_path / "report"
    path = build_report(runs, "table2", fmt, out, boot=BOOT).path
    assert path == out / f"report.{fmt}"
    for name in FIGURE_FILES.values():
        _assert_png(out / name)
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["n_runs"] == 4 and provenance["excluded_runs"] == {"failed": 1}
    assert provenance["split_hashes"] == [SPLIT]
    assert provenance["seeds"] == {"baseline": [0, 1], "full": [0, 1]}
    assert "variant 'full'" in provenance["figures"][0]["caption"]  # Fig. 3 from the model with TIM/UPA
    text = path.read_text()
    if fmt == "csv":
        frame = pd.read_csv(io.StringIO(text))
        iou = frame[frame["metric"] == "seg/iou"].set_index("variant")
        assert iou.loc["full", "d_base"] > 10 and bool(iou.loc["full", "d_base_significant"])
        return
    for needle in ("table2", SPLIT, "sw-001", "full-1", "busi", *FIGURE_FILES.values()):
        assert needle in text, needle
    assert "Table 2 (HMSF+TIM+UPA)" in text and "74.50" in text  # BUSI: the paper's row beside ours
    assert "fewer than 3 seeds" in text                         # 2 seeds: the significance warning
    assert "Fig. 3:" not in text                                # no "Figure 1: Fig. 3: ..." captions
    if fmt == "tex":                                            # tables to \input, provenance as comments
        assert r"\documentclass" not in text and r"\includegraphics" not in text
        assert r"\label{tab:table2-metrics}" in text and "% Dataset: busi" in text
    else:
        assert "Figure 1: TIM displacement and UPA weights" in text and "Figure 3: Test images" in text


def test_iou_and_dice_follow_the_papers_pooled_convention(runs, tmp_path, text_only):
    text = build_report(runs, "table2", "md", tmp_path / "r", boot=BOOT).path.read_text()
    main = text.split("**Additional")[0]
    full = runs[(runs["variant"] == "full") & (runs["status"] == "completed")]
    assert f"| full | 2 | **{100 * full['test/seg/iou_pooled'].mean():.2f}** ±" in main
    assert "Seg IoU per-image" in text and "pooled over each run's lesion test images" in text
    assert "over seeds × test images for IoU, Dice, Acc," in text   # pooled Δs resampled over images too
    legacy = runs.drop(columns=["test/seg/iou_pooled", "test/seg/dice_pooled"])   # runs from before pooling
    old = build_report(legacy, "table2", "md", tmp_path / "old", boot=BOOT).path.read_text()
    assert f"| full | 2 | **{100 * full['test/seg/iou'].mean():.2f}** ±" in old and "per-image" not in old


def test_identical_variant_is_marked_not_significant(runs, tmp_path, text_only):
    copies = runs[runs["variant"] == "baseline"].assign(variant="baseline_again", trial_id="again")
    text = build_report(pd.concat([runs, copies]), "table2", "md", tmp_path / "r", boot=BOOT,
                        order=["baseline", "full", "baseline_again"]).path.read_text()
    block = text.split("Δ vs baseline")[1].split("Δ vs previous")[0]
    again = next(line for line in block.splitlines() if line.startswith("| baseline_again"))
    full = next(line for line in block.splitlines() if line.startswith("| full"))
    assert again.count("†") == 8  # every metric identical to the baseline
    assert "†" not in full.split(" | ")[2]  # the full model's IoU gain is real


def test_relative_run_dirs_store_object_and_duplicates(runs, tmp_path, text_only):
    relative = runs.assign(run_dir=[str(Path(d).relative_to(tmp_path)) for d in runs["run_dir"]])
    stale = relative.iloc[[2]].assign(finished_at=pd.Timestamp("2020-01-01"), run_dir="runs/missing")

    class Store:
        def runs(self, sweep):
            return pd.concat([stale, relative])[lambda f: f["sweep"] == sweep]

    path = build_report(Store(), "table2", "md", tmp_path / "r", boot=BOOT, run_root=tmp_path,
                        show_paper=False).path
    text = path.read_text()
    assert "Runs: 4 completed" in text and "paper, Table 2" not in text


@pytest.mark.parametrize("fmt", ["md", "html"])
def test_a_variant_whose_every_run_failed_is_named_under_the_table(runs, tmp_path, text_only, fmt):
    nan = runs[runs["variant"] == "full"].assign(variant="nan", status="failed", trial_id=["n0", "n1", "n9"],
                                                 error="NonFiniteLoss: loss is NaN at epoch 2")
    path = build_report(pd.concat([runs, nan]), "table2", fmt, tmp_path / fmt, boot=BOOT,
                        order=["baseline", "full", "nan", "later"]).path
    results = path.read_text().split("Figures")[0]
    assert "Not in the tables (no completed run): nan (3 failed, e.g. NonFiniteLoss: loss is NaN at epoch 2); " \
           "later (no runs recorded)" in results
    assert "| nan |" not in results and "<td>nan</td>" not in results
    assert report_module.read_provenance(path)["variants_without_runs"] == {
        "nan": "3 failed, e.g. NonFiniteLoss: loss is NaN at epoch 2", "later": "no runs recorded"}
    every = build_report(runs, "table2", fmt, tmp_path / f"{fmt}-all", boot=BOOT).path.read_text()
    assert "Not in the tables" not in every  # (the failed run of 'full' is one of several seeds)


def test_ablation_without_diagnostics_skips_fig3(runs, tmp_path):
    out = tmp_path / "r"
    text = build_report(runs[runs["variant"] == "baseline"], "table2", "md", out, boot=BOOT).path.read_text()
    assert "skipped, no variant recorded TIM/UPA diagnostics" in text
    assert not (out / FIGURE_FILES["fig3"]).exists() and (out / FIGURE_FILES["curves"]).exists()
    assert "Δ vs baseline" not in text  # a single variant has nothing to compare


@pytest.mark.parametrize("change, message", [
    (lambda r: r.assign(status="failed"), "ablation 'table2': no completed runs"),
    (lambda r: r.assign(sweep="other"), "no completed runs"),
    (lambda r: r[r["variant"] != "baseline"], "baseline variant 'baseline' has no completed runs"),
    (lambda r: r.assign(variant=None), "'table2' is a sweep, not an ablation .* 'busray results show table2'"),
])
def test_clear_errors(runs, tmp_path, change, message, text_only):
    with pytest.raises(ReportError, match=message):
        build_report(change(runs), "table2", "md", tmp_path / "r", boot=BOOT, baseline="baseline")


def test_missing_run_file_is_named(runs, tmp_path, text_only):
    (Path(runs.loc[0, "run_dir"]) / "test_predictions.parquet").unlink()
    with pytest.raises(ReportError, match=r"baseline_s0/test_predictions.parquet: missing"):
        build_report(runs, "table2", "md", tmp_path / "r", boot=BOOT)


def test_samples_file_without_an_array_skips_the_grid_and_says_why(runs, tmp_path):
    path = Path(runs.loc[0, "run_dir"]) / "test_samples.npz"
    arrays = dict(np.load(path))
    np.savez(path, **{k: v for k, v in arrays.items() if k != "prob"})
    out = tmp_path / "r"
    text = build_report(runs, "table2", "md", out, boot=BOOT).path.read_text()
    assert f"{path}: unreadable (ValueError: missing array(s) ['prob'])" in text
    assert not (out / FIGURE_FILES["grid"]).exists() and (out / FIGURE_FILES["curves"]).exists()


def test_provenance_lists_runs_in_the_tables_order(runs, tmp_path, text_only):
    build_report(runs, "table2", "md", tmp_path / "r", boot=BOOT, order=["full", "baseline"])
    listed = json.loads((tmp_path / "r" / "provenance.json").read_text())["runs"]
    assert [(r["variant"], r["seed"]) for r in listed] == [("full", 0), ("full", 1), ("baseline", 0), ("baseline", 1)]


def test_unknown_format_is_an_error(runs, tmp_path):
    with pytest.raises(ReportError, match="unknown report format 'pdf'"):
        build_report(runs, "table2", "pdf", tmp_path / "r")


PAPER_SETTING_ROW = {"model.encoder": "tf_efficientnet_b4", "model.weights": "imagenet", "data.image_size": 224,
                     "train.batch_size": 24, "train.epochs": 100, "train.lr": 3e-4, "train.lr_min": 1.5e-6,
                     "train.patience": 10}


@pytest.mark.parametrize("fmt, changes, caution", [
    ("md", {}, None),
    ("md", {"model.weights": "none", "data.image_size": 64},
     "these runs differ in model.weights none (paper: imagenet); data.image_size 64 (paper: 224)."),
    ("md", {"train.lr": 0.00030000000001}, None),             # the same number, written another way
    ("tex", {"train.epochs": 15}, "differ in train.epochs 15 (paper: 100)."),
    ("md", {"model.tau": 1.0, "loss.tversky_alpha": 0.5},  # TIM's strength and the loss constants too
     "differ in model.tau 1.0 (paper: 0.7); loss.tversky_alpha 0.5 (paper: 0.3)."),
])
def test_a_setting_unlike_the_papers_is_said_under_the_first_table(runs, tmp_path, fmt, changes, caution, text_only):
    runs = runs.assign(**{**PAPER_SETTING_ROW, **changes})
    text = build_report(runs, "table2", fmt, tmp_path / "r", boot=BOOT).path.read_text().replace("\\_", "_")
    first_table_end = text.index("Additional test metrics")
    if caution is None:
        assert "Not the paper's setting" not in text
    else:
        assert text.index("Not the paper's setting (Sec. 2.1, 2.4, 3.1)") < first_table_end and caution in text
    provenance = json.loads((tmp_path / "r" / "provenance.json").read_text())
    assert provenance["setting"]["data.image_size"] == [changes.get("data.image_size", 224)]


def test_no_setting_caution_without_the_papers_rows(runs, tmp_path, text_only):
    runs = runs.assign(**{**PAPER_SETTING_ROW, "model.weights": "none", "dataset": "busi_whu"})
    text = build_report(runs, "table2", "md", tmp_path / "r", boot=BOOT).path.read_text()
    assert "Not the paper's setting" not in text and "Setting: model.encoder tf_efficientnet_b4;" in text


def test_the_console_table_is_the_main_block_and_the_deltas_to_the_baseline(runs, tmp_path, text_only):
    """What ``busray report`` prints: the report's own table, aligned for a terminal."""
    report = build_report(runs, "table2", "md", tmp_path / "r", boot=BOOT)
    text = console_table(report.table)
    assert max(map(len, text.splitlines())) <= CONSOLE_WIDTH and "|" not in text and "**" not in text
    main, deltas = text.split("Δ vs baseline (baseline), percentage points [95% CI]")
    assert main.startswith("Test metrics (%), mean ± std over seeds; best marked *")
    full = runs[(runs["variant"] == "full") & (runs["status"] == "completed")]["test/seg/iou_pooled"] * 100
    row = main.splitlines().index(next(line for line in main.splitlines() if line.startswith("full ")))
    assert main.splitlines()[row].split()[:3] == ["full", "2", f"{full.mean():.2f}*"]   # best IoU: marked
    assert main.splitlines()[row + 1].split()[:2] == ["±", f"{full.std():.2f}"]         # its spread below
    assert "Table 2 (HMSF+TIM+UPA)" in main and "fewer than 3 seeds" in main          # paper row, warning
    iou = report.table.rows[1].vs_baseline["seg/iou_pooled"]
    lines = deltas.splitlines()
    row = lines.index(next(line for line in lines if line.startswith("full ")))
    assert lines[row].split()[2] == f"{iou.diff:+.2f}" and f"[{iou.lo:+.2f}, {iou.hi:+.2f}]" in lines[row + 1]
    assert "Additional" not in text and "vs previous" not in text  # those are in the report files

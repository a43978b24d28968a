"""What the Ray engine costs around training: the same N trials three ways, measured in one run.

(a) an in-process Optuna loop over ``busray.training.fit`` (the script a user would write instead of
    busray), run as its own Python process so its imports count as busray's do;
(b) ``busray sweep`` of the same configs (same sampler, seed and space; one trial at a time, no
    early stopping, so every trial trains all its epochs);
(c) one ``busray train`` of the first config.

Printed: wall times, the Ray cost of one more trial (the mean gap between one trial's ``fit`` ending
and the next one's starting, from the run folders' own timestamps), the pacing ratio (a trial's mean
epoch time over (c)'s), the share of slot-seconds spent inside ``fit``, and (b)/(a).

    python benchmarks/sweep_overhead.py                 # 8 trials x 4 epochs, tiny model, 64 px
    python benchmarks/sweep_overhead.py --trials 2 --epochs 1 --images 48 --json out.json  # test's run
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import yaml

from busray.runfolder import RunFolder

BASE = {
    "model": {"encoder": "test_efficientnet", "weights": "none", "decoder_channels": [32, 24, 16, 16],
              "clf_dim": 32},
    "data": {"image_size": 64, "detect_near_duplicates": False},  # root: synthetic, --images of them
    "train": {"batch_size": 8, "eval_batch_size": 32, "lr": 2.0e-3, "progress": False, "tb_images": 2,
              "num_threads": 1, "patience": 0},
}
SPACE = {"loss.w_seg": {"type": "uniform", "low": 0.5, "high": 0.9},
         "model.tau": {"type": "uniform", "low": 0.2, "high": 1.2}}

OPTUNA_LOOP = textwrap.dedent('''
    import sys, yaml, optuna
    from busray.config import config_from_dict
    from busray.training import fit
    spec = yaml.safe_load(open(sys.argv[1])); out = sys.argv[2]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=0))
    for i in range(spec["num_trials"]):
        trial = study.ask()
        w_seg = trial.suggest_float("loss.w_seg", 0.5, 0.9)
        tau = trial.suggest_float("model.tau", 0.2, 1.2)
        base = {k: dict(v) for k, v in spec["base"].items()}
        base["loss"] = {"w_seg": w_seg, "w_clf": round(1 - w_seg, 12)}
        base["model"]["tau"] = tau
        result = fit(config_from_dict(base), run_dir=f"{out}/trial{i}")
        study.tell(trial, result.val["score"])
''')


def base_config(epochs: int, images: int) -> dict:
    """BASE with ``epochs`` and ``images`` synthetic images (the data key's ``n``)."""
    data = {**BASE["data"], "root": f"synthetic:n={images},size={BASE['data']['image_size']}"}
    return {**BASE, "data": data, "train": {**BASE["train"], "epochs": epochs}}


def sweep_file(folder: Path, trials: int, epochs: int, images: int) -> Path:
    spec = {"name": "overhead", "base": base_config(epochs, images),
            "space": SPACE, "objective": "val/score:max", "num_trials": trials, "max_concurrent": 1,
            "scheduler": {"type": "none"}, "resources": {"workers": 1, "cpus_per_worker": 1},
            "search": {"sampler": "tpe", "seed": 0}}
    path = folder / "overhead.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def timed(cmd: list[str], env: dict) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def fits(folders: list[Path]) -> list[dict]:
    """Per run folder: fit's start/end (UTC seconds), wall time and epoch times."""
    rows = []
    for folder in folders:
        run = RunFolder(folder)
        outcome = run.read_outcome()
        epochs = [r["time/epoch_s"] for r in run.read_history()]
        rows.append({"start": _ts(outcome.started_at), "end": _ts(outcome.finished_at),
                     "wall": outcome.wall_time_s, "epoch_s": sum(epochs) / max(1, len(epochs))})
    return sorted(rows, key=lambda r: r["start"])


def _ts(text: str) -> float:
    return dt.datetime.fromisoformat(text).timestamp()


def measure(trials: int, epochs: int, images: int, work: Path) -> dict:
    env = {**os.environ, "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "disabled")}
    spec = sweep_file(work, trials, epochs, images)
    busray = str(Path(sys.executable).with_name("busray"))
    loop_s = timed([sys.executable, "-c", OPTUNA_LOOP, str(spec), str(work / "loop")], env)
    sweep_s = timed([busray, "sweep", str(spec), "--storage", str(work / "st"), "--no-progress"], env)
    cfg = work / "train.yaml"
    cfg.write_text(yaml.safe_dump(base_config(epochs, images)))
    train_s = timed([busray, "train", "--config", str(cfg), "--out", str(work / "train")], env)
    loop = fits(sorted((work / "loop").iterdir()))
    sweep = fits(sorted((work / "st" / "overhead" / "runs").iterdir()))
    train = fits([work / "train"])
    gaps = [b["start"] - a["end"] for a, b in zip(sweep, sweep[1:])]
    return {
        "trials": trials, "epochs": epochs, "images": images, "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "optuna_loop_s": loop_s, "busray_sweep_s": sweep_s, "busray_train_s": train_s,
        "sweep_over_loop": sweep_s / loop_s,
        "ray_cost_per_extra_trial_s": sum(gaps) / len(gaps) if gaps else float("nan"),
        "fit_in_trial_over_train": (sum(r["wall"] for r in sweep) / len(sweep)) / train[0]["wall"],
        "fit_in_loop_over_train": (sum(r["wall"] for r in loop) / len(loop)) / train[0]["wall"],
        "pacing_ratio": (sum(r["epoch_s"] for r in sweep) / len(sweep)) / train[0]["epoch_s"],
        "fit_share_of_slot_s": sum(r["wall"] for r in sweep) / sweep_s,
    }


def report(m: dict) -> str:
    return "\n".join([
        f"sweep overhead: {m['trials']} trials x {m['epochs']} epochs on {m['images']} synthetic images, "
        f"one at a time ({m['machine']})",
        f"  (a) in-process Optuna loop over fit   {m['optuna_loop_s']:7.1f} s",
        f"  (b) busray sweep                      {m['busray_sweep_s']:7.1f} s   (b)/(a) = {m['sweep_over_loop']:.2f}",
        f"  (c) busray train (one config)         {m['busray_train_s']:7.1f} s",
        f"  Ray cost of one more trial            {m['ray_cost_per_extra_trial_s']:7.2f} s",
        f"  fit inside a trial / busray train     {m['fit_in_trial_over_train']:7.2f}x  "
        f"(in the Optuna loop: {m['fit_in_loop_over_train']:.2f}x)",
        f"  pacing (epoch time, trial / train)    {m['pacing_ratio']:7.2f}x",
        f"  slot-seconds spent in fit             {100 * m['fit_share_of_slot_s']:6.0f} %",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--images", type=int, default=120, help="synthetic images (train/val/test split)")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="busray-overhead-") as work:
        figures = measure(args.trials, args.epochs, args.images, Path(work))
    print(report(figures))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

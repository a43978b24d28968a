"""The GPU figures in one command: throughput per precision, one BUSI trial, and trial packing.

1. full-model training img/s (default: tf_efficientnet_b4, 224 px, batch 24) in fp32, bf16,
   bf16 + channels_last, and bf16 + channels_last + ``torch.compile``;
2. the wall time of one 100-epoch BUSI trial (``--data``, default ``../shared/data``) through ``busray sweep``;
3. four trials packed on one GPU (``gpus_per_worker: 0.25``, four at a time) against the same four
   one at a time: trials per hour and mean GPU utilisation (``nvidia-smi``, sampled every second);
4. packing inside one process: four models stacked under ``torch.func.vmap`` against the same four
   stepped one after another (``benchmarks/packing_probe.py``), training img/s.

Prints a table and writes it as JSON; ``--sections`` picks a subset (``benchmarks/gpu_session.sh``
splits them over two device calls). ``--tiny`` runs the same code paths in CPU-sized form (tiny
encoder, 64 px, a few steps, 1-epoch trials on synthetic data, 2 trials at a time against one at a
time, no single long trial), which is what the test suite runs so the script cannot rot.

    python benchmarks/gpu_suite.py --json gpu_suite.json           # on the GPU machine (~8 min, H100)
    python benchmarks/gpu_suite.py --data .data/busi --json out.json  # BUSI copied beside the repo
    python benchmarks/gpu_suite.py --tiny --json /tmp/tiny.json     # anywhere, ~1 min
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

import torch
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from packing_probe import probe_config, stacked_vs_sequential  # noqa: E402  (sibling scripts)
from train_throughput import busray_throughput  # noqa: E402

from busray.training.setup import build_setup  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BUSI = REPO.parent / "shared" / "data"
#: explicit layouts: train.channels_last's default (auto) would turn NHWC on for bf16 and on CPU
PRECISIONS = {"fp32": ["train.amp=off", "train.channels_last=false"],
              "bf16": ["train.amp=bf16", "train.channels_last=false"],
              "bf16+channels_last": ["train.amp=bf16", "train.channels_last=true"],
              "bf16+channels_last+compile": ["train.amp=bf16", "train.channels_last=true", "train.compile=true"]}


def sizes(tiny: bool, data: str) -> dict:
    if tiny:
        # "epochs": None skips the long single trial: the same timed_sweep path as the packing runs;
        # "widths" narrows the decoder (the default 256-wide one is most of a tiny model's CPU time)
        return {"encoder": "test_efficientnet", "size": 64, "batch": 2, "steps": 3, "epochs": None,
                "pack": 2, "pack_epochs": 1, "data": "synthetic:n=24,size=64", "gpu_share": 0.0,
                "widths": {"decoder_channels": [16, 16, 8, 8], "clf_dim": 16}}
    return {"encoder": "tf_efficientnet_b4", "size": 224, "batch": 24, "steps": 30, "epochs": 100,
            "pack": 4, "pack_epochs": 10, "data": data, "gpu_share": 0.25, "widths": {}}


def model_config(s: dict, *overrides: str):
    """``probe_config`` for the suite's model: its encoder and size, the tiny form's narrow decoder."""
    widths = [f"model.{key}={value}" for key, value in s["widths"].items()]
    return probe_config(s["encoder"], s["size"], s["batch"], *widths, *overrides)


def stacking(s: dict) -> dict:
    """Section 4: ``pack`` models stacked in one process vs stepped one after another, both arms in one
    precision: bf16 where vmap's batch-norm rule takes it (on CPU it refuses bf16 inputs), else fp32."""
    errors = []
    for amp in ("bf16", "off"):
        try:
            figures = stacked_vs_sequential(model_config(s, f"train.amp={amp}"),
                                            s["pack"], s["batch"], max(1, s["steps"] // 2))
            return {**figures, "amp": amp}
        except RuntimeError as err:  # say why in the table, keep the other sections' figures
            errors.append(f"amp={amp}: {str(err).splitlines()[0][:100]}")
    return {"k": s["pack"], "error": "; ".join(errors)}


def throughput(s: dict) -> dict[str, float | str]:
    out: dict[str, float | str] = {}
    for name, extra in PRECISIONS.items():
        if "compile" in name and not torch.cuda.is_available():
            out[name] = "n/a (no GPU)"
            continue
        try:
            setup = build_setup(model_config(s, "train.progress=false", *extra), run_dir=None)
            out[name] = busray_throughput(setup, s["batch"], s["steps"]).per_s
        except Exception as err:  # a precision this device cannot run: say so in the table
            out[name] = f"n/a ({type(err).__name__})"
    return out


def sweep_spec(folder: Path, s: dict, name: str, trials: int, concurrent: int, epochs: int, gpus: float) -> Path:
    gpu = torch.cuda.is_available()
    spec = {"name": name, "num_trials": trials, "max_concurrent": concurrent, "objective": "val/score:max",
            "scheduler": {"type": "none"}, "search": {"sampler": "random", "seed": 0},
            "space": {"model.tau": {"type": "uniform", "low": 0.2, "high": 1.2}},
            "resources": {"workers": 1, "cpus_per_worker": 2 if gpu else 1, "gpus_per_worker": gpus},
            "base": {"model": {"encoder": s["encoder"], "weights": "none", **s["widths"]},
                     "data": {"root": s["data"], "image_size": s["size"]},
                     "train": {"epochs": epochs, "batch_size": s["batch"],
                               "progress": False, "patience": 0, "amp": "auto"}}}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@contextlib.contextmanager
def shared_ray(slots: int) -> Iterator[dict]:
    """One local Ray for every ``busray sweep`` below (they connect through ``RAY_ADDRESS``), so the
    figures compare trials, not cluster start-ups."""
    import ray

    from busray.sweep.cluster import start_local_ray

    started = not ray.is_initialized()  # (the test suite already runs one)
    if started:
        start_local_ray(max_concurrent=slots)
    try:
        yield {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address,
               "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "disabled")}
    finally:
        if started:
            ray.shutdown()


def timed_sweep(spec: Path, storage: Path, env: dict) -> tuple[float, float | None]:
    """Wall seconds of ``busray sweep`` and the mean GPU utilisation (%) meanwhile (None without GPU)."""
    samples: list[float] = []
    stop = threading.Event()
    sampler = threading.Thread(target=_sample_gpu, args=(samples, stop), daemon=True)
    sampler.start()
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "busray", "sweep", str(spec), "--storage",
                    str(storage), "--no-progress"], check=True, env=env, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    stop.set()
    sampler.join()
    return wall, (sum(samples) / len(samples) if samples else None)


def _sample_gpu(samples: list[float], stop: threading.Event) -> None:
    while not stop.wait(1.0):
        try:
            text = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                                  capture_output=True, text=True, timeout=5).stdout
            samples.append(float(text.split()[0]))
        except (OSError, ValueError, IndexError, subprocess.SubprocessError):
            return  # no nvidia-smi: no utilisation figure


def trials_and_packing(s: dict, work: Path) -> dict:
    gpu = torch.cuda.is_available()
    n = s["pack"]
    with shared_ray(n) as env:
        one = timed_sweep(sweep_spec(work, s, "one", 1, 1, s["epochs"], 1.0 if gpu else 0.0), work / "st1",
                          env)[0] if s["epochs"] else None
        seq, seq_util = timed_sweep(sweep_spec(work, s, "seq", n, 1, s["pack_epochs"], 1.0 if gpu else 0.0),
                                    work / "st2", env)
        packed, pack_util = timed_sweep(sweep_spec(work, s, "packed", n, n, s["pack_epochs"],
                                                   s["gpu_share"] if gpu else 0.0), work / "st3", env)
    return {"one_trial_s": one, "trials": n, "sequential_s": seq, "packed_s": packed,
            "sequential_trials_per_h": 3600 * n / seq, "packed_trials_per_h": 3600 * n / packed,
            "sequential_gpu_util": seq_util, "packed_gpu_util": pack_util}


def table(s: dict, figures: dict, device: str) -> str:
    def fmt(v, unit=""):
        return f"{v:.1f}{unit}" if isinstance(v, (int, float)) else (str(v) if v is not None else "n/a")

    rows = [f"device: {device}", f"model: {s['encoder']}, {s['size']} px, batch {s['batch']}"
            + "".join(f", {key} {value}" for key, value in s["widths"].items()), "",
            "| measure | value |", "|---|---|"]
    rows += [f"| train img/s, {name} | {fmt(value)} |" for name, value in figures.get("throughput", {}).items()]
    if "one_trial_s" in figures:
        t = figures
        rows += [f"| one {s['epochs']}-epoch trial through busray sweep | {fmt(t['one_trial_s'], ' s')} |"
                 if t["one_trial_s"] is not None else "| one long trial through busray sweep | not run (--tiny) |",
                 f"| {t['trials']} trials one at a time | {fmt(t['sequential_trials_per_h'])} trials/h, "
                 f"GPU {fmt(t['sequential_gpu_util'], ' %')} |",
                 f"| {t['trials']} trials packed | {fmt(t['packed_trials_per_h'])} trials/h, "
                 f"GPU {fmt(t['packed_gpu_util'], ' %')} |",
                 f"| packed / one at a time | {t['sequential_s'] / t['packed_s']:.2f}x |"]
    st = figures.get("stacking")
    if st and "error" in st:
        rows += [f"| {st['k']} models stacked (vmap), one process | n/a ({st['error']}) |"]
    elif st:
        rows += [f"| {st['k']} models stepped one after another, one process, amp={st['amp']} | "
                 f"{fmt(st['sequential_img_s'])} img/s |",
                 f"| {st['k']} models stacked (vmap), one process, amp={st['amp']} | "
                 f"{fmt(st['stacked_img_s'])} img/s |",
                 f"| stacked / one after another | {st['stacked_over_sequential']:.2f}x |"]
    return "\n".join(rows)


SECTIONS = ("throughput", "trials", "stacking")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="CPU-sized run of every section (no long single trial)")
    parser.add_argument("--json", help="write the figures here too")
    parser.add_argument("--data", default=str(BUSI), help=f"BUSI folder for the trials (default {BUSI})")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated subset of {', '.join(SECTIONS)} (default: all)")
    args = parser.parse_args(argv)
    wanted = [w.strip() for w in args.sections.split(",") if w.strip()]
    if unknown := sorted(set(wanted) - set(SECTIONS)):
        parser.error(f"--sections: unknown {', '.join(unknown)} (choose from {', '.join(SECTIONS)})")
    s = sizes(args.tiny, args.data)
    if "trials" in wanted and not args.tiny and not Path(s["data"]).is_dir():
        parser.error(f"--data: BUSI not found at {s['data']}")
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    figures: dict = {}
    if "throughput" in wanted:
        figures["throughput"] = throughput(s)
    if "trials" in wanted:
        with tempfile.TemporaryDirectory(prefix="busray-gpu-suite-") as work:
            figures.update(trials_and_packing(s, Path(work)))
    if "stacking" in wanted:
        figures["stacking"] = stacking(s)
    print(table(s, figures, device))
    if args.json:
        Path(args.json).write_text(json.dumps({"device": device, "sizes": s, **figures}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())

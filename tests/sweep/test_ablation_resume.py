"""An ablation cut by Ctrl-C, then resumed: the cut run continues in the folder it was cut in.

The cut is the real CLI (``python -m busray ablate``) in a subprocess on the session's local Ray,
SIGINTed once its run has trained an epoch; the resume runs in this process (``run_ablation``, as
``busray ablate --resume`` calls it), on the same Ray. Its Tune round is a new one (new Tune trial
ids), so the run finds its folder only through its run id (``<variant>-s<seed>-<key>``). A run that
failed before the cut (NaN) runs again, from scratch, and its new row replaces the failed one.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from busray.ablation import run_ablation
from busray.results import ResultsStore
from busray.runfolder import RunFolder

from sweephelpers import TINY_SPEC, interrupt_once_training

pytestmark = [pytest.mark.ray, pytest.mark.slow]
EPOCHS = 12  # enough that Ctrl-C after the first lands while the run still trains


def test_an_interrupted_ablation_continues_its_cut_run_in_the_same_folder(local_ray, synth_root, short_dir):
    spec = _one_run_ablation(Path(short_dir), synth_root)
    storage, runs_dir = f"{short_dir}/abl", Path(short_dir) / "abl" / "cut" / "runs"
    out = interrupt_once_training([sys.executable, "-m", "busray", "ablate", str(spec), "--storage", storage,
                                   "--no-progress"], runs_dir)
    folders = sorted(p.name for p in runs_dir.iterdir())
    assert [re.sub(r"[0-9a-f]{8}$", "KEY", name) for name in folders] == ["nan-s0-KEY", "only-s0-KEY"]
    failed, folder = folders[0], runs_dir / folders[1]
    assert f"1 unfinished ({folder.name})" in out  # the NaN run failed first, then this one was cut
    cut = RunFolder(folder)
    before, cut_started = cut.read_history(), cut.read_outcome().started_at
    first = ResultsStore(storage).runs(sweep="cut")
    assert list(first["trial_id"]) == [failed]  # a cut run is not recorded

    outcome = run_ablation(spec, storage=storage, resume=True, progress=False)
    assert (outcome.counts["completed"], outcome.counts["failed"]) == (1, 1) and not outcome.interrupted
    assert sorted(p.name for p in runs_dir.iterdir()) == folders  # no second folder for either run
    history = cut.read_history()
    assert [int(row["epoch"]) for row in history] == list(range(1, EPOCHS + 1))
    assert history[:len(before)] == before  # the epochs trained before the cut were not trained again
    runs = ResultsStore(storage).runs(sweep="cut").set_index("trial_id")
    assert sorted(runs.index) == folders and runs.loc[folder.name, "status"] == "completed"
    assert runs.loc[folder.name, "started_at"] == pd.Timestamp(cut_started)  # it began in the first process
    assert runs.loc[failed, "status"] == "failed"  # ran again (and failed again): its row was replaced
    assert runs.loc[failed, "finished_at"] > first["finished_at"].iloc[0]


def _one_run_ablation(folder: Path, root: str) -> Path:
    base = yaml.safe_load(TINY_SPEC.read_text())["base"]
    base["data"]["root"] = root
    base["train"]["epochs"] = EPOCHS
    spec = folder / "cut.yaml"
    variants = {"nan": {"train.debug_nan_at_epoch": 1}, "only": {}}  # in this order: NaN first
    spec.write_text(yaml.safe_dump({"kind": "ablation", "name": "cut", "base": base, "variants": variants,
                                    "seeds": 1, "max_concurrent": 1}, sort_keys=False))
    return spec

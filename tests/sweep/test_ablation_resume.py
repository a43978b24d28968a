"""An ablation cut by Ctrl-C, then resumed: the cut run continues in the folder it was cut in.

The cut is the real CLI (``python -m busray ablate``) in a subprocess on the session's local Ray,
SIGINTed once its run has trained an epoch; the resume runs in this process (``run_ablation``, as
``busray ablate --resume`` calls it), on the same Ray. Its Tune round is a new one (new Tune trial
ids), so the run finds its folder only through its run id (``<variant>-s<seed>-<key>``).
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
    (folder,) = runs_dir.iterdir()
    assert re.fullmatch(r"only-s0-[0-9a-f]{8}", folder.name) and f"1 unfinished ({folder.name})" in out
    cut = RunFolder(folder)
    before, cut_started = cut.read_history(), cut.read_outcome().started_at
    assert ResultsStore(storage).runs().empty  # a cut run is not recorded

    outcome = run_ablation(spec, storage=storage, resume=True, progress=False)
    assert outcome.counts.get("completed") == 1 and not outcome.interrupted
    assert [p.name for p in runs_dir.iterdir()] == [folder.name]  # no second folder for the same run
    history = cut.read_history()
    assert [int(row["epoch"]) for row in history] == list(range(1, EPOCHS + 1))
    assert history[:len(before)] == before  # the epochs trained before the cut were not trained again
    runs = ResultsStore(storage).runs(sweep="cut")
    assert list(runs["trial_id"]) == [folder.name] and list(runs["status"]) == ["completed"]
    assert runs["started_at"].iloc[0] == pd.Timestamp(cut_started)  # the run began in the first process


def _one_run_ablation(folder: Path, root: str) -> Path:
    base = yaml.safe_load(TINY_SPEC.read_text())["base"]
    base["data"]["root"] = root
    base["train"]["epochs"] = EPOCHS
    spec = folder / "cut.yaml"
    spec.write_text(yaml.safe_dump({"kind": "ablation", "name": "cut", "base": base, "variants": {"only": {}},
                                    "seeds": 1, "max_concurrent": 1}))
    return spec

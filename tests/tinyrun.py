"""Shared test helpers: tiny-run overrides (a full-model run in seconds on a CPU) and the BUSI location."""

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def busi_root() -> Path | None:
    """``$BUSRAY_BUSI_ROOT`` or ``../shared/data`` beside the checkout (CI lays it there)."""
    env = os.environ.get("BUSRAY_BUSI_ROOT")
    candidate = Path(env) if env else REPO.parent / "shared" / "data"
    return candidate if (candidate / "Dataset_BUSI_with_GT").is_dir() else None


TINY = [
    "model.encoder=test_efficientnet", "model.weights=none", "model.decoder_channels=[16,16,8,8]",
    "model.clf_dim=16", "data.root=synthetic:n=48,size=64", "data.image_size=64",
    "data.detect_near_duplicates=false", "train.batch_size=4", "train.eval_batch_size=16",
    "train.progress=false", "train.num_threads=1", "train.tb_images=2", "train.patience=0",
]


def tiny(*extra: str) -> list[str]:
    return [*TINY, *extra]


def round_saved_by_tune(state) -> None:
    """Make ``state``'s last round look as Tune leaves it once it runs (an ``experiment_state-*.json``
    in ``<sweep>/tune/<round>/``), so the sweep counts as started (``busray.experiment.state``)."""
    folder = Path(state.folder) / "tune" / state.rounds[-1]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "experiment_state-2026-01-01_00-00-00.json").write_text("{}")

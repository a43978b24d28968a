"""cpu_channels_last.py in tiny form (two ``busray train`` runs), so it cannot rot; timings are printed,
never asserted on."""

from __future__ import annotations

import json

import pytest
from benchhelpers import load_benchmark

pytestmark = pytest.mark.slow


def test_cpu_channels_last_tiny(tmp_path, capsys):
    out = tmp_path / "layout.json"
    assert load_benchmark("cpu_channels_last").main(["--tiny", "--pairs", "1", "--epochs", "1",
                                                      "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert [len(figures["runs"][arm]) for arm in ("NCHW", "NHWC")] == [1, 1]
    assert all(len(run["epochs"]) == 1 and run["epoch_s"] > 0 for arm in figures["runs"].values() for run in arm)
    assert len(figures["ratios"]) == 1 and figures["fastest_ratio"] > 0
    assert "NCHW/NHWC" in capsys.readouterr().out

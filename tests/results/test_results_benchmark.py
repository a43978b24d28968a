"""``benchmarks/store_scale.py`` runs in tiny form, so it cannot rot (timings printed, not asserted)."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "store_scale.py"


def test_store_scale_tiny(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("store_scale", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "figures.json"
    assert module.main(["--n", "12", "--repeat", "1", "--storage", str(tmp_path / "st"),
                        "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    for key in ("write_s", "list_before_s", "list_after_s", "show_before_s", "show_after_s",
                "compact_s", "import_s"):
        assert math.isfinite(figures[key]) and figures[key] > 0, key
    assert figures["compact_summary"] == "compacted runs: 12 file(s) -> 1 part of 12 row(s)"
    assert "results show  before / after" in capsys.readouterr().out

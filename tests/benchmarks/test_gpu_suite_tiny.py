"""gpu_suite.py's sections without Ray, in tiny form on CPU, and its argument checks (the trials section
runs on the session's Ray in test_benchmarks_tiny.py). Figures are printed, never asserted on timing."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from benchhelpers import BENCHMARKS, load_benchmark

pytestmark = pytest.mark.slow


def test_gpu_suite_throughput_and_stacking_tiny(tmp_path, capsys):
    out = tmp_path / "gpu.json"
    assert load_benchmark("gpu_suite").main(["--tiny", "--sections", "throughput,stacking", "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert figures["throughput"]["fp32"] > 0 and figures["throughput"]["bf16+channels_last"] > 0
    assert figures["throughput"]["bf16+channels_last+compile"] == "n/a (no GPU)"
    assert figures["stacking"]["k"] == 2 and figures["stacking"]["stacked_img_s"] > 0
    assert figures["stacking"]["amp"] in ("bf16", "off")  # CPU: vmap refuses bf16 batch norm, fp32 is used
    assert "one_trial_s" not in figures
    table = capsys.readouterr().out
    assert "| train img/s, fp32 |" in table and "stacked (vmap)" in table and "trials packed" not in table


@pytest.mark.parametrize("argv, message", [
    (["--sections", "throughput,warp"], "--sections: unknown warp"),
    (["--sections", "trials", "--data", "/nonexistent/busi"], "--data: BUSI not found at /nonexistent/busi"),
])
def test_gpu_suite_refuses_bad_arguments_in_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        load_benchmark("gpu_suite").main(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_gpu_session_script_parses_and_refuses_an_unknown_step(tmp_path):
    script = BENCHMARKS / "gpu_session.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    done = subprocess.run(["bash", str(script), "warmup"], capture_output=True, text=True,
                          env={**os.environ, "OUT": str(tmp_path)})
    assert done.returncode == 2 and "unknown step 'warmup' (prepare|install|trials|table2)" in done.stderr

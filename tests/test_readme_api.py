"""The README's Python API example runs as written (in a temporary folder, on local Ray): a second
``run_sweep`` of the same name is refused, and a second run of the block refuses to train over the first
run's folder, as ``busray sweep`` and ``busray train`` would, in Python words."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from busray.training.runguard import RunFolderError

pytestmark = [pytest.mark.ray, pytest.mark.slow]
README = Path(__file__).resolve().parents[1] / "README.md"


def _api_block() -> str:
    text = README.read_text()
    section = text[text.index("## Python API"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_python_api_example_runs(local_ray, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    block = compile(_api_block(), str(README), "exec")
    exec(block, {"__name__": "readme"})
    out = capsys.readouterr().out
    assert out.startswith("completed ")
    assert "sweep api (" in out and "2 trials" in out
    refused = f"sweep 'api' already exists in {tmp_path.resolve() / 'store_api' / 'api'}: use resume=True to " \
              "finish it or add_trials=N to extend it, or another storage=\n"
    assert refused in out  # the block's second run_sweep, in run_sweep's words
    assert (tmp_path / "runs" / "api" / "metrics.json").is_file()
    assert (tmp_path / "store_api" / "results").is_dir()
    finished = (tmp_path / "runs" / "api" / "metrics.json").read_bytes()
    with pytest.raises(RunFolderError, match=r"runs/api already holds a run; pass resume=True .* overwrite=True"):
        exec(block, {"__name__": "readme"})  # the second time: fit refuses, the run is untouched
    assert (tmp_path / "runs" / "api" / "metrics.json").read_bytes() == finished

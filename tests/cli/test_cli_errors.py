"""The CLI's boundary and run-folder rules beyond the bad-input corpus: what *does* happen.

--overwrite keeps the old run until the new one completes, --resume continues with the saved config,
the real console script exits 2 with one line, a closed pipe is quiet, --debug shows the traceback,
export infers its format, and ``config --keys`` speaks YAML.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from badcases import tree_hash
from busray.cli import main
from busray.cli.errors import CliError, one_line
from busray.cli.outputs import export_target

from tinyrun import tiny

BUSRAY = Path(sys.executable).with_name("busray")
CLI_MAIN = importlib.import_module("busray.cli.main")   # the module (busray.cli.main is also the function)


def _sets(*overrides: str) -> list[str]:
    return [a for o in overrides for a in ("--set", o)]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("errs") / "run"
    assert main(["train", *_sets(*tiny("train.epochs=1")), "--out", str(out)]) == 0
    return out


def test_resume_without_config_reuses_the_saved_one(run, tmp_path, capsys):
    copy = tmp_path / "run"
    subprocess.run(["cp", "-a", str(run), str(copy)], check=True)
    saved = (copy / "config.yaml").read_text()
    assert main(["train", "--resume", "--out", str(copy), "--set", "train.epochs=2"]) == 0
    assert json.loads((copy / "metrics.json").read_text())["epochs_run"] == 2
    assert (copy / "config.yaml").read_text() == saved.replace("epochs: 1", "epochs: 2")


def test_overwrite_keeps_the_old_run_when_the_new_one_fails(run, tmp_path, capsys):
    copy = tmp_path / "run"
    subprocess.run(["cp", "-a", str(run), str(copy)], check=True)
    before = tree_hash(copy)
    code = main(["train", *_sets(*tiny("train.epochs=1")), "--data", str(tmp_path / "nodata"),
                 "--out", str(copy), "--overwrite"])
    assert code == 2 and "nodata" in capsys.readouterr().err
    assert tree_hash(copy) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]   # no backup left behind


def test_overwrite_replaces_a_run_once_the_new_one_completes(run, tmp_path, capsys):
    copy = tmp_path / "run"
    subprocess.run(["cp", "-a", str(run), str(copy)], check=True)
    old = (copy / "config.yaml").read_text()
    assert main(["train", *_sets(*tiny("train.epochs=1", "model.tau=0.5")), "--out", str(copy),
                 "--overwrite"]) == 0
    assert "tau: 0.5" in (copy / "config.yaml").read_text() and old != (copy / "config.yaml").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_predict_overwrite_replaces_predictions(run, tmp_path, capsys):
    from badcases import scan, write_png

    image = write_png(tmp_path / "scan.png", scan())
    out = tmp_path / "pred"
    for extra in ([], ["--overwrite"]):
        assert main(["predict", str(run), str(image), "--out", str(out), *extra]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["predictions.csv", "scan.pred_mask.png"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []   # staging removed


@pytest.mark.parametrize("out, fmt, expected", [
    ("t.parquet", None, ("t.parquet", "parquet")), ("t.md", None, ("t.md", "md")),
    ("t", None, ("t.csv", "csv")), (None, None, ("tau.csv", "csv")), (None, "md", ("tau.md", "md")),
    ("t.txt", "md", ("t.txt", "md")),
])
def test_export_format_from_extension(out, fmt, expected, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path, chosen = export_target(out, fmt, "tau")
    assert (str(path), chosen) == expected


def test_export_format_clash_is_refused(tmp_path):
    with pytest.raises(CliError, match="x.csv"):
        export_target(str(tmp_path / "x.csv"), "parquet", "tau")


def test_real_console_script_one_line_exit_2(tmp_path):
    proc = subprocess.run([str(BUSRAY), "train", "--set", "model.tau=.nan"], capture_output=True,
                          text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "busray: error: model.tau: nan is not a finite number"
    assert list(tmp_path.iterdir()) == []


def test_closed_pipe_is_quiet(tmp_path):
    proc = subprocess.run(f"'{BUSRAY}' config --keys | head -1", shell=True, capture_output=True,
                          text=True, cwd=tmp_path, timeout=120, executable="/bin/bash")
    assert proc.stdout.startswith("model.") and proc.stderr == ""
    reader_gone = subprocess.Popen([str(BUSRAY), "config", "--keys"], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE)
    reader_gone.stdout.close()                 # the reader closes before busray writes a byte
    assert reader_gone.wait(timeout=120) == 141
    assert reader_gone.stderr.read() == b""


def test_debug_shows_the_traceback(capsys):
    assert main(["--debug", "train", "--set", "model.tau=.nan"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("busray: error: model.tau")


def test_unexpected_errors_and_ctrl_c(monkeypatch, capsys):
    def boom(args):
        raise KeyError("config")
    parser_args = ["config", "--keys"]
    monkeypatch.setattr(CLI_MAIN, "build_parser", _parser_with_handler(boom))
    assert main(parser_args) == 2
    line = capsys.readouterr().err.strip()
    assert line.startswith("busray: error: unexpected KeyError: missing key 'config'") and "\n" not in line

    def interrupt(args):
        raise KeyboardInterrupt
    monkeypatch.setattr(CLI_MAIN, "build_parser", _parser_with_handler(interrupt))
    assert main(parser_args) == 130


def _parser_with_handler(handler):
    def build():
        parser = CLI_MAIN.Parser(prog="busray")
        sub = parser.add_subparsers(dest="command", required=True)
        p = sub.add_parser("config")
        p.add_argument("--keys", action="store_true")
        p.set_defaults(handler=handler)
        return parser
    return build


@pytest.mark.parametrize("err, text", [
    (OSError(28, "No space left on device", "/x/run/config.yaml"), "/x/run/config.yaml: no space left on device"),
    (OSError(30, "Read-only file system", "/ro/a"), "/ro/a: read-only file system"),
    (MemoryError(), "out of memory"),
    (RecursionError(), "input nested too deeply"),
    (ValueError("model.tau: bad\nsecond line"), "model.tau: bad"),
    (RuntimeError("x" * 1000), "unexpected RuntimeError: xxx"),
    (type("TuneError", (Exception,), {})('Traceback (most recent call last):\n  File "t.py", line 1\n'
                                         'ValueError: Trial returned no `val/score`\n'),
     "unexpected TuneError: ValueError: Trial returned no `val/score` (rerun with busray --debug"),
])
def test_one_line_messages(err, text):
    line = one_line(err)
    assert line.startswith(text) and "\n" not in line and len(line) <= 400


def test_config_keys_in_yaml_spelling(capsys):
    assert main(["config", "--keys"]) == 0
    lines = {line.split()[0]: line.split()[1] for line in capsys.readouterr().out.splitlines()}
    assert lines["model.hmsf"] == "true" and lines["data.classes"] == "null"
    assert lines["model.tim_levels"] == "[1," and lines["train.device"] == "auto"


def test_help_shows_defaults_and_examples(capsys):
    assert main(["data", "synth", "--help"]) == 0
    out = capsys.readouterr().out
    assert "(default: 120)" in out and "examples:" in out


def test_synth_limits_match_the_generator():
    from busray.cli.argtypes import SYNTH_MAX_SIZE, SYNTH_MIN_SIZE
    from busray.data import synth

    assert (SYNTH_MIN_SIZE, SYNTH_MAX_SIZE) == (synth.MIN_SIZE, synth.MAX_SIZE)

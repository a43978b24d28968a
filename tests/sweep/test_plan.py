"""``busray sweep|ablate --dry-run``: checked as a run is, the plan printed, nothing written (no Ray)."""

from __future__ import annotations

from pathlib import Path

import pytest

from busray.cli import main
from busray.sweep.cluster import local_resources
from busray.sweep.placement import room_for_trials
from busray.experiment import ResourcesSpec
from busray.experiment import load_ablation_spec, open_sweep
from busray.results import ResultsStore, RunIdentity, run_row
from busray.runfolder import RunOutcome

from sweephelpers import TINY_SPEC
from tinyrun import round_saved_by_tune

SYNTH = "base.data.root=synthetic:n=24,size=64"
ABLATION = """kind: ablation
name: abl
base:
  model: {encoder: test_efficientnet, weights: none}
  data: {root: "synthetic:n=24,size=64", image_size: 64}
variants:
  full: {}
  no_upa: {model: {upa: false}}
seeds: 2
"""


def _started_sweep(storage: Path) -> None:
    """A sweep named like TINY_SPEC's that has run a round (its state saved)."""
    state = open_sweep(storage, "tiny", resume=False, add_trials=None)
    state.new_round()
    round_saved_by_tune(state)


@pytest.mark.parametrize("extra, existing, first_line", [
    ([], False, "sweep tiny: 4 trials, 2 at a time; objective val/score:max"),
    (["--set", "num_trials=9"], False, "sweep tiny: 9 trials, 2 at a time; objective val/score:max"),
    (["--add-trials", "3"], True, "sweep tiny: 3 more trials in the study of tiny-"),
    (["--resume"], True, "sweep tiny: resume tiny-"),
])
def test_a_sweep_plan_says_what_would_run(tmp_path, capsys, extra, existing, first_line):
    storage = tmp_path / "st"
    if existing:
        _started_sweep(storage)
    before = sorted(tmp_path.rglob("*"))
    assert main(["sweep", str(TINY_SPEC), "--set", SYNTH, "--storage", str(storage), "--dry-run", *extra]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(first_line), lines[0]
    assert "search: tpe sampler (seed 0); ASHA early stopping (grace 1 epoch, keeps 1/2 per rung)" in lines
    assert "each trial: 1 worker x 1 CPU; seeds [0, 1]" in lines and f"storage: {storage}" in lines
    space = lines[lines.index("space (5):") + 1:lines.index("base (set by the file and --set):")]
    assert [line.split()[0] for line in space] == ["loss.w_seg", "model.tau", "model.upa", "model.upa_norm",
                                                  "train.lr"]
    assert space[1].split()[1:] == ["loguniform", "0.1", "..", "1.5"]
    assert space[3].endswith("categorical ['batch', 'running'] (when model.upa=True)")
    assert lines[-1].startswith("nothing was started (--dry-run)")
    assert sorted(tmp_path.rglob("*")) == before  # nothing written


@pytest.mark.parametrize("extra, existing, message", [
    ([], True, "sweep 'tiny' already exists in {st}/tiny: use --resume to finish it or --add-trials N to extend "
               "it, or another --storage"),  # the CLI's words (run_sweep's name its arguments)
    (["--resume", "--add-trials", "2"], True, "--resume and --add-trials N are exclusive: resume first, then add trials"),
    (["--add-trials", "2"], False, "no study to add trials to"),
    (["--set", "base.train.epochz=2"], False, "epochz"),
    (["--set", "base.model.encoder=efficientnet_b99"], False, "tiny.yaml: base.model.encoder: unknown timm model "
                                                               "'efficientnet_b99'"),
    (["--set", "space.model.encoder={type: categorical, choices: [test_efficientnet, tf_efficientnet_b44]}"], False,
     "tiny.yaml: space.model.encoder[1]: unknown timm model 'tf_efficientnet_b44'"),
    # the local Ray a run here would start, by Ray's own detection: no machine here has 1000 CPUs
    (["--set", "resources.cpus_per_worker=1000"], False, "resources.cpus_per_worker: a trial needs 1000 CPU "
                                                          "(1 worker(s) x 1000) but the Ray cluster has"),
])
def test_a_sweep_plan_refuses_what_the_run_would(tmp_path, capsys, extra, existing, message):
    if existing:
        _started_sweep(tmp_path / "st")
    argv = ["sweep", str(TINY_SPEC), "--set", SYNTH, "--storage", str(tmp_path / "st"), "--dry-run", *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("busray: error:") and message.format(st=tmp_path / "st") in err and "\n" not in err


@pytest.mark.parametrize("kind, first_line", [("sweep", "sweep tiny: 4 trials"), ("ablate", "ablation abl: 2 variants")])
def test_a_plan_this_machine_cannot_place_is_printed_then_refused(tmp_path, capsys, monkeypatch, kind, first_line):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    spec = TINY_SPEC
    if kind == "ablate":
        spec = tmp_path / "abl.yaml"
        spec.write_text(ABLATION)
    before = sorted(tmp_path.rglob("*"))
    argv = [kind, str(spec), "--set", "resources.cpus_per_worker=1000", "--storage", str(tmp_path / "st"), "--dry-run"]
    assert main(argv if kind == "ablate" else argv + ["--set", SYNTH]) == 2
    out, err = capsys.readouterr()
    assert out.splitlines()[0].startswith(first_line) and out.splitlines()[-1] == "nothing was started (--dry-run)"
    assert err.startswith("busray: error: resources.cpus_per_worker: a trial needs 1000 CPU") and err.count("\n") == 1
    assert "with RAY_ADDRESS set, a run uses that cluster" in err
    assert sorted(tmp_path.rglob("*")) == before  # nothing written


@pytest.mark.parametrize("address", [None, "10.0.0.5:6379"])
def test_the_plan_says_where_trials_were_checked_to_fit(tmp_path, capsys, monkeypatch, address):
    if address:
        monkeypatch.setenv("RAY_ADDRESS", address)
    else:
        monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert main(["sweep", str(TINY_SPEC), "--set", SYNTH, "--storage", str(tmp_path / "st"), "--dry-run"]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    if address:
        assert last.endswith("whether the cluster of RAY_ADDRESS can place a trial is checked when it runs")
    else:
        cpus = local_resources()["CPU"]
        assert cpus >= 1 and f"a trial fits the local Ray a run would start ({cpus:g} CPU" in last


@pytest.mark.parametrize("resources, workers, have, room", [
    ({"cpus_per_worker": 1.0}, 1, {"CPU": 2.0, "GPU": 0.0}, 2),
    ({"cpus_per_worker": 1.0}, 2, {"CPU": 2.0, "GPU": 0.0}, 1),            # busi_gpu.yaml's DDP pair here
    ({"cpus_per_worker": 2.0, "gpus_per_worker": 0.25}, 1, {"CPU": 16.0, "GPU": 1.0}, 4),  # 4 packed on a GPU
    ({"cpus_per_worker": 0.0}, 1, {"CPU": 2.0}, 10**9),                      # asks for nothing: no bound
])
def test_room_counts_the_trials_a_cluster_runs_at_once(resources, workers, have, room):
    assert room_for_trials(ResourcesSpec(**resources), workers, [have]) == room


def test_a_plan_says_when_the_machine_runs_fewer_trials_at_once_than_asked(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    cpus = int(local_resources()["CPU"])  # one trial takes them all
    argv = ["sweep", str(TINY_SPEC), "--set", SYNTH, "--set", f"resources.cpus_per_worker={cpus}",
            "--storage", str(tmp_path / "st"), "--dry-run"]
    assert main(argv) == 0
    assert capsys.readouterr().out.splitlines()[-1].endswith("room for 1 trial(s) at a time, not 2: the others wait)")


def test_an_ablation_plan_lists_its_variants_and_runs(tmp_path, capsys):
    spec = tmp_path / "abl.yaml"
    spec.write_text(ABLATION)
    assert main(["ablate", str(spec), "--seeds", "3", "--storage", str(tmp_path / "st"), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    auto = min(int(local_resources()["CPU"]), 6)  # max_concurrent: auto -- one 1-CPU run per core, at most 6
    assert lines[0] == (f"ablation abl: 2 variants x seeds [0, 1, 2] = 6 runs, {auto} at a time (max_concurrent: "
                        "auto, on this machine); objective val/score:max")
    variants = lines[lines.index("variants (their changes to base):") + 1:][:2]
    assert [line.split() for line in variants] == [["full", "(base)"], ["no_upa", "model.upa=False"]]
    assert not (tmp_path / "st").exists()
    spec.write_text(ABLATION.replace("upa: false", "upa: maybe"))
    assert main(["ablate", str(spec), "--storage", str(tmp_path / "st"), "--dry-run"]) == 2
    assert "variants.no_upa.model.upa: expected true or false" in capsys.readouterr().err
    spec.write_text(ABLATION.replace("{model: {upa: false}}", "{model: {encoder: efficientnet_b99}}"))
    assert main(["ablate", str(spec), "--storage", str(tmp_path / "st"), "--dry-run"]) == 2
    assert "abl.yaml: variants.no_upa: model.encoder: unknown timm model 'efficientnet_b99'" in capsys.readouterr().err


def test_an_existing_ablation_is_refused_in_the_command_lines_words(tmp_path, capsys):
    spec = tmp_path / "abl.yaml"
    spec.write_text(ABLATION)
    state = open_sweep(tmp_path / "st", "abl", resume=False, add_trials=None, kind="ablation")
    state.new_round()
    round_saved_by_tune(state)  # it ran
    assert main(["ablate", str(spec), "--storage", str(tmp_path / "st"), "--dry-run"]) == 2
    assert capsys.readouterr().err == (f"busray: error: ablation 'abl' already exists in {tmp_path / 'st' / 'abl'}: "
                                       "use --resume to finish it, or another --storage\n")
    assert main(["ablate", str(spec), "--storage", str(tmp_path / "st"), "--dry-run", "--resume"]) == 0
    assert capsys.readouterr().out.splitlines()[0].endswith("(0 recorded as completed: 4 runs left)")
    first, second = load_ablation_spec(spec).requests()[:2]
    for request, status in ((first, "completed"), (second, "failed")):  # a failed run runs again
        ResultsStore(tmp_path / "st").record_run(run_row(
            RunIdentity("abl", state.sweep_id, request.name, request.variant, request.seed, None),
            request.recorded(), RunOutcome(status=status, best_epoch=1)))
    assert main(["ablate", str(spec), "--storage", str(tmp_path / "st"), "--dry-run", "--resume"]) == 0
    assert capsys.readouterr().out.splitlines()[0].endswith("(1 recorded as completed: 3 runs left)")

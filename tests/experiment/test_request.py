"""Run requests: one function builds what a run trains; sweep and ablation get the same key for the
same experiment; a run's name, seed, threads and resources (no torch, no Ray)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from busray.config import config_keys
from busray.configtools import ConfigError, flatten
from busray.experiment import (RunRequest, build_request, load_ablation_spec, load_sweep_spec)
from busray.experiment.files import ResourcesSpec
from busray.objective import Objective

TINY = Path(__file__).parents[1] / "sweep" / "fixtures" / "tiny.yaml"
ROOT = "base.data.root=synthetic"


def _request(**kw) -> RunRequest:
    args = {"seed": 3, "objective": Objective.parse("val/loss:min"), "resources": ResourcesSpec()}
    return build_request({"model": {"tau": 0.4}}, **{**args, **kw})


def test_a_request_is_a_whole_validated_config():
    request = _request(values={"loss.w_seg": 0.6, "loss.w_clf": 0.4}, variant="v")
    flat = flatten(request.config)
    assert set(flat) == {key for key, _, _ in config_keys()}  # every key of Config, defaults filled in
    assert flat["model.tau"] == 0.4 and flat["loss.w_seg"] == 0.6 and flat["train.seed"] == 3
    assert (flat["train.monitor"], flat["train.monitor_mode"]) == ("val/loss", "min")
    assert request.recorded()["resources"] == {"workers": 1, "cpus_per_worker": 1.0, "gpus_per_worker": 0.0}
    assert request.name == f"v-s3-{request.key[:8]}" and RunRequest.from_dict(request.to_dict()) == request


@pytest.mark.parametrize("variant, name", [("full", "full-s3-"), ("w/o TIM", "w_o_TIM-s3-"), ("../up", "up-s3-")])
def test_an_ablation_runs_name_is_path_safe_and_keyed(variant, name):
    request = _request(variant=variant)
    assert request.name == name + request.key[:8]


def test_the_same_experiment_gets_the_same_key_from_a_sweep_and_an_ablation(tmp_path):
    """A sweep trial that draws what an ablation variant sets is one experiment: one trial key."""
    sweep = load_sweep_spec(TINY, [ROOT, "seeds=[5]"])
    trial = sweep.request("a08529ac", {"loss.w_seg": 0.6, "loss.w_clf": 0.4, "model.tau": 0.3,
                                       "model.upa": True, "model.upa_norm": "batch", "train.lr": 0.001}, 0)
    ablation = load_ablation_spec({"kind": "ablation", "name": "tiny", "base": sweep.base, "seeds": [5],
                                   "resources": {"workers": 1, "cpus_per_worker": 1, "max_failures": 2},
                                   "variants": {"v": {"loss.w_seg": 0.6, "loss.w_clf": 0.4, "model.tau": 0.3,
                                                      "model.upa_norm": "batch", "train.lr": 0.001}}})
    [run] = ablation.requests()
    assert trial.config == run.config and trial.key == run.key
    assert (trial.name, run.name) == ("a08529ac", f"v-s5-{run.key[:8]}")


def test_a_searched_worker_count_is_a_resource_not_a_config_key():
    request = _request(values={"resources.workers": 2, "model.tau": 0.5})
    assert request.workers == 2 and "resources" not in request.config
    assert flatten(request.recorded())["resources.workers"] == 2


@pytest.mark.parametrize("threads, cpus, expected", [(0, 1.0, 1), (0, 4.0, 4), (2, 4.0, 2), (0, 0.5, 1)])
def test_threads_are_the_reserved_cpus_unless_the_config_lowers_them(threads, cpus, expected):
    request = _request(values={"train.num_threads": threads}, resources=ResourcesSpec(cpus_per_worker=cpus))
    assert request.threads() == expected


def test_more_threads_than_reserved_cpus_is_refused():
    with pytest.raises(ConfigError, match=r"^base\.train\.num_threads: 4 threads on resources.cpus_per_worker=2 "
                                          r"would oversubscribe"):
        _request(values={"train.num_threads": 4}, resources=ResourcesSpec(cpus_per_worker=2))


def test_a_drawn_combination_a_rule_forbids_fails_its_trial_instead_of_the_sweep():
    """lr_min above lr: both drawn in range, together invalid. Strict (a file) raises; a sweep's trial
    gets the error, and fails at once with it."""
    values = {"train.lr": 1e-5, "train.lr_min": 1e-4}
    with pytest.raises(ConfigError, match="lr_min"):
        _request(values=values)
    request = _request(values=values, strict=False, name="t1")
    assert request.error.startswith("ConfigError: base.train.lr_min") and request.name == "t1"


def test_the_experiment_package_loads_neither_torch_nor_ray():
    """What to run is read, checked and planned without torch or Ray (a fresh interpreter)."""
    code = ("import sys, busray.experiment as e; e.load_sweep_spec(sys.argv[1], ['base.data.root=synthetic'])"
            ".request('t', {}, 0); print(sorted(m for m in ('torch', 'ray', 'timm') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, str(TINY)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr

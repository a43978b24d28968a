"""Sweep files: parsing, validation before Ray starts (errors name the key), the define-by-run space,
sweep state."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

from busray.configtools import ConfigError, flatten, load_yaml
from busray.results import ResultsStore, RunIdentity, run_row
from busray.runfolder import RunOutcome
from busray.experiment import load_sweep_spec, open_sweep
from busray.experiment.space import DefineByRun
from busray.experiment.state import CLI_WORDS, never_started
from busray.experiment.sweepfile import parse_sweep
from busray.storage import Storage
from tinyrun import round_saved_by_tune

TINY_SPEC = Path(__file__).parents[1] / "sweep" / "fixtures" / "tiny.yaml"


def test_fixture_spec_parses_with_typed_groups():
    spec = load_sweep_spec(TINY_SPEC, ["num_trials=6", "base.train.epochs=2"])
    assert spec.name == "tiny" and spec.num_trials == 6 and spec.base["train"]["epochs"] == 2
    assert list(spec.space) == ["loss.w_seg", "model.tau", "model.upa", "model.upa_norm", "train.lr"]
    assert spec.space["model.tau"].type == "loguniform" and spec.space["model.tau"].low == 0.1
    assert spec.seed_list() == [0, 1]
    assert spec.space["model.upa_norm"].when == {"model.upa": True}
    assert spec.objective.label() == "val/score:max" and spec.scheduler.type == "asha"


#: Overrides whose error names a key that keeps the file's value (the file's low 0.1 of an int parameter).
FILE_VALUE_NAMED = {"space.model.tau.type=int", "objective.metrics=[val/score, val/seg/iou]"}


@pytest.mark.parametrize("override, message", [
    ("space.model.bogus={type: uniform, low: 0, high: 1}", "space: unknown config key 'model.bogus' (known: "),
    ("space.model.tua={type: uniform, low: 0.2, high: 1}", "space: unknown config key 'model.tua'; did you mean 'model.tau'?"),
    ("space.model.tua.low=0.1", "space: unknown config key 'model.tua'"),  # a typo in --set, not a group
    ("space.modle.tau={type: fixed, value: 1}", "space: unknown config key 'modle'; did you mean 'model'?"),
    ("space.model.upa_norm.choices=[softmax]", "space.model.upa_norm: 'softmax' is not one of"),
    ("space.model.tau.high=9", "space.model.tau: 9.0 is outside"),
    ("space.model.tau.low=-1", "space.model.tau.low: a loguniform parameter needs low > 0"),
    ("space.model.tau.type=gaussian", "space.model.tau.type: 'gaussian' is not one of"),
    ("space.model.tau.type=int", "space.model.tau.low: an int parameter needs integer low and high"),
    ("space.model.tau.colour=1", "unknown config key 'space.model.tau.colour'"),
    ("space.model.upa.choices=[]", "space.model.upa.choices: a categorical parameter needs"),
    ("space.model.upa.choices=[true, true]", "space.model.upa.choices: [True, True] lists a value twice"),
    ("space.loss.w_seg.step=0", "space.loss.w_seg.step: 0 is not a number > 0"),
    ("space.loss.w_seg.step=-0.1", "space.loss.w_seg.step: -0.1 is not a number > 0"),
    ("space.loss.w_seg.step=0.5", "space.loss.w_seg.step: 0.5 is larger than the range 0.5 .. 0.9"),
    ("space.train.warmup_epochs={type: int, low: 0, high: 4, step: 0.5}",
     "space.train.warmup_epochs.step: an int parameter needs an integer step"),
    ("space.train.warmup_epochs={type: int, low: 0, high: 99}", "space.train.warmup_epochs: 99 must be below epochs 3"),
    ("space.model.tau.step=0.1", "unknown config key 'space.model.tau.step' (a loguniform parameter takes low, high"),
    ("space.loss.tversky_beta={type: complement, of: loss.tversky_alpha}",
     "space.loss.tversky_beta.of: 'loss.tversky_alpha' is not a parameter listed before"),
    ("space.loss.tversky_beta={type: complement}", "space.loss.tversky_beta.of: a complement parameter names"),
    ("space.model.tau=0.5", "space.model.tau: expected a mapping such as {type: uniform"),
    ("space.loss.w_clf={type: uniform, low: 0.1, high: 0.3}", "space.loss.w_clf: derived as 1 - loss.w_seg"),
    ("base.model.tau=5", "base.model.tau: 5.0 is outside"),
    ("base.modle={tau: 1}", "unknown config key 'modle'"),
    ("objective.metrics=[val/score, val/seg/iou]", "objective.modes: 1 modes for 2 metrics"),
    ("objective.metrics=[test/seg/iou]", "objective.metrics: 'test/seg/iou' is not a val/<metric> key"),
    ("objective=val/seg/iuo:max", "objective: 'val/seg/iuo' is not a metric a run reports (did you mean val/seg/iou"),
    ("objective={metrics: [val/score, clf/accc]}", "objective: 'val/clf/accc' is not a metric a run reports (did "
                                                  "you mean val/clf/acc"),
    ("tracking.mlflow.tracking_uri=htp://host:5000", "tracking.mlflow.tracking_uri: 'htp://host:5000' has a scheme "
                                                     "MLflow does not know ('htp' (did you mean http, https?)"),
    ("tracking.mlflow.tracking_uri=http:///x", "tracking.mlflow.tracking_uri: 'http:///x' names no server"),
    ("tracking.mlflow.tracking_uri=/dev/null/mlruns", "tracking.mlflow.tracking_uri: '/dev/null/mlruns': /dev/null "
                                                      "is not a folder, so /dev/null/mlruns cannot be created"),
    ("tracking.mlflow.tracking_uri=sqlite:////no/such/folder/m.db", "tracking.mlflow.tracking_uri: "
     "'sqlite:////no/such/folder/m.db': folder /no/such/folder not found"),
    ("num_trials=0", "num_trials: 0 is outside"),
    ("max_concurrent=two", "max_concurrent: expected auto or an integer"),
    ("scheduler.reduction_factor=1", "scheduler.reduction_factor: 1.0 is outside"),
    ("resources.gpus_per_worker=-0.5", "resources.gpus_per_worker: -0.5 is outside"),
    ("search.sampler=cmaes", "search.sampler: 'cmaes' is not one of"),
    ("space.resources.cpus_per_worker={type: int, low: 1, high: 2}", "only resources.workers can be searched"),
    ("space.resources.workers={type: categorical, choices: [1, 0]}", "0 is not a worker count"),
    ("name=bad/name", "name: 'bad/name' must be letters"),
    ("seeds=[]", "seeds: at least one seed"),
    ("flavour=1", "unknown config key 'flavour'"),
])
def test_invalid_sweep_files_name_the_key(override, message):
    with pytest.raises(ConfigError) as err:
        load_sweep_spec(TINY_SPEC, [override])
    # named after the --set that gave the value, or the file where the key named holds the file's value
    source = TINY_SPEC if override in FILE_VALUE_NAMED else f"--set {override}"
    assert str(err.value).startswith(f"{source}: ") and message in str(err.value)
    assert "\n" not in str(err.value)


def test_a_space_key_error_never_suggests_base():
    # base.* is for run settings given at the top level; a typo inside space is a typo
    with pytest.raises(ConfigError) as err:
        load_sweep_spec(TINY_SPEC, ["space.model.bogus={type: uniform, low: 0, high: 1}"])
    assert "base" not in str(err.value).replace(str(TINY_SPEC), "")


def test_a_sweep_without_parameters_is_refused_unless_seeds_vary(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("")  # an empty file: the default sweep (8 trials, seed 0), nothing to search
    with pytest.raises(ConfigError, match=r"empty.yaml: space: no parameter to search: all 8 trials would train "
                                          r"one config with seed 0"):
        load_sweep_spec(path)
    assert load_sweep_spec(path, ["seeds=[0, 1, 2]", "num_trials=3"]).space == {}  # repeats, on purpose


def test_a_parameter_without_type_is_uniform():
    spec = load_sweep_spec(TINY_SPEC, ["space.model.tau={low: 0.3, high: 0.9}"])
    tau = spec.space["model.tau"]
    assert (tau.type, tau.low, tau.high) == ("uniform", 0.3, 0.9)


def test_asha_is_rejected_for_multi_objective():
    raw = load_yaml(TINY_SPEC)
    raw["objective"] = {"metrics": ["val/seg/iou", "val/clf/acc"], "modes": ["max", "max"]}
    with pytest.raises(ConfigError, match="scheduler.type: ASHA needs a single objective"):
        parse_sweep(raw)
    raw["scheduler"] = {"type": "none"}
    assert parse_sweep(raw).objective.multi


def test_missing_sweep_file_is_one_line_error(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_sweep_spec(tmp_path / "nope.yaml")


def _sample(spec, n):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3), direction="maximize")
    fn = DefineByRun(spec.space, spec.full_base())
    out = []
    for _ in range(n):
        trial = study.ask()
        values = fn(trial)  # what OptunaSearch merges over the suggested params
        out.append(({**trial.params, **values}, spec.request(f"t{trial.number}", values, trial.number)))
        study.tell(trial, 0.0)
    return out


def test_define_by_run_constraint_conditionals_and_seed_rotation():
    spec = load_sweep_spec(TINY_SPEC)
    samples = _sample(spec, 12)
    for n, (params, request) in enumerate(samples):
        assert params["loss.w_seg"] + params["loss.w_clf"] == pytest.approx(1.0)
        assert 0.5 <= params["loss.w_seg"] <= 0.9 and 0.1 <= params["model.tau"] <= 1.5
        assert ("model.upa_norm" in params) == params["model.upa"]  # conditional on UPA being on
        assert params["train.lr"] == 0.001 and request.seed == [0, 1][n % 2]
        assert flatten(request.config)["train.seed"] == request.seed and request.error is None
        assert {k: flatten(request.recorded())[k] for k in params} == params  # what was drawn is what runs
    assert {p["model.upa"] for p, _ in samples} == {True, False}


def test_a_when_condition_on_a_default_value_holds():
    """model.upa is not in the base: its default (true) makes model.upa_norm drawn."""
    spec = load_sweep_spec(TINY_SPEC, ["space.model.upa={type: fixed, value: true}"])
    del spec.space["model.upa"]
    assert all("model.upa_norm" in params for params, _ in _sample(spec, 4))


def test_a_complement_follows_the_value_it_complements():
    spec = load_sweep_spec(TINY_SPEC, ["space.loss.tversky_alpha={type: uniform, low: 0.2, high: 0.5}",
                                       "space.loss.tversky_beta={type: complement, of: loss.tversky_alpha}"])
    for params, request in _sample(spec, 5):
        loss = request.config["loss"]
        assert loss["tversky_alpha"] + loss["tversky_beta"] == pytest.approx(1.0)
        assert 0.5 <= loss["tversky_beta"] <= 0.8


@pytest.mark.parametrize("words, options", [
    ({}, "use resume=True to finish it or add_trials=N to extend it, or another storage="),  # run_sweep's
    ({"words": CLI_WORDS}, "use --resume to finish it or --add-trials N to extend it, or another --storage"),
])
def test_sweep_state_refuses_a_silent_restart(tmp_path, words, options):
    first = open_sweep(tmp_path, "s", resume=False, add_trials=None)
    assert not (tmp_path / "s").exists()  # nothing on disk until the first round starts
    first.new_round()
    round_saved_by_tune(first)
    with pytest.raises(ConfigError) as err:
        open_sweep(tmp_path, "s", resume=False, add_trials=None, **words)
    assert str(err.value) == f"sweep 's' already exists in {tmp_path.resolve() / 's'}: {options}"
    assert open_sweep(tmp_path, "s", resume=True, add_trials=None).sweep_id == first.sweep_id
    with pytest.raises(ConfigError, match="no study to add trials to"):
        open_sweep(tmp_path, "other", resume=False, add_trials=2)


@pytest.mark.parametrize("words, message", [
    ({}, "resume=True and add_trials=N are exclusive"), ({"words": CLI_WORDS}, "--resume and --add-trials N are exclusive"),
])
def test_resume_and_add_trials_exclude_each_other(tmp_path, words, message):
    with pytest.raises(ConfigError, match=f"^{message}: resume first, then add trials$"):
        open_sweep(tmp_path, "s", resume=True, add_trials=2, **words)


@pytest.mark.parametrize("rounds", [[], ["round-000"]])
def test_a_sweep_that_never_started_a_round_counts_as_absent(tmp_path, rounds):
    """A refused start (or an older busray's, which saved sweep.json before its checks), or a round Tune
    never saved, is no sweep: the same command runs it afresh under its id, and so does a resume."""
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "sweep.json").write_text(json.dumps({"name": "s", "sweep_id": "s-old", "folder": "x",
                                                          "rounds": rounds}))
    for resume in (False, True):
        fresh = open_sweep(tmp_path, "s", resume=resume, add_trials=None)
        assert fresh.sweep_id == "s-old" and fresh.rounds == []
    with pytest.raises(ConfigError, match="no study to add trials to"):
        open_sweep(tmp_path, "s", resume=False, add_trials=2)


def test_worker_count_may_be_searched():
    spec = load_sweep_spec(TINY_SPEC, ["space.resources.workers={type: categorical, choices: [1, 2]}"])
    assert spec.space["resources.workers"].choices == (1, 2) and spec.worker_counts() == [1, 2]


@pytest.mark.parametrize("overrides", [["base.train.epochs=1"], ["base.train.epochs=3"],
                                       ["base.train.epochs=8", "scheduler.max_t=2"]])
def test_asha_needs_a_rung_before_the_last_epoch(overrides):
    with pytest.raises(ConfigError, match="scheduler.grace_period: 3 epochs leaves ASHA no rung"):
        load_sweep_spec(Path(__file__).parents[2] / "sweeps" / "smoke.yaml", overrides)


@pytest.mark.parametrize("recorded, saved, starts_afresh", [(False, False, True), (True, False, False),
                                                            (False, True, False)])
def test_resume_of_a_sweep_tune_never_saved(tmp_path, recorded, saved, starts_afresh):
    """Stopped after its first round began but before Tune saved the experiment: --resume starts it
    afresh, unless trials were recorded or Tune saved it (then there is something to restore)."""
    state = open_sweep(tmp_path, "tiny", resume=False, add_trials=None)
    state.new_round()
    if recorded:
        identity = RunIdentity("tiny", state.sweep_id, "t0", None, 0, "val/score:max")
        ResultsStore(tmp_path).record_run(run_row(identity, {}, RunOutcome(best_epoch=1).finish("completed")))
    if saved:
        round_saved_by_tune(state)
    assert never_started(state, Storage.at(tmp_path)) is starts_afresh

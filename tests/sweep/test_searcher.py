"""BusrayOptunaSearch without a Ray instance: what the Optuna study (and so ``optuna-dashboard``) says
of completed, stopped and failed trials is what the store row says; and a sweep whose first trials
all fail with one input error proposes no more."""

from __future__ import annotations

import math

import optuna
import pytest
from optuna.trial import TrialState
from ray.tune.search import Searcher

from busray.experiment import load_sweep_spec
from busray.experiment.space import DefineByRun
from busray.sweep.job import ERROR_KEY, FINAL_FLAG, REQUEST_KEY, STATUS_KEY, request_of
from busray.sweep.searcher import BusrayOptunaSearch

from sweephelpers import TINY_SPEC

METRIC = "val/score"


def _searcher(tmp_path, mode: str) -> BusrayOptunaSearch:
    spec = load_sweep_spec(TINY_SPEC)
    return BusrayOptunaSearch(space=DefineByRun(spec.space, spec.full_base()), metric=METRIC, mode=mode,
                              sampler=optuna.samplers.RandomSampler(seed=0), study_name="s",
                              storage=None, runs_dir=str(tmp_path), metric_names=[METRIC], requests=spec)


def test_a_suggestion_is_the_trials_whole_run_request(tmp_path):
    """What Tune hands the trial: one request whose config is complete and holds what Optuna drew."""
    searcher = _searcher(tmp_path, "max")
    suggestion = searcher.suggest("t1")
    assert list(suggestion) == [REQUEST_KEY]
    request = request_of(suggestion)
    params = searcher._ot_trials["t1"].params
    assert request.name == "t1" and request.error is None and request.seed == 0
    assert request.config["model"]["tau"] == params["model.tau"]
    assert request.config["loss"]["w_seg"] + request.config["loss"]["w_clf"] == pytest.approx(1.0)
    assert request.config["train"]["monitor"] == METRIC and request.config["data"]["image_size"] == 64


def _final(value: float, status: str = "completed", epochs: int = 3) -> dict:
    return {METRIC: value, "epoch": epochs, FINAL_FLAG: 1.0, STATUS_KEY: status, "best_epoch": 2}


def _run(searcher, trial_id, scores, *, end: dict | None, error=False):
    """Epoch reports as Tune passes them: the one on which ASHA stops a trial goes to
    ``on_trial_complete`` only."""
    assert searcher.suggest(trial_id) is not None
    for epoch, score in enumerate(scores, start=1):
        searcher.on_trial_result(trial_id, {METRIC: score, "epoch": epoch})
    searcher.on_trial_complete(trial_id, end, error=error)
    return searcher._ot_study.trials[-1]


def _stop(value: float, epoch: int) -> dict:
    return {METRIC: value, "epoch": epoch}


# (mode, epoch reports, the report Tune hands on completion, state, value the store row holds)
CASES = [
    ("max", [0.4, 0.6, 0.5], _final(0.6), TrialState.COMPLETE, 0.6),
    ("max", [0.4, 0.6], _stop(0.5, 3), TrialState.PRUNED, 0.6),  # best epoch's, not the last's
    ("min", [0.9, 0.3], _stop(0.7, 3), TrialState.PRUNED, 0.3),
    ("max", [0.4, 0.5], _stop(0.6, 3), TrialState.PRUNED, 0.6),  # the stop report counts
    ("max", [0.4, 0.6], None, TrialState.PRUNED, 0.6),  # stopped between reports
    ("max", [0.4, math.nan], None, TrialState.PRUNED, 0.4),
    ("max", [0.4], _final(0.4, status="failed"), TrialState.FAIL, None),
    ("max", [0.4], None, TrialState.FAIL, None),  # error=True below
]


@pytest.mark.parametrize("mode, scores, end, state, value", CASES)
def test_study_value_is_the_store_rows(tmp_path, mode, scores, end, state, value):
    searcher = _searcher(tmp_path, mode)
    trial = _run(searcher, "t1", scores, end=end, error=end is None and state == TrialState.FAIL)
    assert trial.state == state
    assert trial.value == (pytest.approx(value) if value is not None else None)
    reported = [s for s in scores + ([end[METRIC]] if end and FINAL_FLAG not in end else []) if not math.isnan(s)]
    assert [v for v in trial.intermediate_values.values() if not math.isnan(v)] == reported
    assert trial.user_attrs["busray_trial_id"] == "t1"


def test_pruned_trials_still_guide_tpe(tmp_path):
    """The sampler sees the stopped trial as finished (not RUNNING) and can suggest the next one."""
    searcher = _searcher(tmp_path, "max")
    _run(searcher, "t1", [0.4, 0.6], end=_stop(0.5, 3))
    assert searcher.suggest("t2") is not None
    states = [t.state for t in searcher._ot_study.trials]
    assert states == [TrialState.PRUNED, TrialState.RUNNING]


CONFIG_ERR = "ConfigError: model.encoder: unknown timm model 'nope_net'"


def _failed(error: str) -> dict:
    return {**_final(math.nan, status="failed", epochs=0), ERROR_KEY: error}


# how the first trials ended -> whether the searcher proposes more (None: Tune marked it errored)
FAIL_FAST_CASES = [
    ([_failed(CONFIG_ERR), _failed(CONFIG_ERR)], False),
    ([_failed(CONFIG_ERR)], True),                                   # one failure proves nothing
    ([_final(0.5), _failed(CONFIG_ERR), _failed(CONFIG_ERR)], True),  # a config that trained
    ([_failed(CONFIG_ERR), _failed("ConfigError: model.tim_levels: ...")], True),
    ([_failed("NonFiniteLoss: non-finite loss"), _failed("NonFiniteLoss: non-finite loss")], True),  # may depend on lr
    ([None, None], True),                                            # dead processes: Tune retries those
]


@pytest.mark.parametrize("ends, goes_on", FAIL_FAST_CASES)
def test_the_same_input_error_twice_stops_proposing_trials(tmp_path, ends, goes_on):
    searcher = _searcher(tmp_path, "max")
    for i, end in enumerate(ends):
        _run(searcher, f"t{i}", [], end=end, error=end is None)
    suggestion = searcher.suggest("next")
    assert (suggestion != Searcher.FINISHED) is goes_on

"""What the sweep console prints for each trial event (no Ray cluster: Tune's hooks called directly)."""

from __future__ import annotations

import ast
import pickle
import shlex
import signal
from types import SimpleNamespace

import pandas as pd
import pytest

from busray.ablation import AblationOutcome
from busray.objective import Objective
from busray.runfolder import RunOutcome
from busray.sweep.console import INTERRUPT_NOTICE, ConsoleCallback, interrupt_notice
from busray.sweep.outcome import SweepOutcome, best_trials, failure_texts
from busray.experiment import ResourcesSpec, build_request
from busray.sweep.job import REQUEST_KEY


def _config(values: dict, name: str | None = None, variant: str | None = None) -> dict:
    """A Tune trial's config: its run request (a sweep's drawn values, or an ablation's variant)."""
    request = build_request({}, seed=3, objective=Objective.parse("val/score:max"), resources=ResourcesSpec(),
                            values=values, name=name, variant=variant)
    return {REQUEST_KEY: request.to_dict()}


ABLATION_RUN = _config({}, variant="full")
ABLATION_RUN_ID = ABLATION_RUN[REQUEST_KEY]["name"]  # full-s3-<8 hex of its key>


def _outcome(status: str, error: str | None = None, epochs: int = 4) -> RunOutcome:
    outcome = RunOutcome(best_epoch=2, epochs_run=epochs, val={"score": 0.4567},
                         test={"seg/iou": 0.41, "clf/acc": 0.8} if status == "completed" else {})
    return outcome.finish(status, error)


@pytest.mark.parametrize("config, swept, outcome, started, ended", [
    (_config({"loss.w_seg": 0.712345, "loss.w_clf": 0.287655, "model.tau": 0.85}, "a08529ac"),
     ["loss.w_seg", "model.tau"], _outcome("completed"),
     "[1/2] a08529ac started   loss.w_seg=0.7123  model.tau=0.85",
     "[1/2] a08529ac completed val/score 0.457 (best epoch 2), test seg/iou 0.410 clf/acc 0.800"),
    (ABLATION_RUN, [], _outcome("stopped_early", epochs=3),  # an ablation's run: its id names it
     f"[1/2] {ABLATION_RUN_ID} started",
     f"[1/2] {ABLATION_RUN_ID} stopped   by ASHA after epoch 3: val/score 0.457 (best epoch 2)"),
    (_config({"loss.w_seg": 0.6, "loss.w_clf": 0.4, "model.tau": 1.0}, "9c7d1e2a"), ["loss.w_seg", "model.tau"],
     _outcome("failed", "NonFiniteLoss: epoch 2"),
     "[1/2] 9c7d1e2a started   loss.w_seg=0.6  model.tau=1",
     "[1/2] 9c7d1e2a failed    NonFiniteLoss: epoch 2"),
])
def test_one_line_per_event_with_the_whole_run_id(capsys, config, swept, outcome, started, ended):
    console = ConsoleCallback(2, Objective.parse("val/score:max"), swept, show_bar=False)
    trial = SimpleNamespace(trial_id="a8c6e_00003", config=config)
    console.on_trial_start(0, [trial], trial)
    console.on_trial_result(0, [trial], trial, {"epoch": 1})
    console.recorded(trial, outcome)
    console.close()
    assert capsys.readouterr().out.splitlines() == [started, ended]


def test_a_resumed_round_numbers_its_trials_on_from_those_already_recorded(capsys):
    console = ConsoleCallback(4, Objective.parse("val/score:max"), [], show_bar=False,
                              recorded=frozenset({"e0", "e1", "of_an_earlier_round"}))
    ended = [SimpleNamespace(trial_id=f"e{i}", config=_config({}, f"e{i}")) for i in range(2)]
    resumed = SimpleNamespace(trial_id="r", config=_config({}, "0000beef"))
    console.on_trial_start(0, [*ended, resumed], resumed)
    console.recorded(resumed, _outcome("completed"))
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()] == ["[3/4]", "[3/4]"]
    assert console.done == 3


def test_pickled_console_keeps_its_state_but_not_the_bar():
    console = ConsoleCallback(3, Objective.parse("val/loss:min"), [], show_bar=False)
    console.started["t1"] = 1
    copy = pickle.loads(pickle.dumps(console))
    assert copy.started == {"t1": 1} and copy.total == 3 and copy.bar.disable
    assert copy.run_id(SimpleNamespace(trial_id="a8c6e_00003", config=ABLATION_RUN)) == ABLATION_RUN_ID


@pytest.mark.parametrize("signum, name", [(None, ""), (signal.SIGINT, "Ctrl-C"), (signal.SIGTERM, "SIGTERM")])
def test_a_stop_signal_is_announced_then_passed_to_tunes_handler(capsys, signum, name):
    calls = []

    def tune_handler(sig, frame):  # what Tune installs for SIGINT before calling its callbacks' setup()
        calls.append(sig)

    def before_term(sig, frame):  # SIGTERM's handler before the sweep (stands in for "terminate")
        calls.append(("before", sig))

    previous = signal.signal(signal.SIGINT, tune_handler), signal.signal(signal.SIGTERM, before_term)
    try:
        console = ConsoleCallback(2, Objective.parse("val/score:max"), [], show_bar=False)
        console.setup()
        if signum is not None:
            signal.raise_signal(signum)
            assert signal.getsignal(signal.SIGTERM) is before_term  # a second SIGTERM is not ours
        console.close()
        assert signal.getsignal(signal.SIGINT) is tune_handler  # put back when the sweep ends
        assert signal.getsignal(signal.SIGTERM) is before_term
    finally:
        signal.signal(signal.SIGINT, previous[0])
        signal.signal(signal.SIGTERM, previous[1])
    assert calls == ([signal.SIGINT] if signum else []) and console.interrupted == name
    assert capsys.readouterr().out.splitlines() == ([interrupt_notice(name)] if signum else [])
    assert interrupt_notice("Ctrl-C") == INTERRUPT_NOTICE


def test_summaries_of_an_interrupted_sweep_say_how_to_go_on():
    best = pd.DataFrame({"trial_id": ["b2"], "status": ["completed"], "val/score": [0.5]})
    sweep = SweepOutcome("s", "s-1", "/st", {"completed": 1, "failed": 0}, best, Objective.parse("val/score:max"),
                         interrupted="Ctrl-C", unfinished=("a1", "c3"))
    lines = sweep.summary(command="busray sweep s.yaml --storage /st").splitlines()
    assert lines[0] == "sweep s (s-1): interrupted by Ctrl-C; 1 trial (1 completed) recorded, 2 unfinished (a1, c3)"
    assert lines[lines.index("next:") + 1] == "  busray sweep s.yaml --storage /st --resume   # runs what is left"
    ablation = AblationOutcome("t2", "/st", 10, {"completed": 3}, "t2-1", interrupted="SIGTERM",
                               unfinished=("full-s0-3fa2b1c4",))
    assert ablation.summary(command="busray ablate t2.yaml --storage /st").splitlines() == [
        "ablation t2 (t2-1): 10 runs planned; recorded: 3 completed; interrupted by SIGTERM, "
        "1 unfinished (full-s0-3fa2b1c4)",
        "storage: /st", "resume: busray ablate t2.yaml --storage /st --resume   # runs what is left",
        "report: busray report t2 --storage /st"]
    done = SweepOutcome("s", "s-1", "/st", {"completed": 4}, best, Objective.parse("val/score:max"))
    assert done.summary().splitlines()[0] == "sweep s (s-1): 4 trials (4 completed)" and "--resume" not in done.summary()
    one = AblationOutcome("t1", "/st", 1, {"completed": 1}, "t1-1")
    assert one.summary().splitlines()[0] == "ablation t1 (t1-1): 1 run planned; recorded: 1 completed"
    fewer_seeds = AblationOutcome("t3", "/st", 2, {"completed": 6}, "t3-1")  # --resume --seeds 1 of a 3-seed one
    assert fewer_seeds.summary().splitlines()[0] == \
        "ablation t3 (t3-1): 2 runs planned; recorded: 6 completed (including earlier rounds)"


def test_the_next_steps_paste_into_a_shell_and_python_with_spaces_in_the_storage(tmp_path):
    storage = str(tmp_path / "my store")
    best = pd.DataFrame({"trial_id": ["b2"], "status": ["completed"], "val/score": [0.5]})
    lines = SweepOutcome("s", "s-1", storage, {"completed": 1}, best, Objective.parse("val/score:max"),
                         journal=f"{storage}/s/optuna.journal").summary().splitlines()
    hints = lines[lines.index("next:") + 1:]
    assert shlex.split(hints[0]) == ["busray", "results", "show", "s", "--storage", storage]
    assert shlex.split(hints[1]) == ["tensorboard", "--logdir", f"{storage}/tb/s"]
    assert shlex.split(hints[2]) == ["optuna-dashboard", f"{storage}/s/optuna.journal"]
    call = ast.parse(hints[3].split("pandas: ", 1)[1].split("   #")[0]).body[0].value
    assert ast.literal_eval(call.args[0]) == f"{storage}/results/runs"
    report = AblationOutcome("t2", storage, 1, {"completed": 1}, "t2-1").summary().splitlines()[-1]
    assert shlex.split(report.split(": ", 1)[1]) == ["busray", "report", "t2", "--storage", storage]


ENC = "ConfigError: model.encoder: unknown timm model 'nope'"
# counts by status, errors (most frequent first) -> the CLI's error line (None: exit 0)
FAILURE_CASES = [
    ({"completed": 0, "failed": 2}, (ENC,), f"sweep s: all 2 trials failed, e.g. {ENC}"),
    ({"failed": 1}, (ENC,), f"sweep s: all 1 trial failed, e.g. {ENC}"),
    ({"failed": 3}, (ENC, "NonFiniteLoss: x"), f"sweep s: all 3 trials failed, e.g. {ENC}; 1 other error in the store"),
    ({"failed": 3}, (ENC, "a", "b"), f"sweep s: all 3 trials failed, e.g. {ENC}; 2 other errors in the store"),
    ({"completed": 1, "failed": 3}, (ENC,), None),
    ({"stopped_early": 1, "failed": 1}, (ENC,), None),
    ({"completed": 0, "failed": 0}, (), None),  # nothing recorded (e.g. --resume of a finished sweep)
]


@pytest.mark.parametrize("counts, errors, line", FAILURE_CASES)
def test_a_sweep_whose_every_trial_failed_is_an_error(counts, errors, line):
    sweep = SweepOutcome("s", "s-1", "/st", counts, pd.DataFrame(), Objective.parse("val/score:max"), errors=errors)
    assert sweep.failure() == line
    ablation = AblationOutcome("s", "/st", 9, counts, "s-1", errors=errors)
    assert ablation.failure() == (line and line.replace("sweep s", "ablation s").replace("trial", "run"))


def test_failed_rows_give_their_errors_most_frequent_first():
    runs = pd.DataFrame({"status": ["failed", "completed", "failed", "failed", "failed"],
                         "error": ["b", None, "a", "a", None]})
    assert failure_texts(runs) == ("a", "b") and failure_texts(runs.iloc[0:0]) == ()


def test_the_summary_ranks_and_lays_out_trials_as_results_show_does():
    """Completed and stopped trials by the objective, the config keys that vary, the Pareto mark for
    several metrics, the test metrics beside (IoU with lesion sensitivity and precision, accuracy);
    failed trials are not among the best."""
    runs = pd.DataFrame({
        "trial_id": ["a", "b", "c", "d"], "status": ["completed", "stopped_early", "completed", "failed"],
        "model.tau": [0.5, 0.9, 0.7, 0.3], "train.lr": [0.001] * 4,
        "val/seg/iou": [0.30, 0.20, 0.25, None], "val/clf/acc": [0.60, 0.80, 0.50, None],
        "best_epoch": [3, 2, 4, None], "test/seg/iou": [0.28, None, 0.22, None],
        "test/seg/sens": [0.9, None, 0.95, None], "test/seg/prec": [0.3, None, 0.25, None],
        "test/clf/acc": [0.7, None, 0.6, None]})
    objective = Objective.parse("val/seg/iou:max,val/clf/acc:max")
    sweep = SweepOutcome("s", "s-1", "/st", {"completed": 2, "stopped_early": 1, "failed": 1},
                         best_trials(runs, objective), objective)
    lines = sweep.summary().splitlines()
    start = lines.index("best trials by val/seg/iou:max,val/clf/acc:max "
                        "(* pareto: no other trial is at least as good on every metric):")
    assert lines[start + 1].split() == ["trial_id", "status", "pareto", "model.tau", "val/seg/iou", "val/clf/acc",
                                        "best_epoch", "test/seg/iou", "test/seg/sens", "test/seg/prec",
                                        "test/clf/acc"]
    assert [line.split() for line in lines[start + 3:start + 6]] == [
        ["a", "completed", "*", "0.5", "0.3", "0.6", "3", "0.28", "0.9", "0.3", "0.7"],
        ["c", "completed", "0.7", "0.25", "0.5", "4", "0.22", "0.95", "0.25", "0.6"],
        ["b", "stopped_early", "*", "0.9", "0.2", "0.8", "2", "-", "-", "-", "-"]]
    assert lines[start + 6] == "next:"

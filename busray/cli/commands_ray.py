"""Ray-backed and results commands: ``sweep``, ``ablate``, ``results``, ``report``.

Heavy imports (Ray, Optuna, matplotlib) happen inside the handlers so ``busray --help`` stays fast.
Arguments are checked before any of them: counts are positive (:mod:`busray.cli.argtypes`), a
``--storage`` is a local or mounted folder (a URI such as ``s3://`` is refused, a writing command
probes that it can write there before Ray starts), and reading commands need an existing store
(:mod:`busray.cli.outputs`).
"""

from __future__ import annotations

import shlex
from pathlib import Path

from busray.cli.argtypes import bounded_int
from busray.cli.errors import EXIT_INTERRUPTED, EXIT_TERMINATED, CliError, writing_to
from busray.experiment.storage import DEFAULT_STORAGE  # a constant (the experiment package loads lazily)

STATUSES = ("completed", "failed", "stopped_early")  # busray.results.STATUSES, without importing pyarrow


def register(sub) -> None:
    p = sub.add_parser(
        "sweep", help="run an Optuna/Ray Tune sweep from sweeps/NAME.yaml",
        description="Run a hyperparameter sweep (Optuna search, Ray Tune trials, ASHA early stopping) "
                    "and record every trial in the results store under --storage.",
        epilog="examples:\n  busray sweep sweeps/smoke.yaml --storage demo\n"
               "  busray sweep sweeps/tau_schedule.yaml --set base.train.epochs=5 --storage runs_store\n"
               "  busray sweep sweeps/tau_schedule.yaml --storage runs_store --resume         # after a crash\n"
               "  busray sweep sweeps/tau_schedule.yaml --storage runs_store --add-trials 8   # extend the study\n"
               "  busray sweep sweeps/loss_weights.yaml --dry-run   # check the file, print the plan, run nothing")
    p.add_argument("spec", metavar="SWEEP_YAML", help="sweep file (see sweeps/)")
    _common(p)
    p.add_argument("--resume", action="store_true", help="restore an interrupted sweep (Tuner.restore)")
    p.add_argument("--add-trials", type=bounded_int(1, 100_000), metavar="N",
                   help="continue the sweep's Optuna study with N more trials")
    p.add_argument("--allow-new-space", action="store_true",
                   help="with --add-trials: accept a space that differs from the last round's (one study "
                        "then mixes trials drawn from both; each round's space is kept in sweep.json)")
    p.set_defaults(handler=cmd_sweep)

    p = sub.add_parser(
        "ablate", help="run an ablation (variants x seeds) from ablations/NAME.yaml",
        description="Train every variant of an ablation with several seeds on Ray and record them; "
                    "`busray report` then builds the Table-2-style comparison.",
        epilog="examples:\n  busray ablate ablations/table2.yaml --storage store --seeds 3\n"
               "  busray ablate ablations/table2.yaml --storage store --resume   # run what is left\n"
               "  busray ablate ablations/table2.yaml --seeds 5 --dry-run        # the runs it would start")
    p.add_argument("spec", metavar="ABLATION_YAML", help="ablation file (see ablations/)")
    _common(p)
    p.add_argument("--seeds", type=bounded_int(1, 1000), metavar="N", help="number of seeds (overrides the file)")
    p.add_argument("--resume", action="store_true",
                   help="finish the ablation: skip (variant, seed) runs recorded as completed, continue cut "
                        "ones from their last checkpoint, rerun failed ones")
    p.set_defaults(handler=cmd_ablate)

    p = sub.add_parser(
        "report", help="Table-2-style report with significance and figures for an ablation",
        description="Summarise a recorded ablation: mean ± std (or ± CI of the mean) per variant, paired "
                    "bootstrap tests against the baseline, and figures.",
        epilog="examples:\n  busray report table2 --storage store\n"
               "  busray report table2 --storage store --format tex --out paper/\n"
               "  busray report reference_cpu --spread ci   # mean ± 95% CI over seeds")
    p.add_argument("ablation", metavar="ABLATION", help="ablation name (its file's name: key)")
    p.add_argument("--storage", default=DEFAULT_STORAGE, help="results storage folder")
    p.add_argument("--format", default="md", choices=("md", "tex", "csv", "html"), help="table format")
    p.add_argument("--out", help="output folder (default: <storage>/reports/<ABLATION>)")
    p.add_argument("--baseline", help="variant the others are compared against (default: the first)")
    p.add_argument("--spread", default="std", choices=("std", "ci"),
                   help="what follows a mean's ±: the std over seeds, or the 95%% CI of the mean (Student t); "
                        "the csv format has both")
    p.set_defaults(handler=cmd_report)
    _register_confirm(sub)
    _register_results(sub)


def _register_confirm(sub) -> None:
    p = sub.add_parser(
        "confirm", help="re-run a sweep's top configs with fresh seeds against a reference, and report",
        description="Is the sweep's winner really better? Train its top K configurations and a reference (the "
                    "paper's defaults for the keys the sweep searched) with N seeds the sweep never used, as an "
                    "ablation named <SWEEP>_confirm (resumable), then report each config's mean ± CI, the paired "
                    "difference to the reference with its bootstrap CI, and how often the winner stays the best.",
        epilog="examples:\n  busray confirm loss_balance --storage store --top 3 --seeds 3\n"
               "  busray confirm loss_balance --storage store --resume        # after an interruption\n"
               "  busray confirm loss_balance --storage store --reference my_reference.yaml --format html")
    p.add_argument("sweep", metavar="SWEEP", help="sweep name (its file's name: key)")
    p.add_argument("--storage", default=DEFAULT_STORAGE, help="the sweep's storage (the confirmation is stored there too)")
    p.add_argument("--top", type=bounded_int(1, 100), default=3, help="how many of the sweep's best configs")
    p.add_argument("--seeds", type=bounded_int(1, 1000), default=3, help="fresh seeds per config")
    p.add_argument("--reference", default="paper",
                   help="paper (the searched keys at busray's defaults, the paper's values) or a YAML file of "
                        "key: value overrides on top of that")
    p.add_argument("--max-concurrent", type=bounded_int(1, 10_000), default=2, help="runs training at once")
    p.add_argument("--format", default="md", choices=("md", "tex", "csv", "html"), help="report format")
    p.add_argument("--out", help="report folder (default: <storage>/reports/<SWEEP>_confirm)")
    p.add_argument("--resume", action="store_true", help="finish an interrupted confirmation")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bar (a progress line a minute per running run instead)")
    p.set_defaults(handler=cmd_confirm)


def _common(p) -> None:
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key of the file, e.g. --set base.train.epochs=2 (repeatable)")
    p.add_argument("--storage", default=None,
                   help=f"storage folder, local or mounted (default: the file's, else {DEFAULT_STORAGE})")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bar (trial lines, a progress line a minute per running trial and the "
                        "summary still print)")
    p.add_argument("--dry-run", action="store_true",
                   help="check the file, the storage and (without RAY_ADDRESS) this machine's CPUs/GPUs as a "
                        "run would, print what it would run, start nothing")


def _register_results(sub) -> None:
    res = sub.add_parser("results", help="query the Parquet results store",
                         epilog="examples:\n  busray results list --storage store\n"
                                "  busray results show tau_schedule --storage store --top 5\n"
                                "  busray results export tau_schedule --storage store --out tau.parquet")
    rsub = res.add_subparsers(dest="results_command", required=True, metavar="ACTION")
    p = rsub.add_parser("list", help="one line per sweep",
                        epilog="example:\n  busray results list --storage store")
    p.add_argument("--storage", default=DEFAULT_STORAGE, help="results storage folder")
    p.set_defaults(handler=cmd_results_list)
    p = rsub.add_parser("show", help="the best trials of a sweep",
                        epilog="examples:\n  busray results show tau_schedule --storage store\n"
                               "  busray results show tau_schedule --storage store --where 'model.tau>=0.5' "
                               "--metric val/seg/iou --top 3")
    _query_args(p)
    p.add_argument("--metric", action="append", help="rank by this column (default: the sweep's objective)")
    p.add_argument("--mode", choices=("max", "min"), help="direction of --metric (default: from its name)")
    p.add_argument("--top", type=bounded_int(1, 1_000_000), default=10, help="rows to show")
    p.set_defaults(handler=cmd_results_show)
    p = rsub.add_parser("export", help="write a sweep's rows to a file",
                        epilog="examples:\n  busray results export tau_schedule --storage store   # tau_schedule.csv\n"
                               "  busray results export tau_schedule --storage store --out tau.parquet\n"
                               "  busray results export tau_schedule --storage store --format md --out tau.md")
    _query_args(p)
    p.add_argument("--format", choices=("csv", "md", "parquet"),
                   help="file format (default: from --out's extension, else csv)")
    p.add_argument("--out", help="file to write (default: <sweep>.<format>)")
    p.set_defaults(handler=cmd_results_export)
    p = rsub.add_parser("compact", help="merge the store's per-trial files into one file per table",
                        epilog="example:\n  busray results compact --storage store")
    p.add_argument("--storage", default=DEFAULT_STORAGE, help="results storage folder")
    p.set_defaults(handler=cmd_results_compact)


def _query_args(p) -> None:
    p.add_argument("sweep", help="sweep or ablation name")
    p.add_argument("--storage", default=DEFAULT_STORAGE, help="results storage folder")
    p.add_argument("--status", action="append", choices=STATUSES, help="keep only runs with this status")
    p.add_argument("--where", action="append", default=[], metavar="FILTER",
                   help="e.g. 'model.tau>=0.5' or 'model.hmsf=true' (repeatable)")


def cmd_sweep(args) -> int:
    options = {"resume": args.resume, "add_trials": args.add_trials, "allow_new_space": args.allow_new_space}
    return _run_experiment(args, "sweep", plan_args=options, run_args=options)


def cmd_ablate(args) -> int:
    return _run_experiment(args, "ablate", plan_args={"seeds": args.seeds, "resume": args.resume},
                           run_args={"seeds": args.seeds, "resume": args.resume})


def _run_experiment(args, command: str, plan_args: dict, run_args: dict) -> int:
    """The path ``sweep`` and ``ablate`` share: storage checked, then the plan (``--dry-run``) or the run,
    its summary and exit status. Ray, Optuna and torch are imported only here, once the arguments passed.
    Refusals of an existing sweep or ablation name the command line's flags (``--resume``, ...)."""
    from busray.cli.outputs import spec_storage
    from busray.experiment.state import CLI_WORDS

    storage = spec_storage(args.spec, args.storage)
    if args.dry_run:
        from busray.sweep.plan import ablation_plan, sweep_plan  # lazy: no Ray either way
        make_plan = sweep_plan if command == "sweep" else ablation_plan
        return _print_plan(make_plan, args.spec, args.overrides, storage, words=CLI_WORDS, **plan_args)
    if command == "sweep":
        from busray.sweep import run_sweep as run
    else:
        from busray.ablation import run_ablation as run
    with writing_to(storage or f"the {'sweep' if command == 'sweep' else 'ablation'}'s storage"):
        outcome = run(args.spec, overrides=args.overrides, storage=storage, progress=args.progress,
                      verbose=getattr(args, "verbose", False), words=CLI_WORDS, **run_args)
    print(outcome.summary(command=_same_command(command, args, outcome.storage)))
    return _exit_status(outcome)


def _print_plan(make_plan, *args, **kwargs) -> int:
    """Print a ``--dry-run`` plan; one this machine cannot run is printed, then refused (exit 2)."""
    from busray.sweep.plan import PlanRefused  # lazy: the CLI imports what a command needs

    try:
        print(make_plan(*args, **kwargs))
    except PlanRefused as refused:
        print(refused.plan)
        raise
    return 0


def _exit_status(outcome) -> int:
    """130 after Ctrl-C, 143 after SIGTERM; a one-line error (exit 2) when every recorded trial
    failed; else 0."""
    if outcome.interrupted:
        return EXIT_TERMINATED if outcome.interrupted == "SIGTERM" else EXIT_INTERRUPTED
    if failure := outcome.failure():
        raise CliError(failure)
    return 0


def _same_command(name: str, args, storage: str) -> str:
    """The command line that ran this sweep/ablation (its file, --set, --seeds), storage made explicit."""
    sets = [arg for override in args.overrides for arg in ("--set", override)]
    seeds = ["--seeds", str(args.seeds)] if getattr(args, "seeds", None) else []
    return shlex.join(["busray", name, args.spec, *sets, *seeds, "--storage", storage])


def cmd_report(args) -> int:
    from busray.ablation.documents import without_runs_line
    from busray.ablation.render import console_table
    from busray.ablation.report import build_report
    from busray.cli.guard import check_writable_folder
    from busray.cli.outputs import existing_store
    from busray.results import ResultsStore
    from busray.storage import Storage

    storage = existing_store(args.storage, name=args.ablation)
    out = Path(args.out) if args.out else Storage.at(storage).path("reports", args.ablation)
    check_writable_folder(out, "--out")
    with writing_to(out):
        report = build_report(ResultsStore(storage), args.ablation, args.format, str(out),
                              baseline=args.baseline, spread=args.spread)
    print(console_table(report.table), end="\n\n")
    if not args.out:  # a bucket: the report goes there too
        Storage.at(storage).push("reports", args.ablation)
    print(f"report written to {report.path} (all tables, figures, provenance)")
    missing = without_runs_line(report.provenance)
    if missing:  # a variant whose every run failed is not in the tables: say so here too
        print(missing)
    return 0


def cmd_confirm(args) -> int:
    from busray.ablation import run_ablation
    from busray.ablation.confirm import configs_table, confirm_plan, confirm_report
    from busray.ablation.render import console_table
    from busray.cli.guard import check_writable_folder
    from busray.cli.outputs import existing_store
    from busray.experiment.state import CLI_WORDS
    from busray.results import ResultsStore
    from busray.results.query import format_table
    from busray.storage import Storage

    storage = existing_store(args.storage, name=args.sweep)
    store = ResultsStore(storage)
    plan = confirm_plan(store.runs(sweep=args.sweep), args.sweep, args.top, args.seeds, args.reference,
                        args.max_concurrent)
    out = Path(args.out) if args.out else Storage.at(storage).path("reports", plan.name)
    check_writable_folder(out, "--out")
    with writing_to(storage):
        outcome = run_ablation(plan.spec, storage=storage, resume=args.resume, progress=args.progress,
                               verbose=getattr(args, "verbose", False), words=CLI_WORDS)
    if outcome.interrupted or outcome.failure():
        print(outcome.summary(command=f"busray confirm {shlex.quote(args.sweep)} --storage {shlex.quote(storage)}"))
        return _exit_status(outcome)
    with writing_to(out):
        report, line = confirm_report(store, plan, args.format, out)
    print(f"the configs (the keys sweep {args.sweep} searched):\n{format_table(configs_table(plan))}\n")
    print(console_table(report.table), end="\n\n")
    print(line)
    if not args.out:
        Storage.at(storage).push("reports", plan.name)
    print(f"report written to {report.path} (all tables, figures, provenance)")
    return 0


def cmd_results_list(args) -> int:
    from busray.cli.outputs import existing_store
    from busray.results import ResultsStore
    from busray.results.query import format_list

    print(format_list(ResultsStore(existing_store(args.storage))))
    return 0


def cmd_results_show(args) -> int:
    from busray.cli.outputs import existing_store
    from busray.results import ResultsStore
    from busray.results.query import format_show

    store = ResultsStore(existing_store(args.storage, name=args.sweep))
    print(format_show(store, args.sweep, metric=args.metric, mode=args.mode, top=args.top,
                      where=args.where or None, status=args.status))
    return 0


def cmd_results_export(args) -> int:
    from busray.cli.outputs import existing_store, export_target
    from busray.results import ResultsStore
    from busray.results.query import export

    store = ResultsStore(existing_store(args.storage, name=args.sweep))
    out, fmt = export_target(args.out, args.format, args.sweep)
    with writing_to(out):
        path = export(store, args.sweep, fmt, out, where=args.where or None, status=args.status)
    print(f"wrote {path}")
    return 0


def cmd_results_compact(args) -> int:
    from busray.cli.outputs import existing_store
    from busray.results import ResultsStore

    storage = existing_store(args.storage)
    with writing_to(storage):
        report = ResultsStore(storage).compact()
    print(report.summary())
    return 0

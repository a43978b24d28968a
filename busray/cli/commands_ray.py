"""Ray-backed and results commands: ``sweep``, ``ablate``, ``results``, ``report``.

Heavy imports (Ray, Optuna, matplotlib) happen inside the handlers so ``busray --help`` stays fast.
"""

from __future__ import annotations

DEFAULT_STORAGE = "busray_storage"


def register(sub) -> None:
    p = sub.add_parser("sweep", help="run an Optuna/Ray Tune sweep from sweeps/NAME.yaml")
    p.add_argument("spec", metavar="SWEEP_YAML")
    _common(p)
    p.add_argument("--resume", action="store_true", help="restore an interrupted sweep (Tuner.restore)")
    p.add_argument("--add-trials", type=int, metavar="N", help="continue the sweep's Optuna study with N more trials")
    p.set_defaults(handler=cmd_sweep)

    p = sub.add_parser("ablate", help="run an ablation (variants x seeds) from sweeps/NAME.yaml")
    p.add_argument("spec", metavar="ABLATION_YAML")
    _common(p)
    p.add_argument("--seeds", type=int, metavar="N", help="number of seeds (overrides the file)")
    p.add_argument("--resume", action="store_true", help="skip (variant, seed) runs already recorded")
    p.set_defaults(handler=cmd_ablate)

    p = sub.add_parser("report", help="Table-2-style report with significance and figures for an ablation")
    p.add_argument("ablation", metavar="ABLATION")
    p.add_argument("--storage", default=DEFAULT_STORAGE, help=f"results storage (default {DEFAULT_STORAGE})")
    p.add_argument("--format", default="md", choices=("md", "tex", "csv", "html"))
    p.add_argument("--out", help="output folder (default <storage>/reports/<ABLATION>)")
    p.add_argument("--baseline", help="variant the others are compared against (default: the first)")
    p.set_defaults(handler=cmd_report)
    _register_results(sub)


def _common(p) -> None:
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key of the file, e.g. --set base.train.epochs=2 (repeatable)")
    p.add_argument("--storage", default=None, help=f"storage folder or URI (default: the file's, else {DEFAULT_STORAGE})")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress output")


def _register_results(sub) -> None:
    res = sub.add_parser("results", help="query the Parquet results store")
    rsub = res.add_subparsers(dest="results_command", required=True, metavar="ACTION")
    p = rsub.add_parser("list", help="one line per sweep")
    p.add_argument("--storage", default=DEFAULT_STORAGE)
    p.set_defaults(handler=cmd_results_list)
    for name, helptext in (("show", "the best trials of a sweep"), ("export", "write a sweep's rows to a file")):
        p = rsub.add_parser(name, help=helptext)
        p.add_argument("sweep")
        p.add_argument("--storage", default=DEFAULT_STORAGE)
        p.add_argument("--status", action="append", choices=("completed", "failed", "stopped_early"))
        p.add_argument("--where", action="append", default=[], metavar="FILTER",
                       help="e.g. 'model.tau>=0.5' or 'model.hmsf=true' (repeatable)")
        if name == "show":
            p.add_argument("--metric", action="append", help="rank by this column (default: the sweep's objective)")
            p.add_argument("--mode", choices=("max", "min"))
            p.add_argument("--top", type=int, default=10)
            p.set_defaults(handler=cmd_results_show)
        else:
            p.add_argument("--format", default="csv", choices=("csv", "md", "parquet"))
            p.add_argument("--out", required=True)
            p.set_defaults(handler=cmd_results_export)


def cmd_sweep(args) -> int:
    from busray.sweep import run_sweep

    outcome = run_sweep(args.spec, overrides=args.overrides, storage=args.storage, resume=args.resume,
                        add_trials=args.add_trials, progress=args.progress)
    print(outcome.summary())
    return 0


def cmd_ablate(args) -> int:
    from busray.ablation import run_ablation

    outcome = run_ablation(args.spec, overrides=args.overrides, storage=args.storage, seeds=args.seeds,
                           resume=args.resume, progress=args.progress)
    print(outcome.summary())
    return 0


def cmd_report(args) -> int:
    from busray.ablation.report import build_report
    from busray.results import ResultsStore

    out = args.out or f"{args.storage}/reports/{args.ablation}"
    path = build_report(ResultsStore(args.storage), args.ablation, args.format, out, baseline=args.baseline)
    print(f"report written to {path}")
    return 0


def cmd_results_list(args) -> int:
    from busray.results import ResultsStore
    from busray.results.query import format_list

    print(format_list(ResultsStore(args.storage)))
    return 0


def cmd_results_show(args) -> int:
    from busray.results import ResultsStore
    from busray.results.query import format_show

    print(format_show(ResultsStore(args.storage), args.sweep, metric=args.metric, mode=args.mode, top=args.top,
                      where=args.where or None, status=args.status))
    return 0


def cmd_results_export(args) -> int:
    from busray.results import ResultsStore
    from busray.results.query import export

    path = export(ResultsStore(args.storage), args.sweep, args.format, args.out, where=args.where or None,
                  status=args.status)
    print(f"wrote {path}")
    return 0

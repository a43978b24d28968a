"""Plain (Ray-free) commands: ``data synth``, ``train``, ``evaluate``, ``predict``, ``config``."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from contextlib import contextmanager
from pathlib import Path

from busray.cli.argtypes import SYNTH_MAX_SIZE, SYNTH_MIN_SIZE, bounded_int
from busray.cli.errors import UsageError, sigterm_as_interrupt, writing_to


def register(sub) -> None:
    for add in (_register_data, _register_train, _register_evaluate, _register_predict, _register_config):
        add(sub)


def _register_train(sub) -> None:
    p = sub.add_parser(
        "train", help="train one model (no Ray) and write a run folder",
        description="Train one model with the config's defaults, a YAML file and --set overrides, "
                    "and write a run folder (config, split, history, checkpoints, test metrics). An "
                    "existing run is never overwritten silently: --resume continues it (the saved "
                    "config must match), --overwrite replaces it once the new run completes.",
        epilog="examples:\n  busray train --data data/synth --out runs/a --set train.epochs=5\n"
               "  busray train --config my.yaml --out runs/b --set model.tau=0.5\n"
               "  busray train --out runs/a --resume --set train.epochs=10   # continue, 5 more")
    _config_args(p)
    p.add_argument("--data", help="dataset folder or CSV manifest (sets data.root; default: the "
                   "config's data.root, the embedded synthetic set)")
    p.add_argument("--out", help="run folder to create (default: runs/<timestamp>)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true",
                      help="continue the run in --out from checkpoints/last.pt (config must match)")
    mode.add_argument("--overwrite", action="store_true",
                      help="replace the run in --out; the old one is kept until the new one completes")
    p.set_defaults(handler=cmd_train)


def _register_evaluate(sub) -> None:
    p = sub.add_parser(
        "evaluate", help="score a checkpoint or run folder on a split",
        description="Score a checkpoint (or a run folder's best.pt) on one split; a run folder's own "
                    "split.json is reused so the held-out images are exactly the run's. --data "
                    "another dataset (e.g. BUSI-WHU) maps its classes onto the model's by name, and "
                    "adds benign-vs-malignant accuracy/AUC (clf/bm_acc, clf/bm_auc).",
        epilog="examples:\n  busray evaluate runs/a\n  busray evaluate runs/a/checkpoints/last.pt "
               "--split val --json\n  busray evaluate runs/a --data BUSI-WHU --split all --out eval_whu")
    p.add_argument("checkpoint", metavar="RUN_OR_CHECKPOINT", help="run folder or .pt file")
    p.add_argument("--data", help="dataset folder (default: the one the run trained on)")
    p.add_argument("--split", default="test", choices=("train", "val", "test", "all"),
                   help="which images to score (all: every image, no split is made)")
    p.add_argument("--batch-size", type=bounded_int(1, 4096), default=None,
                   help="images per forward pass (default: the run's train.eval_batch_size)")
    p.add_argument("--out", help="folder for per_image.csv (label, prediction, probabilities, "
                   "IoU/Dice, UPA weights per image) and metrics.json")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier per_image.csv in --out")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(handler=cmd_evaluate)


def _register_predict(sub) -> None:
    p = sub.add_parser(
        "predict", help="predict masks, classes and UPA weights for images",
        description="Predict a lesion mask (<name>.pred_mask.png, at the image's own size), the "
                    "class, its probabilities and the per-level UPA weights (predictions.csv) for "
                    "each image. Every image is checked before anything is written.",
        epilog="examples:\n  busray predict runs/a/checkpoints/best.pt scan1.png scan2.png --out pred\n"
               "  busray predict runs/a new_scans/ --out pred --overwrite   # a folder: its images")
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="run folder or .pt file")
    p.add_argument("images", nargs="+", metavar="IMAGE",
                   help="image files (PNG, BMP, JPEG, TIFF), or folders of them (BUSI masks, *_mask.png, left out)")
    p.add_argument("--out", required=True, help="folder for <name>.pred_mask.png and predictions.csv")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier predictions.csv in --out")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.set_defaults(handler=cmd_predict)


def _register_config(sub) -> None:
    p = sub.add_parser(
        "config", help="print every config key with its default and meaning, or a resolved config",
        description="Without --keys: print the resolved config (defaults, then --config, then --set) "
                    "as YAML, after validating it. With --keys: every key, its default (in YAML "
                    "spelling) and its meaning; --kind sweep or ablation: the keys of that kind of file.",
        epilog="examples:\n  busray config --keys\n  busray config --keys --markdown > docs/CONFIG.md\n"
               "  busray config --keys --kind sweep                   # every key of a sweep file\n"
               "  busray config --keys --kind sweep --markdown > docs/SWEEPS.md\n"
               "  busray config --config my.yaml --set train.lr=1e-4 > resolved.yaml")
    _config_args(p)
    p.add_argument("--keys", action="store_true", help="list all keys with defaults and help")
    p.add_argument("--kind", default="run", choices=("run", "sweep", "ablation"),
                   help="with --keys: the keys of a run config, a sweep file or an ablation file")
    p.add_argument("--markdown", action="store_true",
                   help="with --keys: the Markdown page (run: docs/CONFIG.md; sweep, ablation: docs/SWEEPS.md, "
                        "which documents both)")
    p.set_defaults(handler=cmd_config)


def _register_data(sub) -> None:
    data = sub.add_parser("data", help="dataset tools")
    dsub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    p = dsub.add_parser(
        "synth", help="write a synthetic BUSI-like dataset (BUSI folder layout)",
        description="Write speckled B-mode images with benign and malignant lesions in the BUSI "
                    "layout. The folder appears complete or not at all (temp folder + rename).",
        epilog="examples:\n  busray data synth data/synth\n  busray data synth data/small --n 24 --size 64")
    p.add_argument("out", help="output folder (new, empty, or an earlier synthetic set)")
    p.add_argument("--n", type=bounded_int(3, 100_000), default=120, help="number of images")
    p.add_argument("--size", type=bounded_int(SYNTH_MIN_SIZE, SYNTH_MAX_SIZE), default=128,
                   help=f"image side in pixels ({SYNTH_MIN_SIZE}-{SYNTH_MAX_SIZE})")
    p.add_argument("--seed", type=bounded_int(0, 2**32 - 1), default=0, help="random seed")
    p.set_defaults(handler=cmd_data_synth)
    p = dsub.add_parser(
        "inspect", help="decode a dataset, split it and summarise classes, near-duplicates, sizes",
        description="Decode a dataset with the data.* settings, split it as training would, and "
                    "print per-split class counts, near-duplicate groups (and how many straddle "
                    "splits), original image sizes and lesion-mask coverage.",
        epilog="examples:\n  busray data inspect data/Dataset_BUSI_with_GT\n"
               "  busray data inspect my_data --set data.split_seed=1\n"
               "  busray data inspect my_data --json > split.json")
    _config_args(p)
    p.add_argument("data", metavar="DATASET", help="dataset folder or CSV manifest (sets data.root)")
    p.add_argument("--json", action="store_true",
                   help="print the summary and the full split (every image name per split) as JSON")
    p.set_defaults(handler=cmd_data_inspect)


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML file overriding the defaults (groups model/loss/data/train)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one key, e.g. --set model.tau=0.5 (repeatable)")


def _load(args, extra: list[str] = ()):
    from busray.config import load_config

    return load_config(args.config, [*args.overrides, *extra])


def cmd_data_synth(args) -> int:
    from busray.cli.guard import check_folder_target
    from busray.data import synthesize

    check_folder_target(Path(args.out), "out")
    with writing_to(args.out):
        path = synthesize(args.out, n=args.n, size=args.size, seed=args.seed)
    print(f"wrote {args.n} synthetic images to {path}")
    return 0


def cmd_data_inspect(args) -> int:
    from busray.data import load_dataset, make_split
    from busray.data.summary import render_summary, summarize

    cfg = _load(args, [f"data.root={args.data}"])
    ds = load_dataset(cfg.data)
    split = make_split(ds, cfg.data)
    summary = summarize(ds, split)
    if args.json:
        print(json.dumps({"summary": summary.to_json(), "split": split.to_json(ds)}, indent=1))
    else:
        print(render_summary(summary))
    return 0


def cmd_train(args) -> int:
    from busray.cli.guard import plan_train
    from busray.runfolder import LAST
    from busray.training.runguard import run_planned

    overrides = [*args.overrides, *([f"data.root={args.data}"] if args.data else [])]
    plan = plan_train(args.out, resume=args.resume, overwrite=args.overwrite, config=args.config,
                      overrides=overrides)
    from busray.training import NullReporter, ResumeFromDir, fit  # lazy: torch, once the plan stands
    # the plan applied fit's own run-folder rules, in flag words: a reporter tells fit not to again
    reporter = ResumeFromDir(str(plan.folder.checkpoints)) if args.resume else NullReporter()
    try:
        with sigterm_as_interrupt():
            result = run_planned(plan, lambda cfg, run_dir: fit(cfg, reporter=reporter, run_dir=run_dir))
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM
        if plan.backup is None and (plan.folder.checkpoints / LAST).is_file():
            print(f"interrupted; the run keeps its last checkpoint: busray train --out "
                  f"{shlex.quote(str(plan.folder.path))} "
                  f"--resume continues it", file=sys.stderr)
        raise
    print(train_summary(result))
    return 0 if result.status == "completed" else 1


def train_summary(result) -> str:
    """What ``busray train`` prints at the end: the folder, how it ended, the metrics, what to do next."""
    ended = f"status: {result.status}" + (f" ({result.error})" if result.error else "")
    if result.best_epoch:
        score = result.val.get("score")
        ended += (f", best epoch {result.best_epoch} of {result.epochs_run}"
                  + (f" (val/score {score:.4f})" if score is not None else "")
                  + f", {result.wall_time_s:.1f} s")
    lines = [f"run folder: {result.run_dir}", ended]
    if result.test:
        lines.append(format_metrics({"val": result.val, "test": result.test}))
    if result.status == "completed":
        from busray.runfolder import TENSORBOARD  # lazy like every busray import here: --help stays fast

        run = shlex.quote(str(result.run_dir))  # pasted into a shell as it is, spaces and all
        lines += ["next:", f"  busray evaluate {run} --data OTHER_DATASET --split all",
                  f"  busray predict {run} IMAGE.png --out preds/",
                  f"  tensorboard --logdir {shlex.quote(str(Path(result.run_dir) / TENSORBOARD))}"]
    return "\n".join(lines)


def cmd_evaluate(args) -> int:
    from busray.cli.errors import CliError
    from busray.cli.guard import check_device, check_writable_folder
    from busray.cli.outputs import staged_outputs
    from busray.training.evaluation import EVALUATION_CSV, evaluate_checkpoint, write_evaluation

    check_device(args.device, "--device")
    args.checkpoint = str(local_checkpoint(args.checkpoint))
    out = Path(args.out) if args.out else None
    if out is not None:
        check_writable_folder(out, "--out")
        if (out / EVALUATION_CSV).exists() and not args.overwrite:
            raise CliError(f"--out: {out / EVALUATION_CSV} already exists; pass --overwrite to "
                           f"replace it or choose another --out")
    with weights_named(args.checkpoint):
        ev = evaluate_checkpoint(args.checkpoint, args.data, args.split, args.device, args.batch_size)
    if out is not None:
        staged_outputs(out, lambda tmp: write_evaluation(ev, tmp), last=EVALUATION_CSV)
    if args.json:
        print(json.dumps(ev.metrics, indent=2))
    else:
        info, prefix = ev.info, f"{args.split}/"
        print(scored_line(info))
        if info["dataset_classes"] != info["model_classes"]:
            print(f"classes of {info['data']} ({', '.join(info['dataset_classes'])}) mapped by name "
                  f"onto the model's ({', '.join(info['model_classes'])})")
        print(format_metrics({args.split: {k.removeprefix(prefix): v for k, v in ev.metrics.items()}}))
        if out is not None:
            print(f"wrote {out / EVALUATION_CSV}")
    return 0


def scored_line(info: dict) -> str:
    """What ``busray evaluate`` scored: which checkpoint, on which images."""
    split = "every image" if info["split"] == "all" else f"the {info['split']} split"
    return (f"scored {info['checkpoint']} on {split} of {info['data']} ({info['dataset']}): "
            f"{info['images']} image{'' if info['images'] == 1 else 's'}, batches of {info['batch_size']}")


def cmd_predict(args) -> int:
    from busray.cli.guard import check_device
    from busray.cli.outputs import check_images, predictions_text, staged_predictions
    from busray.training.checkpoint import load_checkpoint
    from busray.training.inference import predict_images

    check_device(args.device, "--device")
    args.checkpoint = str(local_checkpoint(args.checkpoint))
    images = check_images(args.images)
    load_checkpoint(args.checkpoint)  # a bad checkpoint is refused before the output folder is made
    with weights_named(args.checkpoint):
        files, csv_path = staged_predictions(
            Path(args.out), args.overwrite,
            lambda tmp: predict_images(args.checkpoint, images, tmp, args.device))
    print(predictions_text(csv_path))
    print(f"wrote {len(files) - 1} mask(s) and {csv_path}")
    return 0


def local_checkpoint(location: str) -> Path:
    """A run folder or checkpoint on this machine; one a bucket storage recorded (``s3://...``) is
    pulled into this machine's mirror first (its config, split and checkpoints)."""
    from busray.storage import is_bucket, local_copy  # lazy: start-up time

    if not is_bucket(location):
        return Path(location)
    if location.endswith(".pt"):  # a checkpoint file: its run folder's config and split come along
        folder = location.rsplit("/checkpoints/", 1)[0]
        return local_copy(folder, "config.yaml", "split.json", location[len(folder) + 1:]) / location[len(folder) + 1:]
    return local_copy(location, "config.yaml", "split.json", "checkpoints/best.pt")


@contextmanager
def weights_named(checkpoint: str):
    """Weights that do not fit the model their config describes: say which checkpoint, in one line."""
    try:
        yield
    except RuntimeError as err:
        if "state_dict" not in str(err):
            raise
        raise ValueError(f"{checkpoint}: its weights do not match the model its config describes "
                         f"(a checkpoint from another busray version?)") from None


def cmd_config(args) -> int:
    from busray.config import config_keys, config_to_dict
    from busray.configtools import yaml_text
    import yaml

    if args.kind != "run":
        return _print_file_keys(args)
    if args.keys:
        print(keys_markdown(config_keys()) if args.markdown else
              "\n".join(f"{key:38s} {yaml_text(default):24s} {text}" for key, default, text in config_keys()))
        return 0
    print(yaml.safe_dump(config_to_dict(_load(args)), sort_keys=False), end="")
    return 0


def _print_file_keys(args) -> int:
    """``--keys --kind sweep|ablation``: the keys of that kind of file, or docs/SWEEPS.md."""
    if not args.keys:
        raise UsageError(f"config: --kind {args.kind} lists the keys of {args.kind} files: add --keys "
                         f"(see busray config --help)")
    if args.config or args.overrides:
        raise UsageError(f"config: --kind {args.kind} lists keys and reads no --config/--set (busray "
                         f"{'sweep' if args.kind == 'sweep' else 'ablate'} FILE --dry-run checks a file)")
    from busray.experiment.keys import keys_text, sweeps_markdown  # lazy: the experiment package

    if args.markdown:
        print(sweeps_markdown(), end="")
    else:
        print(keys_text(args.kind))
    return 0


def format_metrics(groups: dict[str, dict]) -> str:
    """A small aligned table: one column per group (val/test), one row per metric key."""
    keys = [k for k in next(iter(groups.values()))
            if "/" in k and not k.startswith("loss")] if groups else []
    lines = [f"{'metric':16s}" + "".join(f"{g:>10s}" for g in groups)]
    for key in keys:
        cells = "".join(f"{groups[g].get(key, float('nan')):>10.4f}" for g in groups)
        lines.append(f"{key:16s}{cells}")
    return "\n".join(lines)


def keys_markdown(rows) -> str:
    """docs/CONFIG.md: every config key, its default and its meaning, grouped by section."""
    from busray.configtools import yaml_text  # lazy, as every import of a command

    lines = ["# busray config keys", "",
             "Generated by `busray config --keys --markdown`; a test keeps it in step with the code.",
             "Set them in a YAML file (`--config`) or one by one (`--set model.tau=0.5`).", ""]
    group = None
    for key, default, text in rows:
        if key.split(".")[0] != group:
            group = key.split(".")[0]
            lines += ["", f"## `{group}.*`", "", "| key | default | meaning |", "|---|---|---|"]
        lines.append(f"| `{key}` | `{yaml_text(default)}` | {text.replace('|', '/')} |")
    return "\n".join(lines)

"""Plain (Ray-free) commands: ``data synth``, ``train``, ``evaluate``, ``predict``, ``config``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub) -> None:
    _register_data(sub)
    p = sub.add_parser("train", help="train one model (no Ray) and write a run folder")
    _config_args(p)
    p.add_argument("--data", help="dataset folder (sets data.root)")
    p.add_argument("--out", help="run folder to create (default runs/<timestamp>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from checkpoints/last.pt")
    p.set_defaults(handler=cmd_train)

    p = sub.add_parser("evaluate", help="score a checkpoint or run folder on a split")
    p.add_argument("checkpoint", metavar="RUN_OR_CHECKPOINT")
    p.add_argument("--data", help="dataset folder (default: the one the run trained on)")
    p.add_argument("--split", default="test", choices=("train", "val", "test", "all"))
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(handler=cmd_evaluate)

    p = sub.add_parser("predict", help="predict masks, classes and UPA weights for images")
    p.add_argument("checkpoint", metavar="CHECKPOINT")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--out", required=True, help="folder for <name>_mask.png and predictions.csv")
    p.add_argument("--device", default="auto")
    p.set_defaults(handler=cmd_predict)

    p = sub.add_parser("config", help="print every config key with its default and meaning, or a resolved config")
    _config_args(p)
    p.add_argument("--keys", action="store_true", help="list all keys with defaults and help")
    p.add_argument("--markdown", action="store_true", help="with --keys: a Markdown table (docs/CONFIG.md)")
    p.set_defaults(handler=cmd_config)


def _register_data(sub) -> None:
    data = sub.add_parser("data", help="dataset tools")
    dsub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    p = dsub.add_parser("synth", help="write a synthetic BUSI-like dataset (BUSI folder layout)")
    p.add_argument("out", help="output folder")
    p.add_argument("--n", type=int, default=120, help="number of images (default 120)")
    p.add_argument("--size", type=int, default=128, help="image side in pixels (default 128)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(handler=cmd_data_synth)
    p = dsub.add_parser(
        "inspect", help="decode a dataset, split it and summarise classes, near-duplicates, sizes",
        description="Decode a dataset with the data.* settings, split it as training would, and "
                    "print per-split class counts, near-duplicate groups (and how many straddle "
                    "splits), original image sizes and lesion-mask coverage.",
        epilog="examples:\n  busray data inspect data/Dataset_BUSI_with_GT\n"
               "  busray data inspect my_data --set data.split_seed=1\n"
               "  busray data inspect my_data --json > split.json",
        formatter_class=argparse.RawDescriptionHelpFormatter)
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
    from busray.data import synthesize

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
    from busray.training import ResumeFromDir, fit

    cfg = _load(args, [f"data.root={args.data}"] if args.data else [])
    reporter = None
    if args.resume:
        if not args.out:
            raise ValueError("--resume needs --out RUN_FOLDER")
        reporter = ResumeFromDir(str(Path(args.out) / "checkpoints"))
    result = fit(cfg, reporter=reporter, run_dir=args.out)
    print(f"run folder: {result.run_dir}")
    print(f"status: {result.status}" + (f" ({result.error})" if result.error else ""))
    if result.test:
        print(format_metrics({"val": result.val, "test": result.test}))
    return 0 if result.status == "completed" else 1


def cmd_evaluate(args) -> int:
    from busray.training.inference import evaluate_checkpoint

    metrics = evaluate_checkpoint(args.checkpoint, args.data, args.split, args.device)
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        prefix = f"{args.split}/"
        print(format_metrics({args.split: {k.removeprefix(prefix): v for k, v in metrics.items()}}))
    return 0


def cmd_predict(args) -> int:
    from busray.training.inference import predict_images

    for image in args.images:
        if not Path(image).is_file():
            raise FileNotFoundError(f"{image}: no such image")
    csv_path = predict_images(args.checkpoint, args.images, args.out, args.device)
    print(f"wrote {len(args.images)} mask(s) and {csv_path}")
    return 0


def cmd_config(args) -> int:
    from busray.config import config_keys, config_to_dict
    import yaml

    if args.keys:
        print(keys_markdown(config_keys()) if args.markdown else
              "\n".join(f"{key:38s} {default!r:24s} {text}" for key, default, text in config_keys()))
        return 0
    print(yaml.safe_dump(config_to_dict(_load(args)), sort_keys=False), end="")
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
    lines = ["# busray config keys", "",
             "Generated by `busray config --keys --markdown`; a test keeps it in step with the code.",
             "Set them in a YAML file (`--config`) or one by one (`--set model.tau=0.5`).", ""]
    group = None
    for key, default, text in rows:
        if key.split(".")[0] != group:
            group = key.split(".")[0]
            lines += ["", f"## `{group}.*`", "", "| key | default | meaning |", "|---|---|---|"]
        lines.append(f"| `{key}` | `{default!r}` | {text.replace('|', '/')} |")
    return "\n".join(lines)

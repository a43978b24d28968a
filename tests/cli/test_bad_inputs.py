"""The bad-input corpus: every case goes through the real CLI and must keep the promise.

Promise (docs/ERRORS.md): exit status 2, exactly one stderr line ``busray: error: ...`` that names the
culprit (a file or a dotted key), and nothing written or changed -- neither in a completed run folder
and a results store that exist beside it, nor in the case's own folder (the working directory).

A case is ``build(world, folder, monkeypatch) -> (argv, culprit)``; ``folder`` is the case's working
directory, whatever the case puts there before the call is hashed too. Faults of the machine (a full
disk, a read-only one, memory) are monkeypatched in-process: the suite runs as root, for whom
``chmod 0555`` forbids nothing.
"""

from __future__ import annotations

import errno
import os
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml

from badcases import (busi, busi_with_mask, checkpoint_without, copy_tree, float_tiff, png_claiming,
                      save_torch, scan, tree_hash, truncated_png, write_png, yaml_bomb)
from busray.cli import main
from busray.experiment import load_sweep_spec, open_sweep
from busray.experiment.space import space_record
from tinyrun import round_saved_by_tune, tiny


@dataclass
class World:
    root: Path
    run: Path          # a completed tiny run
    store: Path        # a results store folder with a Parquet file
    image: Path        # a good scan
    data: Path         # a good tiny BUSI dataset

    @property
    def best(self) -> str:
        return str(self.run / "checkpoints" / "best.pt")


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    root = tmp_path_factory.mktemp("world")
    run = root / "run"
    sets = [a for o in tiny("train.epochs=1") for a in ("--set", o)]
    assert main(["train", *sets, "--out", str(run)]) == 0
    store = root / "store"
    (store / "results" / "runs").mkdir(parents=True)
    import pyarrow as pa
    import pyarrow.parquet as pq
    pq.write_table(pa.table({"sweep": ["s"], "trial_id": ["t1"]}), store / "results" / "runs" / "s.parquet")
    return World(root, run, store, write_png(root / "scan.png", scan()), busi(root / "busi"))


def _sets(*overrides: str) -> list[str]:
    return [a for o in overrides for a in ("--set", o)]


def _train(t: Path, *overrides: str, extra=()) -> list[str]:
    return ["train", *_sets(*tiny("train.epochs=1"), *overrides), "--out", str(t / "new_run"), *extra]


def _set(override: str, culprit: str):
    return lambda w, t, mp: (_train(t, override), culprit)


def _yaml(text: str | bytes, culprit: str = "cfg.yaml"):
    def build(w, t, mp):
        path = t / "cfg.yaml"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return _train(t, extra=["--config", str(path)]), culprit
    return build


def _predict_image(make, name: str):
    def build(w, t, mp):
        make(t / name)
        return ["predict", w.best, str(t / name), "--out", str(t / "pred")], name
    return build


def _predict_checkpoint(make, name: str = "bad.pt"):
    def build(w, t, mp):
        make(t / name, w)
        return ["predict", str(t / name), str(w.image), "--out", str(t / "pred")], name
    return build


def _dataset(breaker):
    def build(w, t, mp):
        data = copy_tree(w.data, t / "busi")
        culprit = breaker(data)
        return _train(t, "data.image_size=64", extra=["--data", str(data)]), culprit
    return build


def _enospc(mp, target: str = "os.replace"):
    def fail(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    mp.setattr(target, fail)


def _erofs(mp):
    def fail(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))
    mp.setattr(tempfile, "mkstemp", fail)


def _no_endpoint(mp):
    """A bucket nothing answers for: an S3 endpoint on a loopback port nobody listens on (offline or not,
    the same refusal), with made-up credentials."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for key, value in {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "k",
                       "AWS_SECRET_ACCESS_KEY": "s", "AWS_REGION": "us-east-1"}.items():
        mp.setenv(key, value)


def _corrupt_image(root: Path) -> str:
    (root / "benign" / "benign (1).png").write_bytes(b"\x89PNG not really")
    return "benign (1).png"


def _bomb_image(root: Path) -> str:
    png_claiming(root / "malignant" / "malignant (3).png", 40000, 40000)
    return "malignant (3).png"


def _mask_size(root: Path) -> str:
    write_png(root / "benign" / "benign (3)_mask.png", np.zeros((10, 10), np.uint8))
    return "benign (3)_mask.png"


def _manifest_latin1(root: Path) -> str:
    (root / "manifest.csv").write_bytes("image,mask,label\nb\xe9nin.png,,benign\n".encode("latin-1"))
    return "manifest.csv"


def _label_map(w, t, mp):
    data, culprit = busi_with_mask(t / "busi", [1, 2])
    return _train(t, "data.image_size=64", extra=["--data", str(data)]), culprit


def _unscaled_mask(w, t, mp):
    data, culprit = busi_with_mask(t / "busi", [100, 180])
    return _train(t, "data.image_size=64", extra=["--data", str(data)]), culprit


CONFIG_CASES = [
    ("nan-tau", _set("model.tau=.nan", "model.tau")),
    ("monitor-typo", _set("train.monitor=val/seg/iuo", "train.monitor: 'val/seg/iuo' is not a metric a run reports "
                                                       "(did you mean val/seg/iou")),
    ("nan-lr", _set("train.lr=.nan", "train.lr")),
    ("nan-w-seg", _set("loss.w_seg=.nan", "loss.w_seg")),
    ("nan-split", _set("data.split_fractions=[.nan,0.5,0.5]", "data.split_fractions")),
    ("inf-tau", _set("model.tau=.inf", "model.tau")),
    ("neg-inf-lr", _set("train.lr=-.inf", "train.lr")),
    ("tau-range", _set("model.tau=9", "model.tau")),
    ("unknown-key", _set("model.taux=1", "model.taux")),
    ("epochs-word", _set("train.epochs=many", "train.epochs")),
    ("epochs-zero", _set("train.epochs=0", "train.epochs")),
    ("batch-float", _set("train.batch_size=1.5", "train.batch_size")),
    ("split-two", _set("data.split_fractions=[0.5,0.5]", "data.split_fractions")),
    ("image-size", _set("data.image_size=8", "data.image_size")),
    ("device-word", _set("train.device=tpu", "train.device")),
    ("device-index", _set("train.device=cuda:99", "train.device")),
    ("group-scalar", _set("model=3", "model")),
    ("no-equals", _set("model.tau", "model.tau")),
    ("nul-root", _set("data.root=a\0b", "data.root")),
    ("monitor", _set("train.monitor=loss", "train.monitor")),
    ("yaml-bomb", lambda w, t, mp: (_train(t, extra=["--config", str(yaml_bomb(t / "bomb.yaml"))]), "bomb.yaml")),
    ("yaml-deep", _yaml("[" * 5000 + "]" * 5000)),
    ("yaml-latin1", _yaml("model:\n  tau: 0.5  # r\xe9glage\n".encode("latin-1"))),
    ("yaml-binary", _yaml(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR")),
    ("yaml-dup-key", _yaml("model:\n  tau: 0.5\n  tau: 0.6\n")),
    ("yaml-list", _yaml("- model\n- train\n")),
    ("yaml-unknown", _yaml("model:\n  tua: 0.5\n", "model.tua")),
    ("yaml-nan", _yaml("model:\n  tau: .nan\n", "model.tau")),
    ("yaml-syntax", _yaml("model:\n  tau: [1\n")),
    ("yaml-huge", _yaml("a: " + "x" * (2 << 20) + "\n")),
    ("yaml-self-alias", _yaml("a: &x [1, *x]\n")),
    ("yaml-folder", lambda w, t, mp: ((t / "d.yaml").mkdir() or _train(t, extra=["--config", str(t / "d.yaml")]), "d.yaml")),
    ("yaml-missing", lambda w, t, mp: (_train(t, extra=["--config", str(t / "none.yaml")]), "none.yaml")),
    # a value given with --set is named after the --set, not after the file beside it
    ("yaml-with-bad-set", lambda w, t, mp: (_yaml("model:\n  tau: 0.5\n")(w, t, mp)[0] + ["--set", "model.tau=9"],
                                            "--set model.tau=9: model.tau: 9.0 is outside")),
    ("synthetic-huge", _set("data.root=synthetic:n=1000000000", "data.root: 'synthetic:n=1000000000': n=")),
    ("synthetic-size", _set("data.root=synthetic:size=5000", "data.root: 'synthetic:size=5000': size=5000")),
    ("weights-text", lambda w, t, mp: ((t / "w.pth").write_text("hello\n") and _train(t, "model.weights=w.pth"),
                                       "model.weights: w.pth: not a PyTorch state dict or checkpoint")),
]

IMAGE_CASES = [
    ("img-corrupt", _predict_image(lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\nbroken"), "c.png")),
    ("img-text", _predict_image(lambda p: p.write_text("hello"), "t.png")),
    ("img-empty", _predict_image(lambda p: p.write_bytes(b""), "e.png")),
    ("img-truncated", _predict_image(truncated_png, "trunc.png")),
    ("img-bomb", _predict_image(lambda p: png_claiming(p, 40000, 40000), "bomb.png")),
    ("img-wide", _predict_image(lambda p: png_claiming(p, 100000, 2), "wide.png")),
    ("img-float", _predict_image(float_tiff, "f.tif")),
    ("img-missing", _predict_image(lambda p: None, "gone.png")),
    ("img-folder-without-images", _predict_image(lambda p: (p.mkdir(), (p / "a_mask.png").write_bytes(b"x")), "scans")),
    ("img-good-then-bad", lambda w, t, mp: (
        ["predict", w.best, str(w.image), str(png_claiming(t / "second.png", 40000, 40000)),
         "--out", str(t / "pred")], "second.png")),
    ("img-same-stem", lambda w, t, mp: (
        ["predict", w.best, str(write_png(t / "a" / "x.png", scan())), str(write_png(t / "b" / "x.png", scan())),
         "--out", str(t / "pred")], "x.png")),
    ("img-out-of-memory", lambda w, t, mp: (
        mp.setattr("PIL.Image.Image.load", lambda self: (_ for _ in ()).throw(MemoryError())),
        ["predict", w.best, str(w.image), "--out", str(t / "pred")])[1:] + ("scan.png",)),
    ("ckpt-tensor", _predict_checkpoint(lambda p, w: save_torch(p, __import__("torch").zeros(3)))),
    ("ckpt-no-config", _predict_checkpoint(lambda p, w: checkpoint_without(p, Path(w.best), "config"))),
    ("ckpt-no-model", _predict_checkpoint(lambda p, w: checkpoint_without(p, Path(w.best), "model"))),
    ("ckpt-garbage", _predict_checkpoint(lambda p, w: p.write_bytes(os.urandom(256)))),
    ("ckpt-state-dict", _predict_checkpoint(lambda p, w: save_torch(p, {"w": __import__("torch").ones(2)}))),
    ("ckpt-missing", lambda w, t, mp: (["predict", str(t / "none.pt"), str(w.image), "--out", str(t / "p")], "none.pt")),
    ("eval-tensor", lambda w, t, mp: (["evaluate", str(save_torch(t / "t.pt", __import__("torch").zeros(2)))], "t.pt")),
    ("eval-missing", lambda w, t, mp: (["evaluate", str(t / "norun")], "norun")),
    ("predict-enospc-nested-out", lambda w, t, mp: (_enospc(mp), ["predict", w.best, str(w.image), "--out",
                                                                  str(t / "x" / "y" / "pred")])[1:] + ("pred",)),
    ("eval-enospc", lambda w, t, mp: (_enospc(mp), ["evaluate", str(w.run), "--out", str(t / "x" / "ev")])[1:] + ("ev",)),
    ("predict-device", lambda w, t, mp: (["predict", w.best, str(w.image), "--out", str(t / "p"), "--device", "cuda:99"], "--device")),
    ("predict-out-file", lambda w, t, mp: ((t / "out.txt").write_text("x") and
                                            ["predict", w.best, str(w.image), "--out", str(t / "out.txt")], "out.txt")),
    ("predict-existing", lambda w, t, mp: (((t / "pred").mkdir(), (t / "pred" / "predictions.csv").write_text("old"))
                                           and ["predict", w.best, str(w.image), "--out", str(t / "pred")], "predictions.csv")),
    ("data-corrupt", _dataset(_corrupt_image)),
    ("data-bomb", _dataset(_bomb_image)),
    ("data-mask-size", _dataset(_mask_size)),
    ("data-manifest-latin1", _dataset(_manifest_latin1)),
    ("data-label-map", _label_map),
    ("data-unscaled-mask", _unscaled_mask),
    ("data-missing", lambda w, t, mp: (_train(t, extra=["--data", str(t / "nodata")]), "nodata")),
    # without --out (runs/<timestamp> in the working folder) and a nested new --out: no parent left behind
    ("data-missing-default-out", lambda w, t, mp: (["train", *_sets(*tiny("train.epochs=1")),
                                                    "--data", str(t / "nodata")], "nodata")),
    ("data-corrupt-nested-out", lambda w, t, mp: (_dataset(_corrupt_image)(w, t, mp)[0][:-3]
                                                  + [str(t / "a" / "b" / "run"), "--data", str(t / "busi")],
                                                  "benign (1).png")),
]

RUN_AND_STORE_CASES = [
    ("out-existing-run", lambda w, t, mp: (_train(t)[:-1] + [str(w.run)], str(w.run))),
    ("out-is-file", lambda w, t, mp: ((t / "plainfile").write_text("x") and _train(t)[:-1] + [str(t / "plainfile")], "plainfile")),
    ("out-under-file", lambda w, t, mp: ((t / "plainfile").write_text("x") and _train(t)[:-1] + [str(t / "plainfile" / "r")], "plainfile")),
    ("out-foreign-folder", lambda w, t, mp: (((t / "mine").mkdir(), (t / "mine" / "notes.txt").write_text("x"))
                                             and _train(t)[:-1] + [str(t / "mine")], "mine")),
    ("resume-other-config", lambda w, t, mp: (["train", "--resume", "--out", str(w.run), "--set", "model.tau=0.5"], "model.tau")),
    ("resume-other-yaml", lambda w, t, mp: (["train", "--resume", "--out", str(w.run), "--config",
                                             str(_saved_config_with(w, t, "train", "lr", 0.001))], "train.lr")),
    ("resume-nothing", lambda w, t, mp: (["train", "--resume", "--out", str(t / "empty")], "last.pt")),
    ("resume-no-out", lambda w, t, mp: (["train", "--resume"], "--out")),
    ("resume-and-overwrite", lambda w, t, mp: (["train", "--resume", "--overwrite", "--out", str(w.run)], "--overwrite")),
    ("train-enospc", lambda w, t, mp: (_enospc(mp), _train(t))[1:] + ("new_run",)),
    ("train-erofs", lambda w, t, mp: (mp.setattr(Path, "mkdir", _raise(errno.EROFS)), _train(t))[1:] + ("new_run",)),
    ("synth-size", lambda w, t, mp: (["data", "synth", str(t / "s"), "--size", "2"], "--size")),
    ("synth-n", lambda w, t, mp: (["data", "synth", str(t / "s"), "--n", "0"], "--n")),
    ("synth-seed", lambda w, t, mp: (["data", "synth", str(t / "s"), "--seed", "-1"], "--seed")),
    ("synth-foreign", lambda w, t, mp: (["data", "synth", str(w.run)], str(w.run))),
    ("synth-file", lambda w, t, mp: ((t / "plainfile").write_text("x") and ["data", "synth", str(t / "plainfile")], "plainfile")),
    ("synth-enospc", lambda w, t, mp: (_enospc(mp), ["data", "synth", str(t / "new" / "synthout"), "--n", "3",
                                                     "--size", "32"])[1:] + ("synthout",)),
    ("list-missing", lambda w, t, mp: (["results", "list", "--storage", str(t / "nostore")], "nostore")),
    ("list-file", lambda w, t, mp: ((t / "plainfile").write_text("x") and ["results", "list", "--storage", str(t / "plainfile")], "plainfile")),
    ("list-not-store", lambda w, t, mp: (["results", "list", "--storage", str(w.run)], str(w.run))),
    ("show-uri", lambda w, t, mp: (["results", "show", "s", "--storage", "hdfs://nn/x"], "'hdfs://nn/x' is a URI busray")),
    ("show-bucket-unreachable", lambda w, t, mp: (_no_endpoint(mp), ["results", "show", "s", "--storage", "s3://bucket/x"])[1:]
                                + ("--storage: cannot read s3://bucket/x",)),
    ("show-top-zero", lambda w, t, mp: (["results", "show", "s", "--storage", str(w.store), "--top", "0"], "--top")),
    ("export-to-folder", lambda w, t, mp: (["results", "export", "s", "--storage", str(w.store), "--out", str(w.run)], str(w.run))),
    ("export-format-clash", lambda w, t, mp: (["results", "export", "s", "--storage", str(w.store), "--format", "md",
                                               "--out", str(t / "x.csv")], "x.csv")),
    ("export-readonly", lambda w, t, mp: (_erofs(mp), ["results", "export", "s", "--storage", str(w.store),
                                                      "--out", str(t / "x.csv")])[1:] + ("--out",)),
    ("report-missing", lambda w, t, mp: (["report", "a", "--storage", str(t / "nostore")], "nostore")),
    ("report-store-as-name", lambda w, t, mp: (["report", str(w.store)], f"pass --storage {w.store}")),
    ("show-store-as-name", lambda w, t, mp: (["results", "show", str(w.store)], f"pass --storage {w.store}")),
    ("sweep-uri", lambda w, t, mp: (_no_endpoint(mp), ["sweep", str(_spec(t)), "--storage", "s3://bucket/x"])[1:]
                   + ("--storage: cannot write to s3://bucket/x",)),
    ("sweep-readonly", lambda w, t, mp: (_erofs(mp), ["sweep", str(_spec(t)), "--storage", str(w.store)])[1:] + ("--storage",)),
    ("sweep-add-trials", lambda w, t, mp: (["sweep", str(_spec(t)), "--add-trials", "-1"], "--add-trials")),
    ("sweep-add-zero", lambda w, t, mp: (["sweep", str(_spec(t)), "--add-trials", "0"], "--add-trials")),
    ("sweep-missing-spec", lambda w, t, mp: (["sweep", str(t / "none.yaml"), "--storage", str(w.store)], "none.yaml")),
    ("sweep-bomb-spec", lambda w, t, mp: (["sweep", str(yaml_bomb(t / "b.yaml")), "--storage", str(w.store)], "b.yaml")),
    ("sweep-uri-in-file", lambda w, t, mp: ((t / "u.yaml").write_text("name: s\nstorage: hdfs://nn/y\n")
                                            and ["sweep", str(t / "u.yaml")], "u.yaml: storage: 'hdfs://nn/y'")),
    ("sweep-missing-data", lambda w, t, mp: (["sweep", str(_spec(t)), "--storage", str(w.store), "--set",
                                              "base.data.root=no_such_busi"], "base.data.root")),
    ("sweep-missing-weights", lambda w, t, mp: (["sweep", str(_spec(t)), "--storage", str(w.store), "--set",
                                                 "base.model.weights=gone.pth"], "base.model.weights")),
    ("sweep-weights-package-missing", lambda w, t, mp: (["sweep", str(_spec(t)), "--storage", str(w.store), "--set",
                                                         "base.model.weights=package:no_such_pkg/w.pth"],
                                                        "base.model.weights: package 'no_such_pkg' is not installed")),
    ("sweep-step-zero", lambda w, t, mp: (["sweep", str(_spec(t)), "--set", "space.model.tau.step=0"],
                                           "space.model.tau.step: 0 is not a number > 0")),
    ("sweep-set-blamed", lambda w, t, mp: (["sweep", str(_spec(t)), "--storage", str(w.store), "--set",
                                            "base.model.tau=9"], "--set base.model.tau=9: base.model.tau")),
    ("sweep-synthetic-huge", lambda w, t, mp: (["sweep", str(_spec(t)), "--set", "base.data.root=synthetic:n=10000000"],
                                               "base.data.root: 'synthetic:n=10000000'")),
    ("sweep-weights-module", lambda w, t, mp: (["sweep", str(_spec(t)), "--set", "base.model.weights=package:os/w.pth"],
                                               "base.model.weights: 'os' is a module, not a package")),
    ("sweep-weights-text", lambda w, t, mp: ((t / "w.pth").write_text("hello\n") and
                                             ["sweep", str(_spec(t)), "--set", "base.model.weights=w.pth"],
                                             "base.model.weights: ")),
    ("sweep-objective-typo", lambda w, t, mp: (["sweep", str(_spec(t)), "--set", "objective=val/seg/iuo:max"],
                                               "objective: 'val/seg/iuo' is not a metric a run reports (did you mean "
                                               "val/seg/iou")),
    ("sweep-tracker-uri", lambda w, t, mp: (["sweep", str(_spec(t)), "--set", "tracking.mlflow.tracking_uri=htp://h:5000"],
                                            "tracking.mlflow.tracking_uri: 'htp://h:5000' has a scheme")),
    ("sweep-json-truncated", lambda w, t, mp: (_sweep_state(t, '{"name": "s", "sweep_id": "s-1", "rou'),
                                               ["sweep", str(_spec(t)), "--storage", str(t / "st"), "--resume"],
                                               )[1:] + ("st/s/sweep.json: not a readable sweep state",)),
    ("sweep-journal-truncated", lambda w, t, mp: (_started_sweep(t, journal='{"op_code": 0}\n{"op_co'),
                                                  ["sweep", str(_spec(t)), "--storage", str(t / "st"), "--add-trials", "1"],
                                                  )[1:] + ("st/s/optuna.journal: the Optuna journal is cut short",)),
    ("sweep-space-changed", lambda w, t, mp: (_started_sweep(t), ["sweep", str(_spec(t)), "--storage", str(t / "st"),
                                                                  "--add-trials", "1", "--set", "space.model.tau.low=0.3"],
                                              )[1:] + ("(space.model.tau: low 0.2 -> 0.3)",)),
    ("ablate-set-blamed", lambda w, t, mp: (["ablate", str(_ablation(t)), "--set", "base.train.lr=-1"],
                                            "--set base.train.lr=-1: base.train.lr")),
    ("ablate-missing-data", lambda w, t, mp: (["ablate", str(_ablation(t)), "--storage", str(w.store), "--set",
                                               "base.data.root=no_such_busi"], "base.data.root")),
    ("ablate-seeds", lambda w, t, mp: (["ablate", str(_spec(t)), "--seeds", "0"], "--seeds")),
    ("ablate-uri", lambda w, t, mp: (["ablate", str(_spec(t)), "--storage", "gs://"], "'gs://' names no bucket")),
    ("train-config-is-a-sweep", _yaml("name: s\nbase: {train: {epochs: 1}}\nspace: {model.tau: {low: 0.2, high: 1}}\n",
                                      "cfg.yaml: a sweep file, not a run config file: busray sweep")),
    ("unknown-command", lambda w, t, mp: (["trian"], "trian")),
    ("unknown-flag", lambda w, t, mp: (["train", "--epochs", "3"], "--epochs")),
]

CASES = CONFIG_CASES + IMAGE_CASES + RUN_AND_STORE_CASES


def _saved_config_with(w: World, t: Path, group: str, key: str, value) -> Path:
    """The run's own config.yaml with one key changed (so exactly that key differs)."""
    data = yaml.safe_load((w.run / "config.yaml").read_text())
    data[group][key] = value
    (t / "cfg.yaml").write_text(yaml.safe_dump(data))
    return t / "cfg.yaml"


def _spec(t: Path) -> Path:
    (t / "sweep.yaml").write_text("name: s\nspace: {model.tau: {low: 0.2, high: 1.0}}\n")
    return t / "sweep.yaml"


def _sweep_state(t: Path, text: str) -> None:
    """``<t>/st/s/sweep.json`` holding ``text``."""
    (t / "st" / "s").mkdir(parents=True)
    (t / "st" / "s" / "sweep.json").write_text(text)


def _started_sweep(t: Path, journal: str = '{"op_code": 0}\n') -> None:
    """Sweep ``s`` of :func:`_spec` under ``<t>/st``: one round Tune saved, with its space and journal."""
    state = open_sweep(t / "st", "s", resume=False, add_trials=None)
    state.new_round(space_record(load_sweep_spec(_spec(t)).space))
    round_saved_by_tune(state)
    (t / "st" / "s" / "optuna.journal").write_text(journal)


def _ablation(t: Path) -> Path:
    (t / "ablation.yaml").write_text("name: a\nvariants: {v: {}}\n")
    return t / "ablation.yaml"


def _raise(code: int):
    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))
    return fail


@pytest.mark.parametrize("build", [b for _, b in CASES], ids=[name for name, _ in CASES])
def test_bad_input_keeps_the_promise(build, world, tmp_path, monkeypatch, capsys):
    folder = tmp_path / "case"
    folder.mkdir()
    monkeypatch.chdir(folder)
    argv, culprit = build(world, folder, monkeypatch)
    before = tree_hash(world.root), tree_hash(folder)
    code = main(argv)
    monkeypatch.undo()
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2, lines
    assert len(lines) == 1 and lines[0].startswith("busray: error: "), lines
    assert culprit in lines[0], lines[0]
    assert "Traceback" not in lines[0]
    assert (tree_hash(world.root), tree_hash(folder)) == before, "bad input changed files"


def test_corpus_size():
    """docs/ERRORS.md states the number of cases; keep it true."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "ERRORS.md").read_text()
    assert f"{len(CASES)} bad-input cases" in text

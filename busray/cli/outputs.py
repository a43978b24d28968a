"""Where commands write and read: predict's output folder, storage paths and export files, checked first.

- ``predict`` decodes and checks *every* image before the model runs; it (and ``evaluate --out``)
  writes into a private temp folder beside ``--out`` and moves the finished files, its table last, into
  place, so a failure leaves ``--out`` (and parents it would have created) as it was. An earlier
  ``predictions.csv`` there is kept unless ``--overwrite``; two images with one file stem (whose masks
  would overwrite each other) are refused.
- ``--storage`` is a local or mounted folder, or a bucket (``s3://``, ``gs://``: busray.storage) that a
  writing command probes with a small object before Ray starts; another URI is refused (it would
  otherwise become a local folder named ``hdfs:``); reading commands need an existing store.
- ``predict`` then prints what it predicted, one line per image (the first ``SHOWN_PREDICTIONS``).
- ``results export`` infers ``--format`` from ``--out``'s extension, else writes ``<out>.csv``.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Callable

from busray.atomic import missing_folders, remove_empty_folders
from busray.cli.errors import CliError, writing_to
from busray.cli.guard import check_folder_target, check_writable_folder

PREDICTIONS_CSV = "predictions.csv"
#: How many images ``predict`` lists on the console; the CSV has every one.
SHOWN_PREDICTIONS = 20
EXPORT_FORMATS = {".csv": "csv", ".md": "md", ".parquet": "parquet"}
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def _bucket_has_results(bucket, flag: str) -> bool:
    from busray.configtools import ConfigError

    try:
        return bucket.exists("results", quick=True)
    except (OSError, ConfigError) as err:
        raise CliError(f"{flag}: cannot read {bucket.uri} ({str(err).splitlines()[0]})") from None


def check_images(paths: list[str]) -> list[str]:
    """The images to predict, each decoded now (one-line DataError naming a bad one), clashing names
    refused. A folder stands for its image files (not its subfolders'), BUSI masks (``*_mask.png``)
    left out; a file named like a mask is kept, with a note on stderr (predict expects scans)."""
    from busray.data.images import read_gray  # lazy: PIL/numpy only for commands that read images
    from busray.data.readers import is_mask_name

    named: dict[Path, str] = {}  # one image named twice (a folder and a file in it) is predicted once
    for arg in paths:
        for path in _folder_scans(arg):
            named.setdefault(path.resolve(), str(path))
    paths = list(named.values())
    masks = [Path(path).name for path in paths if is_mask_name(Path(path))]
    if masks:
        print(f"note: {len(masks)} of the {len(paths)} images are named like BUSI masks ({masks[0]}"
              f"{', ...' if len(masks) > 1 else ''}); predict expects scans", file=sys.stderr)

    stems: dict[str, str] = {}
    for path in paths:
        read_gray(Path(path))
        stem = Path(path).stem
        if stem in stems:
            raise CliError(f"{path}: has the same name as {stems[stem]}; their predicted masks "
                           f"would overwrite each other")
        stems[stem] = path
    return paths


def _folder_scans(arg: str) -> list[Path]:
    """``[arg]`` for a file (or a missing path: read_gray names it); a folder's scans for a folder."""
    from busray.data.images import IMAGE_SUFFIXES
    from busray.data.readers import image_files, is_mask_name

    folder = Path(arg)
    if not folder.is_dir():
        return [folder]
    scans = [path for path in image_files(folder) if not is_mask_name(path)]
    if not scans:
        raise CliError(f"{arg}: a folder without images ({', '.join(s[1:] for s in IMAGE_SUFFIXES)}; "
                       f"subfolders are not searched)")
    return scans


def staged_predictions(out: Path, overwrite: bool,
                       write: Callable[[Path], Path]) -> tuple[list[Path], Path]:
    """Run ``write(temp_folder)`` and move what it wrote into ``out``; returns (files, csv path)."""
    check_folder_target(out, "--out")
    if (out / PREDICTIONS_CSV).exists() and not overwrite:
        raise CliError(f"--out: {out / PREDICTIONS_CSV} already exists; pass --overwrite to replace "
                       f"it or choose another --out")
    return staged_outputs(out, write, last=PREDICTIONS_CSV), out / PREDICTIONS_CSV


def staged_outputs(out: Path, write: Callable[[Path], object], last: str) -> list[Path]:
    """Run ``write(temp_folder)`` beside ``out``, then move what it wrote into ``out`` (``last`` last, the
    file that says the output is complete); a failure leaves ``out`` and its parents as they were."""
    check_writable_folder(out.parent, "--out")
    created = missing_folders(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.busray-", dir=out.parent))
    try:
        with writing_to(out):
            write(tmp)
            out.mkdir(exist_ok=True)
            files = sorted(tmp.iterdir(), key=lambda p: p.name == last)
            for path in files:
                os.replace(path, out / path.name)
        return [out / p.name for p in files]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        remove_empty_folders(created)  # after a failure (a finished output's folders hold its files)


def predictions_text(csv_path: Path, limit: int = SHOWN_PREDICTIONS) -> str:
    """An aligned table of the predictions in ``csv_path``: image file, class and its probability,
    predicted lesion area; at most ``limit`` images, then how many more the CSV holds."""
    import pandas as pd  # lazy, like every heavy import of the CLI: `busray --help` stays fast

    from busray.results.query import format_table

    rows = pd.read_csv(csv_path)
    shown = rows.head(limit)  # the rest stays in the CSV: no need to lay it out
    table = pd.DataFrame({
        "image": [Path(p).name for p in shown["image"]], "class": shown["class"],
        "probability": [row[f"prob_{row['class']}"] for _, row in shown.iterrows()],
        "lesion % of image": (100 * shown["lesion_pixels_fraction"]).round(1)})
    more = len(rows) - len(shown)
    return format_table(table) + (f"\n... and {more} more in {csv_path}" if more > 0 else "")


def storage_path(text: str, flag: str = "--storage") -> Path:
    """A local storage folder from ``text`` (``file://`` stripped, ``~`` expanded); a bucket URI or
    another scheme is a ``CliError`` here (callers that take buckets ask :func:`bucket_of` first)."""
    if _URI.match(text) and not text.startswith("file://"):
        raise CliError(f"{flag}: '{text}' is a URI; a local or mounted folder is needed here")
    if not text.strip():
        raise CliError(f"{flag}: empty path")
    return Path(text.removeprefix("file://")).expanduser()


def bucket_of(text: str, flag: str = "--storage"):
    """The :class:`busray.storage.Storage` of a bucket URI (``s3://``, ``gs://``), None for a path;
    another scheme is a one-line ``CliError``."""
    from busray.configtools import ConfigError
    from busray.storage import Storage, check_location, is_uri  # lazy: start-up time

    if not is_uri(text) or text.startswith("file://"):
        return None
    try:
        return Storage(check_location(text, flag))
    except ConfigError as err:
        raise CliError(str(err)) from None


def writable_storage(text: str | None, flag: str = "--storage") -> str | None:
    """For commands that write a store (sweep, ablate): a usable folder, or a bucket this machine can
    write (a probe object is written and deleted), checked before Ray starts."""
    if text is None:
        return None
    bucket = bucket_of(text, flag)
    if bucket is not None:
        _probe_bucket(bucket, flag)
        return bucket.uri
    path = storage_path(text, flag)
    check_writable_folder(path, flag)
    return str(path)


def _probe_bucket(bucket, flag: str) -> None:
    from busray.configtools import ConfigError

    try:
        bucket.probe()
    except (OSError, ConfigError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CliError(f"{flag}: cannot write to {bucket.uri} ({first}); check AWS_ENDPOINT_URL, "
                       f"AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY and the bucket's name") from None


def spec_storage(spec: str, storage: str | None) -> str | None:
    """Read the sweep/ablation file (a missing, malformed or oversized one is refused before Ray is
    imported) and check the storage it will write to: ``--storage``, else the file's ``storage:``."""
    from busray.configtools import load_yaml  # lazy: PyYAML only where a file is read

    data = load_yaml(spec)
    if storage is None and isinstance(data.get("storage"), str):
        writable_storage(data["storage"], f"{spec}: storage")
    return writable_storage(storage)


def existing_store(text: str, flag: str = "--storage", name: str | None = None) -> str:
    """For commands that read a store: the folder (or bucket) must exist and hold ``results/``. ``name``:
    the sweep/ablation argument, which a user may have given the store's folder instead."""
    bucket = bucket_of(text, flag)
    if bucket is not None:
        if not _bucket_has_results(bucket, flag):
            raise CliError(f"{flag}: {bucket.uri} is not a results store (no results/ there; run a sweep "
                           f"with --storage {bucket.uri} first)")
        return bucket.uri
    path = storage_path(text, flag)
    if name and Path(name, "results").is_dir() and not (path / "results").is_dir():
        quoted = shlex.quote(name)
        raise CliError(f"{name} is a results store, not a sweep or ablation name: pass --storage {quoted} "
                       f"and a name (busray results list --storage {quoted} lists them)")
    if not path.exists():
        raise CliError(f"{flag}: {path} not found (no results store there)")
    if not path.is_dir():
        raise CliError(f"{flag}: {path} is a file, not a results store folder")
    if not (path / "results").is_dir():
        raise CliError(f"{flag}: {path} is not a results store (no results/ folder; run a sweep "
                       f"with --storage {path} first)")
    return str(path)


def export_target(out: str | None, fmt: str | None, sweep: str) -> tuple[Path, str]:
    """(file, format) of ``results export``: the format from ``--format``, else from the extension."""
    path = Path(out) if out else Path(f"{sweep}.{fmt or 'csv'}")
    if path.is_dir():
        raise CliError(f"--out: {path} is a folder; give a file name")
    inferred = EXPORT_FORMATS.get(path.suffix.lower())
    if fmt is None:
        fmt = inferred or "csv"
        if inferred is None:
            path = path.with_name(path.name + ".csv")
    elif inferred is not None and inferred != fmt:
        raise CliError(f"--out: {path} has the extension of {inferred}, but --format is {fmt}")
    check_writable_folder(path.parent, "--out")
    return path, fmt

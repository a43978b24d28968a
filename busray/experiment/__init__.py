"""What to run: sweep and ablation files, the search space, run requests, sweep state, storage, trackers.

Torch-free and Ray-free (a test imports it in a fresh process and fails if either was loaded), so a
file is read, checked and planned (``--dry-run``) in a fraction of a second, and a mistake is named
before Ray starts. :mod:`busray.sweep` is the engine that runs and records what this package builds.

- :mod:`.files`: the keys both kinds of file share and the one loader; :mod:`.sweepfile` and
  :mod:`.ablationfile` add a search and a grid of variants.
- :mod:`.params`, :mod:`.space`: one object per parameter type, the space and its Optuna
  define-by-run function.
- :mod:`.request`: :class:`RunRequest`, built by :func:`build_request` -- the one place a run's config
  is assembled; everything downstream (trial, run folder, store row, HParams, trackers) reads it.
- :mod:`.state` (a sweep's id and rounds), :mod:`.storage` (where results go), :mod:`.tracking`
  (MLflow/W&B settings).
"""

from busray.lazy import lazy_exports

__all__ = ["AblationSpec", "DEFAULT_STORAGE", "ExperimentFile", "ResourcesSpec", "RunRequest", "SweepSpec",
           "SweepState", "build_request", "load_ablation_spec", "load_sweep_spec", "open_sweep",
           "resolve_storage"]
# lazy (busray.lazy): the CLI reads DEFAULT_STORAGE from .storage without loading the run config's modules
__getattr__ = lazy_exports(__name__, {
    "AblationSpec": "ablationfile", "load_ablation_spec": "ablationfile", "ExperimentFile": "files",
    "ResourcesSpec": "files", "RunRequest": "request", "build_request": "request", "SweepState": "state",
    "open_sweep": "state", "DEFAULT_STORAGE": "storage", "resolve_storage": "storage", "SweepSpec": "sweepfile",
    "load_sweep_spec": "sweepfile"})

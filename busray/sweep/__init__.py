"""busray's Ray layer: Optuna sweeps and fixed-config runs on Ray Tune + Ray Train V2.

``run_sweep(spec_path, ...)`` runs ``sweeps/NAME.yaml`` (see :mod:`busray.sweep.spec` for the format);
``run_configs(name, [(run_name, config, seed, variant), ...])`` trains a fixed list (ablations). Both
record one results-store row per trial. Module map: ``spec`` (the file), ``space`` (Optuna
define-by-run), ``runner`` (Tuner set-up, resume, add-trials), ``trial`` (the Tune trainable that runs
a ``TorchTrainer``), ``worker`` (inside each Train worker: ``fit`` + the Ray reporter), ``recording``
(results rows, HParams), ``cluster`` (``ray.init``, auth, trial slots), ``state`` (sweep ids/rounds).
This is the only package of busray that imports Ray; it does so lazily, inside functions.
"""

from busray.sweep.runner import SweepOutcome, run_configs, run_sweep
from busray.sweep.spec import SweepSpec, load_sweep_spec

__all__ = ["SweepOutcome", "SweepSpec", "load_sweep_spec", "run_configs", "run_sweep"]

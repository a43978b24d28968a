"""busray's Ray layer: Optuna sweeps and fixed-config runs on Ray Tune + Ray Train V2.

``run_sweep(spec_path, ...)`` runs ``sweeps/NAME.yaml`` (see :mod:`busray.sweep.spec` for the format);
``run_configs(name, [(run_name, config, seed, variant), ...])`` trains a fixed list (ablations). Both
record one results-store row per trial. Module map: ``spec`` (the file; validated without torch or Ray),
``space`` (Optuna define-by-run), ``runner`` (Tuner set-up, resume, add-trials), ``trial`` (the Tune
trainable: ``fit`` in a warm, reused actor), ``ddp`` (multi-worker trials on Ray Train), ``searcher``
(Optuna states and attributes), ``recording`` (the one writer of trial outcomes and store rows),
``outcome`` (what a sweep produced, its summary), ``hparams`` (TensorBoard HParams), ``console`` (what
the user sees), ``cluster`` (``ray.init``, loopback, pre-flight, trial slots), ``storage`` (storage
paths), ``state`` (sweep ids/rounds), ``plan`` (``--dry-run``: the checked plan, no Ray). With
``ablation`` and ``results``, the only code of busray that imports Ray.

The exports are lazy (:mod:`busray.lazy`): a trial actor unpickles its trainable from
``busray.sweep.trial``, and an eager ``__init__`` would make every new trial process import the
driver's side too (Tune's Tuner, pandas, the results store).
"""

from busray.lazy import lazy_exports

__all__ = ["SweepOutcome", "SweepSpec", "load_sweep_spec", "run_configs", "run_sweep"]
__getattr__ = lazy_exports(__name__, {"SweepOutcome": "outcome", "run_configs": "runner", "run_sweep": "runner",
                                      "SweepSpec": "spec", "load_sweep_spec": "spec"})

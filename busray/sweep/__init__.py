"""busray's Ray engine: it runs and records what :mod:`busray.experiment` builds.

``run_sweep(spec, ...)`` runs a sweep file's Optuna-searched trials; ``run_requests(spec, requests)``
trains fixed :class:`~busray.experiment.request.RunRequest` s (an ablation's variants x seeds). Both
record one results-store row per trial. Module map: ``runner`` (Tuner set-up, resume, add-trials; the
path both share), ``job`` (what every trial and callback knows; what a trial reports), ``trial`` (the
Tune trainable: ``fit`` of the request in a warm, reused actor), ``ddp`` (multi-worker trials on Ray
Train), ``searcher`` (Optuna states and attributes; suggestions become requests), ``recording`` (the
one writer of trial outcomes and store rows), ``outcome`` (what a sweep produced, its summary),
``hparams`` (TensorBoard HParams), ``trackers`` (MLflow, W&B), ``console`` (what the user sees),
``cluster`` (``ray.init``, loopback, pre-flight, trial slots), ``plan`` (``--dry-run``: the checked plan,
no Ray). With ``ablation``, the only code of busray that imports Ray.

The exports are lazy (:mod:`busray.lazy`): a trial actor unpickles its trainable from
``busray.sweep.trial``, and an eager ``__init__`` would make every new trial process import the
driver's side too (Tune's Tuner, pandas, the results store).
"""

from busray.lazy import lazy_exports

__all__ = ["SweepOutcome", "run_requests", "run_sweep"]
__getattr__ = lazy_exports(__name__, {"SweepOutcome": "outcome", "run_requests": "runner", "run_sweep": "runner"})

"""The ablation service: component grids x seeds on the sweep engine, and a Table-2 report.

``run_ablation(path)`` trains every (variant, replicate) of an ablation file (the file:
:mod:`busray.experiment.ablationfile`; the runs: :mod:`.runner`); ``report.build_report(store, name, fmt,
out_dir)`` turns the results store and run folders into a Table-2-style table with paired-bootstrap
significance (:mod:`.stats`, :mod:`.table`) and the Fig. 2/3 figures (:mod:`.figures`). Ray is imported
only when runs are launched.
"""

from busray.ablation.runner import AblationOutcome, run_ablation

__all__ = ["AblationOutcome", "run_ablation"]

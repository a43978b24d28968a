"""The ablation service: component grids x seeds on the sweep machinery, and a Table-2 report.

``run_ablation(path)`` trains every (variant, replicate) of an ablation file (:mod:`.spec`, :mod:`.runner`);
``report.build_report(store, name, fmt, out_dir)`` turns the results store and run folders into a
Table-2-style table with paired-bootstrap significance (:mod:`.stats`, :mod:`.table`) and the Fig. 2/3
figures (:mod:`.figures`); ``busray ablate --dry-run`` prints the checked plan (:mod:`.plan`). Ray is
imported only when runs are launched.
"""

from busray.ablation.runner import AblationOutcome, run_ablation
from busray.ablation.spec import AblationSpec, load_ablation_spec

__all__ = ["AblationOutcome", "AblationSpec", "load_ablation_spec", "run_ablation"]

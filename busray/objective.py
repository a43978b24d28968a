"""The objective: which validation metric(s) decide, in which direction. One type for every layer.

A trial's *best epoch* is the epoch whose first metric is best; its Optuna value, its store row's
metrics, ASHA's decisions, ``train.monitor`` (early stopping, ``best.pt``), ranking in ``busray
results`` and the ablation report all read the same :class:`Objective`, so no two of them can pick
different epochs for one trial.

Spelling (sweep and ablation files, ``--metric``, the store's ``objective`` column)::

    val/score                 # mode from the name: min for names containing "loss", else max
    val/score:max
    val/seg/iou:max,val/clf/acc:max   # multi-objective (Optuna Pareto front); the first one ranks

A name without a split prefix is taken as a validation metric (``seg/iou`` -> ``val/seg/iou``). The
default, :data:`DEFAULT_OBJECTIVE`, is ``val/score:max`` = (lesion IoU + accuracy) / 2, the score
that early stopping used before objectives existed. Torch-free and Ray-free: the sweep driver
validates objectives without importing either.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from busray.configtools import ConfigError, did_you_mean

MODES = ("max", "min")
SPLIT_PREFIXES = ("val/", "test/", "train/")
#: The loss terms of ``busray.losses.LOSS_KEYS`` (``train/<term>``, ``val/<term>``, ``test/<term>``).
LOSS_TERMS = ("loss", "seg_loss", "clf_loss", "focal_tversky", "boundary", "texture")
#: ``busray.metrics.METRIC_KEYS``, named here without torch (a test checks they agree).
METRIC_KEYS = ("seg/iou", "seg/dice", "seg/sens", "seg/prec", "seg/iou_pooled", "seg/dice_pooled",
               "seg/iou_global", "clf/acc", "clf/f1", "clf/auc", "clf/prec")
#: What an evaluation reports per split: the monitor score, the metrics and the loss terms.
EVAL_KEYS = ("score",) + METRIC_KEYS + LOSS_TERMS


@dataclass(frozen=True)
class Objective:
    """Metric names (full, ``val/...``) and their modes; ``metrics[0]`` is the primary one."""
    metrics: tuple[str, ...] = ("val/score",)
    modes: tuple[str, ...] = ("max",)

    def __post_init__(self) -> None:
        if not self.metrics or len(self.metrics) != len(self.modes):
            raise ConfigError("objective: needs one mode per metric")
        for mode in self.modes:
            if mode not in MODES:
                raise ConfigError(f"objective: mode '{mode}' is not one of {', '.join(MODES)}")
        if len(set(self.metrics)) != len(self.metrics):
            raise ConfigError(f"objective: metric listed twice in {self.label()}")

    @classmethod
    def parse(cls, spec: "str | Objective | None", key: str = "objective") -> "Objective":
        """``"val/seg/iou:max,clf/acc"`` (or None = the default) -> Objective; ``key`` names the
        config key in errors."""
        if isinstance(spec, Objective):
            return spec
        if spec is None or not str(spec).strip():
            return DEFAULT_OBJECTIVE
        metrics, modes = [], []
        for part in (p.strip() for p in str(spec).split(",") if p.strip()):
            name, _, mode = part.partition(":")
            name = qualify(name.strip())
            mode = mode.strip() or default_mode(name)
            if mode not in MODES:
                raise ConfigError(f"{key}: mode '{mode}' of '{name}' is not one of {', '.join(MODES)}")
            metrics.append(name)
            modes.append(mode)
        try:
            return cls(tuple(metrics), tuple(modes))
        except ConfigError as err:
            raise ConfigError(f"{key}: {str(err).split(': ', 1)[-1]}") from None

    @classmethod
    def from_lists(cls, metrics: Sequence[str], modes: Sequence[str] | None = None,
                   key: str = "objective") -> "Objective":
        modes = list(modes) if modes else [default_mode(qualify(m)) for m in metrics]
        if len(modes) != len(metrics):
            raise ConfigError(f"{key}.modes: {len(modes)} modes for {len(metrics)} metrics")
        return cls.parse(",".join(f"{m}:{o}" for m, o in zip(metrics, modes)), key)

    # ------------------------------------------------------------------ reading
    @property
    def metric(self) -> str:
        return self.metrics[0]

    @property
    def mode(self) -> str:
        return self.modes[0]

    @property
    def multi(self) -> bool:
        return len(self.metrics) > 1

    def check_validation(self, key: str = "objective") -> "Objective":
        """Sweeps and ablations select on validation metrics only (selecting on test leaks it)."""
        for name in self.metrics:
            if not name.startswith("val/"):
                raise ConfigError(f"{key}.metrics: '{name}' is not a val/<metric> key")
        return self

    def label(self) -> str:
        return ",".join(f"{m}:{o}" for m, o in zip(self.metrics, self.modes))

    # ------------------------------------------------------------------ deciding
    def value(self, row: Mapping[str, object]) -> float | None:
        """The primary metric of a row (an epoch's metrics), or None when absent or not finite."""
        value = row.get(self.metric)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return None
        return float(value)

    def better(self, value: float | None, best: float | None) -> bool:
        """Whether ``value`` beats ``best`` (None never beats, anything beats None)."""
        if value is None:
            return False
        if best is None:
            return True
        return value > best if self.mode == "max" else value < best

    def best_row(self, rows: Iterable[Mapping[str, object]]) -> Mapping[str, object] | None:
        """The first row with the best primary metric (earliest epoch wins ties), or None."""
        best_row, best = None, None
        for row in rows:
            value = self.value(row)
            if self.better(value, best):
                best_row, best = row, value
        return best_row

    def sort_ascending(self) -> bool:
        return self.mode == "min"


def check_reported(name: str, key: str) -> None:
    """A ``ConfigError`` naming ``key`` when ``name`` (``val/seg/iuo``) is not a validation metric a run
    reports: a typo would otherwise be found only once a run had trained, with no value to decide by."""
    known = [f"val/{k}" for k in EVAL_KEYS]
    if name not in known:
        raise ConfigError(f"{key}: '{name}' is not a metric a run reports{did_you_mean(name, known)} "
                          f"(val/ + one of: {', '.join(EVAL_KEYS)})")


def qualify(name: str) -> str:
    """``seg/iou`` -> ``val/seg/iou``; names with a split prefix are kept."""
    if not name:
        raise ConfigError("objective: empty metric name")
    return name if name.startswith(SPLIT_PREFIXES) else f"val/{name}"


def default_mode(name: str) -> str:
    return "min" if "loss" in name else "max"


DEFAULT_OBJECTIVE = Objective()

"""The paper's published BUSI numbers (Tables 1 and 2), to print beside our measurements.

Values are percentages exactly as printed in the paper. Table 2 (ablation on BUSI) is keyed by the
component switches (HMSF, TIM, UPA); Table 1 (comparison with baselines) by method name. Only BUSI is
kept: the report shows paper numbers only when the runs' dataset is BUSI.

How a variant finds its paper row (:func:`paper_row`), a choice the paper cannot make for us:

1. by name, for the Table 1 methods (``unet``, ``attention_unet``, ``unetpp``, ``mtan``, ... ; case,
   ``-``/``_``/space and a trailing ``_clf``/``_mtl`` are ignored);
2. otherwise by the flattened config switches ``model.hmsf``, ``model.tim``, ``model.upa``;
   ``model.encoder_only = true`` (shared encoder, plain U-Net decoder: Table 2's baseline) counts as TIM
   and UPA off, and a TIM restricted to fewer than all four levels (``model.tim_levels``) matches no row
   because the paper reports TIM only at all levels. Other settings (τ, UPA normalisation) are not
   compared: the label printed with the row says which paper configuration it is.

Metric convention (:data:`SEG_CONVENTION`, :func:`measured_key`): the paper's IoU and Dice are
*pooled* (TP, FP and FN summed over the lesion images of the test set, then one ratio). Evidence: in
every BUSI row of Tables 1-2, Dice = 2 IoU / (1 + IoU) to within 0.14 points, 13 of the 15 rows
within 0.06 (:func:`dice_from_iou_gap`), an identity of pooled counts; means of per-image scores break it by points (on a BUSI run busray's
per-image means were 4.7 points apart), since the map is concave. A report therefore compares the
paper's ``seg/iou``/``seg/dice`` with our ``seg/iou_pooled``/``seg/dice_pooled`` and prints the
per-image means beside them (:func:`other_convention_key`). Sensitivity and precision cannot be
pinned down this way (the tables' IoU, sensitivity and precision are not one pooled confusion), so
they are compared as per-image means, busray's ``seg/sens``/``seg/prec``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any


@dataclasses.dataclass(frozen=True)
class PaperRow:
    """One published row: ``values`` maps metric keys (``seg/iou`` ...) to percentages."""

    source: str
    label: str
    values: Mapping[str, float]


SEG_CONVENTION = "pooled"
"""How the paper's segmentation IoU and Dice were computed (see the module docstring)."""

_MEASURED = {"seg/iou": "seg/iou_pooled", "seg/dice": "seg/dice_pooled"}
_OTHER = {"seg/iou": "seg/iou", "seg/dice": "seg/dice"}

_T2_KEYS = ("seg/iou", "seg/dice", "seg/sens", "seg/prec", "clf/acc", "clf/f1", "clf/auc", "clf/prec")
_T1_KEYS = ("seg/iou", "seg/dice", "clf/acc", "clf/f1")


def _t2(label: str, *values: float) -> PaperRow:
    return PaperRow("Table 2", label, dict(zip(_T2_KEYS, values, strict=True)))


def _t1(label: str, *values: float | None) -> PaperRow:
    return PaperRow("Table 1", label,
                    {k: v for k, v in zip(_T1_KEYS, values, strict=True) if v is not None})


#: Table 2 (BUSI): (hmsf, tim, upa) -> row.
TABLE2_BUSI: dict[tuple[bool, bool, bool], PaperRow] = {
    (False, False, False): _t2("baseline", 67.43, 80.55, 75.06, 79.73, 84.62, 82.33, 94.90, 82.16),
    (True, False, False): _t2("+HMSF", 69.95, 82.32, 79.12, 80.19, 88.89, 88.34, 96.30, 86.70),
    (False, True, False): _t2("+TIM", 69.20, 81.80, 79.83, 79.76, 86.32, 84.00, 94.41, 86.04),
    (False, True, True): _t2("+TIM+UPA", 69.74, 82.17, 83.07, 79.32, 88.89, 88.34, 97.31, 87.24),
    (True, True, True): _t2("HMSF+TIM+UPA", 74.50, 85.25, 80.87, 85.47, 90.60, 89.84, 97.66, 89.95),
}

#: Table 1 (BUSI columns): normalised method name -> row (IoU, Dice, Acc, F1; transformers have no Clf).
TABLE1_BUSI: dict[str, PaperRow] = {
    "unet": _t1("U-Net", 66.80, 80.05, 86.50, 84.70),
    "attentionunet": _t1("Attention U-Net", 68.20, 81.05, 87.80, 86.00),
    "unet++": _t1("UNet++", 69.50, 81.95, 88.21, 86.90),
    "transunet": _t1("TransUNet", 70.30, 82.55, None, None),
    "swinunet": _t1("Swin-UNet", 71.50, 83.40, None, None),
    "missformer": _t1("MISSFormer", 72.80, 84.25, None, None),
    "mtan": _t1("MTAN", 68.90, 81.60, 87.20, 85.40),
    "mtanet": _t1("MTANet", 72.10, 83.80, 89.30, 87.60),
    "mtloca": _t1("MTL-OCA", 72.90, 84.30, 89.90, 88.20),
    "proposed": _t1("Proposed", 74.50, 85.25, 90.60, 89.84),
}
_ALIASES = {"attunet": "attentionunet", "unetpp": "unet++", "unetplusplus": "unet++"}


#: The paper's setting in config keys; a report lists where its runs differ: the training setting
#: (Sec. 3.1), TIM's strength (Sec. 2.1, Eq. 4) and the loss constants (Sec. 2.4).
PAPER_SETTING: dict[str, Any] = {
    "model.encoder": "tf_efficientnet_b4", "model.weights": "imagenet", "data.image_size": 224,
    "train.batch_size": 24, "train.epochs": 100, "train.lr": 3e-4, "train.lr_min": 1.5e-6, "train.patience": 10,
    "model.tau": 0.7, "loss.w_seg": 0.8, "loss.w_clf": 0.2, "loss.w_boundary": 0.25, "loss.w_texture": 0.15,
    "loss.tversky_alpha": 0.3, "loss.tversky_beta": 0.7, "loss.tversky_gamma": 0.75,
}


def setting_differences(values: Mapping[str, list]) -> list[str]:
    """``'model.weights none (paper: imagenet)'`` for each :data:`PAPER_SETTING` key whose recorded
    values (``values[key]``: the distinct values over the runs) are not the paper's; an unrecorded
    key is not reported."""
    out = []
    for key, paper in PAPER_SETTING.items():
        seen = values.get(key) or []
        if seen and not all(_same(v, paper) for v in seen):
            out.append(f"{key} {' / '.join(str(v) for v in seen)} (paper: {paper})")
    return out


def _same(value: Any, paper: Any) -> bool:
    if isinstance(paper, float):
        try:
            return abs(float(value) - paper) <= 1e-9 * max(1.0, abs(paper))
        except (TypeError, ValueError):
            return False
    return str(value) == str(paper)


def measured_key(paper_key: str) -> str:
    """Our metric key to set beside a paper number keyed ``paper_key`` (``seg/iou`` ->
    ``seg/iou_pooled``: the paper's convention); keys without a convention question map to themselves."""
    return _MEASURED.get(paper_key, paper_key)


def other_convention_key(paper_key: str) -> str | None:
    """Our key in the *other* convention (per-image means), to show beside :func:`measured_key`;
    None where there is no second convention."""
    return _OTHER.get(paper_key)


def dice_from_iou_gap() -> float:
    """Largest |Dice - 200 IoU / (100 + IoU)| in points over the BUSI rows of Tables 1-2: small for
    pooled metrics (Dice and IoU of one confusion), not for means of per-image scores."""
    rows = [r.values for r in (*TABLE1_BUSI.values(), *TABLE2_BUSI.values())
            if "seg/iou" in r.values and "seg/dice" in r.values]
    return max(abs(v["seg/dice"] - 200 * v["seg/iou"] / (100 + v["seg/iou"])) for v in rows)


def is_busi(dataset: Any) -> bool:
    """True for BUSI itself (``busi``, ``BUSI``), not for BUSI-WHU or synthetic data."""
    return isinstance(dataset, str) and dataset.strip().lower() == "busi"


def paper_row(variant: str, config: Mapping[str, Any]) -> PaperRow | None:
    """The published BUSI row for a variant (see the module docstring), or None."""
    by_name = TABLE1_BUSI.get(_normalise(variant))
    if by_name is not None:
        return by_name
    return TABLE2_BUSI.get(_switches(config))


def _normalise(name: str) -> str:
    key = re.sub(r"[\s_\-]", "", name.lower())
    key = re.sub(r"(clf|mtl)$", "", key) or key
    return _ALIASES.get(key, key)


def _switches(config: Mapping[str, Any]) -> tuple[bool, bool, bool] | None:
    """(hmsf, tim, upa) from a flattened config row, None when a switch is missing."""
    values = [config.get(f"model.{name}") for name in ("hmsf", "tim", "upa")]
    if any(v is None or (isinstance(v, float) and v != v) for v in values):
        return None
    hmsf, tim, upa = (_as_bool(v) for v in values)
    if _as_bool(config.get("model.encoder_only", False)):
        tim = upa = False
    if tim and not _all_levels(config.get("model.tim_levels")):
        return None
    return hmsf, tim, upa


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"true", "1", "yes", "on"}
    return bool(value)


def _all_levels(levels: Any) -> bool:
    """True when ``tim_levels`` is absent or names all four decoder levels (list, array or string)."""
    if levels is None or (isinstance(levels, float) and levels != levels):
        return True
    if isinstance(levels, str):
        found = {int(d) for d in re.findall(r"\d+", levels)}
    else:
        found = {int(d) for d in levels}
    return found >= {1, 2, 3, 4}

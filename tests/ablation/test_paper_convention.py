"""The paper's segmentation convention (pooled IoU/Dice) and the keys a report compares it with."""

from __future__ import annotations

import pytest

from busray.ablation.paper import (SEG_CONVENTION, TABLE1_BUSI, TABLE2_BUSI, dice_from_iou_gap,
                                   measured_key, other_convention_key)
from busray.metrics import METRIC_KEYS


def test_every_paper_dice_is_its_iou_converted():
    """Dice = 2 IoU / (1 + IoU): true of pooled counts, in every BUSI row of Tables 1-2 to 0.14
    points (the 'Proposed' row; all others to 0.06), where per-image means differ by points."""
    assert dice_from_iou_gap() <= 0.14
    rows = [r for r in (*TABLE1_BUSI.values(), *TABLE2_BUSI.values()) if "seg/dice" in r.values]
    assert len(rows) == 15


@pytest.mark.parametrize("paper_key, ours, other", [
    ("seg/iou", "seg/iou_pooled", "seg/iou"),
    ("seg/dice", "seg/dice_pooled", "seg/dice"),
    ("seg/sens", "seg/sens", None),
    ("clf/acc", "clf/acc", None),
])
def test_report_keys_follow_the_papers_convention(paper_key, ours, other):
    assert SEG_CONVENTION == "pooled"
    assert measured_key(paper_key) == ours and other_convention_key(paper_key) == other
    assert ours in METRIC_KEYS and (other is None or other in METRIC_KEYS)

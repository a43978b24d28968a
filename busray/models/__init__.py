"""The paper's multi-task network (Sec. 2): encoder, HMSF, attention-gated decoder, TIM, UPA, heads.

Depends only on torch, timm and ``busray.configtools``. Entry points: ``ModelConfig`` (key group
``model.*``), ``create_model(cfg) -> MultiTaskNet`` whose forward returns a ``ModelOutput``,
``param_groups_summary(model)`` for logging parameter counts per module group, and ``StackedModels``
(several models of one architecture as one vmapped forward: trial packing in one process).
"""

from busray.lazy import lazy_exports
from busray.models.config import DIAGNOSTIC_KEYS, LEVELS, ModelConfig

# torch/timm load on first use of these (busray/lazy.py says why)
__getattr__ = lazy_exports(__name__, {**{name: "net" for name in (
    "PARAM_GROUPS", "ModelOutput", "MultiTaskNet", "create_model", "param_groups_summary")},
    "StackedModels": "stacking"})

__all__ = ["LEVELS", "DIAGNOSTIC_KEYS", "PARAM_GROUPS", "ModelConfig", "ModelOutput", "MultiTaskNet",
           "StackedModels", "create_model", "param_groups_summary"]

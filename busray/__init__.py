"""busray: Ray-distributed hyperparameter and ablation service for multi-task breast-ultrasound models.

Layers (dependencies point one way, see docs/ARCHITECTURE.md): ``models``/``losses``/``metrics``/``data``
(torch only) <- ``training`` (plain ``fit``) <- ``sweep``/``ablation``/``results`` (Ray) <- ``cli``.
"""

__version__ = "0.1.0"

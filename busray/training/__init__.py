"""The plain training layer: ``fit(cfg, reporter)`` and its pieces. No Ray import here."""

from busray.training.config import TrainConfig
from busray.training.reporter import NullReporter, Reporter, ResumeFromDir

__all__ = ["TrainConfig", "Reporter", "NullReporter", "ResumeFromDir", "fit", "FitResult"]


def __getattr__(name):
    # fit pulls in models/data/losses; import it lazily so `busray.training.config` stays light
    # (busray.config imports TrainConfig from here while the other groups are being imported).
    if name in ("fit", "FitResult"):
        from busray.training import loop as _loop

        return getattr(_loop, name)
    raise AttributeError(name)

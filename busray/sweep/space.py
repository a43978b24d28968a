"""The search space as an Optuna define-by-run function, and trial config resolution.

:class:`DefineByRun` is handed to ``OptunaSearch(space=...)``. Optuna calls it with a live trial, so a
parameter can depend on what was drawn before it (``when: {model.upa: true}`` samples ``model.upa_norm``
only where UPA is on: conditional parameters that a static Tune dict cannot express). The loss weights
are one dimension, not two: ``loss.w_seg`` is sampled and ``loss.w_clf = 1 - loss.w_seg`` is returned
beside it, so every trial satisfies the paper's w_seg + w_clf = 1 (Sec. 2.4) by construction.

The function returns *flat dotted keys* (``{"model.tau": 0.42}``): Tune's default nested-dict delimiter
is ``/``, so dotted names stay single keys. :func:`resolve_config` merges them onto the base config.
The class is a plain picklable object because Tune checkpoints the searcher (with this function) so
that ``Tuner.restore`` can continue the sweep.
"""

from __future__ import annotations

from typing import Any

from busray.configtools import set_dotted
from busray.sweep.spec import WEIGHT_PAIR, ParamSpec

SEED_KEY = "train.seed"


class DefineByRun:
    """Callable ``(optuna_trial) -> dict``: samples ``space`` in file order and derives partners."""

    def __init__(self, space: dict[str, ParamSpec], base_flat: dict[str, Any], seeds: list[int]):
        self.space = space
        self.base_flat = base_flat
        self.seeds = list(seeds)

    def __call__(self, trial) -> dict[str, Any]:
        drawn: dict[str, Any] = {}
        derived: dict[str, Any] = {}
        for key, param in self.space.items():
            if not self._active(param, drawn, derived):
                continue
            value = param.value if param.type == "fixed" else suggest(trial, key, param)
            if param.type == "fixed":
                derived[key] = value
            else:
                drawn[key] = value
            derived.update(weight_partner(key, value))
        # The seed rotates with the Optuna trial number (stable across resumes and --add-trials).
        derived[SEED_KEY] = self.seeds[trial.number % len(self.seeds)]
        return derived

    def _active(self, param: ParamSpec, drawn: dict, derived: dict) -> bool:
        known = {**self.base_flat, **derived, **drawn}
        return all(known.get(k) == v for k, v in param.when.items())


def suggest(trial, key: str, param: ParamSpec) -> Any:
    """One Optuna ``suggest_*`` call; the name is the dotted config key."""
    if param.type == "categorical":
        return trial.suggest_categorical(key, param.choices)
    if param.type == "int":
        return trial.suggest_int(key, int(param.low), int(param.high), step=int(param.step or 1))
    if param.type == "loguniform":
        return trial.suggest_float(key, param.low, param.high, log=True)
    return trial.suggest_float(key, param.low, param.high, step=param.step)


def weight_partner(key: str, value: Any) -> dict[str, float]:
    """``{'loss.w_clf': 1 - w_seg}`` for a sampled ``loss.w_seg`` (and vice versa), else ``{}``."""
    if key not in WEIGHT_PAIR:
        return {}
    other = WEIGHT_PAIR[1 - WEIGHT_PAIR.index(key)]
    return {other: round(1.0 - float(value), 12)}


def resolve_config(base: dict, flat_params: dict[str, Any]) -> dict:
    """The nested run config of one trial: ``base`` with every dotted parameter set."""
    out = _copy(base)
    for key, value in flat_params.items():
        set_dotted(out, key, value)
    return out


def _copy(d: dict) -> dict:
    return {k: _copy(v) if isinstance(v, dict) else (list(v) if isinstance(v, list) else v)
            for k, v in d.items()}

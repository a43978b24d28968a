"""A sweep's search space: its parameters in file order, checked against the run config, drawn by Optuna.

``space:`` maps dotted config keys to parameters (:mod:`busray.experiment.params`), given nested
(``model: {tau: {...}}``, as ``--set space.model.tau.low=0.3`` produces) or dotted. The space is
checked when the file is read: every key must be a run-config key (or ``resources.workers``), and the
base config is built with each parameter's extreme values, so a range the config forbids
(``model.tau`` up to 5) is reported before any trial runs.

:class:`DefineByRun` is what Ray Tune's ``OptunaSearch(space=...)`` calls with a live Optuna trial: it
draws the parameters in file order, so a conditional parameter sees what was drawn before it. The
loss weights are one dimension, not two: ``loss.w_seg`` is drawn and ``loss.w_clf = 1 - loss.w_seg`` is
set beside it (paper Sec. 2.4: w_seg + w_clf = 1). It returns *flat dotted keys*
(``{"model.tau": 0.42}``), which :func:`busray.experiment.request.build_request` turns into a run
config; it is a plain picklable object, as Tune checkpoints the searcher that holds it.
"""

from __future__ import annotations

import json
from dataclasses import fields
from typing import Any, Callable

from busray.configtools import ConfigError, flatten, set_dotted
from busray.experiment.params import PARAM_FIELDS, Complement, Param, complement, parse_param

#: The loss weights sum to one (paper Sec. 2.4: 0.8/0.2): one is drawn, the other is derived.
WEIGHT_PAIR = ("loss.w_seg", "loss.w_clf")
#: Resource keys a space may hold besides run-config keys: the Ray Train workers of a trial
#: (1 = one process, > 1 = DDP), so one sweep can compare or mix both.
SWEPT_RESOURCES = ("resources.workers",)


def flatten_space(raw: dict, prefix: str = "") -> dict[str, Any]:
    """Dotted keys for parameters given nested or dotted.

    A mapping with a parameter's field (``type``, ``low``, ``choices``, ...; ``{low: 0.2, high: 1.2}``
    is uniform, the default type) is a parameter; any other mapping is a group of parameters.
    """
    out: dict[str, Any] = {}
    for key, value in raw.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value and not set(value) & PARAM_FIELDS:
            out.update(flatten_space(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def nest_space(raw: dict) -> dict:
    """The inverse of :func:`flatten_space`: ``{'model.tau': p}`` -> ``{'model': {'tau': p}}``."""
    out: dict[str, Any] = {}
    for dotted, value in flatten_space(raw).items():
        set_dotted(out, dotted, value)
    return out


def parse_space(raw: Any, config_default: Callable[[str, str], Any]) -> dict[str, Param]:
    """The parameters of a ``space:`` mapping, in file order. ``config_default(key, where)`` raises the
    unknown-key error of a run-config key: a typo reads as one, before its parameter's fields."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"space: expected a mapping, got {raw!r}")
    flat = flatten_space(raw)
    for key in flat:
        if key.startswith("resources."):
            if key not in SWEPT_RESOURCES:
                raise ConfigError(f"space.{key}: only {', '.join(SWEPT_RESOURCES)} can be searched among resources")
        else:
            config_default(key, "space")
    space = {key: parse_param(key, value) for key, value in flat.items()}
    _check_relations(space)
    return space


def _check_relations(space: dict[str, Param]) -> None:
    """Derived pairs and complements refer to what they must, and never twice."""
    if all(k in space for k in WEIGHT_PAIR):
        raise ConfigError(f"space.{WEIGHT_PAIR[1]}: derived as 1 - {WEIGHT_PAIR[0]} (w_seg + w_clf = 1); "
                          "sample only one of them")
    keys = list(space)
    for i, (key, param) in enumerate(space.items()):
        if isinstance(param, Complement) and param.of not in keys[:i]:
            raise ConfigError(f"space.{key}.of: '{param.of}' is not a parameter listed before {key}")
        if isinstance(param, Complement) and key in WEIGHT_PAIR:
            raise ConfigError(f"space.{key}: the loss weights are already each other's complement")
    for key in SWEPT_RESOURCES:
        for value in space[key].extremes() if key in space else ():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"space.{key}: {value!r} is not a worker count (an integer >= 1)")


def weight_partner(key: str, value: Any) -> dict[str, float]:
    """``{'loss.w_clf': 1 - w_seg}`` for a drawn ``loss.w_seg`` (and vice versa), else ``{}``."""
    if key not in WEIGHT_PAIR or not isinstance(value, (int, float)):
        return {}
    return {WEIGHT_PAIR[1 - WEIGHT_PAIR.index(key)]: complement(value)}


def extreme_points(space: dict[str, Param]) -> list[dict[str, Any]]:
    """Partial assignments that together reach every bound of every run-config parameter, each with
    what it implies (the weight partner, a complement): the points the space is checked at."""
    points = []
    for key, param in space.items():
        if key in SWEPT_RESOURCES or isinstance(param, Complement):
            continue
        for value in param.extremes():
            point = {key: value, **weight_partner(key, value)}
            point.update({k: complement(value) for k, p in space.items()
                          if isinstance(p, Complement) and p.of == key})
            points.append(point)
    return points


class DefineByRun:
    """Callable ``(optuna_trial) -> dict``: draws the space in file order, derived values beside."""

    def __init__(self, space: dict[str, Param], full_base: dict) -> None:
        self.space = space
        self.base_flat = flatten(full_base)  # every key: a `when` on a default value works too

    def __call__(self, trial) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for key, param in self.space.items():
            known = {**self.base_flat, **values}
            if not all(known.get(k) == v for k, v in param.when.items()):
                continue
            values[key] = param.draw(trial, key, known)
            values.update(weight_partner(key, values[key]))
        return values


def space_record(space: dict[str, Param]) -> dict[str, dict]:
    """The space as plain JSON data (``{key: {type, field: value, ...}}``): what ``sweep.json`` records
    for each round, so a later round can tell whether its space is the same."""
    record = {key: {"type": param.type, **{f.name: getattr(param, f.name) for f in fields(param)}}
              for key, param in space.items()}
    return json.loads(json.dumps(record, default=str))  # tuples as lists, as read back from the file


def space_change(old: dict[str, dict], new: dict[str, dict]) -> str | None:
    """The first difference between two recorded spaces, in words (None: the same space)."""
    for key in [*old, *(k for k in new if k not in old)]:
        if key not in new:
            return f"space.{key} removed"
        if key not in old:
            return f"space.{key} added"
        if old[key] != new[key]:
            diffs = [f"{name} {old[key].get(name)!r} -> {new[key].get(name)!r}"
                     for name in [*old[key], *(n for n in new[key] if n not in old[key])]
                     if old[key].get(name) != new[key].get(name)]
            return f"space.{key}: {', '.join(diffs)}"
    return None

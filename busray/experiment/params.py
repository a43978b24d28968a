"""One search dimension of a sweep's ``space``, as one object per type (as Optuna's distributions).

A sweep file writes a parameter as a mapping; :func:`parse_param` turns it into one of the classes
below and validates *all* its fields when the file is read, so ``busray sweep --dry-run`` refuses every
bad space before Ray starts, naming the key (``space.train.warmup_epochs.step: 0 is not > 0``)::

    model.tau:       {type: uniform, low: 0.2, high: 1.2}             # step optional
    train.lr:        {type: loguniform, low: 1.0e-4, high: 1.0e-2}
    train.warmup_epochs: {type: int, low: 0, high: 5, step: 1}
    model.upa_norm:  {type: categorical, choices: [batch, running], when: {model.upa: true}}
    train.epochs:    {type: fixed, value: 30}
    loss.tversky_beta: {type: complement, of: loss.tversky_alpha}     # 1 - the value drawn for 'of'

A mapping without ``type`` is uniform (the documented default). ``when`` makes a parameter
conditional: it is drawn only where every listed key (of the base config or drawn earlier) has the
listed value. Each class knows how to draw itself from an Optuna trial (:meth:`~Param.draw`), which
values exercise every bound (:meth:`~Param.extremes`, used to check the space against the run
config), and its one-line description for the ``--dry-run`` plan. Torch-free and Ray-free.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from busray.configtools import ConfigError

PARAM_TYPES = ("uniform", "loguniform", "int", "categorical", "fixed", "complement")
#: The type of a parameter mapping without ``type``.
DEFAULT_TYPE = "uniform"
#: The fields each type takes besides ``type`` and ``when`` (docs/SWEEPS.md lists them from here).
TYPE_FIELDS = {"uniform": ("low", "high", "step"), "loguniform": ("low", "high"), "int": ("low", "high", "step"),
               "categorical": ("choices",), "fixed": ("value",), "complement": ("of",)}
#: Every key a parameter mapping may have: a mapping with one of them is a parameter, not a group.
PARAM_FIELDS = frozenset({"type", "when", *(f for fields in TYPE_FIELDS.values() for f in fields)})


@dataclass(frozen=True)
class Param:
    """A search dimension; ``when``: draw it only where these keys have these values."""
    when: Mapping[str, Any] = field(default_factory=dict, metadata={"help": (
        "`when: {key: value, ...}` draws a parameter only where every listed key (of the base config, or a "
        "parameter listed before it) has the listed value; elsewhere the key keeps the base's value")})

    type = ""

    def draw(self, trial, key: str, known: Mapping[str, Any]) -> Any:
        """The value of ``key`` for an Optuna trial (``known``: base and earlier draws)."""
        raise NotImplementedError

    def extremes(self) -> list[Any]:
        """Values that together exercise every bound (validation against the run config)."""
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    @property
    def searched(self) -> bool:
        """Whether Optuna draws it (fixed and complement values are set, not searched)."""
        return True


@dataclass(frozen=True)
class Uniform(Param):
    """A float drawn uniformly from ``low`` .. ``high`` (required); ``step`` (optional, > 0, at most
    ``high - low``) draws from the grid ``low, low + step, ...`` instead."""
    low: float = 0.0
    high: float = 1.0
    step: float | None = None
    type = "uniform"

    def draw(self, trial, key, known):
        return trial.suggest_float(key, self.low, self.high, step=self.step)

    def extremes(self):
        return [self.low, self.high]

    def describe(self):
        return f"{self.type} {self.low:g} .. {self.high:g}" + (f" step {self.step:g}" if self.step else "")


@dataclass(frozen=True)
class LogUniform(Uniform):
    """A float drawn uniformly on a log scale from ``low`` .. ``high`` (required, ``low > 0``): learning
    rates, weight decay."""
    type = "loguniform"

    def draw(self, trial, key, known):
        return trial.suggest_float(key, self.low, self.high, log=True)


@dataclass(frozen=True)
class IntRange(Param):
    """An integer from ``low`` .. ``high`` (required integers), every ``step`` (optional integer > 0,
    default 1)."""
    low: int = 0
    high: int = 1
    step: int = 1
    type = "int"

    def draw(self, trial, key, known):
        return trial.suggest_int(key, self.low, self.high, step=self.step)

    def extremes(self):
        return [self.low, self.high]

    def describe(self):
        return f"int {self.low} .. {self.high}" + (f" step {self.step}" if self.step != 1 else "")


@dataclass(frozen=True)
class Categorical(Param):
    """One of ``choices`` (required): a non-empty list of distinct single values (strings, numbers,
    booleans)."""
    choices: tuple = ()
    type = "categorical"

    def draw(self, trial, key, known):
        return trial.suggest_categorical(key, list(self.choices))

    def extremes(self):
        return list(self.choices)

    def describe(self):
        return f"categorical {list(self.choices)}"


@dataclass(frozen=True)
class Fixed(Param):
    """``value`` (required) in every trial, not searched: a key set beside the searched ones."""
    value: Any = None
    type = "fixed"

    def draw(self, trial, key, known):
        return self.value

    def extremes(self):
        return [self.value]

    def describe(self):
        return f"fixed {self.value!r}"

    @property
    def searched(self):
        return False


@dataclass(frozen=True)
class Complement(Param):
    """``1 - <of>``, not searched: ``of`` (required) names a parameter listed before it, e.g. Tversky's
    beta = 1 - alpha, so one number moves the FP/FN balance."""
    of: str = ""
    type = "complement"

    def draw(self, trial, key, known):
        return complement(known[self.of])

    def extremes(self):
        return []  # checked through the parameter it follows (see busray.experiment.space)

    def describe(self):
        return f"1 - {self.of}"

    @property
    def searched(self):
        return False


def complement(value: float) -> float:
    """``1 - value``, rounded so that ``0.7`` gives ``0.3`` and not ``0.30000000000000004``."""
    return round(1.0 - float(value), 12)


def parse_param(key: str, raw: Any) -> Param:
    """The parameter of the space entry ``key`` (a mapping); errors are prefixed ``space.<key>``."""
    where = f"space.{key}"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping such as {{type: uniform, low: 0, high: 1}}, got {raw!r}")
    kind = raw.get("type", DEFAULT_TYPE)
    if kind not in PARAM_TYPES:
        raise ConfigError(f"{where}.type: {kind!r} is not one of {', '.join(map(repr, PARAM_TYPES))}")
    allowed = ("type", "when", *TYPE_FIELDS[kind])
    unknown = sorted(set(raw) - set(allowed))
    if unknown:
        raise ConfigError(f"unknown config key '{where}.{unknown[0]}' (a {kind} parameter takes "
                          f"{', '.join(allowed[2:])} and when)")
    when = raw.get("when") or {}
    if not isinstance(when, dict):
        raise ConfigError(f"{where}.when: expected a mapping of key: value, got {when!r}")
    try:
        return _BUILDERS[kind](raw, dict(when))
    except ConfigError as err:
        raise ConfigError(f"{where}.{err}") from None


def _number(raw: Mapping, name: str, kind: str) -> float:
    value = raw.get(name)
    if value is None:
        raise ConfigError(f"{name}: a {kind} parameter needs low and high")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{name}: expected a number, got {value!r}")
    return float(value)


def _bounds(raw: Mapping, kind: str) -> tuple[float, float]:
    low, high = _number(raw, "low", kind), _number(raw, "high", kind)
    if low > high:
        raise ConfigError(f"low: {low:g} is above high {high:g}")
    return low, high


def _step(raw: Mapping, low: float, high: float) -> float | None:
    step = raw.get("step")
    if step is None:
        return None
    if isinstance(step, bool) or not isinstance(step, (int, float)) or not math.isfinite(step) or step <= 0:
        raise ConfigError(f"step: {step!r} is not a number > 0")
    if high > low and step > high - low:
        raise ConfigError(f"step: {step:g} is larger than the range {low:g} .. {high:g}")
    return float(step)


def _uniform(raw, when):
    low, high = _bounds(raw, "uniform")
    return Uniform(when, low, high, _step(raw, low, high))


def _loguniform(raw, when):
    low, high = _bounds(raw, "loguniform")
    if low <= 0:
        raise ConfigError(f"low: a loguniform parameter needs low > 0, got {low:g}")
    return LogUniform(when, low, high)


def _int(raw, when):
    low, high = _bounds(raw, "int")
    if low != int(low) or high != int(high):
        raise ConfigError("low: an int parameter needs integer low and high")
    step = _step(raw, low, high) or 1
    if step != int(step):
        raise ConfigError(f"step: an int parameter needs an integer step, got {step:g}")
    return IntRange(when, int(low), int(high), int(step))


def _categorical(raw, when):
    choices = raw.get("choices")
    if not isinstance(choices, list) or not choices:
        raise ConfigError("choices: a categorical parameter needs a non-empty list")
    if any(isinstance(c, (dict, list)) for c in choices):  # Optuna stores None, bool, int, float, str
        raise ConfigError(f"choices: {choices!r}: each choice must be a single value, not a list or mapping")
    if len({repr(c) for c in choices}) != len(choices):
        raise ConfigError(f"choices: {choices!r} lists a value twice")
    return Categorical(when, tuple(choices))


def _fixed(raw, when):
    if raw.get("value") is None:
        raise ConfigError("value: a fixed parameter needs a value")
    return Fixed(when, raw["value"])


def _complement(raw, when):
    of = raw.get("of")
    if not isinstance(of, str) or not of:
        raise ConfigError("of: a complement parameter names the key it complements (of: loss.tversky_alpha)")
    return Complement(when, of)


_BUILDERS = {"uniform": _uniform, "loguniform": _loguniform, "int": _int, "categorical": _categorical,
             "fixed": _fixed, "complement": _complement}

"""Typed dataclass configs: declaration helpers, dict/YAML round-trip, overrides and validation.

Every busray config (model, loss, data, train, sweep) is a plain ``@dataclass`` whose fields are
declared with :func:`option`, which records a help text and optional ``range``/``choices`` limits.
YAML files and ``--set a.b=c`` overrides only *override* these documented defaults: an unknown key,
a value of the wrong type or one outside its range raises :class:`ConfigError`, whose one-line
message names the full dotted key (``model.tau: 3.0 is outside [0.0, 2.0]``).

This module has no dependency beyond PyYAML so every layer (models included) can use it.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import shlex
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from busray import safeyaml
from busray.atomic import atomic_write

T = TypeVar("T")


class ConfigError(ValueError):
    """A bad config value; ``str(err)`` is one line that names the dotted key."""


def option(default: Any, help: str, *, range: tuple | None = None,
           choices: typing.Iterable | None = None, none_word: str | None = None) -> Any:
    """Declare a config field with its documentation and limits.

    ``range=(lo, hi)`` is inclusive (``None`` on either side means unbounded); ``choices`` limits a
    scalar, or every element of a list field. ``none_word`` is a word files and ``--set`` may write
    for None (``auto`` for a ``bool | None`` field whose None means "decide by the device"): the
    field's type, hence its results-store column, stays the plain one. Mutable defaults (lists,
    dataclasses) are copied.
    """
    meta = {"help": help, "range": range, "choices": tuple(choices) if choices is not None else None,
            "none_word": none_word}
    if isinstance(default, (list, dict, set)) or dataclasses.is_dataclass(default):
        factory = (lambda d=default: type(d)(d)) if not dataclasses.is_dataclass(default) \
            else (lambda d=default: dataclasses.replace(d))
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def to_dict(cfg: Any) -> dict:
    """A nested plain dict (lists, not tuples) that ``from_dict`` and YAML round-trip."""
    out = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            value = to_dict(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


def from_dict(cls: type[T], data: dict | None, prefix: str = "") -> T:
    """Build ``cls`` from a (partial) nested dict, defaults filling what is missing."""
    data = data or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise unknown_key_error(unknown[0], fields, prefix)
    kwargs = {}
    for name, value in data.items():
        key = prefix + name
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = from_dict(tp, value, key + ".")
        else:
            kwargs[name] = _coerce_field(value, tp, key, fields[name].metadata.get("none_word"))
            _check_limits(kwargs[name], fields[name].metadata, key)
    cfg = cls(**kwargs)
    check = getattr(cfg, "check", None)
    if callable(check):
        try:
            check()
        except ConfigError as err:
            raise ConfigError(f"{prefix}{err}" if prefix and not str(err).startswith(prefix)
                              else str(err)) from None
    return cfg


def unknown_key_error(name: str, known: typing.Iterable[str], prefix: str = "") -> ConfigError:
    """``unknown config key 'model.tua'; did you mean 'model.tau'? (known: ...)``: a typo's likely
    intent first, then every name of that level."""
    known = sorted(known)
    close = close_names(name, known, n=1)
    hint = f"; did you mean '{prefix}{close[0]}'?" if close else ""
    return ConfigError(f"unknown config key '{prefix}{name}'{hint} (known: {', '.join(known)})")


def close_names(name: str, known: typing.Iterable[str], n: int = 3, cutoff: float = 0.7) -> list[str]:
    """The likeliest intended names, best first: the same letters swapped (``tua``/``tau``) before
    difflib's similarity ratio, which alone ranks ``upa`` as close to ``tua`` as ``tau``."""
    def score(candidate: str) -> tuple[bool, float]:
        return sorted(candidate) == sorted(name), difflib.SequenceMatcher(None, name, candidate).ratio()
    ranked = sorted(((score(c), c) for c in known), key=lambda sc: sc[0], reverse=True)
    return [c for (swapped, ratio), c in ranked if swapped or ratio >= cutoff][:n]


def did_you_mean(name: str, known: typing.Iterable[str], cutoff: float = 0.7) -> str:
    """`` (did you mean a, b?)`` for the names close to ``name``, or ``""``."""
    close = close_names(name, [str(k) for k in known], cutoff=cutoff)
    return f" (did you mean {', '.join(close)}?)" if close else ""


#: The groups of a run config (``busray.config.Config``), the top-level keys of a ``--config`` file.
RUN_GROUPS = ("model", "loss", "data", "train")
_RUNNERS = {"ablation": "busray ablate", "sweep": "busray sweep", "run config": "busray train --config"}


def check_file_kind(raw: dict, path: str | Path, wanted: str) -> None:
    """Refuse a file of another of busray's three kinds (``wanted``: 'run config', 'sweep' or
    'ablation'), naming the command that runs it: a sweep file given to ``train --config`` said only
    ``unknown config key 'base'``. A file of no clear kind is left to its own checks."""
    if "variants" in raw or raw.get("kind") == "ablation":
        kind = "ablation"
    elif "space" in raw or "num_trials" in raw:
        kind = "sweep"
    elif raw and set(raw) <= set(RUN_GROUPS):
        kind = "run config"
    else:
        return
    if kind != wanted:
        article = {"ablation": "an"}
        under_base = " (or put it under base: of one)" if kind == "run config" else ""
        raise ConfigError(f"{path}: {article.get(kind, 'a')} {kind} file, not {article.get(wanted, 'a')} "
                          f"{wanted} file: {_RUNNERS[kind]} {shlex.quote(str(path))} runs it{under_base}")


def _coerce_field(value: Any, tp: Any, key: str, none_word: str | None) -> Any:
    """:func:`_coerce`, with the field's word for None (``option(none_word=...)``) accepted and named."""
    if none_word is None:
        return _coerce(value, tp, key)
    if value == none_word:
        return None
    try:
        return _coerce(value, tp, key)
    except ConfigError as err:  # "expected true or false" -> "expected auto, true or false"
        text = str(err)
        joiner = ", " if " or " in text.split("expected ", 1)[-1].split(", got")[0] else " or "
        raise ConfigError(text.replace("expected ", f"expected {none_word}{joiner}", 1)) from None


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; ints are accepted where floats are."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return _coerce_union(value, typing.get_args(tp), key)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        elem = (typing.get_args(tp) or (Any,))[0]
        items = [_coerce(v, elem, f"{key}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    scalar = _SCALARS.get(tp)
    return scalar(value, key) if scalar else value


def _coerce_union(value: Any, args: tuple, key: str) -> Any:
    """``X | None`` and other unions: the first member type that accepts ``value``."""
    if value is None and type(None) in args:
        return None
    errors = []
    for member in (a for a in args if a is not type(None)):
        try:
            return _coerce(value, member, key)
        except ConfigError as err:
            errors.append(str(err))
    raise ConfigError(errors[0])


def _as_float(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if not math.isfinite(value):
        raise ConfigError(f"{key}: {value!r} is not a finite number")
    return float(value)


def _as_int(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    return value


def _as_bool(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    return value


def _as_str(value: Any, key: str) -> str:
    if isinstance(value, bool):  # YAML 1.1 reads off/on/no/yes as booleans
        return "on" if value else "off"
    if not isinstance(value, (str, Path)):
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    if "\0" in str(value):
        raise ConfigError(f"{key}: contains a NUL character")
    return str(value)


#: The scalar annotations a config field may have, and their checks (``Any``: no check).
_SCALARS = {float: _as_float, int: _as_int, bool: _as_bool, str: _as_str}


def _check_limits(value: Any, meta: typing.Mapping, key: str) -> None:
    values = value if isinstance(value, (list, tuple)) else [value]
    lo, hi = meta.get("range") or (None, None)
    choices = meta.get("choices")
    for v in values:
        if v is None:
            continue
        if choices is not None and v not in choices:
            raise ConfigError(f"{key}: {v!r} is not one of {', '.join(map(repr, choices))}")
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            if (lo is not None and v < lo) or (hi is not None and v > hi):
                raise ConfigError(f"{key}: {v!r} is outside [{lo}, {hi}]")


def validate(cfg: T) -> T:
    """Re-check a config built in code (``dataclasses.replace`` skips validation)."""
    return from_dict(type(cfg), to_dict(cfg))


def parse_override(text: str) -> tuple[list[str], Any]:
    """``'model.tau=0.5'`` -> (['model', 'tau'], 0.5); the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override '{text}' has an empty key")
    try:
        value = safeyaml.loads(raw) if raw.strip() else ""
    except safeyaml.YamlLimitError:
        value = raw
    return key.split("."), _number_or_same(value)


def _number_or_same(value: Any) -> Any:
    """YAML 1.1 reads ``2e-3`` (no dot) as a string; users mean the number."""
    if isinstance(value, str):
        try:
            return float(value) if any(c in value for c in ".eE") else value
        except ValueError:
            return value
    return value


def apply_overrides(data: dict, overrides: typing.Iterable[str]) -> dict:
    """Return a copy of the nested dict ``data`` with every ``a.b=c`` override set."""
    out = _deepcopy_dict(data)
    for text in overrides:
        path, value = parse_override(text)
        _set_path(out, path, value, f"override '{text}'")
    return out


def blame(err: ConfigError, source: str | Path | None, overrides: typing.Iterable[str]) -> ConfigError:
    """``err`` of a file read with ``--set`` overrides, prefixed with its source: the ``--set`` that
    gave the key it names (``--set model.tau=9: model.tau: 9.0 is outside [0.0, 2.0]``), else the file
    (``cfg.yaml: model.tau: ...``); without a file, ``err`` as it is (every value came from ``--set``,
    and the message names its key). A key matches an override that sets it, a group
    above it (``--set model={tau: 9}``) or a field of it (``--set space.model.tau.high=9`` for
    ``space.model.tau: 9.0 is outside ...``)."""
    text = str(err)
    if not source:
        return err
    match = _ERROR_KEY.match(text) or _UNKNOWN_KEY.search(text)
    key = match.group(1) if match else None
    for override in reversed(list(overrides)):
        set_key = override.split("=", 1)[0].strip()
        if key and set_key and (key == set_key or key.startswith(set_key + ".") or set_key.startswith(key + ".")):
            return ConfigError(f"--set {override}: {text}")
    return ConfigError(f"{source}: {text}")


_ERROR_KEY = re.compile(r"^([A-Za-z_][\w./-]*): ")  # ``model.tau: 9.0 is outside ...``
_UNKNOWN_KEY = re.compile(r"unknown config key '([^']+)'")


def apply_values(data: dict, values: dict[str, Any]) -> dict:
    """Like :func:`apply_overrides` for already-typed values: ``{'model.tau': 0.5, 'train': {...}}``."""
    out = _deepcopy_dict(data)
    for key, value in flatten(values).items():
        set_dotted(out, key, value)
    return out


def set_dotted(out: dict, key: str, value: Any) -> None:
    """Set ``out['a']['b'] = value`` for ``key='a.b'`` in place, creating groups as needed."""
    _set_path(out, key.split("."), value, f"key '{key}'")


def _set_path(out: dict, path: list[str], value: Any, what: str) -> None:
    node = out
    for part in path[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{what}: '{part}' is not a group")
        node = child
    node[path[-1]] = value


def _deepcopy_dict(d: dict) -> dict:
    return {k: _deepcopy_dict(v) if isinstance(v, dict) else v for k, v in d.items()}


def load_yaml(path: str | Path) -> dict:
    """Read a YAML mapping; a missing, unreadable, malformed or oversized file (an alias bomb, deep
    nesting, not UTF-8: see :mod:`busray.safeyaml`) is a one-line ConfigError naming it."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder, not a config file")
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = safeyaml.load_file(path)
    except safeyaml.YamlLimitError as err:
        raise ConfigError(f"{path}: {err}") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read ({err.strerror or type(err).__name__})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return _numbers_in(data)


def _numbers_in(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _numbers_in(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_numbers_in(v) for v in node]
    return _number_or_same(node)


def save_yaml(data: dict, path: str | Path) -> None:
    """Write atomically (temp file + rename) so a crash never leaves half a config."""
    atomic_write(path, yaml.safe_dump(data, sort_keys=False))


def flatten(data: dict, prefix: str = "") -> dict:
    """``{'model': {'tau': 0.7}}`` -> ``{'model.tau': 0.7}``; lists stay values."""
    out = {}
    for k, v in data.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


class FieldDoc(typing.NamedTuple):
    """One documented config key: what ``option(...)`` declared for it, under its dotted name."""
    key: str
    default: Any
    help: str
    type: Any                     # the field's annotation (``int``, ``str | None``, ``list[str]``, ...)
    range: tuple | None           # inclusive (lo, hi), None on a side: unbounded
    choices: tuple | None
    none_word: str | None = None  # the word a file writes for None (``auto``): ``default`` shows it

    def value(self) -> Any:
        """The default as the loaded config holds it (None where the doc shows the ``none_word``)."""
        return None if self.none_word is not None and self.default == self.none_word else self.default


def field_docs(cls: type, prefix: str = "", defaults: Any = None) -> list[FieldDoc]:
    """Every leaf field of ``cls`` (nested dataclasses flattened to dotted keys) with its declaration.
    ``defaults``: an instance whose values are the defaults (a nested section's default may differ from
    its class's, e.g. ``MLflowSpec(enabled=False)``); None: the declared defaults."""
    rows = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if defaults is not None:
            default = getattr(defaults, f.name)
        else:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if _is_section(hints[f.name]):
            rows += field_docs(hints[f.name], f"{prefix}{f.name}.", default)
            continue
        meta = f.metadata
        if default is None and meta.get("none_word"):
            default = meta["none_word"]
        rows.append(FieldDoc(prefix + f.name, default, meta.get("help", ""), hints[f.name], meta.get("range"),
                             meta.get("choices"), meta.get("none_word")))
    return rows


def _is_section(tp: Any) -> bool:
    """A nested config section: a dataclass whose fields are declared with :func:`option` (a value
    class such as ``Objective`` is one key, not a group)."""
    return dataclasses.is_dataclass(tp) and all("help" in f.metadata for f in dataclasses.fields(tp))


def describe(cls: type, prefix: str = "") -> list[tuple[str, Any, str]]:
    """(dotted key, default, help) for every field: used by ``busray config`` and the README."""
    return [(row.key, row.default, row.help) for row in field_docs(cls, prefix)]


def yaml_text(value: Any) -> str:
    """A value as it is written in a YAML file or ``--set``: null, true, [0.7, 0.15, 0.15], 'auto'."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    return text.removesuffix("...").strip()

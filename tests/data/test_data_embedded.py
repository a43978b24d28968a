"""The embedded synthetic default root is generated once into the cache and then reused."""

from busray.data import DataConfig, load_dataset
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

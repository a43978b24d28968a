"""``busray data inspect``: a readable summary by default, the full split with ``--json``."""

from __future__ import annotations

import json

import pytest

from busray.cli import main


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("inspect") / "s"
    assert main(["data", "synth", str(root), "--n", "24", "--size", "48"]) == 0
    return root


def test_summary_is_short_and_names_each_section(synth, capsys):
    assert main(["data", "inspect", str(synth), "--set", "data.image_size=48"]) == 0
    out = capsys.readouterr().out
    assert "24 images" in out.splitlines()[0]
    for needle in ("images per split and class:", "near-duplicates (pHash Hamming distance <= 6)",
                   "original image sizes: width 48-48 (median 48)", "lesion mask coverage"):
        assert needle in out
    assert len(out.splitlines()) < 40 and max(map(len, out.splitlines())) < 160
    assert "Split(" not in out


def test_json_has_the_summary_and_every_name(synth, capsys):
    assert main(["data", "inspect", str(synth), "--set", "data.image_size=48", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    names = [n for part in ("train", "val", "test") for n in data["split"]["splits"][part]["names"]]
    assert len(names) == len(set(names)) == 24
    table = data["summary"]["class_table"]
    assert sum(sum(counts.values()) for counts in table.values()) == 24
    assert data["split"]["split_hash"] in data["summary"]["split_line"]

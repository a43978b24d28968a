"""The bounded YAML reader: bombs, depth, encodings and duplicate keys are refused fast, in one line."""

from __future__ import annotations

import time

import pytest

from busray.configtools import ConfigError, load_yaml, parse_override
from busray.safeyaml import MAX_DEPTH, YamlLimitError, loads


def _bomb(levels: int = 9) -> str:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels):
        prev, cur = chr(96 + i), chr(97 + i)
        lines.append(f"{cur}: &{cur} [" + ", ".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("text, fragment", [
    (_bomb(), "alias bomb"),
    ("[" * 5000 + "]" * 5000, f"deeper than {MAX_DEPTH}"),
    ("a: 1\na: 2\n", "key 'a' appears twice"),
    ("a: &x [1, *x]\n", "refers to the node that contains it"),
    ("a: [1\n", "not valid YAML line 2"),
    ("a: \0\n", "not valid YAML"),
])
def test_refused(text, fragment):
    start = time.perf_counter()
    with pytest.raises(YamlLimitError, match=fragment) as err:
        loads(text)
    assert "\n" not in str(err.value) and time.perf_counter() - start < 5


@pytest.mark.parametrize("text, expected", [
    ("base: &b {x: 1}\nother:\n  <<: *b\n  y: 2\n", {"base": {"x": 1}, "other": {"x": 1, "y": 2}}),
    ("a: &a [1, 2]\nb: [*a, *a]\n", {"a": [1, 2], "b": [[1, 2], [1, 2]]}),
    ("", None),
])
def test_ordinary_yaml_still_loads(text, expected):
    assert loads(text) == expected


@pytest.mark.parametrize("content, fragment", [
    ("tau: 0.5 # r\xe9glage\n".encode("latin-1"), "not UTF-8 text (byte 0xe9"),
    (b"x: " + b"y" * (2 << 20), "larger than"),
])
def test_files_name_themselves(tmp_path, content, fragment):
    path = tmp_path / "cfg.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as err:
        load_yaml(path)
    assert str(err.value).startswith(str(path)) and fragment in str(err.value)


def test_utf8_bom_is_accepted(tmp_path):
    (tmp_path / "cfg.yaml").write_bytes("\ufeffmodel: {tau: 0.5}\n".encode("utf-8"))
    assert load_yaml(tmp_path / "cfg.yaml") == {"model": {"tau": 0.5}}


def test_override_with_a_bomb_is_only_a_string():
    assert parse_override("model.name=&a [*a]") == (["model", "name"], "&a [*a]")

"""A bounded YAML reader for configs, sweep and ablation files: small, shallow, UTF-8, no bombs.

``yaml.safe_load`` happily expands an alias bomb ("billion laughs": a few lines that grow to gigabytes
once anything walks the aliases) and recurses until ``RecursionError`` on a document nested a few
thousand levels deep. A config is neither large nor deep, so this reader refuses, with one line naming
the file, anything beyond generous limits before building a Python object:

- the file is larger than :data:`MAX_BYTES` or not UTF-8 text (a UTF-8 byte-order mark is accepted);
- nodes nest deeper than :data:`MAX_DEPTH`;
- the document, with every alias expanded, has more than :data:`MAX_NODES` nodes (the expanded size
  is counted arithmetically while composing, so a bomb is refused in microseconds);
- a mapping repeats a key (plain PyYAML keeps the last one silently, hiding a typo'd override).

PyYAML only; every layer may use it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, SequenceNode

MAX_BYTES = 1 << 20        # 1 MiB: the largest shipped sweep file is a few kB
MAX_DEPTH = 64             # nesting levels (a config has 3-4)
MAX_NODES = 100_000        # scalars + collections once aliases are expanded
MERGE_TAG = "tag:yaml.org,2002:merge"


class YamlLimitError(ValueError):
    """A YAML text broke a limit or is malformed; ``str(err)`` is one line (no file name)."""


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that tracks nesting depth and the alias-expanded size of every composed node."""

    def __init__(self, stream) -> None:
        super().__init__(stream)
        self._depth = 0
        self._weights: dict[int, int] = {}

    def compose_node(self, parent, index) -> Node:
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise YamlLimitError(f"nested deeper than {MAX_DEPTH} levels{_where(self)}")
        alias = self.check_event(AliasEvent)
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if id(node) not in self._weights:
            if alias:
                raise YamlLimitError(f"an alias refers to the node that contains it{_where(self)}")
            self._weights[id(node)] = self._weight(node)
        return node

    def _weight(self, node: Node) -> int:
        if isinstance(node, SequenceNode):
            children = list(node.value)
        elif isinstance(node, MappingNode):
            children = [n for pair in node.value for n in pair]
        else:
            return 1
        weight = 1 + sum(self._weights[id(child)] for child in children)
        if weight > MAX_NODES:
            raise YamlLimitError(f"expands to more than {MAX_NODES} values (an alias bomb?)"
                                 f"{_where(self, node)}")
        return weight

    def construct_mapping(self, node, deep=False):
        if isinstance(node, MappingNode):
            seen: set = set()
            for key_node, _ in node.value:
                if key_node.tag == MERGE_TAG:
                    continue
                key = self.construct_object(key_node, deep=True)
                if isinstance(key, (str, int, float, bool)) or key is None:
                    if key in seen:
                        raise YamlLimitError(f"key '{key}' appears twice in one mapping"
                                             f"{_where(self, key_node)}")
                    seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _where(loader: _BoundedLoader, node: Node | None = None) -> str:
    mark = node.start_mark if node is not None else loader.get_mark()
    return f" (line {mark.line + 1})" if mark is not None else ""


def loads(text: str) -> Any:
    """Parse one YAML document within the limits; :class:`YamlLimitError` on any problem."""
    if len(text) > MAX_BYTES:
        raise YamlLimitError(f"larger than {MAX_BYTES // 1024} KiB; not a config")
    loader = None
    try:
        loader = _BoundedLoader(text)  # the reader already refuses control characters here
        return loader.get_single_data()
    except YamlLimitError:
        raise
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = getattr(err, "problem", None) or type(err).__name__
        raise YamlLimitError(f"is not valid YAML{where}: {problem}") from None
    except RecursionError:
        raise YamlLimitError(f"nested deeper than {MAX_DEPTH} levels") from None
    finally:
        if loader is not None:
            loader.dispose()


def read_text(path: Path) -> str:
    """The text of a small UTF-8 file; refuses large, binary and non-UTF-8 files by what they are."""
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise YamlLimitError(f"{size} bytes is larger than {MAX_BYTES // 1024} KiB; not a config")
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise YamlLimitError(f"is not UTF-8 text (byte 0x{data[err.start]:02x} at offset "
                             f"{err.start})") from None


def load_file(path: str | Path) -> Any:
    """Read and parse ``path``; errors are :class:`YamlLimitError` messages without the file name."""
    return loads(read_text(Path(path)))

"""YAML read strictly: UTF-8 only, bounded in size, nesting and alias expansion, no duplicate keys.

PyYAML lets the second of two equal keys win silently, and builds aliases as shared objects
that a copy or a serializer later expands (a "billion laughs" runs for minutes); deep nesting
ends in a RecursionError. Experiment files, overrides and run configs are read through here,
and each of these is a one-line YAMLInputError naming the file (or override) and the place.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

MAX_BYTES = 1 << 20  # an experiment file is a few KB; 1 MiB leaves room for long grids
MAX_DEPTH = 64  # nested mappings and lists; a config needs fewer than 10
MAX_NODES = 200_000  # scalars, mappings and lists once every alias is expanded
MERGE_TAG = "tag:yaml.org,2002:merge"
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser, when built with it


class YAMLInputError(ValueError):
    """YAML refused: not UTF-8, too big, too deep, an alias bomb or a duplicate key (one line)."""


class YAMLSyntaxError(YAMLInputError):
    """Text that does not parse as YAML at all."""


class _Checked(Exception):
    """Raised inside the node walk; becomes a YAMLInputError naming the source."""


def _walk(root: yaml.Node) -> None:
    """Refuse duplicate keys, recursive aliases, nesting deeper than MAX_DEPTH and more than
    MAX_NODES nodes after alias expansion; each distinct node is visited once."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def visit(node: yaml.Node, path: str, depth: int) -> int:
        if depth > MAX_DEPTH:
            shown = path if len(path) < 80 else path[:40] + " ... " + path[-30:]
            raise _Checked(f"nesting deeper than {MAX_DEPTH} levels at '{shown or '.'}'")
        if id(node) in sizes:
            return sizes[id(node)]
        if id(node) in active:
            raise _Checked(f"recursive alias at '{path or '.'}'")
        if isinstance(node, yaml.ScalarNode):
            return 1
        active.add(id(node))
        size = 1
        if isinstance(node, yaml.MappingNode):
            seen: dict[tuple[str, str], int] = {}
            for key, value in node.value:
                name = key.value if isinstance(key, yaml.ScalarNode) else None
                where = f"{path}.{name}" if path and name is not None else (name or path)
                if name is not None and key.tag != MERGE_TAG:
                    line = key.start_mark.line + 1
                    if (key.tag, name) in seen:
                        first = seen[key.tag, name]
                        lines = f"lines {first} and {line}" if first != line else f"line {line}"
                        raise _Checked(f"duplicate key '{where}' ({lines})")
                    seen[key.tag, name] = line
                size += visit(key, where, depth + 1) + visit(value, where, depth + 1)
        else:
            for i, item in enumerate(node.value):
                size += visit(item, f"{path}[{i}]", depth + 1)
        active.discard(id(node))
        if size > MAX_NODES:
            raise _Checked(f"more than {MAX_NODES} values once its aliases are expanded "
                           "(an alias bomb?)")
        sizes[id(node)] = size
        return size

    visit(root, "", 0)


def _flow_depth(text: str) -> int:
    """The deepest nesting of [ and { outside quotes and comments. PyYAML's scanner is quadratic
    in it (10 000 brackets take seconds), so it is bounded before the text is parsed."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return 0
    depth = deepest = 0
    quote, previous, comment = "", "\n", False
    for ch in text:
        if comment:
            comment = ch != "\n"
        elif quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and previous in " \t\n":
            comment = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth = max(0, depth - 1)
        previous = ch
    return deepest


def loads(text: str | bytes, where: str) -> Any:
    """The YAML document in `text`; `where` (a file or an override) leads every error."""
    if isinstance(text, bytes):
        if len(text) > MAX_BYTES:
            raise YAMLInputError(f"{where}: {len(text) / 2**20:.1f} MB is over the "
                                 f"{MAX_BYTES / 2**20:.0f} MB limit for YAML input")
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise YAMLInputError(f"{where}: not UTF-8 text (byte 0x{text[exc.start]:02x} at "
                                 f"offset {exc.start})") from None
    elif len(text) > MAX_BYTES:
        raise YAMLInputError(f"{where}: over the {MAX_BYTES / 2**20:.0f} MB limit for YAML input")
    if _flow_depth(text) > MAX_DEPTH:
        raise YAMLInputError(f"{where}: nesting deeper than {MAX_DEPTH} levels")
    loader = LOADER(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _walk(node)
        return loader.construct_document(node)
    except _Checked as exc:
        raise YAMLInputError(f"{where}: {exc}") from None
    except RecursionError:
        raise YAMLInputError(f"{where}: nesting too deep to read (limit {MAX_DEPTH} levels)") \
            from None
    except yaml.YAMLError as exc:
        raise YAMLSyntaxError(f"{where}: invalid YAML: {exc}".replace("\n", " ")) from None
    finally:
        loader.dispose()


def read(path: Path | str) -> Any:
    """The YAML document in the file at `path`, refused by its size before it is read."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            size = f.seek(0, 2)
            if size > MAX_BYTES:
                raise YAMLInputError(f"{path}: {size / 2**20:.1f} MB is over the "
                                     f"{MAX_BYTES / 2**20:.0f} MB limit for YAML input")
            f.seek(0)
            data = f.read(MAX_BYTES + 1)  # a file that grows, or a pseudo-file, stays bounded
    except OSError as exc:
        raise YAMLInputError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return loads(data, str(path))

"""Field paths into a JSON answer (``confidence``, ``outputs.0.data.0``, ``outputs[0].data[0]``)."""

from __future__ import annotations

import re
from typing import Any

_SEGMENT = re.compile(r"[^.\[\]\s]+")
_INDEX = re.compile(r"\[(\d+)\]")

Path = tuple[str | int, ...]


def parse_path(text: str) -> Path:
    """``a.0.b`` or ``a[0].b`` -> ``("a", 0, "b")``; a digit segment may index a list or a key.

    Raises ``ValueError`` saying where the path stops parsing.
    """
    if not text:
        raise ValueError("a field path must not be empty")
    parts: list[str | int] = []
    pos = 0
    expect_name = True
    while pos < len(text):
        if expect_name:
            match = _SEGMENT.match(text, pos)
            if match is None:
                raise ValueError(f"field path {text!r} does not parse at character {pos + 1}")
            name = match.group()
            parts.append(int(name) if name.isdigit() else name)
            pos = match.end()
            expect_name = False
            continue
        index = _INDEX.match(text, pos)
        if index is not None:
            parts.append(int(index.group(1)))
            pos = index.end()
        elif text[pos] == "." and pos + 1 < len(text):
            pos += 1
            expect_name = True
        else:
            raise ValueError(f"field path {text!r} does not parse at character {pos + 1}")
    return tuple(parts)


_MISSING = object()


def read_path(answer: Any, path: Path) -> Any:
    """The value at ``path``, or ``MISSING`` when any step is absent."""
    node = answer
    for part in path:
        if isinstance(node, dict):
            node = node.get(str(part), _MISSING)
        elif isinstance(node, list) and isinstance(part, int):
            node = node[part] if part < len(node) else _MISSING
        else:
            return _MISSING
        if node is _MISSING:
            return _MISSING
    return node


def missing(value: Any) -> bool:
    return value is _MISSING


def show(path: Path) -> str:
    return ".".join(str(p) for p in path)

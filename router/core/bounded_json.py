"""JSON from outside (a client's body, a model server's answer), decoded within bounds.

One decoder for every such text, so nesting is bounded in one place: whatever reads the decoded
value afterwards (tensor flattening, field paths, orjson's own 255-level limit on writing) may
then walk it without meeting a ``RecursionError``.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

MAX_DEPTH = 64
"""Most levels of arrays and objects in one JSON text. A predict body needs 3, an Open Inference
tensor 3 plus its dimensions; orjson refuses past 1,024 and Python's ``json`` recurses."""


class TooDeep(ValueError):
    """The text nests arrays and objects deeper than ``MAX_DEPTH``."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"nested more than {limit} levels deep")


class NotJSON(ValueError):
    """The text is not JSON (``lenient`` texts: not even with NaN, Infinity or huge numbers)."""


def loads(raw: bytes | str, *, lenient: bool = False, max_depth: int = MAX_DEPTH) -> Any:
    """Decode ``raw``; ``TooDeep`` past ``max_depth`` levels, ``NotJSON`` when it does not parse.

    ``lenient`` also reads ``NaN``, ``Infinity`` and numbers that overflow a double, as
    Python's ``json`` writes them, so a caller can name the field that holds one.
    """
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if not lenient:
            if "depth limit" in str(exc):
                raise TooDeep(max_depth) from None
            raise NotJSON(str(exc)) from None
        try:
            value = json.loads(raw)
        except RecursionError:
            raise TooDeep(max_depth) from None
        except ValueError:
            raise NotJSON(str(exc)) from None
    if _openers(raw) > max_depth and depth_exceeds(value, max_depth):
        raise TooDeep(max_depth)
    return value


def _openers(raw: bytes | str) -> int:
    """An upper bound on the nesting, counted in C: a text with no more brackets and braces
    than the bound cannot nest deeper, so the common small body skips the walk."""
    if isinstance(raw, str):
        return raw.count("[") + raw.count("{")
    return raw.count(b"[") + raw.count(b"{")


def depth_exceeds(value: Any, limit: int) -> bool:
    """Whether ``value`` nests lists and dicts more than ``limit`` levels deep (iteratively)."""
    stack: list[tuple[Any, int]] = [(value, 1)] if isinstance(value, list | dict) else []
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        for child in node.values() if isinstance(node, dict) else node:
            if isinstance(child, list | dict):
                stack.append((child, depth + 1))
    return False


def flatten(data: Any) -> list[Any]:
    """Nested lists' scalars in order (a tensor's ``data`` in row-major order), iteratively: a
    scalar is a list of one. Dicts count as scalars."""
    if not isinstance(data, list):
        return [data]
    out: list[Any] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            out.append(item)
        else:
            stack.pop()
    return out

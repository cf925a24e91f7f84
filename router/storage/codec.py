"""How values are written into Redis fields and read back: text in, text out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson


def dumps(value: Any) -> str:
    """JSON text of a value (labels and flag values are stored as JSON)."""
    return orjson.dumps(value).decode()


def num(value: float) -> str:
    """A float as exact text (``repr`` round-trips)."""
    return repr(float(value))


def flatten(fields: Mapping[str, str]) -> tuple[str, ...]:
    """``{a: 1, b: 2}`` -> ``(a, 1, b, 2)``: the argument shape of HSET and XADD."""
    return tuple(item for pair in fields.items() for item in pair)


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def as_text_dict(raw: Mapping[bytes | str, bytes | str]) -> dict[str, str]:
    """A hash reply as ``str -> str`` (the client decodes, but its types cannot say so)."""
    return {text(k): text(v) for k, v in raw.items()}

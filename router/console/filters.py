"""Jinja filters: how the console writes numbers, intervals, times and values. Pure."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import orjson


def fmt(value: Any, spec: str = ".3f") -> str:
    if value is None or isinstance(value, bool):
        return "-" if value is None else str(value).lower()
    if isinstance(value, float) and not math.isfinite(value):
        return "-"
    try:
        return format(value, spec)
    except (TypeError, ValueError):
        return str(value)


def interval(pair: Any) -> str:
    if not isinstance(pair, (list, tuple)) or len(pair) != 2 or None in pair:
        return ""
    return f"[{fmt(pair[0])}, {fmt(pair[1])}]"


def show(value: Any) -> str:
    """A flag or audit value as an operator typed it: text bare, anything else as JSON."""
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def when(ts: Any) -> str:
    try:
        return datetime.fromtimestamp(float(ts), UTC).strftime("%Y-%m-%d %H:%M:%S")
    except (TypeError, ValueError, OverflowError, OSError):
        return "-"


def position(value: Any) -> str:
    if not isinstance(value, dict):
        return "-"
    return f"{value.get('phase')} {fmt(value.get('percent'), 'g')}%"


FILTERS = {"fmt": fmt, "interval": interval, "show": show, "when": when, "position": position}

"""What a model takes as input: text, or named features. Shared by the gateway and the workers.

An experiment (or a model card) declares ``kind: text`` (one string) or ``kind: features`` (a
JSON object of named numbers or strings). ``check_features`` is the one rule for features:
every refusal names the field, so a client can fix its request.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from router.core.errors import InvalidInput, cut, echo

InputKind = Literal["text", "features"]
FeatureType = Literal["number", "integer", "string"]
FeatureValue = float | int | str
FEATURE_TYPES: tuple[FeatureType, ...] = ("number", "integer", "string")


def check_feature(name: str, value: Any, kind: FeatureType, max_chars: int) -> FeatureValue:
    """One named feature, converted to its declared type (a ``number`` is always a float)."""
    if value is None:
        raise InvalidInput(f"'{name}' is required")
    if kind == "string":
        if not isinstance(value, str):
            raise InvalidInput(f"'{name}' must be a string, got {type(value).__name__}")
        if len(value) > max_chars:
            raise InvalidInput(f"'{name}' has {len(value)} characters; the limit is {max_chars}")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(f"'{name}' must be a {kind}, got {type(value).__name__}")
    if kind == "integer":
        if not isinstance(value, int):
            raise InvalidInput(f"'{name}' must be an integer, got {echo(value)}")
        return value
    try:
        number = float(value)
    except OverflowError:
        raise InvalidInput(f"'{name}' must be a finite number, got a too large integer") from None
    if not math.isfinite(number):
        raise InvalidInput(f"'{name}' must be a finite number, got {echo(value)}")
    return number


def check_features(
    value: Any,
    names: Sequence[str],
    types: Mapping[str, FeatureType],
    max_chars: int,
    field: str = "features",
) -> dict[str, FeatureValue]:
    """Named features in declared order; missing, unknown, non-finite or mistyped -> 422."""
    if value is None:
        raise InvalidInput(f"'{field}' is required (an object of {len(names)} named features)")
    if not isinstance(value, dict):
        raise InvalidInput(f"'{field}' must be a JSON object, got {type(value).__name__}")
    unknown = [k for k in value if k not in types]
    if unknown:
        listed = cut(", ".join(f"'{field}.{k}'" for k in sorted(unknown)[:5]))
        raise InvalidInput(f"unknown features: {listed} (this model takes {', '.join(names)})")
    missing = [n for n in names if n not in value]
    if missing:
        listed = ", ".join(f"'{field}.{n}'" for n in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise InvalidInput(f"missing features: {listed}{more}")
    return {n: check_feature(f"{field}.{n}", value[n], types[n], max_chars) for n in names}

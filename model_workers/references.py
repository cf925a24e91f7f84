"""What a model card keeps for drift checks: the version's validation score distribution and a
sample of the inputs it was validated on (``reference_inputs.jsonl`` beside the card).

``turnout drift --reference training`` compares live scores with the first and captured inputs
with the second. Pure apart from the two small file functions at the end.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from numpy.typing import ArrayLike

REFERENCE_QUANTILES = 1001
"""Quantiles kept of the validation scores (levels 0, 0.001, ..., 1): within 1/1000 of the
scores' CDF everywhere, and small (about 20 KB of JSON)."""
REFERENCE_INPUTS = "reference_inputs.jsonl"
REFERENCE_INPUT_ROWS = 1000


def score_reference(scores: ArrayLike, threshold: float | None, source: str) -> dict[str, Any]:
    """The card's ``reference``: validation score quantiles, how many rows they stand for (and
    the positive rate at ``threshold``, for two classes)."""
    values = np.asarray(scores, dtype=np.float64)
    if values.size == 0:
        raise ValueError("no scores to keep as a reference")
    quantiles = np.quantile(values, np.linspace(0.0, 1.0, REFERENCE_QUANTILES))
    return {
        "source": source,
        "rows": int(values.size),
        "quantiles": [round(float(q), 6) for q in quantiles],
        "positive_rate": None if threshold is None else float(np.mean(values >= threshold)),
        "mean_score": float(values.mean()),
    }


def input_rows(inputs: Sequence[Any]) -> list[dict[str, Any]]:
    """Inputs as captured records hold them: ``{"text": ...}`` or ``{"features": {...}}``."""
    rows: list[dict[str, Any]] = []
    for item in inputs:
        if isinstance(item, str):
            rows.append({"text": item})
        elif isinstance(item, Mapping):
            rows.append({"features": {str(k): v for k, v in item.items()}})
        else:
            raise TypeError(f"cannot keep an input of type {type(item).__name__}")
    return rows


def write_reference_inputs(
    folder: Path, inputs: Sequence[Any], seed: int, limit: int = REFERENCE_INPUT_ROWS
) -> dict[str, Any]:
    """A seeded sample of the validation inputs beside the card; returns the card's entry."""
    rows = input_rows(inputs)
    if len(rows) > limit:
        rows = random.Random(seed).sample(rows, limit)
    data = b"".join(orjson.dumps(r) + b"\n" for r in rows)
    (folder / REFERENCE_INPUTS).write_bytes(data)
    return {"file": REFERENCE_INPUTS, "rows": len(rows), "sha256": hashlib.sha256(data).hexdigest()}


def read_reference_inputs(folder: Path) -> list[dict[str, Any]] | None:
    """The sample written at training (None when the version has none)."""
    try:
        data = (folder / REFERENCE_INPUTS).read_bytes()
    except OSError:
        return None
    rows = []
    for line in data.splitlines():
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows

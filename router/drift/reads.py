"""What drift checks and retraining read of Redis: the recorder's streams, by time window.

Used when an experiment captures nothing (its outcomes and shadow comparisons are in the capped
streams anyway) and for the labels ``POST /feedback`` gave. Entries are returned in the shape of
captured records (``router.capture.records``), so either source feeds the same checks.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from router.storage import keys
from router.storage.client import RedisClient
from router.storage.codec import as_text_dict, text

PAGE = 5_000
WRITE_LAG_MS = 60_000
"""Entries are stamped when the recorder writes them, a little after the request: read this much
past the window's end and keep what the entry's own ``ts`` puts inside it."""


async def _entries(
    client: RedisClient, key: str, since: float, until: float, lag_ms: int = WRITE_LAG_MS
) -> AsyncIterator[dict[str, str]]:
    start = f"{max(0, int(since * 1000))}-0"
    end = f"{int(until * 1000) + lag_ms}"
    while True:
        page: Any = await client.xrange(key, min=start, max=end, count=PAGE)
        for _, fields in page or []:
            if fields:
                yield as_text_dict(fields)
        if not page or len(page) < PAGE:
            return
        millis, seq = text(page[-1][0]).split("-")
        start = f"{millis}-{int(seq) + 1}"


def _float(value: str | None) -> float | None:
    try:
        return None if value is None else float(value)
    except ValueError:
        return None


def _json(value: str | None) -> Any:
    if value is None:
        return None
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return None


async def read_outcomes(
    client: RedisClient, experiment: str, since: float, until: float
) -> list[dict[str, Any]]:
    out = []
    async for f in _entries(client, keys.events(experiment), since, until):
        ts = _float(f.get("ts"))
        if ts is None or not since <= ts < until:
            continue
        out.append(
            {
                "kind": "outcome",
                "ts": ts,
                "request_id": f.get("request_id"),
                "variant": f.get("variant"),
                "served_variant": f.get("served_variant"),
                "version": f.get("version"),
                "status": int(f.get("status", "0")),
                "label": _json(f.get("label")),
                "score": _float(f.get("score")),
            }
        )
    return out


async def read_comparisons(
    client: RedisClient, experiment: str, since: float, until: float
) -> list[dict[str, Any]]:
    """Mirrored requests (variants, not versions: the caller maps them with its config)."""
    out = []
    async for f in _entries(client, keys.shadow_events(experiment), since, until):
        ts = _float(f.get("ts"))
        if ts is None or not since <= ts < until:
            continue
        out.append(
            {
                "kind": "shadow",
                "ts": ts,
                "request_id": f.get("request_id"),
                "primary": f.get("primary"),
                "shadow": f.get("shadow"),
                "primary_score": _float(f.get("primary_score")),
                "shadow_score": _float(f.get("shadow_score")),
                "error": f.get("error"),
            }
        )
    return out


async def read_feedback_labels(
    client: RedisClient, experiment: str, since: float, until: float
) -> dict[str, Any]:
    """Request id -> the true label ``POST /feedback`` gave, for feedback accepted in the window
    (feedback given as a bare reward carries no label and is left out)."""
    labels: dict[str, Any] = {}
    async for f in _entries(client, keys.feedback(experiment), since, until, lag_ms=0):
        ts = _float(f.get("ts"))
        rid = f.get("request_id")
        if ts is None or rid is None or not since <= ts < until or "label" not in f:
            continue
        label = _json(f.get("label"))
        if label is not None:
            labels[rid] = label
    return labels

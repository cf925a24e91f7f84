"""Structured JSON logs: one line per event, never raw request text or raw user ids."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": round(record.created, 6),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            payload.update(fields)
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(payload, default=str).decode()


def configure(level: str) -> None:
    """Route every logger (ours, uvicorn's) through one JSON handler on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # Our own access lines replace uvicorn's, which would print client addresses and paths only.
    logging.getLogger("uvicorn.access").disabled = True


def event(logger: logging.Logger, name: str, level: int = logging.INFO, **fields: Any) -> None:
    """One JSON line. The record is made directly: ``Logger.log`` would walk the stack for a
    caller's file and line that the JSON lines never show (a hot-path cost per request)."""
    if logger.isEnabledFor(level):
        record = logger.makeRecord(
            logger.name, level, "(unknown file)", 0, name, (), None, extra={"fields": fields}
        )
        logger.handle(record)


def now_ms() -> float:
    return time.perf_counter() * 1000.0

"""Read captured records back, skipping (and counting) what is cut off or corrupt.

A line that is not a JSON object of a known schema and kind is corrupt; the last line of a closed
file that lacks its newline is truncated (a live ``.part`` file's last line may just be being
written, so it is left for the next read). Neither stops the read.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from router.capture import files
from router.capture.records import SCHEMA

KINDS = ("outcome", "shadow")


@dataclass
class ReadStats:
    files: int = 0
    records: int = 0
    skipped: dict[str, int] = field(default_factory=lambda: {"corrupt": 0, "truncated": 0})
    """Lines not read, by reason."""
    unreadable_files: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "records": self.records,
            "skipped": dict(self.skipped),
            "unreadable_files": self.unreadable_files,
        }


def _valid(record: Any) -> bool:
    return (
        isinstance(record, dict)
        and record.get("v") == SCHEMA
        and record.get("kind") in KINDS
        and isinstance(record.get("ts"), int | float)
        and isinstance(record.get("request_id"), str)
    )


def read_records(
    root: Path,
    experiment: str,
    since: float | None = None,
    until: float | None = None,
    stats: ReadStats | None = None,
) -> Iterator[dict[str, Any]]:
    """Every valid record of ``experiment`` with ``since <= ts < until``, file by file."""
    stats = stats if stats is not None else ReadStats()
    for f in files.listing(files.experiment_dir(root, experiment)):
        if until is not None and files.started_at(f.path) >= until:
            continue  # opened after the window: nothing in it is earlier
        if since is not None and f.mtime < since:
            continue  # last written before the window
        try:
            data = f.path.read_bytes()
        except OSError:
            stats.unreadable_files += 1
            continue
        stats.files += 1
        lines = data.split(b"\n")
        tail = lines.pop()  # b"" when the file ends with a newline
        if tail and not f.open:
            stats.skipped["truncated"] += 1
        for line in lines:
            if not line:
                continue
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                stats.skipped["corrupt"] += 1
                continue
            if not _valid(record):
                stats.skipped["corrupt"] += 1
                continue
            ts = float(record["ts"])
            if (since is not None and ts < since) or (until is not None and ts >= until):
                continue
            stats.records += 1
            yield record

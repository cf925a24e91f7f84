"""Where capture files live and what their names say.

``<root>/<experiment>/<start>-<replica>-<seq>.jsonl``: ``start`` is the UTC time the file was
opened (``20261130T120000Z``), ``replica`` the writing process, ``seq`` its count of files.
A file being written ends in ``.jsonl.part`` and is renamed to ``.jsonl`` when closed, so a
reader can tell a cut-off last line of a live file (being written) from one of a closed file
(truncated). Every replica writes only its own files; any replica may delete closed ones.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

SUFFIX = ".jsonl"
OPEN_SUFFIX = ".jsonl.part"


def experiment_dir(root: Path, experiment: str) -> Path:
    return root / experiment


def file_name(started: float, replica: str, seq: int) -> str:
    stamp = datetime.fromtimestamp(started, UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{replica}-{seq:06d}{OPEN_SUFFIX}"


def started_at(path: Path) -> float:
    """The open time in a file's name (0 when the name does not say)."""
    stamp = path.name.split("-", 1)[0]
    try:
        return datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return 0.0


def closed_name(path: Path) -> Path:
    return path.with_name(path.name.removesuffix(OPEN_SUFFIX) + SUFFIX)


@dataclass(frozen=True)
class CaptureFile:
    path: Path
    size: int
    mtime: float
    open: bool
    """Still being written (``.part``), or left so by a writer that died."""


def listing(folder: Path) -> list[CaptureFile]:
    """The capture files of one experiment, oldest first (by name: start time, then replica)."""
    files = []
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return []
    for entry in entries:
        name = entry.name
        is_open = name.endswith(OPEN_SUFFIX)
        if not (is_open or name.endswith(SUFFIX)) or name.startswith("."):
            continue
        try:
            stat = entry.stat()
        except FileNotFoundError:  # deleted meanwhile by another replica
            continue
        files.append(CaptureFile(Path(entry.path), stat.st_size, stat.st_mtime, is_open))
    return sorted(files, key=lambda f: f.path.name)


def experiments(root: Path) -> list[str]:
    try:
        return sorted(e.name for e in os.scandir(root) if e.is_dir())
    except FileNotFoundError:
        return []

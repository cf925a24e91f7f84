"""Promotion: rewrite an experiment file so a variant is the control at 100% (blue-green)."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path

import yaml

from router.core.errors import ConfigError

_UNSAFE = re.compile(r"[\x00-\x1f\x7f]+")


def promoted_yaml(text: str, variant: str, note: str) -> str:
    """The file with ``variant`` as control and blue-green active; ``note`` heads it."""
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ConfigError("the experiment file does not hold one mapping")
    data["control"] = variant
    data["policy"] = {"kind": "blue_green", "active": variant}
    # A finished rollout and its SRM check belong to the weighted policy just replaced.
    data.pop("rollout", None)
    data.pop("srm", None)
    shadow = data.get("shadow")
    if isinstance(shadow, dict) and isinstance(shadow.get("targets"), list):
        targets = [t for t in shadow["targets"] if t != variant]
        if targets:
            data["shadow"] = {**shadow, "targets": targets}
        else:
            del data["shadow"]
    header = "".join(f"# {_UNSAFE.sub(' ', line)}\n" for line in note.splitlines() or [""])
    return header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def write_atomically(path: Path, text: str) -> None:
    """Temp file in the same folder, fsync, rename: readers see the old file or the new one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileNotFoundError):
            os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise

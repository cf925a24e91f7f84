"""Read an experiments folder in a child process (``python -m router.config.isolated``).

YAML is parsed in pure Python: a 1 MiB file takes seconds and its objects hundreds of MB. In a
child, a file like that stalls neither the gateway's event loop (no shared interpreter lock)
nor keeps its memory (the child exits), and a parse that runs past ``timeout`` is killed. The
child sends back each file's validated experiment as JSON (or its refusal), which the parent
validates again: cheap for the small documents that experiments are.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

from router.config.experiments import Experiment
from router.config.loader import LoadedExperiment, Scan, scan_directory
from router.core.errors import ConfigError


class ScanFailed(Exception):
    """The child could not read the folder (it crashed, or ran past its timeout)."""


def _argv() -> list[str]:
    return [sys.executable, "-m", "router.config.isolated"]


def _request(directory: Path, allowed_hosts: list[str] | None, max_bytes: int) -> bytes:
    return orjson.dumps(
        {"directory": str(directory), "allowed_hosts": allowed_hosts, "max_bytes": max_bytes}
    )


def _decode(
    raw: bytes, allowed_hosts: list[str] | None
) -> dict[Path, LoadedExperiment | ConfigError]:
    try:
        reply = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ScanFailed(f"unreadable reply from the child: {exc}") from None
    if "folder_error" in reply:
        raise ConfigError(reply["folder_error"])
    scan: dict[Path, LoadedExperiment | ConfigError] = {}
    for item in reply["files"]:
        path = Path(item["path"])
        if "error" in item:
            scan[path] = ConfigError(item["error"])
            continue
        experiment = Experiment.model_validate(
            item["experiment"], context={"allowed_hosts": allowed_hosts}
        )
        scan[path] = LoadedExperiment(experiment, path, item["config_version"], item["content"])
    return scan


def _encode(scan: Scan) -> bytes:
    files: list[dict[str, Any]] = []
    for path, item in scan.items():
        if isinstance(item, ConfigError):
            files.append({"path": str(path), "error": item.detail})
        else:
            files.append(
                {
                    "path": str(path),
                    "experiment": item.experiment.model_dump(mode="json", exclude_unset=True),
                    "config_version": item.config_version,
                    "content": item.content,
                }
            )
    return orjson.dumps({"files": files})


async def scan_isolated(
    directory: Path, allowed_hosts: list[str] | None, max_bytes: int, limit_seconds: float
) -> dict[Path, LoadedExperiment | ConfigError]:
    """``scan_directory`` in a child process, without blocking the event loop."""
    proc = await asyncio.create_subprocess_exec(
        *_argv(),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(limit_seconds):
            out, err = await proc.communicate(_request(directory, allowed_hosts, max_bytes))
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise ScanFailed(f"reading {directory} took longer than {limit_seconds:g}s") from None
    except BaseException:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise
    if proc.returncode != 0:
        raise ScanFailed(f"the reader exited with {proc.returncode}: {err.decode()[-500:]}")
    return _decode(out, allowed_hosts)


def scan_isolated_sync(
    directory: Path, allowed_hosts: list[str] | None, max_bytes: int, limit_seconds: float
) -> dict[Path, LoadedExperiment | ConfigError]:
    """The same, blocking: for start-up, before there is a loop to keep free."""
    try:
        done = subprocess.run(
            _argv(),
            input=_request(directory, allowed_hosts, max_bytes),
            capture_output=True,
            timeout=limit_seconds,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ScanFailed(f"reading {directory} took longer than {limit_seconds:g}s") from None
    if done.returncode != 0:
        raise ScanFailed(f"the reader exited with {done.returncode}: {done.stderr.decode()[-500:]}")
    return _decode(done.stdout, allowed_hosts)


def main() -> None:
    request = orjson.loads(sys.stdin.buffer.read())
    try:
        scan = scan_directory(
            Path(request["directory"]), request["allowed_hosts"], request["max_bytes"]
        )
    except ConfigError as exc:
        sys.stdout.buffer.write(orjson.dumps({"folder_error": exc.detail}))
        return
    sys.stdout.buffer.write(_encode(scan))


if __name__ == "__main__":
    main()

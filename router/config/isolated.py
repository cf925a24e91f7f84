"""Read an experiments folder in a child process (``python -m router.config.isolated``).

YAML is parsed in pure Python: a 1 MiB file takes seconds and its objects hundreds of MB. In a
child, a file like that stalls neither the gateway's event loop (no shared interpreter lock)
nor keeps its memory (the child exits), and a parse that runs past ``timeout`` is killed. The
child sends back what ``scan_directory`` returned, pickled: our own code on both ends of a pipe
of our own, and the only encoding that keeps every field as it was validated.
"""

from __future__ import annotations

import asyncio
import pickle
import subprocess
import sys
from pathlib import Path

import orjson

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


def _decode(raw: bytes) -> dict[Path, LoadedExperiment | ConfigError]:
    try:
        reply = pickle.loads(raw)  # noqa: S301 (our own child process, on a pipe of our own)
    except (pickle.UnpicklingError, EOFError, AttributeError, ValueError) as exc:
        raise ScanFailed(f"unreadable reply from the child: {exc}") from None
    if isinstance(reply, ConfigError):
        raise reply
    scan: dict[Path, LoadedExperiment | ConfigError] = reply
    return scan


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
    return _decode(out)


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
    return _decode(done.stdout)


def main() -> None:
    request = orjson.loads(sys.stdin.buffer.read())
    reply: Scan | ConfigError
    try:
        reply = scan_directory(
            Path(request["directory"]), request["allowed_hosts"], request["max_bytes"]
        )
    except ConfigError as exc:
        reply = exc
    sys.stdout.buffer.write(pickle.dumps(reply))


if __name__ == "__main__":
    main()

"""Read an experiments folder in a child process (``python -m router.config.isolated``).

YAML is parsed in pure Python: a 1 MiB file takes seconds and its objects hundreds of MB. In a
child, a file like that stalls neither the gateway's event loop (no shared interpreter lock)
nor keeps its memory (the child exits), and a parse that runs past ``timeout`` is killed. The
child validates every file and sends back, pickled (our own code on both ends of a pipe of our
own), each refusal, or each valid file's YAML data (plain values) and text; the parent builds
the experiments from that data again, which is cheap: no YAML is parsed on its side.
"""

from __future__ import annotations

import asyncio
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import yaml

from router.config.loader import LoadedExperiment, experiment_from_data, scan_directory
from router.core.errors import ConfigError


class ScanFailed(Exception):
    """The child could not read the folder (it crashed, or ran past its timeout)."""


def _argv() -> list[str]:
    return [sys.executable, "-m", "router.config.isolated"]


def _request(directory: Path, allowed_hosts: list[str] | None, max_bytes: int) -> bytes:
    return orjson.dumps(
        {"directory": str(directory), "allowed_hosts": allowed_hosts, "max_bytes": max_bytes}
    )


Reply = dict[Path, tuple[Any, str] | str] | str
"""Per file (YAML data, text) or a refusal; or the folder's own refusal."""


def _decode(
    raw: bytes, allowed_hosts: list[str] | None
) -> dict[Path, LoadedExperiment | ConfigError]:
    try:
        reply: Reply = pickle.loads(raw)  # noqa: S301 (our own child process, our own pipe)
    except (pickle.UnpicklingError, EOFError, AttributeError, ValueError) as exc:
        raise ScanFailed(f"unreadable reply from the child: {exc}") from None
    if isinstance(reply, str):
        raise ConfigError(reply)
    scan: dict[Path, LoadedExperiment | ConfigError] = {}
    for path, item in reply.items():
        if isinstance(item, str):
            scan[path] = ConfigError(item)
        else:
            try:
                scan[path] = experiment_from_data(item[0], item[1], path, allowed_hosts)
            except ConfigError as exc:
                scan[path] = exc
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
    reply: Reply
    try:
        scan = scan_directory(
            Path(request["directory"]), request["allowed_hosts"], request["max_bytes"]
        )
    except ConfigError as exc:
        reply = exc.detail
    else:
        reply = {
            path: item.detail
            if isinstance(item, ConfigError)
            else (yaml.safe_load(item.content), item.content)
            for path, item in scan.items()
        }
    sys.stdout.buffer.write(pickle.dumps(reply))


if __name__ == "__main__":
    main()

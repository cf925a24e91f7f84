"""Virtual environments of third-party model servers, built once from pinned files and cached.

Each server's pins live in ``tests/servers/<name>.txt`` (compiled by ``uv pip compile`` from
``<name>.in``); its venv is built under ``.turnout/test-venvs/<name>-<sha256 of that file>``
(git-ignored), so editing the pins builds a new one and nothing else ever does. A file lock
keeps parallel test runs from building the same venv twice; a marker written last means a
half-built venv (a run killed mid-build) is rebuilt, never used.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parents[1]
CACHE = Path(os.environ.get("TURNOUT_TEST_VENVS", PROJECT / ".turnout" / "test-venvs"))
BUILD_TIMEOUT = float(os.environ.get("TURNOUT_TEST_VENV_TIMEOUT", "900"))
SERVERS = ("seed", "bentoml", "mlserver", "mlflow")


class VenvBuildError(RuntimeError):
    pass


@dataclass(frozen=True)
class ServerVenv:
    name: str
    path: Path

    @property
    def bin(self) -> Path:
        return self.path / "bin"

    @property
    def python(self) -> Path:
        return self.bin / "python"

    def env(self, **extra: str) -> dict[str, str]:
        """An environment where this venv's tools come first and nothing of ours is on the
        import path."""
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        env["PATH"] = f"{self.bin}{os.pathsep}{env.get('PATH', '')}"
        env["VIRTUAL_ENV"] = str(self.path)
        return {**env, **extra}


def requirements(name: str) -> Path:
    return HERE / f"{name}.txt"


def venv_path(name: str) -> Path:
    digest = hashlib.sha256(requirements(name).read_bytes()).hexdigest()[:12]
    return CACHE / f"{name}-{digest}"


def _uv() -> str | None:
    beside = Path(sys.executable).parent / "uv"
    return str(beside) if beside.exists() else shutil.which("uv")


def build(name: str, timeout: float = BUILD_TIMEOUT) -> ServerVenv:
    """The venv of ``name``, built now if its pins have no complete venv yet."""
    target = venv_path(name)
    marker = target / ".complete"
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not marker.exists():
            shutil.rmtree(target, ignore_errors=True)
            _create(name, target, timeout)
            marker.write_text(time.strftime("%Y-%m-%dT%H:%M:%S"))
            for stale in CACHE.glob(f"{name}-*"):  # older pins of the same server
                if stale != target and stale.is_dir():
                    shutil.rmtree(stale, ignore_errors=True)
    return ServerVenv(name, target)


def _create(name: str, target: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    uv = _uv()
    python = str(target / "bin" / "python")
    pins = ["--no-deps", "-r", str(requirements(name))]
    if uv is not None:
        steps = [
            [uv, "venv", "--quiet", "--python", sys.executable, str(target)],
            [uv, "pip", "install", "--quiet", "--python", python, *pins],
        ]
    else:  # slower, same result
        steps = [
            [sys.executable, "-m", "venv", str(target)],
            [python, "-m", "pip", "install", "--quiet", *pins],
        ]
    for argv in steps:
        left = deadline - time.monotonic()
        if left <= 0:
            raise VenvBuildError(f"building the {name} venv took over {timeout:.0f}s")
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=left, check=False)
        except subprocess.TimeoutExpired:
            raise VenvBuildError(f"building the {name} venv took over {timeout:.0f}s") from None
        if done.returncode != 0:
            raise VenvBuildError(
                f"building the {name} venv failed ({' '.join(argv[:3])}): {done.stderr[-2000:]}"
            )


if __name__ == "__main__":  # python -m tests.servers.venvs [name ...]: build ahead of a run
    for server in sys.argv[1:] or SERVERS:
        started = time.monotonic()
        print(f"{server}: {build(server).path} ({time.monotonic() - started:.1f}s)")

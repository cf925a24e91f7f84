"""Helpers shared by tests that talk to real servers."""

from __future__ import annotations

import json
import select
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import redis

from router.local.processes import ManagedProcess, free_port, http_ok, poll_until
from tests.conftest import canary_yaml, write_experiment

TOKEN = "stack-ops-token-0123456789"


@contextmanager
def model_server(log_dir: Path) -> Iterator[str]:
    """``tests.servers.misbehaving`` as a process of its own, at the yielded base URL (a case
    is a path prefix: ``{url}/gzip_bomb``)."""
    port = free_port()
    process = ManagedProcess(
        "misbehaving",
        [sys.executable, "-m", "tests.servers.misbehaving", str(port)],
        log_path=log_dir / "misbehaving.log",
        cwd=Path(__file__).resolve().parents[1],
    ).start()
    url = f"http://127.0.0.1:{port}"
    try:
        poll_until(lambda: http_ok(f"{url}/good/v2/health/ready") or not process.alive(), 20)
        assert process.alive(), process.output()
        yield url
    finally:
        process.stop()


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    """``VmRSS`` (now) or ``VmHWM`` (the peak so far) of a process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no {field} for process {pid}")


def assert_streamed_oversize_refused(base_url: str, path: str, limit: int = 1_048_576) -> None:
    """Stream a chunked body of up to 64x the limit; the server must answer 413 before it
    ends. (The server drains what follows a refusal, lingering like nginx, so the client's
    sends never fail: on a busy machine the 413 may arrive after a few MiB more.)"""
    url = urlsplit(base_url)
    total = 64 * limit
    sent = 0
    response = b""
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: {url.hostname}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
        )
        chunk = b"a" * 65536
        framed = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
        while sent < total:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                response = sock.recv(65536)
                break
            try:
                sock.sendall(framed)
            except OSError:
                break
            sent += len(chunk)
        if not response:
            sock.settimeout(10)
            try:
                response = sock.recv(65536)
            except OSError:
                response = b""
    assert response.startswith(b"HTTP/1.1 413"), response[:200]
    assert sent < total, "the server read the whole oversize body before refusing it"


class LocalStack:
    """``turnout up`` in a folder of its own: two workers (v1, v2) behind a 50/50 canary, an
    embedded Redis, free ports everywhere, an admin token (``TOKEN``)."""

    def __init__(self, root: Path, models_dir: Path, **env: str) -> None:
        self.root = root
        self.ports = {v: free_port() for v in ("v1", "v2")}
        workers = {v: f"http://127.0.0.1:{p}" for v, p in self.ports.items()}
        write_experiment(root / "experiments", canary_yaml(workers, {"v1": 50, "v2": 50}))
        self.state = root / "state"
        self.port = free_port()
        self.redis_port = free_port()
        self.env = {
            "TURNOUT_MODELS_DIR": str(models_dir),
            "TURNOUT_EXPERIMENTS_DIR": str(root / "experiments"),
            "TURNOUT_STATE_DIR": str(self.state),
            "TURNOUT_PORT": str(self.port),
            "TURNOUT_REDIS_PORT": str(self.redis_port),
            "TURNOUT_HEALTH_INTERVAL": "0.5",
            "TURNOUT_RECORDING_FLUSH_INTERVAL": "0.05",
            "TURNOUT_FLAGS_REFRESH_INTERVAL": "0.5",
            "TURNOUT_STACK_RESTART_BACKOFF": "0.2",
            "TURNOUT_ADMIN_TOKENS": json.dumps({"ops": TOKEN}),
            "COLUMNS": "200",
            **env,
        }
        self.process = ManagedProcess(
            "turnout up",
            [sys.executable, "-m", "router", "up"],
            env=self.env,
            log_path=root / "up.log",
        ).start()
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_ready(self) -> None:
        ready = f"gateway ready at {self.url}"
        poll_until(
            lambda: ready in self.output() or not self.process.alive(), 120, what="the stack"
        )
        assert self.process.alive(), self.output()

    def output(self) -> str:
        return self.process.output()

    def child(self, needle: str) -> psutil.Process:
        for proc in psutil.Process(self.process.pid).children(recursive=True):
            if needle in " ".join(proc.cmdline()):
                return proc
        raise AssertionError(f"no child running {needle!r}")

    def redis(self) -> redis.Redis:
        return redis.Redis(port=self.redis_port, decode_responses=True)

